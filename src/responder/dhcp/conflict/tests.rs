//! Conflict check tests: a responder on a virtual clock, driven through its
//! public surface (frames in, `poll_transmit` out), with peers' and local
//! hosts' ARP frames made up as fixtures.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, DhcpMessageType as M, EthernetFrame};

use super::super::super::fixtures::{Client, Reply, arp_frame, arp_request, parse_reply};
use super::super::super::{
    ArpSettings, DhcpSettings, LocalVerdict, OwnFrame, REPLY_BUFFER_LEN, Responder,
};
use super::*;
use crate::leases::LeaseDb;
use crate::peer_id::PeerId;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 254);
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const RESERVED_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
/// A host at another site (its ARP arrives through the tunnel).
const REMOTE: [u8; 6] = [0x52, 0x54, 0, 0, 9, 9];
/// A local host with a static address.
const SQUATTER: [u8; 6] = [0x52, 0x54, 0, 0, 8, 8];
const T0: u64 = 1_700_000_000;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, last)
}

fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 1, n]
}

/// Pool .100-.109, reservation .10, the check on.
fn settings() -> DhcpSettings {
    DhcpSettings {
        pool_end: ip(109),
        reservations: vec![(MacAddr(RESERVED_MAC), ip(10))],
        conflict_check: true,
        ..super::super::super::fixtures::dhcp_settings(SERVER_MAC)
    }
}

/// A responder on a virtual clock. `[arp]` without suppression: the check
/// must not depend on it.
struct Site {
    r: Responder,
    mono: Instant,
    /// Virtual time since the start: the wall clock follows it.
    elapsed: Duration,
    wall: u64,
}

/// What `poll_transmit` gave.
#[derive(Debug)]
enum Out {
    /// A probe for this address.
    Probe(Ipv4Addr),
    Offer(Reply),
}

impl Site {
    fn new(s: DhcpSettings) -> Site {
        let arp = ArpSettings {
            respond: vec![],
            mac: MacAddr(SERVER_MAC),
            suppress: false,
            binding_timeout: Duration::from_secs(300),
            suppress_nd: false,
        };
        Site {
            r: Responder::new(
                Some(arp),
                Some(s.check(&[]).expect("valid")),
                LeaseDb::default(),
            )
            .expect("valid settings"),
            mono: Instant::now(),
            elapsed: Duration::ZERO,
            wall: T0,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.mono += d;
        self.elapsed += d;
        self.wall = T0 + self.elapsed.as_secs();
    }

    fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.wall)
    }

    fn local(&mut self, frame: &[u8]) -> LocalVerdict {
        let mut buf = [0u8; REPLY_BUFFER_LEN];
        let wall = self.wall();
        self.r.handle_local(frame, self.mono, wall, &mut buf)
    }

    fn local_reply(&mut self, c: &Client) -> Option<Reply> {
        let mut buf = [0u8; REPLY_BUFFER_LEN];
        let wall = self.wall();
        match self.r.handle_local(&c.frame(), self.mono, wall, &mut buf) {
            LocalVerdict::Reply(n) => Some(parse_reply(&buf[..n])),
            _ => None,
        }
    }

    fn remote(&mut self, frame: &[u8]) {
        self.r.handle_remote(frame, PeerId::new(0), self.mono);
    }

    /// Everything `poll_transmit` has now.
    fn poll(&mut self) -> Vec<Out> {
        let mut v = Vec::new();
        let mut buf = [0u8; REPLY_BUFFER_LEN];
        let wall = self.wall();
        while let Some(t) = self.r.poll_transmit(self.mono, wall, &mut buf) {
            v.push(match t {
                OwnFrame::Probe(n) => Out::Probe(probed(&buf[..n])),
                OwnFrame::Local(n) => Out::Offer(parse_reply(&buf[..n])),
            });
            assert!(v.len() <= 2 * MAX_HELD, "poll_transmit does not end");
        }
        v
    }

    /// Sends a DISCOVER from `m` and expects it held (no answer yet).
    fn discover(&mut self, m: [u8; 6]) {
        let v = self.local(&Client::new(M::Discover, m).frame());
        assert_eq!(v, LocalVerdict::Consumed, "a DISCOVER waits for its probe");
    }

    /// The probe for the held DISCOVER goes out at the end of its slot;
    /// returns its address.
    fn expect_probe(&mut self) -> Ipv4Addr {
        assert!(
            self.poll().is_empty(),
            "a probe waits for the end of its slot"
        );
        self.advance(PROBE_SLACK);
        match self.poll().as_slice() {
            [Out::Probe(ip)] => *ip,
            other => panic!("expected one probe, got {other:?}"),
        }
    }

    /// Waits out the hold; returns the OFFER that goes out.
    fn expect_offer_after_hold(&mut self) -> Reply {
        self.advance(PROBE_HOLD + OFFER_SLACK);
        match self.poll().pop() {
            Some(Out::Offer(r)) => r,
            other => panic!("expected an OFFER, got {other:?}"),
        }
    }

    fn request(&mut self, m: [u8; 6], offered: Ipv4Addr) -> Reply {
        let mut req = Client::new(M::Request, m);
        req.server_id = Some(SERVER);
        req.requested = Some(offered);
        self.local_reply(&req).expect("an answer to REQUEST")
    }

    /// DORA for `m`, probe unanswered; returns the address.
    fn lease(&mut self, m: [u8; 6]) -> Ipv4Addr {
        self.discover(m);
        let probed = self.expect_probe();
        let offer = self.expect_offer_after_hold();
        assert_eq!(offer.yiaddr, probed);
        let ack = self.request(m, offer.yiaddr);
        assert_eq!(ack.message_type, M::Ack);
        ack.yiaddr
    }
}

