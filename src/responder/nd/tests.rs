use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use super::super::fixtures::tagged;
use super::super::{ArpSettings, RemoteVerdict, Responder};
use super::*;
use crate::leases::LeaseDb;

const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const LOCAL: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const REMOTE: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const OTHER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 3];

fn ip(s: &str) -> Ipv6Addr {
    s.parse().expect("IPv6 literal")
}

fn local_ip() -> Ipv6Addr {
    ip("2001:2::a")
}

fn remote_ip() -> Ipv6Addr {
    ip("2001:2::b")
}

fn responder_with(suppress_nd: bool) -> Responder {
    let arp = ArpSettings {
        respond: vec![Ipv4Addr::new(198, 19, 0, 254)],
        mac: MacAddr(OUR_MAC),
        suppress: true,
        binding_timeout: Duration::from_secs(300),
        suppress_nd,
    };
    Responder::new(Some(arp), None, LeaseDb::default()).expect("valid settings")
}

fn responder() -> Responder {
    responder_with(true)
}

/// An Ethernet/IPv6 frame (hop limit 255) around `icmp`, checksum filled.
fn frame(eth_dst: [u8; 6], eth_src: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> Vec<u8> {
    let mut icmp = icmp.to_vec();
    icmp[2..4].fill(0);
    let sum = !icmpv6_sum(&src, &dst, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = eth_dst.to_vec();
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[NEXT_ICMPV6, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&icmp);
    f
}

fn body(icmp_type: u8, flags: u8, target: Ipv6Addr, opt: Option<(u8, [u8; 6])>) -> Vec<u8> {
    let mut b = vec![icmp_type, 0, 0, 0, flags, 0, 0, 0];
    b.extend_from_slice(&target.octets());
    if let Some((t, mac)) = opt {
        b.extend_from_slice(&[t, 1]);
        b.extend_from_slice(&mac);
    }
    b
}

fn group_mac(target: Ipv6Addr) -> [u8; 6] {
    let t = target.octets();
    [0x33, 0x33, 0xff, t[13], t[14], t[15]]
}

/// A multicast NS from (`mac`, `src`) for `target`, with an SLLA option.
fn mcast_ns(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let icmp = body(NS, 0, target, Some((OPT_SLLA, mac)));
    frame(group_mac(target), mac, src, solicited_node(&target), &icmp)
}

/// An unsolicited NA (to all nodes) for `target` from `mac`, TLLA `mac`.
fn na(mac: [u8; 6], target: Ipv6Addr, flags: u8) -> Vec<u8> {
    let icmp = body(NA, flags, target, Some((OPT_TLLA, mac)));
    frame([0x33, 0x33, 0, 0, 0, 1], mac, target, ip("ff02::1"), &icmp)
}

fn local(r: &mut Responder, f: &[u8], now: Instant) -> (LocalVerdict, Vec<u8>) {
    let mut buf = [0u8; 1600];
    let v = r.handle_local(f, now, SystemTime::UNIX_EPOCH, &mut buf);
    let n = if let LocalVerdict::Reply(n) = v { n } else { 0 };
    (v, buf[..n].to_vec())
}

/// Whether the local host's multicast NS for `target` is answered.
fn answers(r: &mut Responder, target: Ipv6Addr, now: Instant) -> bool {
    matches!(
        local(r, &mcast_ns(LOCAL, local_ip(), target), now).0,
        LocalVerdict::Reply(_)
    )
}

fn learn(r: &mut Responder, mac: [u8; 6], addr: Ipv6Addr, peer: PeerId, now: Instant) {
    assert_eq!(
        r.handle_remote(&na(mac, addr, 0), peer, now),
        RemoteVerdict::Deliver
    );
    assert!(answers(r, addr, now), "{addr} learned");
}

#[test]
fn learns_from_an_na_and_answers_a_multicast_ns() {
    let mut r = responder();
    let t0 = Instant::now();
    let ask = mcast_ns(LOCAL, local_ip(), remote_ip());
    assert_eq!(
        local(&mut r, &ask, t0).0,
        LocalVerdict::Forward,
        "unknown yet"
    );
    // B answers A through the tunnel (solicited, unicast, Override set).
    let icmp = body(NA, 0x60, remote_ip(), Some((OPT_TLLA, REMOTE)));
    let reply = frame(LOCAL, REMOTE, remote_ip(), local_ip(), &icmp);
    assert_eq!(
        r.handle_remote(&reply, PeerId::new(0), t0),
        RemoteVerdict::Deliver
    );
    assert_eq!(r.nd_bindings(t0), 1);
    assert_eq!(r.counters().nd_bindings_learned, 1);

    let (v, out) = local(&mut r, &ask, t0 + Duration::from_secs(10));
    assert_eq!(v, LocalVerdict::Reply(NA_FRAME_LEN));
    assert_eq!(out.len(), 86);
    assert_eq!(&out[..6], &LOCAL, "to the asker");
    assert_eq!(&out[6..12], &REMOTE, "from the bound MAC");
    assert_eq!(&out[12..14], &[0x86, 0xdd]);
    assert_eq!(out[14] >> 4, 6);
    assert_eq!(u16::from_be_bytes([out[18], out[19]]), 32, "payload length");
    assert_eq!((out[20], out[21]), (58, 255), "ICMPv6, hop limit 255");
    assert_eq!(ipv6_at(&out, 22), Some(remote_ip()), "source: the target");
    assert_eq!(
        ipv6_at(&out, 38),
        Some(local_ip()),
        "to the asker's address"
    );
    let icmp = &out[54..];
    assert_eq!((icmp[0], icmp[1]), (136, 0));
    assert_eq!(icmp[4], 0x40, "Solicited; Router and Override clear");
    assert_eq!(ipv6_at(icmp, 8), Some(remote_ip()));
    assert_eq!(&icmp[24..26], &[2, 1], "target link-layer option");
    assert_eq!(&icmp[26..32], &REMOTE);
    // The checksum, checked by another implementation.
    let slice = etherparse::Icmpv6Slice::from_slice(icmp).expect("ICMPv6");
    assert!(slice.is_checksum_valid(remote_ip().octets(), local_ip().octets()));
    assert_eq!(r.counters().nd_replies, 1);
    assert_eq!(r.counters().arp_replies, 0);

    // After the timeout it no longer answers; a fresh NA brings it back.
    let late = t0 + Duration::from_secs(300);
    assert_eq!(local(&mut r, &ask, late).0, LocalVerdict::Forward);
    assert_eq!(r.nd_bindings(late), 0);
    r.handle_remote(&na(REMOTE, remote_ip(), 0), PeerId::new(0), late);
    assert!(answers(&mut r, remote_ip(), late));
    assert_eq!(r.counters().nd_replies, 2);
}

#[test]
fn learns_from_an_ns_with_a_source_link_layer_option() {
    let mut r = responder();
    let now = Instant::now();
    // B asks for A through the tunnel: B's address is learned.
    let ns = mcast_ns(REMOTE, remote_ip(), local_ip());
    assert_eq!(
        r.handle_remote(&ns, PeerId::new(0), now),
        RemoteVerdict::Deliver
    );
    assert!(answers(&mut r, remote_ip(), now));
    // Without the option, or from `::` (DAD), nothing is learned.
    let mut r = responder();
    let other = ip("2001:2::c");
    let bare = body(NS, 0, local_ip(), None);
    let bare = frame(
        group_mac(local_ip()),
        OTHER,
        other,
        solicited_node(&local_ip()),
        &bare,
    );
    r.handle_remote(&bare, PeerId::new(0), now);
    let dad = body(NS, 0, other, None);
    let dad = frame(
        group_mac(other),
        OTHER,
        Ipv6Addr::UNSPECIFIED,
        solicited_node(&other),
        &dad,
    );
    r.handle_remote(&dad, PeerId::new(0), now);
    // An NA without a target link-layer option neither.
    let plain = body(NA, 0x60, other, None);
    r.handle_remote(
        &frame(LOCAL, OTHER, other, local_ip(), &plain),
        PeerId::new(0),
        now,
    );
    assert_eq!(r.nd_bindings(now), 0);
    assert_eq!(r.counters().nd_bindings_learned, 0);
    assert_eq!(r.counters().nd_bindings_refused, 0);
}

#[test]
fn never_answers_dad_unicast_or_unknown_targets() {
    let mut r = responder();
    let now = Instant::now();
    learn(&mut r, REMOTE, remote_ip(), PeerId::new(0), now);
    let before = r.counters().nd_replies;
    // Unicast NS (re-verification): goes to the host; the binding stays.
    let icmp = body(NS, 0, remote_ip(), Some((OPT_SLLA, LOCAL)));
    let unicast = frame(REMOTE, LOCAL, local_ip(), remote_ip(), &icmp);
    assert_eq!(local(&mut r, &unicast, now).0, LocalVerdict::Forward);
    // Multicast on the wire but to another IPv6 group, or the other way round.
    let all_nodes = frame(
        group_mac(remote_ip()),
        LOCAL,
        local_ip(),
        ip("ff02::1"),
        &icmp,
    );
    assert_eq!(local(&mut r, &all_nodes, now).0, LocalVerdict::Forward);
    let wrong_mac = frame(
        [0x33, 0x33, 0, 0, 0, 1],
        LOCAL,
        local_ip(),
        solicited_node(&remote_ip()),
        &icmp,
    );
    assert_eq!(local(&mut r, &wrong_mac, now).0, LocalVerdict::Forward);
    // Without the source link-layer option, or with one that is not the
    // Ethernet source.
    let bare = body(NS, 0, remote_ip(), None);
    let bare = frame(
        group_mac(remote_ip()),
        LOCAL,
        local_ip(),
        solicited_node(&remote_ip()),
        &bare,
    );
    assert_eq!(local(&mut r, &bare, now).0, LocalVerdict::Forward);
    // An address not bound.
    assert!(!answers(&mut r, ip("2001:2::99"), now));
    assert!(answers(&mut r, remote_ip(), now), "still bound");
    assert_eq!(r.counters().nd_replies, before + 1);
    // Duplicate address detection (source ::) is never answered; a local
    // host probing the address is about to use it here: the binding goes.
    let dad = body(NS, 0, remote_ip(), None);
    let dad = frame(
        group_mac(remote_ip()),
        LOCAL,
        Ipv6Addr::UNSPECIFIED,
        solicited_node(&remote_ip()),
        &dad,
    );
    assert_eq!(local(&mut r, &dad, now).0, LocalVerdict::Forward);
    assert!(!answers(&mut r, remote_ip(), now));
    assert_eq!(r.counters().nd_replies, before + 1);
}

#[test]
fn router_flag_is_kept_and_override_never_set() {
    let mut r = responder();
    let now = Instant::now();
    let gw = ip("2001:2::1");
    r.handle_remote(&na(REMOTE, gw, FLAG_ROUTER | 0x20), PeerId::new(0), now);
    // An NS from the router refreshes without forgetting it is one.
    r.handle_remote(&mcast_ns(REMOTE, gw, local_ip()), PeerId::new(0), now);
    let (_, out) = local(&mut r, &mcast_ns(LOCAL, local_ip(), gw), now);
    assert_eq!(out[54 + 4], FLAG_ROUTER | FLAG_SOLICITED);
}

#[test]
fn bindings_go_with_their_peer() {
    let mut r = responder();
    let now = Instant::now();
    let other_ip = ip("2001:2::c");
    learn(&mut r, REMOTE, remote_ip(), PeerId::new(0), now);
    learn(&mut r, OTHER, other_ip, PeerId::new(1), now);
    r.forget_peer(PeerId::new(0));
    assert!(!answers(&mut r, remote_ip(), now));
    assert!(answers(&mut r, other_ip, now));
    r.forget_peer(PeerId::new(1));
    assert_eq!(r.nd_bindings(now), 0);
    learn(&mut r, REMOTE, remote_ip(), PeerId::new(0), now);
}

#[test]
fn a_host_showing_up_locally_loses_its_binding() {
    let now = Instant::now();
    let other_ip = ip("2001:2::c");
    let fresh = || {
        let mut r = responder();
        learn(&mut r, REMOTE, remote_ip(), PeerId::new(0), now);
        learn(&mut r, OTHER, other_ip, PeerId::new(0), now);
        r
    };
    // Any local frame from the bound MAC (IPv4 here).
    let mut r = fresh();
    let mut v4 = vec![0xff; 6];
    v4.extend_from_slice(&REMOTE);
    v4.extend_from_slice(&[0x08, 0x00]);
    v4.extend_from_slice(&[0x45; 40]);
    assert_eq!(local(&mut r, &v4, now).0, LocalVerdict::Forward);
    assert!(!answers(&mut r, remote_ip(), now));
    assert!(answers(&mut r, other_ip, now), "other bindings stay");
    // A local NA for the address, from another MAC.
    let mut r = fresh();
    local(
        &mut r,
        &na([0x52, 0x54, 0, 0, 0, 0x55], remote_ip(), 0),
        now,
    );
    assert!(!answers(&mut r, remote_ip(), now));
    assert!(answers(&mut r, other_ip, now));
    // A local NS from the address, from another MAC.
    let mut r = fresh();
    local(
        &mut r,
        &mcast_ns([0x52, 0x54, 0, 0, 0, 0x55], remote_ip(), local_ip()),
        now,
    );
    assert!(!answers(&mut r, remote_ip(), now));
    // A local option naming the MAC (an NA relayed by a proxy).
    let mut r = fresh();
    let icmp = body(NA, 0, ip("2001:2::77"), Some((OPT_TLLA, REMOTE)));
    let relayed = frame(
        [0x33, 0x33, 0, 0, 0, 1],
        LOCAL,
        local_ip(),
        ip("ff02::1"),
        &icmp,
    );
    local(&mut r, &relayed, now);
    assert!(!answers(&mut r, remote_ip(), now));
    assert!(answers(&mut r, other_ip, now));
    assert_eq!(r.nd_bindings(now), 1);
}

#[test]
fn refuses_bindings_that_cannot_be_true() {
    let mut r = responder();
    let t0 = Instant::now();
    // Target link-layer option is not the Ethernet source.
    let icmp = body(NA, 0x20, remote_ip(), Some((OPT_TLLA, REMOTE)));
    let spoof = frame(
        [0x33, 0x33, 0, 0, 0, 1],
        OTHER,
        remote_ip(),
        ip("ff02::1"),
        &icmp,
    );
    assert_eq!(
        r.handle_remote(&spoof, PeerId::new(0), t0),
        RemoteVerdict::Deliver
    );
    // Source link-layer option is not the Ethernet source.
    let mut ns = mcast_ns(REMOTE, remote_ip(), local_ip());
    ns[6..12].copy_from_slice(&OTHER);
    r.handle_remote(&ns, PeerId::new(0), t0);
    // The responder's own MAC.
    r.handle_remote(&na(OUR_MAC, remote_ip(), 0), PeerId::new(2), t0);
    assert_eq!(r.counters().nd_bindings_refused, 3);
    assert_eq!(r.counters().nd_bindings_learned, 0);
    assert_eq!(r.nd_bindings(t0), 0);
    assert!(!answers(&mut r, remote_ip(), t0));
    let log = r.take_refusal_log(t0).expect("refusals to log");
    assert_eq!(log.count, 3);
    assert_eq!(log.ip, IpAddr::from(remote_ip()));
    assert_eq!(log.mac, MacAddr(OUR_MAC));
    assert_eq!(
        (log.peer, log.reason),
        (PeerId::new(2), BindingRefusal::OwnMac.reason())
    );
}

#[test]
fn tagged_nd_is_neither_answered_nor_learned() {
    let mut r = responder();
    let now = Instant::now();
    let announce = na(REMOTE, remote_ip(), 0);
    r.handle_remote(&tagged(&announce, &[(0x8100, 10)]), PeerId::new(0), now);
    assert_eq!(r.nd_bindings(now), 0);
    r.handle_remote(&announce, PeerId::new(0), now);
    let ask = mcast_ns(LOCAL, local_ip(), remote_ip());
    for tags in [&[(0x8100, 10)][..], &[(0x88a8, 5), (0x8100, 10)]] {
        assert_eq!(
            local(&mut r, &tagged(&ask, tags), now).0,
            LocalVerdict::Forward
        );
    }
    assert!(answers(&mut r, remote_ip(), now));
}

#[test]
fn off_unless_configured() {
    let mut r = responder_with(false);
    let now = Instant::now();
    assert_eq!(
        r.handle_remote(&na(REMOTE, remote_ip(), 0), PeerId::new(0), now),
        RemoteVerdict::Deliver
    );
    assert_eq!(r.nd_bindings(now), 0);
    assert!(!answers(&mut r, remote_ip(), now));
    assert_eq!(r.counters().nd_bindings_learned, 0);
}

/// A way to break a frame, named.
type Spoil = (&'static str, fn(&mut Vec<u8>));

#[test]
fn malformed_messages_teach_nothing() {
    let now = Instant::now();
    let good = na(REMOTE, remote_ip(), 0);
    let spoil: [Spoil; 7] = [
        ("checksum", |f| f[56] ^= 1),
        ("hop limit 64", |f| f[21] = 64),
        ("code 1", |f| f[55] = 1),
        ("zero-length option", |f| f[79] = 0),
        ("option past the end", |f| f[79] = 2),
        ("payload length past the frame", |f| f[19] = 40),
        ("not IPv6", |f| f[14] = 0x45),
    ];
    for (what, spoil) in spoil {
        let mut f = good.clone();
        spoil(&mut f);
        let mut r = responder();
        r.handle_remote(&f, PeerId::new(0), now);
        assert_eq!(r.nd_bindings(now), 0, "{what}");
    }
    // Ethernet padding after the payload is fine.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 10]);
    let mut r = responder();
    r.handle_remote(&padded, PeerId::new(0), now);
    assert_eq!(r.nd_bindings(now), 1);
    // A multicast target is never learned.
    r.handle_remote(&na(OTHER, ip("ff02::1:2"), 0), PeerId::new(0), now);
    assert_eq!(r.nd_bindings(now), 1);
}

#[test]
fn no_panic_on_any_prefix_or_corruption() {
    let now = Instant::now();
    let fixtures = [
        na(REMOTE, remote_ip(), 0x20),
        mcast_ns(REMOTE, remote_ip(), local_ip()),
        mcast_ns(LOCAL, local_ip(), remote_ip()),
    ];
    let mut r = responder();
    learn(&mut r, REMOTE, remote_ip(), PeerId::new(0), now);
    for f in &fixtures {
        for n in 0..=f.len() {
            r.handle_remote(&f[..n], PeerId::new(0), now);
            local(&mut r, &f[..n], now);
        }
        for i in 0..f.len() {
            for bit in [0x01, 0x80] {
                let mut g = f.clone();
                g[i] ^= bit;
                r.handle_remote(&g, PeerId::new(0), now);
                local(&mut r, &g, now);
            }
        }
    }
    // A reply buffer too small is no reply, not a panic.
    let mut r = responder();
    learn(&mut r, REMOTE, remote_ip(), PeerId::new(0), now);
    let mut nd = NdResponder::new(Duration::from_secs(1), [MacAddr(OUR_MAC); 2]).expect("valid");
    nd.learn_remote(&na(REMOTE, remote_ip(), 0), PeerId::new(0), now);
    let mut small = [0u8; NA_FRAME_LEN - 1];
    let ask = mcast_ns(LOCAL, local_ip(), remote_ip());
    assert_eq!(
        nd.handle_local(&ask, now, &mut small),
        LocalVerdict::Forward
    );
    assert!(NdResponder::new(Duration::ZERO, [MacAddr(OUR_MAC); 2]).is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    const MACS: [[u8; 6]; 5] = [LOCAL, REMOTE, OTHER, OUR_MAC, [0x33, 0x33, 0, 0, 0, 1]];

    /// Mostly `usual`, sometimes the other host address or `::`.
    fn addr(i: u8, usual: &str, other: &str) -> Ipv6Addr {
        match i % 8 {
            0 => Ipv6Addr::UNSPECIFIED,
            1 => ip(other),
            _ => ip(usual),
        }
    }

    #[derive(Debug, Clone)]
    struct Step {
        remote: bool,
        /// An NA (else an NS): half the remote steps, a quarter of the local
        /// ones (a local NA for a bound address drops it).
        na: u8,
        flags: u8,
        src: u8,
        target: u8,
        eth_src: usize,
        eth_dst: u8,
        ip_dst: u8,
        /// Option (0, 1: the right link-layer type; 2: the other one; 3:
        /// type 3) and MAC (`None`: the Ethernet source).
        opt: Option<(u8, Option<usize>)>,
        extra: Vec<u8>,
        dt: u64,
    }

    fn step() -> impl Strategy<Value = Step> {
        let head = ((any::<bool>(), any::<u8>()), any::<[u8; 3]>());
        let eth = (0..2 * MACS.len(), any::<u8>(), any::<u8>());
        let opt = proptest::option::weighted(
            0.8,
            (0u8..4, proptest::option::weighted(0.2, 0..MACS.len())),
        );
        let extra = prop_oneof![
            3 => Just(Vec::new()),
            1 => proptest::collection::vec(any::<u8>(), 0..24),
        ];
        (head, eth, opt, extra, 0u64..40).prop_map(
            |(((remote, na), [flags, src, target]), (eth_src, eth_dst, ip_dst), opt, extra, dt)| {
                Step {
                    remote,
                    na,
                    flags,
                    src,
                    target,
                    eth_src,
                    eth_dst,
                    ip_dst,
                    opt,
                    extra,
                    dt,
                }
            },
        )
    }

    /// Plays `steps`; checks every answer. Returns how many there were.
    fn play(steps: &[Step]) -> Result<usize, TestCaseError> {
        let mut r = responder();
        let mut now = Instant::now();
        let mut claimed = std::collections::HashSet::new();
        let mut answers = 0;
        for s in steps {
            let src = addr(s.src, "fe80::1", "2001:2::2");
            let target = addr(s.target, "2001:2::2", "fe80::1");
            // Half the time the usual sender of that side.
            let mac = match MACS.get(s.eth_src) {
                Some(m) => *m,
                None if s.remote => REMOTE,
                None => LOCAL,
            };
            let is_na = s.na % if s.remote { 2 } else { 4 } == 0;
            let right = if is_na { OPT_TLLA } else { OPT_SLLA };
            let opt = s.opt.map(|(t, m)| {
                let t = match t {
                    0 | 1 => right,
                    2 => OPT_SLLA + OPT_TLLA - right,
                    _ => 3,
                };
                (t, m.map_or(mac, |m| MACS[m]))
            });
            let mut icmp = body(if is_na { NA } else { NS }, s.flags, target, opt);
            icmp.extend_from_slice(&s.extra);
            let eth_dst = match s.eth_dst % 8 {
                0 => REMOTE,
                1 => [0x33, 0x33, 0, 0, 0, 1],
                _ => group_mac(target),
            };
            let ip_dst = match s.ip_dst % 8 {
                0 => local_ip(),
                1 => ip("ff02::1"),
                _ => solicited_node(&target),
            };
            let f = frame(eth_dst, mac, src, ip_dst, &icmp);
            if s.remote {
                r.handle_remote(&f, PeerId::new(0), now);
                if let Some((t, m)) = opt {
                    let (ip, want) = if is_na {
                        (target, OPT_TLLA)
                    } else {
                        (src, OPT_SLLA)
                    };
                    if t == want && m == mac {
                        claimed.insert((ip, mac));
                    }
                }
            } else if let (LocalVerdict::Reply(n), out) = local(&mut r, &f, now) {
                answers += 1;
                prop_assert_eq!(n, NA_FRAME_LEN);
                prop_assert!(!is_na && !src.is_unspecified(), "answered an NA or DAD");
                prop_assert_eq!(&out[..6], &mac[..]);
                let icmp = &out[54..];
                prop_assert_eq!(ipv6_at(icmp, 8), Some(target));
                prop_assert_eq!(icmp[4] & 0x60, FLAG_SOLICITED);
                let from: [u8; 6] = out[6..12].try_into().expect("6 bytes");
                prop_assert_eq!(&icmp[26..32], &from[..]);
                prop_assert!(from != mac);
                prop_assert!(claimed.contains(&(target, from)), "{target} never claimed");
                let slice = etherparse::Icmpv6Slice::from_slice(icmp).expect("ICMPv6");
                prop_assert!(slice.is_checksum_valid(target.octets(), src.octets()));
            }
            now += Duration::from_secs(s.dt);
        }
        Ok(answers)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Any sequence of well-checksummed NS/NA (odd options, addresses,
        /// MACs, destinations included), from either side, with the clock
        /// moving: no panic, and every answer is an NA for the asked target
        /// with a valid checksum, to the asker, from a MAC some peer claimed
        /// for that target, never to an NA or DAD.
        #[test]
        fn answers_are_well_formed_and_claimed(
            steps in proptest::collection::vec(step(), 1..40)
        ) {
            play(&steps)?;
        }
    }

    #[test]
    fn the_property_sees_answers() {
        // Run the property's generator directly, so this does not depend on
        // test order: some of 2048 random sequences must get answers.
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let strategy = proptest::collection::vec(step(), 1..40);
        let mut total = 0;
        for _ in 0..2048 {
            let steps = strategy.new_tree(&mut runner).expect("tree").current();
            total += play(&steps).expect("property holds");
        }
        assert!(total > 50, "only {total} answers in 2048 sequences");
    }
}

/// Frames captured from Linux 6.x (veth between two namespaces, `ping -6`).
mod linux {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// 2001:2::a (52:54:00:00:00:0a) asks for 2001:2::b.
    fn ns() -> Vec<u8> {
        hex("3333 ff00 000b 5254 0000 000a 86dd 6000
             0000 0020 3aff 2001 0002 0000 0000 0000
             0000 0000 000a ff02 0000 0000 0000 0000
             0001 ff00 000b 8700 e71a 0000 0000 2001
             0002 0000 0000 0000 0000 0000 000b 0101
             5254 0000 000a")
    }

    /// 2001:2::b (52:54:00:00:00:0b) answers: Solicited and Override set.
    fn na() -> Vec<u8> {
        hex("5254 0000 000a 5254 0000 000b 86dd 6000
             0000 0020 3aff 2001 0002 0000 0000 0000
             0000 0000 000b 2001 0002 0000 0000 0000
             0000 0000 000a 8800 631b 6000 0000 2001
             0002 0000 0000 0000 0000 0000 000b 0201
             5254 0000 000b")
    }

    /// DAD for fe80::5054:ff:fe00:a, with a nonce option (RFC 7527).
    fn dad() -> Vec<u8> {
        hex("3333 ff00 000a 5254 0000 000a 86dd
             6000 0000 0020 3aff 0000 0000 0000 0000
             0000 0000 0000 0000 ff02 0000 0000 0000
             0000 0001 ff00 000a 8700 70a7 0000 0000
             fe80 0000 0000 0000 5054 00ff fe00 000a
             0e01 c733 0ba6 db34")
    }

    #[test]
    fn parses_what_linux_sends() {
        let ns = parse(&ns()).expect("Linux's NS");
        assert_eq!(
            (ns.icmp_type, ns.src, ns.target),
            (NS, ip("2001:2::a"), ip("2001:2::b"))
        );
        assert_eq!(ns.lla, Some(MacAddr([0x52, 0x54, 0, 0, 0, 0x0a])));
        let na = parse(&na()).expect("Linux's NA");
        assert_eq!(
            (na.icmp_type, na.flags, na.target),
            (NA, 0x60, ip("2001:2::b"))
        );
        assert_eq!(na.lla, Some(MacAddr([0x52, 0x54, 0, 0, 0, 0x0b])));
        let dad = parse(&dad()).expect("Linux's DAD probe");
        assert_eq!((dad.src, dad.lla), (Ipv6Addr::UNSPECIFIED, None));
    }

    #[test]
    fn answers_linux_as_linux_would_minus_override() {
        let mut r = responder();
        let now = Instant::now();
        assert_eq!(
            r.handle_remote(&na(), PeerId::new(0), now),
            RemoteVerdict::Deliver
        );
        let (v, out) = local(&mut r, &ns(), now);
        assert_eq!(v, LocalVerdict::Reply(NA_FRAME_LEN));
        // Byte for byte Linux's own answer, but with Override clear (and so
        // the checksum 0x2000 higher).
        let mut want = na();
        want[54 + 4] = 0x40;
        want[54 + 2..54 + 4].copy_from_slice(&[0x83, 0x1b]);
        assert_eq!(out, want);
        // Its DAD probe is not answered, and teaches nothing from the tunnel.
        assert_eq!(local(&mut r, &dad(), now).0, LocalVerdict::Forward);
        let mut r = responder();
        r.handle_remote(&dad(), PeerId::new(0), now);
        assert_eq!(r.nd_bindings(now), 0);
    }
}

/// What the active box of an HA pair learned, the standby records: it
/// answers for the remote host as if it had learned it (never for one of
/// its own MACs), and forgets it with the peer's session.
#[test]
fn replicated_bindings_answer_like_learned_ones() {
    let t0 = Instant::now();
    let mut active = responder();
    active.handle_remote(&na(REMOTE, remote_ip(), 0), PeerId::new(0), t0);
    let listed = active.remote_bindings(t0);
    assert_eq!(
        listed,
        vec![(IpAddr::V6(remote_ip()), MacAddr(REMOTE), PeerId::new(0))]
    );
    let mut standby = responder();
    let ours = (
        IpAddr::V6(ip("2001:2::77")),
        MacAddr(OUR_MAC),
        PeerId::new(0),
    );
    assert_eq!(standby.learn_replicated_bindings(&[listed[0], ours], t0), 1);
    assert!(answers(&mut standby, remote_ip(), t0));
    assert!(!answers(&mut standby, ip("2001:2::77"), t0));
    standby.forget_peer(PeerId::new(0));
    assert_eq!(standby.nd_bindings(t0), 0);
}
