//! Netlink programming against the real kernel, each test in a private network
//! namespace (`unshare(CLONE_NEWNET)` on its own thread), so the host's
//! namespace is never touched. Needs root; without it the tests say so and
//! return.

mod common;
use common::in_netns;

use std::net::IpAddr;

use tapbridge::datapath::tap::Tap;
use tapbridge::mac::MacAddr;
use tapbridge::netlink::{Change, Changes, Netlink, NetlinkError, RouteEntry};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test literal")
}

fn route(routes: &[RouteEntry], dest: &str, len: u8) -> Option<RouteEntry> {
    routes
        .iter()
        .find(|r| r.dest == ip(dest) && r.prefix_len == len)
        .cloned()
}

const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

#[test]
fn programs_a_link_and_undo_removes_exactly_that() {
    in_netns("programs_a_link_and_undo_removes_exactly_that", || {
        let mut nl = Netlink::new().expect("netlink");
        let tap = Tap::create("tbt0", 1).expect("create tap");
        let link = nl
            .link_by_name("tbt0")
            .expect("lookup")
            .expect("tap exists");
        assert_eq!(link.kind.as_deref(), Some("tun"));
        assert!(!link.up);
        let idx = link.index;
        let br = nl.add_bridge("tbbr0").expect("bridge");

        let mut ch = Changes::new();
        nl.set_mtu(idx, 1400).expect("mtu");
        ch.record(Change::Mtu {
            index: idx,
            previous: link.mtu,
        });
        let old_mac = link.mac.expect("tap has a mac");
        nl.set_mac(idx, MAC).expect("mac");
        ch.record(Change::Mac {
            index: idx,
            previous: old_mac,
        });
        nl.set_up(idx).expect("up");
        ch.record(Change::LinkUp { index: idx });
        for (a, p) in [("198.18.0.1", 24), ("2001:2::1", 64)] {
            nl.add_address(idx, ip(a), p).expect("address");
            ch.record(Change::Address {
                index: idx,
                addr: ip(a),
                prefix_len: p,
            });
        }
        let routes = [
            ("198.19.64.0", 18, None),
            ("198.19.128.0", 18, Some(ip("198.18.0.254"))),
            ("2001:2:1::", 64, None),
            ("2001:2:2::", 64, Some(ip("2001:2::fe"))),
        ];
        for (d, p, via) in routes {
            nl.add_route(ip(d), p, via, idx).expect("route");
            ch.record(Change::Route {
                dest: ip(d),
                prefix_len: p,
                via,
                oif: idx,
            });
        }
        assert_eq!(nl.enslave(idx, "tbbr0").expect("enslave"), br);
        ch.record(Change::Enslaved {
            index: idx,
            bridge: "tbbr0".into(),
        });

        // Everything is there.
        let now = nl.link_by_name("tbt0").expect("lookup").expect("tap");
        assert_eq!(now.mtu, 1400);
        assert_eq!(now.mac, Some(MAC));
        assert!(now.up);
        assert_eq!(now.controller, Some(br));
        let addrs = nl.addresses(idx).expect("addresses");
        assert!(addrs.contains(&(ip("198.18.0.1"), 24)), "{addrs:?}");
        assert!(addrs.contains(&(ip("2001:2::1"), 64)), "{addrs:?}");
        let have = nl.routes(idx).expect("routes");
        for (d, p, via) in routes {
            let r = route(&have, d, p).unwrap_or_else(|| panic!("route {d}/{p} missing: {have:?}"));
            assert_eq!(r.via, via, "{d}/{p}");
        }

        // Adding again is an error that names the item.
        let e = nl
            .add_address(idx, ip("198.18.0.1"), 24)
            .expect_err("duplicate address");
        assert!(matches!(e, NetlinkError::Exists { .. }), "{e:?}");
        assert!(e.to_string().contains("198.18.0.1/24"), "{e}");
        assert!(e.to_string().contains("tbt0"), "{e}");
        let e = nl
            .add_route(ip("198.19.64.0"), 18, None, idx)
            .expect_err("duplicate route");
        assert!(matches!(e, NetlinkError::Exists { .. }), "{e:?}");
        assert!(e.to_string().contains("198.19.64.0/18"), "{e}");

        // Undo twice: the second pass finds everything gone and is still fine.
        let errors = ch.clone().undo(&mut nl);
        assert!(errors.is_empty(), "{errors:?}");
        let errors = ch.undo(&mut nl);
        assert!(errors.is_empty(), "second undo: {errors:?}");

        let after = nl
            .link_by_name("tbt0")
            .expect("lookup")
            .expect("tap still exists");
        assert_eq!(after.mtu, link.mtu);
        assert_eq!(after.mac, Some(old_mac));
        assert!(!after.up);
        assert_eq!(after.controller, None);
        let addrs = nl.addresses(idx).expect("addresses");
        assert!(
            addrs
                .iter()
                .all(|(a, _)| *a != ip("198.18.0.1") && *a != ip("2001:2::1")),
            "{addrs:?}"
        );
        let have = nl.routes(idx).expect("routes");
        for (d, p, _) in routes {
            assert!(route(&have, d, p).is_none(), "route {d}/{p} left: {have:?}");
        }
        // The bridge was not ours to remove.
        assert!(nl.link_by_name("tbbr0").expect("lookup").is_some());

        // A recorded creation is undone by deleting the link, even while the
        // TAP's fd is still open.
        let mut ch = Changes::new();
        ch.record(Change::Created {
            index: idx,
            name: "tbt0".into(),
        });
        nl.add_address(idx, ip("198.18.0.1"), 24).expect("address");
        ch.record(Change::Address {
            index: idx,
            addr: ip("198.18.0.1"),
            prefix_len: 24,
        });
        let errors = ch.undo(&mut nl);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(nl.link_by_name("tbt0").expect("lookup").is_none());
        drop(tap);
    });
}