/// The target of an ARP probe, after checking it is one: broadcast from the
/// server MAC, request, sender 0.0.0.0.
fn probed(frame: &[u8]) -> Ipv4Addr {
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    assert_eq!(eth.dst_addr().0, [0xff; 6]);
    assert_eq!(eth.src_addr().0, SERVER_MAC);
    let arp = ArpPacket::new_checked(eth.payload()).expect("arp");
    match ArpRepr::parse(&arp).expect("arp repr") {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } => {
            assert_eq!(operation, ArpOperation::Request);
            assert_eq!(source_hardware_addr.0, SERVER_MAC);
            assert!(source_protocol_addr.is_unspecified(), "RFC 5227 probe");
            target_protocol_addr
        }
        _ => panic!("not Ethernet/IPv4 ARP"),
    }
}

/// How `host` answers our probe for `ip` (RFC 5227: to our MAC, target IP
/// 0.0.0.0, as Linux answers a probe).
fn probe_answer(host: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(ArpOperation::Reply, host, ip.octets(), SERVER_MAC, [0; 4])
}

#[test]
fn an_offer_waits_for_its_probe() {
    let mut s = Site::new(settings());
    s.discover(mac(1));
    assert_eq!(
        s.r.poll_timeout(),
        Some(s.mono + PROBE_SLACK),
        "the probe is due at the end of its slot"
    );
    assert_eq!(s.expect_probe(), ip(100));
    assert!(s.poll().is_empty(), "one probe per candidate");
    assert_eq!(s.r.poll_timeout(), Some(s.mono + PROBE_HOLD + OFFER_SLACK));
    s.advance(PROBE_HOLD + OFFER_SLACK - Duration::from_millis(1));
    assert!(s.poll().is_empty(), "held until the hold ends");
    s.advance(Duration::from_millis(1));
    let offer = match s.poll().as_slice() {
        [Out::Offer(o)] => o.yiaddr,
        other => panic!("expected the OFFER, got {other:?}"),
    };
    assert_eq!(offer, ip(100));
    assert_eq!(s.r.poll_timeout(), None);
    let ack = s.request(mac(1), offer);
    assert_eq!((ack.message_type, ack.yiaddr), (M::Ack, ip(100)));
    let c = s.r.counters();
    assert_eq!((c.dhcp_probes, c.dhcp_replies, c.dhcp_conflicts), (1, 2, 0));
    assert_eq!(c.dhcp_ignored, 0, "a held DISCOVER is not 'ignored'");
}

