use super::*;

const BCAST: [u8; 6] = [0xff; 6];
const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

/// Ethernet header with `tags` (TPID, VID), outermost first.
fn eth(dst: [u8; 6], tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&SRC);
    for &(tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp() -> Vec<u8> {
    let mut p = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    p.extend_from_slice(&SRC);
    p.extend_from_slice(&[198, 19, 0, 7, 0, 0, 0, 0, 0, 0, 198, 19, 0, 254]);
    p
}

/// IPv4 (no options, unfragmented unless `frag` is set) carrying `payload`.
fn ipv4(proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]);
    p.extend_from_slice(payload);
    p
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 255]);
    p.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(payload);
    p
}

fn udp(src: u16, dst: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = src.to_be_bytes().to_vec();
    p.extend_from_slice(&dst.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

fn discover() -> Vec<u8> {
    let mut bootp = vec![0u8; 300];
    bootp[0] = 1; // BOOTREQUEST
    ipv4(17, 0, &udp(68, 67, &bootp))
}

fn offer() -> Vec<u8> {
    let mut bootp = vec![0u8; 300];
    bootp[0] = 2; // BOOTREPLY
    ipv4(17, 0, &udp(67, 68, &bootp))
}

const TAGS: [&[(u16, u16)]; 4] = [
    &[],
    &[(0x8100, 10)],
    &[(0x88a8, 100), (0x8100, 10)],
    &[(0x9100, 7), (0x8100, 8), (0x8100, 9)],
];

fn outer(tags: &[(u16, u16)]) -> Vlan {
    tags.first().map_or(Vlan::Untagged, |t| Vlan::Tagged(t.1))
}

#[test]
fn arp_untagged_tagged_and_qinq() {
    for tags in TAGS {
        let c = classify(&eth(BCAST, tags, 0x0806, &arp()));
        assert_eq!(
            c,
            Class {
                vlan: outer(tags),
                kind: Kind::Arp
            },
            "{tags:?}"
        );
        assert_eq!(c.untagged(), tags.is_empty());
        // Padded to the Ethernet minimum, as on the wire.
        let mut padded = eth(BCAST, tags, 0x0806, &arp());
        padded.resize(padded.len().max(60), 0);
        assert_eq!(classify(&padded).kind, Kind::Arp);
    }
}

#[test]
fn dhcp_both_ways_in_any_vlan() {
    for tags in TAGS {
        let c = classify(&eth(BCAST, tags, 0x0800, &discover()));
        assert_eq!(c.vlan, outer(tags));
        assert_eq!(
            c.kind,
            Kind::Ipv4Udp(Udp {
                src: 68,
                dst: 67,
                first: Some(1)
            }),
            "{tags:?}"
        );
        assert!(c.is_dhcpv4_to_server() && c.is_dhcpv4() && !c.is_dhcpv4_server());
        let c = classify(&eth(BCAST, tags, 0x0800, &offer()));
        assert!(!c.is_dhcpv4_to_server() && c.is_dhcpv4() && c.is_dhcpv4_server());
        let c = classify(&eth(
            BCAST,
            tags,
            0x0800,
            &ipv4(17, 0, &udp(53, 5353, &[1])),
        ));
        assert!(!c.is_dhcpv4() && !c.is_dhcpv4_server() && !c.is_dhcpv4_to_server());
        // DHCPv4 ports in IPv6 are not DHCPv4.
        let c = classify(&eth(BCAST, tags, 0x86dd, &ipv6(17, &udp(68, 67, &[1]))));
        assert_eq!(
            c.kind,
            Kind::Ipv6Udp(Udp {
                src: 68,
                dst: 67,
                first: Some(1)
            })
        );
        assert!(!c.is_dhcpv4());
    }
}

#[test]
fn icmpv6_types_and_dhcpv6_servers() {
    for tags in TAGS {
        let ra = eth(BCAST, tags, 0x86dd, &ipv6(58, &[134, 0, 0, 0, 64, 0, 0, 0]));
        let c = classify(&ra);
        assert_eq!((c.vlan, c.kind), (outer(tags), Kind::Icmpv6(134)));
        assert!(c.is_router_advertisement());
        let ns = eth(BCAST, tags, 0x86dd, &ipv6(58, &[135, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!classify(&ns).is_router_advertisement());
        let adv = eth(BCAST, tags, 0x86dd, &ipv6(17, &udp(547, 546, &[2])));
        assert!(classify(&adv).is_dhcpv6_server());
        let solicit = eth(BCAST, tags, 0x86dd, &ipv6(17, &udp(546, 547, &[1])));
        assert!(!classify(&solicit).is_dhcpv6_server());
    }
}

#[test]
fn bpdus_by_destination_in_any_vlan() {
    for dst in [STP_DST, PVST_DST] {
        for tags in TAGS {
            let c = classify(&eth(dst, tags, 0x0026, &[0x42, 0x42, 0x03, 0, 0]));
            assert_eq!((c.vlan, c.kind), (outer(tags), Kind::Bpdu));
        }
    }
}

#[test]
fn first_fragments_show_their_ports_later_ones_do_not() {
    let bootp = [1u8; 300];
    let first = ipv4(17, 0x2000, &udp(68, 67, &bootp)); // more fragments, offset 0
    assert!(classify(&eth(BCAST, &[], 0x0800, &first)).is_dhcpv4_to_server());
    let later = ipv4(17, 0x0001, &udp(68, 67, &bootp)); // offset 8
    assert_eq!(classify(&eth(BCAST, &[], 0x0800, &later)).kind, Kind::Other);
}

#[test]
fn the_vlan_is_the_outer_tag() {
    assert_eq!(vlan(&eth(BCAST, &[], 0x0800, &[])), Vlan::Untagged);
    assert_eq!(
        vlan(&eth(BCAST, &[(0x8100, 0)], 0x0800, &[])),
        Vlan::Tagged(0),
        "priority tag"
    );
    // The priority and DEI bits are not part of the VID.
    assert_eq!(
        vlan(&eth(BCAST, &[(0x8100, 0xe00a)], 0x0800, &[])),
        Vlan::Tagged(10)
    );
    assert_eq!(
        vlan(&eth(BCAST, &[(0x88a8, 4094), (0x8100, 3)], 0x0800, &[])),
        Vlan::Tagged(4094)
    );
    // A tag cut short is in no real VLAN, and not untagged either.
    let short = eth(BCAST, &[(0x8100, 10)], 0x0800, &[]);
    assert_eq!(vlan(&short[..15]), Vlan::Tagged(VID_UNREADABLE));
    assert_eq!(classify(&short[..15]).vlan, Vlan::Tagged(VID_UNREADABLE));
    assert_eq!(vlan(&short[..13]), Vlan::Untagged, "no ether type at all");
    assert_eq!(vlan(&[]), Vlan::Untagged);
}

#[test]
fn macsec_hides_what_follows() {
    // A MACsec SecTAG (TCI/AN 0x0c: SC present, no encryption) in front of
    // an ARP: not readable as ours.
    let mut sectag = vec![0x0c, 0, 0, 0, 0, 1];
    sectag.extend_from_slice(&[0; 8]); // SCI
    sectag.extend_from_slice(&0x0806u16.to_be_bytes());
    sectag.extend_from_slice(&arp());
    let c = classify(&eth(BCAST, &[], 0x88e5, &sectag));
    assert_eq!(c.kind, Kind::Other);
}

#[test]
fn every_prefix_of_every_fixture_classifies_without_panic() {
    let bodies: [(u16, Vec<u8>); 6] = [
        (0x0806, arp()),
        (0x0800, discover()),
        (0x0800, offer()),
        (0x86dd, ipv6(58, &[134, 0, 0, 0, 64, 0, 0, 0])),
        (0x86dd, ipv6(17, &udp(547, 546, &[2]))),
        (0x0026, vec![0x42, 0x42, 0x03]),
    ];
    let mut prefixes = 0;
    for tags in TAGS {
        for (ethertype, body) in &bodies {
            let f = eth(BCAST, tags, *ethertype, body);
            for len in 0..=f.len() {
                let c = classify(&f[..len]);
                // A cut frame is never taken for something it is not.
                if let Kind::Ipv4Udp(u) = c.kind {
                    assert!([67, 68].contains(&u.src), "{len}: {c:?}");
                }
                prefixes += 1;
            }
        }
    }
    assert!(prefixes > 3000, "{prefixes}");
}

#[test]
fn truncated_frames_keep_what_can_be_read() {
    let f = eth(BCAST, &[(0x8100, 10)], 0x0800, &discover());
    // The BOOTP body cut short: still a DHCP client message (so it is never
    // tunneled while the responder is on).
    let c = classify(&f[..18 + 20 + 8 + 10]);
    assert!(c.is_dhcpv4_to_server(), "{c:?}");
    // Not even the UDP header: nothing.
    assert_eq!(classify(&f[..18 + 20 + 4]).kind, Kind::Other);
    // Truncated ARP is not ARP.
    let a = eth(BCAST, &[], 0x0806, &arp());
    assert_eq!(classify(&a[..20]).kind, Kind::Other);
}

proptest::proptest! {
    /// Any bytes behind any tag stack and ether type: no panic, and the
    /// VLAN always agrees with the cheap [`vlan`].
    #[test]
    fn any_frame_classifies(
        tags in proptest::collection::vec(
            (proptest::sample::select(vec![0x8100u16, 0x88a8, 0x9100]), 0u16..=0xffff),
            0..4,
        ),
        ethertype in proptest::sample::select(vec![0x0800u16, 0x86dd, 0x0806, 0x88e5, 0x1234]),
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
    ) {
        let f = eth(BCAST, &tags, ethertype, &body);
        for len in 0..=f.len() {
            let c = classify(&f[..len]);
            proptest::prop_assert_eq!(c.vlan, vlan(&f[..len]));
        }
        let expect = tags.first().map_or(Vlan::Untagged, |t| Vlan::Tagged(t.1 & 0x0fff));
        proptest::prop_assert_eq!(classify(&f).vlan, expect);
    }
}

/// An IPv4 or IPv6 header start with a chosen version and upper protocol,
/// then random bytes: the shapes where the quick path must match slicing.
fn ip_like(v6: bool, version: u8, proto: u8, rest: &[u8]) -> Vec<u8> {
    let mut p = rest.to_vec();
    let need = if v6 { 40 } else { 20 };
    if p.len() < need {
        p.resize(need, 0);
    }
    let odd = rest.first().is_some_and(|b| b & 1 == 1);
    p[0] = (version << 4) | (p[0] & 0x0f);
    if !v6 && odd {
        // Mostly a plain header: 20 bytes, not a later fragment, a total
        // length that fits; the rest of the time, whatever the bytes say.
        p[0] = (version << 4) | 5;
        p[6] &= 0xe0;
        p[7] = 0;
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
    }
    if v6 {
        p[6] = proto;
        // Often a payload length that fits, sometimes one that lies.
        let fit = (p.len() - 40) as u16;
        let len = if odd { fit } else { fit + 9 };
        p[4..6].copy_from_slice(&len.to_be_bytes());
    } else {
        p[9] = proto;
    }
    p
}

#[test]
fn the_quick_path_decides_bulk_traffic() {
    let tcp4 = eth(SRC, &[], 0x0800, &ipv4(6, 0, &[0; 40]));
    let tcp6 = eth(SRC, &[(0x8100, 10)], 0x86dd, &ipv6(6, &[0; 40]));
    let other = eth(SRC, &[], 0x88b5, &[0; 46]);
    for f in [&tcp4, &tcp6, &other] {
        assert_eq!(quick_other(f), Some(Kind::Other));
    }
    // Left to slicing: ARP, UDP, ICMPv6, a lying IPv6 length, a 4th tag.
    let udp4 = eth(BCAST, &[], 0x0800, &discover());
    let mut lying = tcp6.clone();
    lying[18 + 4..18 + 6].copy_from_slice(&999u16.to_be_bytes());
    let deep = eth(SRC, &[(0x8100, 1); 4], 0x0800, &ipv4(6, 0, &[0; 40]));
    for f in [&eth(BCAST, &[], 0x0806, &arp()), &udp4, &lying, &deep] {
        assert_eq!(quick_other(f), None);
    }
    assert_eq!(sliced_kind(&lying), Kind::Ipv6Undecodable);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
    /// Wherever the quick path answers, slicing gives the same answer: any
    /// tag stack, ether type, IP version, upper protocol, bytes and length.
    #[test]
    fn the_quick_path_agrees_with_slicing(
        tags in proptest::collection::vec(
            (proptest::sample::select(vec![0x8100u16, 0x88a8, 0x9100]), 0u16..=0xffff),
            0..5,
        ),
        // 0: the IP ether type `v6` says (half the cases).
        ethertype in proptest::sample::select(vec![0u16, 0, 0, 0, 0x0806, 0x88e5, 0x1234, 0x0042]),
        v6 in proptest::bool::ANY,
        version in proptest::sample::select(vec![4u8, 6, 4, 6, 5, 0]),
        proto in proptest::sample::select(vec![6u8, 17, 6, 17, 1, 58, 0, 43, 44, 60]),
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
    ) {
        let ethertype = match (ethertype, v6) {
            (0, false) => 0x0800,
            (0, true) => 0x86dd,
            (t, _) => t,
        };
        let f = eth(SRC, &tags, ethertype, &ip_like(v6, version, proto, &body));
        for len in 0..=f.len() {
            if let Some(quick) = quick_other(&f[..len]) {
                proptest::prop_assert_eq!(quick, sliced_kind(&f[..len]), "{:02x?}", &f[..len]);
            }
        }
    }
}