#[test]
fn deleting_what_is_gone_is_fine() {
    in_netns("deleting_what_is_gone_is_fine", || {
        let mut nl = Netlink::new().expect("netlink");
        let _tap = Tap::create("tbt1", 1).expect("tap");
        let idx = nl.link_by_name("tbt1").expect("lookup").expect("tap").index;
        nl.set_up(idx).expect("up");
        nl.del_address(idx, ip("198.18.1.1"), 24)
            .expect("absent address");
        nl.del_route(ip("198.19.0.0"), 24, None, idx)
            .expect("absent route");
        nl.del_route(ip("2001:2:9::"), 64, Some(ip("2001:2::9")), idx)
            .expect("absent v6 route");
        nl.delete_link(idx).expect("delete");
        nl.delete_link(idx).expect("delete again");
        nl.del_address(idx, ip("198.18.1.1"), 24)
            .expect("address on a gone link");
        nl.set_down(idx).expect("down on a gone link");
        assert!(nl.link_by_name("tbt1").expect("lookup").is_none());
        assert!(nl.link_by_index(idx).expect("lookup").is_none());
    });
}

#[test]
fn enslave_needs_an_existing_bridge() {
    in_netns("enslave_needs_an_existing_bridge", || {
        let mut nl = Netlink::new().expect("netlink");
        let _tap = Tap::create("tbt2", 1).expect("tap");
        let idx = nl.link_by_name("tbt2").expect("lookup").expect("tap").index;
        let e = nl.enslave(idx, "tbnobr").expect_err("missing bridge");
        assert!(matches!(e, NetlinkError::NoSuchLink { .. }), "{e:?}");
        assert!(e.to_string().contains("tbnobr"), "{e}");
        let e = nl.enslave(idx, "lo").expect_err("lo is no bridge");
        assert!(matches!(e, NetlinkError::NotABridge { .. }), "{e:?}");
        let _other = Tap::create("tbt3", 1).expect("tap");
        let e = nl.enslave(idx, "tbt3").expect_err("a tap is no bridge");
        assert!(e.to_string().contains("tun"), "{e}");
        assert_eq!(
            nl.link_by_index(idx)
                .expect("lookup")
                .expect("tap")
                .controller,
            None
        );
    });
}