#[test]
fn probes_within_the_slack_go_out_together() {
    let mut s = Site::new(settings());
    let t0 = s.mono;
    s.discover(mac(1));
    // A millisecond later: its probe joins the first one's slot.
    s.advance(Duration::from_millis(1));
    s.discover(mac(2));
    assert_eq!(s.r.poll_timeout(), Some(t0 + PROBE_SLACK));
    assert!(s.poll().is_empty(), "nothing goes before the slot ends");
    s.advance(t0 + PROBE_SLACK - s.mono);
    let probes: Vec<_> = s
        .poll()
        .into_iter()
        .map(|o| match o {
            Out::Probe(ip) => ip,
            other => panic!("expected probes, got {other:?}"),
        })
        .collect();
    assert_eq!(probes, [ip(100), ip(101)], "one send for both");
    // After the slot: the next DISCOVER opens a slot of its own.
    s.advance(Duration::from_millis(1));
    s.discover(mac(3));
    assert_eq!(s.expect_probe(), ip(102));
    // Both OFFERs of the first slot are held from when their probes went.
    assert_eq!(
        s.r.poll_timeout(),
        Some(t0 + PROBE_SLACK + PROBE_HOLD + OFFER_SLACK)
    );
}

#[test]
fn offers_due_within_the_slack_go_out_together() {
    let mut s = Site::new(settings());
    s.discover(mac(1));
    assert_eq!(s.expect_probe(), ip(100));
    let t0 = s.mono;
    // A millisecond later: its OFFER joins the first one's slot.
    s.advance(Duration::from_millis(1));
    s.discover(mac(2));
    assert_eq!(s.expect_probe(), ip(101));
    let slot = t0 + PROBE_HOLD + OFFER_SLACK;
    assert_eq!(s.r.poll_timeout(), Some(slot));
    // Past the slot's end less the hold: the next OFFER opens a new slot.
    s.advance(OFFER_SLACK);
    s.discover(mac(3));
    assert_eq!(s.expect_probe(), ip(102));
    s.advance(slot - s.mono - Duration::from_millis(1));
    assert!(s.poll().is_empty(), "nothing goes before its slot ends");
    s.advance(Duration::from_millis(1));
    let offers: Vec<_> = s
        .poll()
        .into_iter()
        .map(|o| match o {
            Out::Offer(r) => r.yiaddr,
            other => panic!("expected OFFERs, got {other:?}"),
        })
        .collect();
    assert_eq!(offers, [ip(100), ip(101)]);
    let next = t0
        + Duration::from_millis(1)
        + PROBE_SLACK
        + OFFER_SLACK
        + PROBE_SLACK
        + PROBE_HOLD
        + OFFER_SLACK;
    assert_eq!(s.r.poll_timeout(), Some(next), "the third OFFER's own slot");
    s.advance(next - s.mono);
    assert!(matches!(s.poll().as_slice(), [Out::Offer(r)] if r.yiaddr == ip(102)));
}

#[test]
fn the_offer_answers_the_latest_retransmission() {
    let mut s = Site::new(settings());
    s.discover(mac(1));
    assert_eq!(s.expect_probe(), ip(100));
    let mut again = Client::new(M::Discover, mac(1));
    again.xid = 0x0bad_cafe;
    again.broadcast = true;
    assert_eq!(s.local(&again.frame()), LocalVerdict::Consumed);
    assert!(s.poll().is_empty(), "no second probe");
    let offer = s.expect_offer_after_hold();
    assert_eq!((offer.xid, offer.broadcast), (0x0bad_cafe, true));
    assert_eq!(offer.option(61), Some(&[1, 0x52, 0x54, 0, 0, 1, 1][..]));
    assert_eq!(s.r.counters().dhcp_probes, 1);
}

#[test]
fn a_peer_host_answering_the_probe_moves_the_offer_on() {
    let mut s = Site::new(settings());
    s.discover(mac(1));
    assert_eq!(s.expect_probe(), ip(100));
    // The owner at the other site answers through the tunnel.
    s.advance(Duration::from_millis(50));
    s.remote(&probe_answer(REMOTE, ip(100)));
    assert_eq!(s.r.counters().dhcp_conflicts, 1);
    assert_eq!(s.r.poll_timeout(), Some(s.mono), "re-pick at once");
    assert_eq!(s.expect_probe(), ip(101), "the next candidate is probed");
    let offer = s.expect_offer_after_hold();
    assert_eq!(offer.yiaddr, ip(101));
    // .100 stays out for everyone.
    assert_eq!(s.lease(mac(2)), ip(102));
    let mut wants = Client::new(M::Discover, mac(3));
    wants.requested = Some(ip(100));
    assert_eq!(s.local(&wants.frame()), LocalVerdict::Consumed);
    assert_eq!(
        s.expect_probe(),
        ip(103),
        "a requested address in use is skipped"
    );
    assert_eq!(s.r.counters().dhcp_conflicts, 1, "counted once, when found");
}

#[test]
fn a_local_answer_counts_and_still_reaches_the_tunnel() {
    let mut s = Site::new(settings());
    s.discover(mac(1));
    assert_eq!(s.expect_probe(), ip(100));
    // Answers to a probe are addressed to our MAC, and might answer another
    // site's probe that used the same configured MAC: forwarded.
    assert_eq!(
        s.local(&probe_answer(SQUATTER, ip(100))),
        LocalVerdict::Forward
    );
    assert_eq!(s.expect_probe(), ip(101));
    assert_eq!(s.expect_offer_after_hold().yiaddr, ip(101));
    assert_eq!(s.r.counters().dhcp_conflicts, 1);
    // Any other ARP to our MAC is still ours.
    let to_us = arp_frame(
        ArpOperation::Reply,
        SQUATTER,
        ip(100).octets(),
        SERVER_MAC,
        [198, 19, 0, 1],
    );
    assert_eq!(s.local(&to_us), LocalVerdict::Consumed);
}

#[test]
fn another_host_probing_the_candidate_is_a_conflict() {
    let mut s = Site::new(settings());
    s.discover(mac(1));
    assert_eq!(s.expect_probe(), ip(100));
    s.local(&arp_request(SQUATTER, [0; 4], ip(100).octets()));
    assert_eq!(s.expect_probe(), ip(101));
    assert_eq!(s.r.counters().dhcp_conflicts, 1);
}

#[test]
fn another_sites_probe_for_a_leased_address_is_no_use() {
    // The other site's responder probes the address our client holds (its
    // pool overlaps ours): that must not NAK our client's renewal.
    let mut s = Site::new(settings());
    let got = s.lease(mac(1));
    s.remote(&arp_request([0x02, 0, 0, 0, 0, 0xfd], [0; 4], got.octets()));
    let mut renew = Client::new(M::Request, mac(1));
    renew.ciaddr = got;
    renew.ip_src = got;
    let ack = s.local_reply(&renew).expect("an answer");
    assert_eq!((ack.message_type, ack.yiaddr), (M::Ack, got));
    assert_eq!(s.r.counters().dhcp_conflicts, 0);
}

#[test]
fn the_client_itself_answering_is_no_conflict() {
    let mut s = Site::new(settings());
    // A fresh client answers the probe of its own offer (it still has the
    // address from before this server's records, say).
    s.discover(mac(1));
    let first = s.expect_probe();
    s.local(&probe_answer(mac(1), first));
    // Its ARP as the lease holder is no news either.
    s.local(&arp_request(mac(1), first.octets(), [198, 19, 0, 1]));
    assert_eq!(s.expect_offer_after_hold().yiaddr, first);
    assert_eq!(s.r.counters().dhcp_conflicts, 0);
    // Leased and back after a restart, still using the address: offered
    // at once, nothing to probe.
    assert_eq!(s.request(mac(1), first).message_type, M::Ack);
    s.local(&arp_request(mac(1), first.octets(), [198, 19, 0, 1]));
    let again = s.local_reply(&Client::new(M::Discover, mac(1)));
    assert_eq!(again.map(|r| r.yiaddr), Some(first));
    assert_eq!(s.r.counters().dhcp_conflicts, 0);
}

#[test]
fn addresses_seen_in_use_are_never_offered() {
    let mut s = Site::new(settings());
    // A peer's host announces .100 (gratuitous ARP), a local squatter uses
    // .101: neither is even probed.
    s.remote(&arp_request(REMOTE, ip(100).octets(), ip(100).octets()));
    s.local(&arp_request(SQUATTER, ip(101).octets(), [198, 19, 0, 1]));
    s.discover(mac(1));
    assert_eq!(s.expect_probe(), ip(102));
    assert_eq!(s.r.counters().dhcp_conflicts, 2);
    assert_eq!(s.expect_offer_after_hold().yiaddr, ip(102));
    // The record lasts IN_USE_SECS after the last sighting.
    s.advance(Duration::from_secs(IN_USE_SECS + 1));
    s.discover(mac(2));
    assert_eq!(s.expect_probe(), ip(100), "forgotten after IN_USE_SECS");
}