#[test]
fn remove_stale_tap_only_removes_taps() {
    in_netns("remove_stale_tap_only_removes_taps", || {
        let mut nl = Netlink::new().expect("netlink");
        assert!(!nl.remove_stale_tap("tbt4").expect("no such link"));

        // A leftover TAP (here still held open, as a persistent one would be).
        let stale = Tap::create("tbt4", 1).expect("tap");
        let idx = nl.link_by_name("tbt4").expect("lookup").expect("tap").index;
        nl.set_up(idx).expect("up");
        nl.add_address(idx, ip("198.18.4.1"), 24).expect("address");
        assert!(nl.remove_stale_tap("tbt4").expect("stale tap removed"));
        assert!(nl.link_by_name("tbt4").expect("lookup").is_none());
        assert!(!nl.remove_stale_tap("tbt4").expect("now gone"));
        drop(stale);
        // The name is free again.
        let _fresh = Tap::create("tbt4", 1).expect("name reusable");

        nl.add_bridge("tbbr4").expect("bridge");
        let e = nl
            .remove_stale_tap("tbbr4")
            .expect_err("a bridge is not a tap");
        assert!(matches!(e, NetlinkError::NotATap { .. }), "{e:?}");
        assert!(e.to_string().contains("bridge"), "{e}");
        assert!(
            nl.link_by_name("tbbr4").expect("lookup").is_some(),
            "bridge left alone"
        );
        let e = nl.remove_stale_tap("lo").expect_err("lo is not a tap");
        assert!(matches!(e, NetlinkError::NotATap { .. }), "{e:?}");
        assert!(nl.link_by_name("lo").expect("lookup").is_some());
    });
}

#[test]
fn invalid_prefixes_are_refused_before_the_kernel() {
    in_netns("invalid_prefixes_are_refused_before_the_kernel", || {
        let mut nl = Netlink::new().expect("netlink");
        let lo = nl.link_by_name("lo").expect("lookup").expect("lo").index;
        let e = nl
            .add_address(lo, ip("198.18.0.1"), 33)
            .expect_err("prefix 33");
        assert!(matches!(e, NetlinkError::InvalidPrefix { .. }), "{e:?}");
        let e = nl
            .add_route(ip("2001:2::"), 129, None, lo)
            .expect_err("prefix 129");
        assert!(matches!(e, NetlinkError::InvalidPrefix { .. }), "{e:?}");
        let e = nl
            .add_route(ip("198.19.64.1"), 18, None, lo)
            .expect_err("host bits");
        assert!(matches!(e, NetlinkError::NotANetwork { .. }), "{e:?}");
        let e = nl
            .add_route(ip("2001:2::1"), 64, None, lo)
            .expect_err("host bits");
        assert!(matches!(e, NetlinkError::NotANetwork { .. }), "{e:?}");
        nl.del_route(ip("0.0.0.0"), 0, None, lo)
            .expect("no default route is fine");
        let e = nl.add_route(ip("198.19.0.0"), 24, Some(ip("2001:2::1")), 999_999);
        assert!(e.is_err(), "bad interface index must fail");
    });
}

/// The dynamic FDB entries of bridge `br` on port `dev`, as `bridge fdb` lists them.
fn learned(br: &str, dev: &str) -> Vec<String> {
    let out = std::process::Command::new("bridge")
        .args(["fdb", "show", "br", br, "dev", dev])
        .output()
        .expect("run bridge(8) from iproute2");
    assert!(out.status.success(), "bridge fdb show: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("permanent"))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn flush_bridge_port_forgets_only_that_ports_entries() {
    in_netns("flush_bridge_port_forgets_only_that_ports_entries", || {
        let mut nl = Netlink::new().expect("netlink");
        nl.add_bridge("tbbr5").expect("bridge");
        let _taps = [
            Tap::create("tbt5", 1).expect("tap"),
            Tap::create("tbt6", 1).expect("tap"),
        ];
        let mut idx = [0; 2];
        for (i, name) in ["tbt5", "tbt6"].iter().enumerate() {
            idx[i] = nl.link_by_name(name).expect("lookup").expect("tap").index;
            nl.enslave(idx[i], "tbbr5").expect("enslave");
            nl.set_up(idx[i]).expect("up");
        }
        // Entries as the bridge would learn them (dynamic, on each port).
        for (mac, dev) in [
            ("02:00:00:00:05:01", "tbt5"),
            ("02:00:00:00:05:02", "tbt5"),
            ("02:00:00:00:06:01", "tbt6"),
        ] {
            let st = std::process::Command::new("bridge")
                .args(["fdb", "add", mac, "dev", dev, "master", "dynamic"])
                .status()
                .expect("run bridge(8)");
            assert!(st.success(), "bridge fdb add {mac} dev {dev}");
        }
        assert_eq!(learned("tbbr5", "tbt5").len(), 2);

        nl.flush_bridge_port(idx[0]).expect("flush");
        assert_eq!(learned("tbbr5", "tbt5"), Vec::<String>::new());
        assert_eq!(learned("tbbr5", "tbt6"), vec!["02:00:00:00:06:01"]);
    });
}