#[test]
fn a_request_for_an_address_in_use_is_naked() {
    let mut s = Site::new(settings());
    let got = s.lease(mac(1));
    // Later a host at the other site turns out to use it.
    s.advance(Duration::from_secs(60));
    s.remote(&arp_request(REMOTE, got.octets(), [198, 19, 0, 1]));
    let mut renew = Client::new(M::Request, mac(1));
    renew.ciaddr = got;
    renew.ip_src = got;
    let nak = s.local_reply(&renew).expect("an answer");
    assert_eq!(nak.message_type, M::Nak);
    assert_eq!(s.r.counters().dhcp_conflicts, 1);
    // Its next DISCOVER gets another address.
    s.discover(mac(1));
    assert_ne!(s.expect_probe(), got);
}

#[test]
fn a_client_on_a_new_interface_keeps_its_address() {
    // Keyed by option 61: the MAC its lease was granted to is its own.
    let mut s = Site::new(settings());
    let duid = vec![0xff, 0, 0, 0, 1, 0, 2, 0, 0, 0xab, 0x11];
    let mut d = Client::new(M::Discover, mac(1));
    d.client_id = Some(duid.clone());
    assert_eq!(s.local(&d.frame()), LocalVerdict::Consumed);
    let got = s.expect_probe();
    s.expect_offer_after_hold();
    let mut req = Client::new(M::Request, mac(1));
    req.client_id = Some(duid.clone());
    req.server_id = Some(SERVER);
    req.requested = Some(got);
    assert_eq!(s.local_reply(&req).expect("ACK").message_type, M::Ack);
    // A remote sighting of the old MAC (e.g. the host moved, its old ARP
    // entry echoed): the same client on a new MAC is not in conflict.
    s.remote(&arp_request(mac(1), got.octets(), [198, 19, 0, 1]));
    let mut req = Client::new(M::Request, mac(2));
    req.client_id = Some(duid);
    req.requested = Some(got);
    assert_eq!(s.local_reply(&req).expect("ACK").message_type, M::Ack);
    assert_eq!(s.r.counters().dhcp_conflicts, 0);
}

#[test]
fn reservations_are_offered_at_once() {
    let mut s = Site::new(settings());
    s.remote(&arp_request(REMOTE, [198, 19, 0, 10], [198, 19, 0, 1]));
    let offer = s
        .local_reply(&Client::new(M::Discover, RESERVED_MAC))
        .expect("an immediate OFFER");
    assert_eq!((offer.message_type, offer.yiaddr), (M::Offer, ip(10)));
    assert_eq!(s.r.poll_timeout(), None);
    assert_eq!(s.r.counters().dhcp_probes, 0);
}

#[test]
fn gives_up_after_max_candidates() {
    let mut s = Site::new(settings());
    s.discover(mac(1));
    for n in 0..MAX_CANDIDATES {
        let probed = s.expect_probe();
        assert_eq!(probed, ip(100 + n));
        s.remote(&probe_answer(REMOTE, probed));
    }
    assert!(s.poll().is_empty(), "the DISCOVER goes unanswered");
    assert_eq!(s.r.poll_timeout(), None);
    let c = s.r.counters();
    assert_eq!(c.dhcp_conflicts, u64::from(MAX_CANDIDATES));
    assert_eq!(c.dhcp_ignored, 1);
    // The client's retry starts after the addresses set aside.
    s.discover(mac(1));
    assert_eq!(s.expect_probe(), ip(100 + MAX_CANDIDATES));
}

#[test]
fn a_request_ends_the_held_offer() {
    let mut s = Site::new(settings());
    s.discover(mac(1));
    s.expect_probe();
    // The client took another server's offer.
    let mut req = Client::new(M::Request, mac(1));
    req.server_id = Some(Ipv4Addr::new(198, 19, 0, 253));
    req.requested = Some(ip(150));
    assert!(s.local_reply(&req).is_none());
    assert_eq!(s.r.poll_timeout(), None, "nothing held any more");
    s.advance(PROBE_HOLD + OFFER_SLACK);
    assert!(s.poll().is_empty());
}

#[test]
fn at_the_bound_the_oldest_held_offer_goes_out_early() {
    // A /16 with 32k pool addresses: room for more DISCOVERs than MAX_HELD.
    let mut big = settings();
    big.prefix_len = 16;
    big.pool_start = Ipv4Addr::new(198, 19, 1, 1);
    big.pool_end = Ipv4Addr::new(198, 19, 255, 254);
    let mut s = Site::new(big);
    let client = |n: usize| [0x52, 0x54, 0, 2, (n >> 8) as u8, n as u8];
    for n in 0..MAX_HELD {
        s.discover(client(n));
    }
    s.advance(PROBE_SLACK);
    let probes = s.poll();
    assert_eq!(probes.len(), MAX_HELD, "one probe per held offer");
    assert!(probes.iter().all(|o| matches!(o, Out::Probe(_))));
    // One more: the offer held longest goes out now, the new one is held.
    s.discover(client(MAX_HELD));
    match s.poll().as_slice() {
        [Out::Offer(first)] => {
            assert_eq!(first.message_type, M::Offer);
            assert_eq!(first.chaddr, client(0), "the oldest first");
        }
        other => panic!("expected the oldest OFFER, got {other:?}"),
    }
    s.expect_probe();
    let c = s.r.counters();
    assert_eq!(
        (c.dhcp_offers_early, c.dhcp_ignored),
        (1, 0),
        "nobody dropped"
    );
    assert_eq!(s.expect_offer_after_hold_all(), MAX_HELD);
    // A burst that never lets the probes out (no poll in between) is
    // bounded all the same: the oldest waiting for its probe is answered.
    for n in MAX_HELD + 1..=2 * MAX_HELD + 1 {
        s.discover(client(n));
    }
    s.advance(PROBE_SLACK);
    let out = s.poll();
    let offers = out.iter().filter(|o| matches!(o, Out::Offer(_))).count();
    assert_eq!((offers, out.len() - offers), (1, MAX_HELD));
    assert_eq!(s.r.counters().dhcp_ignored, 0);
}

#[test]
fn a_client_coming_back_to_its_address_is_offered_at_once() {
    let mut s = Site::new(settings());
    let m = mac(1);
    let leased = s.lease(m);
    let probes = s.r.counters().dhcp_probes;
    // Its lease ends (RELEASE); the record is kept.
    let mut release = Client::new(M::Release, m);
    release.ciaddr = leased;
    release.ip_src = leased;
    release.ip_dst = SERVER;
    assert!(s.local_reply(&release).is_none(), "RELEASE gets no answer");
    let offer = s.local_reply(&Client::new(M::Discover, m));
    let offer = offer.expect("answered at once, no hold");
    assert_eq!((offer.message_type, offer.yiaddr), (M::Offer, leased));
    assert_eq!(s.r.counters().dhcp_probes, probes, "no probe");
    assert!(s.poll().is_empty());
    // Unless another host was seen using it since: then it is probed for
    // afresh (a new address, held).
    let mut s = Site::new(settings());
    let leased = s.lease(m);
    s.remote(&arp_request(REMOTE, leased.octets(), leased.octets()));
    s.discover(m);
    assert_ne!(s.expect_probe(), leased);
}

impl Site {
    /// Waits out the hold; the number of OFFERs that go out.
    fn expect_offer_after_hold_all(&mut self) -> usize {
        self.advance(PROBE_HOLD + OFFER_SLACK);
        let out = self.poll();
        assert!(out.iter().all(|o| matches!(o, Out::Offer(_))));
        out.len()
    }
}

#[test]
fn the_in_use_record_is_bounded() {
    let t0 = Instant::now();
    let mut r = InUse::new();
    for i in 0..(MAX_IN_USE as u32 + 100) {
        let ip = Ipv4Addr::from(0x0a00_0000 + i);
        r.saw(
            ip,
            MacAddr(REMOTE),
            t0 + Duration::from_millis(u64::from(i)),
        );
        assert!(r.len() <= MAX_IN_USE);
    }
    // The oldest went first; the newest are there.
    let now = t0 + Duration::from_secs(5);
    let newest = Ipv4Addr::from(0x0a00_0000 + MAX_IN_USE as u32 + 99);
    assert_eq!(r.other_than(newest, &[], now), Some(MacAddr(REMOTE)));
    assert_eq!(r.other_than(Ipv4Addr::from(0x0a00_0000), &[], now), None);
    assert_eq!(r.other_than(newest, &[MacAddr(REMOTE)], now), None);
}

#[test]
fn conflicts_are_logged_rate_limited() {
    let mut s = Site::new(settings());
    assert_eq!(s.r.take_conflict_log(s.mono), None);
    s.remote(&arp_request(REMOTE, ip(100).octets(), ip(100).octets()));
    s.discover(mac(1));
    s.expect_probe();
    let log = s.r.take_conflict_log(s.mono).expect("a line");
    assert_eq!((log.count, log.ip, log.mac), (1, ip(100), MacAddr(REMOTE)));
    s.remote(&probe_answer(REMOTE, ip(101)));
    s.poll();
    assert_eq!(s.r.take_conflict_log(s.mono), None, "too soon");
    s.advance(CONFLICT_LOG_INTERVAL);
    let log = s.r.take_conflict_log(s.mono).expect("a line");
    assert_eq!((log.count, log.ip), (1, ip(101)));
}

#[test]
fn a_reload_keeps_the_in_use_record() {
    let mut s = Site::new(settings());
    s.remote(&arp_request(REMOTE, ip(100).octets(), ip(100).octets()));
    let mut changed = settings();
    changed.dns = vec![ip(2)];
    let mut next = Responder::new(
        None,
        Some(changed.check(&[]).expect("valid")),
        s.r.lease_db(),
    )
    .expect("valid");
    let old = std::mem::replace(
        &mut s.r,
        Responder::new(None, None, LeaseDb::default()).expect("empty"),
    );
    next.take_over(old);
    s.r = next;
    s.discover(mac(1));
    assert_eq!(s.expect_probe(), ip(101));
}

#[test]
fn off_means_no_probe_and_no_hold() {
    let mut off = settings();
    off.conflict_check = false;
    let mut s = Site::new(off);
    s.remote(&arp_request(REMOTE, ip(100).octets(), ip(100).octets()));
    let offer = s
        .local_reply(&Client::new(M::Discover, mac(1)))
        .expect("an OFFER at once");
    assert_eq!(offer.yiaddr, ip(100), "what the check is there to prevent");
    assert_eq!(s.r.poll_timeout(), None);
    assert!(s.poll().is_empty());
}

mod prop {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Discover(u8),
        /// REQUEST (SELECTING) of the client's last OFFER.
        Select(u8),
        /// REQUEST (RENEWING) of the client's last ACK.
        Renew(u8),
        /// A host at another site (0..2) claims a pool address.
        Remote(u8, u8),
        /// A host at another site answers a probe for a pool address.
        Answer(u8, u8),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..4u8).prop_map(Op::Discover),
            (0..4u8).prop_map(Op::Select),
            (0..4u8).prop_map(Op::Renew),
            (0..2u8, 100..110u8).prop_map(|(h, ip)| Op::Remote(h, ip)),
            (0..2u8, 100..110u8).prop_map(|(h, ip)| Op::Answer(h, ip)),
            (0..3000u64).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Whatever the order of DISCOVERs, REQUESTs, other sites' claims
        /// and time, no OFFER or ACK names an address another site's host
        /// claimed within IN_USE_SECS.
        #[test]
        fn never_offers_or_acks_an_address_claimed_elsewhere(
            ops in proptest::collection::vec(op(), 1..150)
        ) {
            let mut s = Site::new(settings());
            let mut claimed: HashMap<Ipv4Addr, Instant> = HashMap::new();
            let mut offered: HashMap<u8, Ipv4Addr> = HashMap::new();
            let mut acked: HashMap<u8, Ipv4Addr> = HashMap::new();
            let fresh = |claimed: &HashMap<Ipv4Addr, Instant>, ip: Ipv4Addr, now: Instant| {
                claimed.get(&ip).is_some_and(|t| now.duration_since(*t).as_secs() < IN_USE_SECS)
            };
            for op in ops {
                let mut replies = Vec::new();
                match op {
                    Op::Discover(c) => {
                        let mut buf = [0u8; REPLY_BUFFER_LEN];
                        let wall = s.wall();
                        let f = Client::new(M::Discover, mac(c)).frame();
                        if let LocalVerdict::Reply(n) = s.r.handle_local(&f, s.mono, wall, &mut buf) {
                            replies.push((c, parse_reply(&buf[..n])));
                        }
                    }
                    Op::Select(c) => {
                        if let Some(ip) = offered.get(&c) {
                            let mut req = Client::new(M::Request, mac(c));
                            req.server_id = Some(SERVER);
                            req.requested = Some(*ip);
                            if let Some(r) = s.local_reply(&req) {
                                replies.push((c, r));
                            }
                        }
                    }
                    Op::Renew(c) => {
                        if let Some(ip) = acked.get(&c) {
                            let mut req = Client::new(M::Request, mac(c));
                            req.ciaddr = *ip;
                            req.ip_src = *ip;
                            if let Some(r) = s.local_reply(&req) {
                                replies.push((c, r));
                            }
                        }
                    }
                    Op::Remote(h, last) => {
                        let host = [0x52, 0x54, 0, 0, 9, h];
                        s.remote(&arp_request(host, ip(last).octets(), [198, 19, 0, 1]));
                        claimed.insert(ip(last), s.mono);
                    }
                    Op::Answer(h, last) => {
                        let host = [0x52, 0x54, 0, 0, 9, h];
                        s.remote(&probe_answer(host, ip(last)));
                        claimed.insert(ip(last), s.mono);
                    }
                    Op::Advance(ms) => s.advance(Duration::from_millis(ms)),
                }
                let mut buf = [0u8; REPLY_BUFFER_LEN];
                let wall = s.wall();
                while let Some(t) = s.r.poll_transmit(s.mono, wall, &mut buf) {
                    if let OwnFrame::Local(n) = t {
                        let r = parse_reply(&buf[..n]);
                        let c = r.chaddr[5];
                        replies.push((c, r));
                    }
                }
                for (c, r) in replies {
                    match r.message_type {
                        M::Offer | M::Ack => {
                            prop_assert!(
                                !fresh(&claimed, r.yiaddr, s.mono),
                                "{:?} of {} to client {} while another site uses it",
                                r.message_type, r.yiaddr, c
                            );
                            if r.message_type == M::Offer {
                                offered.insert(c, r.yiaddr);
                            } else {
                                acked.insert(c, r.yiaddr);
                            }
                        }
                        M::Nak => {
                            acked.remove(&c);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// A held offer for the held set's own tests: client `n`, address `.n`.
fn held(n: u8, step: Step, at: Instant) -> Held {
    Held {
        key: vec![1, 0x52, 0x54, 0, 0, 1, n].into(),
        client_id: false,
        chaddr: MacAddr(mac(n)),
        xid: u32::from(n),
        broadcast: false,
        requested: None,
        ip: ip(n),
        step,
        at,
        tried: 1,
        seq: 0,
    }
}

#[test]
fn a_reused_slot_does_not_answer_for_the_offer_it_held_before() {
    let t = Instant::now();
    let mut set = HeldSet::default();
    set.insert(held(1, Step::Probe, t));
    set.insert(held(2, Step::Probe, t));
    // Client 2 leaves (a REQUEST): its probe entry, behind client 1's,
    // stays queued but stale; its slot is free.
    assert_eq!(
        set.remove(&held(2, Step::Probe, t).key).map(|h| h.ip),
        Some(ip(2))
    );
    // Client 3 takes that slot, its OFFER due long after the probes.
    set.insert(held(3, Step::Offer, t + Duration::from_secs(1)));
    assert_eq!(set.at_ip(ip(3)).map(|h| h.xid), Some(3));
    assert!(set.at_ip(ip(2)).is_none());
    // At the probes' time only client 1's comes out: the stale entry for
    // the slot does not hand out client 3 early.
    let due = t + PROBE_SLACK;
    assert_eq!(set.pop_due(due).map(|h| h.xid), Some(1));
    assert!(set.pop_due(due).is_none());
    assert_eq!(set.len(), 1);
    let later = t + Duration::from_secs(1) + OFFER_SLACK;
    assert_eq!(set.next_due(), Some(later));
    let h = set.pop_due(later).expect("client 3's OFFER is due");
    assert_eq!((h.xid, h.step, h.ip), (3, Step::Offer, ip(3)));
    assert_eq!((set.len(), set.next_due()), (0, None));
}

#[test]
fn taking_an_offer_by_address_frees_its_client_too() {
    let t = Instant::now();
    let mut set = HeldSet::default();
    set.insert(held(4, Step::Probe, t));
    let h = set.remove_at_ip(ip(4)).expect("held at .4");
    assert_eq!(h.xid, 4);
    assert!(set.get_mut(&h.key).is_none());
    assert_eq!((set.len(), set.next_due()), (0, None));
    // Held again under the same key, it is found by both.
    set.insert(held(4, Step::Repick, t));
    assert!(set.get_mut(&h.key).is_some());
    assert_eq!(set.at_ip(ip(4)).map(|h| h.step), Some(Step::Repick));
}
