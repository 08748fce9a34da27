//! Bridge pipeline tests: fixture frames through the real [`Bridge`], a
//! recording sink, a virtual clock; no sockets. Each forwarding rule the
//! end-to-end tests rely on (responder, guards, split horizon, hub relay,
//! loop cut-off, VLAN learning) is pinned here.

use std::net::Ipv4Addr;
use std::time::Duration;

use smoltcp::wire::{ArpOperation, DhcpMessageType};

use super::*;
use crate::guard::{BpduPolicy, PROBE_DST, PROBE_ETHERTYPE};
use crate::leases::LeaseDb;
use crate::responder::dhcp::PROBE_SLACK;
use crate::responder::fixtures::{self, Client, arp_request, parse_reply};
use crate::responder::{ArpSettings, DhcpSettings};
use crate::wire::virtio::HDR_LEN;

pub(super) const A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xa];
pub(super) const B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xb];
pub(super) const C: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xc];
pub(super) const BCAST: [u8; 6] = [0xff; 6];
const STP: [u8; 6] = [0x01, 0x80, 0xc2, 0, 0, 0];
const RESPONDER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xee];

/// What the bridge told the sink, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Out {
    Tap(Vec<u8>),
    Reply { packet: Vec<u8>, leases: usize },
    Peer(PeerId, Vec<u8>),
}

/// A sink that records; `down` peers have no session.
#[derive(Default)]
pub(super) struct Rec {
    pub(super) out: Vec<Out>,
    pub(super) down: Vec<PeerId>,
}

impl ToTap for Rec {
    fn to_tap(&mut self, packet: &[u8]) {
        self.out.push(Out::Tap(packet.to_vec()));
    }
}

impl Sink for Rec {
    fn reply(&mut self, packet: &[u8], leases: &mut Vec<LeaseChange>) {
        self.out.push(Out::Reply {
            packet: packet.to_vec(),
            leases: leases.len(),
        });
        leases.clear();
    }

    fn to_peer(&mut self, peer: PeerId, packet: &[u8]) {
        self.out.push(Out::Peer(peer, packet.to_vec()));
    }

    fn peer_up(&self, peer: PeerId) -> bool {
        !self.down.contains(&peer)
    }
}

impl Rec {
    /// The peers written to, by number.
    pub(super) fn peers(&self) -> Vec<usize> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Out::Peer(p, _) => Some(p.index()),
                _ => None,
            })
            .collect()
    }

    /// How many frames went to the TAP.
    pub(super) fn taps(&self) -> usize {
        self.out.iter().filter(|o| matches!(o, Out::Tap(_))).count()
    }

    pub(super) fn take(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.out)
    }
}

/// An Ethernet frame from `src` to `dst`, optionally in VLAN `vid`.
pub(super) fn eth(
    dst: [u8; 6],
    src: [u8; 6],
    vid: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    if let Some(vid) = vid {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

/// A plain data frame (IEEE local experimental ether type 2).
pub(super) fn data(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    eth(dst, src, None, 0x88b6, b"bridge test")
}

pub(super) fn guards(
    storm_pps: u32,
    loop_detect: bool,
    dhcp_ra: bool,
    bpdu: BpduPolicy,
) -> GuardConfig {
    GuardConfig {
        storm_pps,
        loop_detect,
        dhcp_guard: dhcp_ra,
        ra_guard: dhcp_ra,
        bpdu,
    }
}

/// A bridge with `peers` peers, no responder, no virtio-net header.
pub(super) fn bridge(hub: bool, peers: usize, g: GuardConfig, now: Instant) -> Bridge {
    Bridge::new(
        Switch::new(hub),
        Guard::new(&g, [7; 8], now),
        None,
        0,
        peers,
    )
}

pub(super) fn plain(hub: bool, peers: usize, now: Instant) -> Bridge {
    bridge(
        hub,
        peers,
        guards(0, false, false, BpduPolicy::Forward),
        now,
    )
}

pub(super) fn wall() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// `from_tap` for a copy of `frame`.
pub(super) fn tap(b: &mut Bridge, frame: &[u8], now: Instant, out: &mut Rec) -> TapOutcome {
    b.from_tap(&mut frame.to_vec(), now, wall(), out)
}

/// `from_peer`, relaying what a hub relays (as the worker does).
pub(super) fn peer(b: &mut Bridge, p: PeerId, frame: &[u8], now: Instant, out: &mut Rec) {
    if let Some(r) = b.from_peer(p, frame, now, out) {
        b.relay(r, frame, out);
    }
}

#[test]
fn known_unicast_goes_to_one_peer_and_local_destinations_stay_home() {
    let t = Instant::now();
    let mut b = plain(false, 3, t);
    let mut out = Rec::default();
    // B lives behind peer 2 (it sent something).
    peer(&mut b, PeerId::new(2), &data(BCAST, B), t, &mut out);
    assert_eq!(out.take(), vec![Out::Tap(data(BCAST, B))]);
    assert_eq!(tap(&mut b, &data(B, A), t, &mut out), TapOutcome::Forwarded);
    assert_eq!(out.take(), vec![Out::Peer(PeerId::new(2), data(B, A))]);
    // A was learned on the local side: a frame to it stays home.
    tap(&mut b, &data(A, C), t, &mut out);
    assert!(out.take().is_empty(), "local destination: nowhere");
    // Unknown unicast, broadcast and multicast go to every peer.
    for dst in [[0x52, 0x54, 0, 0, 0, 0x99], BCAST, [0x01, 0, 0x5e, 0, 0, 1]] {
        tap(&mut b, &data(dst, A), t, &mut out);
        assert_eq!(out.peers(), vec![0, 1, 2], "flood to {dst:02x?}");
        out.take();
    }
    // Frames too short to have an Ethernet header go nowhere.
    assert_eq!(tap(&mut b, &[0u8; 13], t, &mut out), TapOutcome::Dropped);
    assert!(
        b.from_peer(PeerId::new(0), &[0u8; 13], t, &mut out)
            .is_none()
    );
    assert!(out.take().is_empty());
}

#[test]
fn split_horizon_without_a_hub_a_peer_frame_goes_to_the_tap_only() {
    let t = Instant::now();
    let mut b = plain(false, 3, t);
    let mut out = Rec::default();
    // C is known behind peer 1; a frame from peer 0 to C, a broadcast and an
    // unknown unicast: all to our TAP, never on to another peer.
    peer(&mut b, PeerId::new(1), &data(BCAST, C), t, &mut out);
    out.take();
    for dst in [C, BCAST, [0x52, 0x54, 0, 0, 0, 0x99]] {
        assert!(
            b.from_peer(PeerId::new(0), &data(dst, B), t, &mut out)
                .is_none()
        );
        assert_eq!(out.take(), vec![Out::Tap(data(dst, B))], "to {dst:02x?}");
    }
}

#[test]
fn a_hub_relays_floods_to_every_other_peer_and_unicast_to_one() {
    let t = Instant::now();
    let mut b = plain(true, 3, t);
    let mut out = Rec::default();
    // A broadcast from peer 0: our TAP and peers 1 and 2, not back to 0.
    peer(&mut b, PeerId::new(0), &data(BCAST, B), t, &mut out);
    assert_eq!(out.taps(), 1);
    assert_eq!(out.peers(), vec![1, 2]);
    out.take();
    // C behind peer 2: a frame from peer 0 to C goes to peer 2 only.
    peer(&mut b, PeerId::new(2), &data(BCAST, C), t, &mut out);
    out.take();
    peer(&mut b, PeerId::new(0), &data(C, B), t, &mut out);
    assert_eq!(out.take(), vec![Out::Peer(PeerId::new(2), data(C, B))]);
    // To a local host: the TAP only.
    tap(&mut b, &data(BCAST, A), t, &mut out);
    out.take();
    peer(&mut b, PeerId::new(0), &data(A, B), t, &mut out);
    assert_eq!(out.take(), vec![Out::Tap(data(A, B))]);
    // From peer 2 to B (behind peer 0): relayed to peer 0 only.
    peer(&mut b, PeerId::new(2), &data(B, C), t, &mut out);
    assert_eq!(out.take(), vec![Out::Peer(PeerId::new(0), data(B, C))]);
    // Back to where it came from: nowhere.
    peer(
        &mut b,
        PeerId::new(0),
        &data(B, [0x52, 0x54, 0, 0, 0, 0x77]),
        t,
        &mut out,
    );
    assert!(out.take().is_empty(), "B is behind the sender itself");
    // Switched off by a reload: split horizon again.
    b.set_hub(false);
    assert!(
        b.from_peer(PeerId::new(0), &data(BCAST, B), t, &mut out)
            .is_none()
    );
    assert_eq!(out.peers(), Vec::<usize>::new());
}

#[test]
fn the_same_mac_in_two_vlans_is_learned_and_routed_apart() {
    let t = Instant::now();
    let mut b = plain(false, 2, t);
    let mut out = Rec::default();
    // B untagged behind peer 0, B in VLAN 10 behind peer 1.
    peer(
        &mut b,
        PeerId::new(0),
        &eth(BCAST, B, None, 0x88b6, b"x"),
        t,
        &mut out,
    );
    peer(
        &mut b,
        PeerId::new(1),
        &eth(BCAST, B, Some(10), 0x88b6, b"x"),
        t,
        &mut out,
    );
    out.take();
    tap(&mut b, &eth(B, A, None, 0x88b6, b"x"), t, &mut out);
    assert_eq!(out.peers(), vec![0]);
    out.take();
    tap(&mut b, &eth(B, A, Some(10), 0x88b6, b"x"), t, &mut out);
    assert_eq!(out.peers(), vec![1]);
    out.take();
    tap(&mut b, &eth(B, A, Some(20), 0x88b6, b"x"), t, &mut out);
    assert_eq!(out.peers(), vec![0, 1], "unknown in VLAN 20: flooded");
}

#[test]
fn storm_control_limits_floods_not_unicast() {
    let t = Instant::now();
    let mut b = bridge(false, 2, guards(100, false, false, BpduPolicy::Forward), t);
    let mut out = Rec::default();
    peer(&mut b, PeerId::new(0), &data(BCAST, B), t, &mut out);
    out.take();
    // 1,000 broadcasts in one instant: the burst (at least 16) passes.
    for _ in 0..1000 {
        tap(&mut b, &data(BCAST, A), t, &mut out);
    }
    let floods = out.take().len() / 2;
    assert_eq!(floods, 25, "100 pps: a quarter second's burst, at least 16");
    assert_eq!(b.guard_counters().storm_dropped, 1000 - 25);
    // Known unicast never touches the bucket.
    for _ in 0..1000 {
        tap(&mut b, &data(B, A), t, &mut out);
    }
    assert_eq!(out.take().len(), 1000);
    // A second later the bucket has refilled.
    tap(
        &mut b,
        &data(BCAST, A),
        t + Duration::from_secs(1),
        &mut out,
    );
    assert_eq!(out.peers(), vec![0, 1]);
}

#[test]
fn guards_drop_server_messages_and_bpdus_from_peers_per_policy() {
    let t = Instant::now();
    let offer = fixtures::udp_frame(67, 68);
    let mut ra = eth(BCAST, B, None, 0x86dd, &[0; 40]);
    ra[14] = 0x60;
    ra[14 + 5] = 8; // payload length
    ra[14 + 6] = 58; // ICMPv6
    ra.truncate(14 + 40);
    ra.extend_from_slice(&[134, 0, 0, 0, 64, 0, 0, 0]);
    let bpdu = eth(STP, B, None, 0x0026, &[0x42, 0x42, 3]);
    for on in [false, true] {
        let policy = if on {
            BpduPolicy::Drop
        } else {
            BpduPolicy::Forward
        };
        let mut b = bridge(true, 2, guards(0, false, on, policy), t);
        let mut out = Rec::default();
        for f in [&offer, &ra, &bpdu] {
            peer(&mut b, PeerId::new(0), f, t, &mut out);
            let went = !out.take().is_empty();
            assert_eq!(went, !on, "guards {on}: {:02x?}", &f[..16]);
        }
        assert_eq!(b.guard_counters().guard_dropped, if on { 3 } else { 0 });
        // BPDUs from the TAP follow the same policy.
        tap(&mut b, &bpdu, t, &mut out);
        assert_eq!(out.take().is_empty(), on);
        // Plain traffic is untouched.
        peer(&mut b, PeerId::new(0), &data(BCAST, C), t, &mut out);
        assert_eq!(out.taps(), 1);
    }
}

fn responder(arp: bool, dhcp: bool) -> Responder {
    responder_with(arp, dhcp, false)
}

fn responder_with(arp: bool, dhcp: bool, conflict_check: bool) -> Responder {
    let ip = |n| Ipv4Addr::new(198, 19, 0, n);
    let arp = arp.then(|| ArpSettings {
        respond: vec![ip(1)],
        mac: crate::mac::MacAddr(RESPONDER_MAC),
        suppress: false,
        binding_timeout: Duration::from_secs(300),
        suppress_nd: false,
    });
    let dhcp = dhcp.then(|| {
        DhcpSettings {
            conflict_check,
            ..fixtures::dhcp_settings(RESPONDER_MAC)
        }
        .check(&[])
        .expect("valid DHCP settings")
    });
    Responder::new(arp, dhcp, LeaseDb::default()).expect("valid settings")
}

fn with_responder(r: Responder, now: Instant) -> Bridge {
    let g = guards(0, false, false, BpduPolicy::Forward);
    Bridge::new(
        Switch::new(false),
        Guard::new(&g, [7; 8], now),
        Some(r),
        0,
        2,
    )
}

#[test]
fn the_responder_answers_arp_locally_and_nothing_reaches_the_peers() {
    let t = Instant::now();
    let mut b = with_responder(responder(true, false), t);
    let mut out = Rec::default();
    let ask = arp_request(A, [198, 19, 0, 50], [198, 19, 0, 1]);
    assert_eq!(tap(&mut b, &ask, t, &mut out), TapOutcome::Answered);
    let out = out.take();
    let [Out::Reply { packet, leases: 0 }] = out.as_slice() else {
        panic!("one reply, no lease change: {out:?}");
    };
    assert_eq!(&packet[..6], &A, "to the asker");
    assert_eq!(&packet[6..12], &RESPONDER_MAC);
    assert_eq!(&packet[20..22], &[0, 2], "an ARP reply");
    // A request for another address goes through the tunnel as usual.
    let mut rec = Rec::default();
    let other = arp_request(A, [198, 19, 0, 50], [198, 19, 0, 7]);
    assert_eq!(tap(&mut b, &other, t, &mut rec), TapOutcome::Forwarded);
    assert_eq!(rec.peers(), vec![0, 1]);
    // A frame to the responder's own MAC is taken, not tunnelled.
    let mut rec = Rec::default();
    tap(&mut b, &data(RESPONDER_MAC, A), t, &mut rec);
    assert!(rec.out.is_empty());
    // An ARP reply of ours never goes to the peers either (answered here).
    let reply = fixtures::arp_frame(
        ArpOperation::Reply,
        A,
        [198, 19, 0, 50],
        RESPONDER_MAC,
        [198, 19, 0, 1],
    );
    tap(&mut b, &reply, t, &mut rec);
    assert_eq!(rec.peers(), Vec::<usize>::new());
}

#[test]
fn the_conflict_check_probes_the_lan_and_the_peers_then_offers_locally() {
    let t = Instant::now();
    let mut b = with_responder(responder_with(false, true, true), t);
    let mut out = Rec::default();
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let discover = Client::new(DhcpMessageType::Discover, mac).frame();
    assert_eq!(tap(&mut b, &discover, t, &mut out), TapOutcome::Answered);
    assert!(out.take().is_empty(), "the OFFER waits for the probe");
    // The ARP probe for the candidate address, at the end of its slot:
    // into our LAN and, as any broadcast, to every peer.
    assert_eq!(b.poll_timeout(), Some(t + PROBE_SLACK));
    b.handle_timeout(t + PROBE_SLACK, wall(), &mut out);
    let got = out.take();
    assert_eq!(got.len(), 3, "{got:?}");
    let Out::Tap(probe) = &got[0] else {
        panic!("the probe goes to the TAP first: {got:?}");
    };
    assert_eq!(&probe[12..14], &[0x08, 0x06], "an ARP probe");
    assert_eq!(got[1], Out::Peer(PeerId::new(0), probe.clone()));
    assert_eq!(got[2], Out::Peer(PeerId::new(1), probe.clone()));
    // Nobody answered: the held OFFER goes to the TAP only, when due.
    let due = b.poll_timeout().expect("the OFFER is held");
    b.handle_timeout(due, wall(), &mut out);
    let got = out.take();
    let [Out::Tap(offer)] = got.as_slice() else {
        panic!("one OFFER into the TAP: {got:?}");
    };
    assert_eq!(parse_reply(offer).message_type, DhcpMessageType::Offer);
}

#[test]
fn a_dhcp_ack_carries_its_lease_changes_and_peers_never_see_dhcp() {
    let t = Instant::now();
    let mut b = with_responder(responder(false, true), t);
    let mut out = Rec::default();
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let discover = Client::new(DhcpMessageType::Discover, mac).frame();
    assert_eq!(tap(&mut b, &discover, t, &mut out), TapOutcome::Answered);
    let got = out.take();
    let [Out::Reply { packet, leases: 0 }] = got.as_slice() else {
        panic!("an OFFER, no lease change: {got:?}");
    };
    let offer = parse_reply(packet);
    assert_eq!(offer.message_type, DhcpMessageType::Offer);
    let mut request = Client::new(DhcpMessageType::Request, mac);
    request.server_id = Some(Ipv4Addr::new(198, 19, 0, 254));
    request.requested = Some(offer.yiaddr);
    tap(&mut b, &request.frame(), t, &mut out);
    let got = out.take();
    let [Out::Reply { packet, leases }] = got.as_slice() else {
        panic!("an ACK: {got:?}");
    };
    assert_eq!(parse_reply(packet).message_type, DhcpMessageType::Ack);
    assert!(*leases >= 1, "the ACK comes with the lease it depends on");
    // A RELEASE gets no answer; its change is taken with the batch.
    let mut release = Client::new(DhcpMessageType::Release, mac);
    release.server_id = Some(Ipv4Addr::new(198, 19, 0, 254));
    release.ciaddr = offer.yiaddr;
    release.ip_src = offer.yiaddr;
    assert_eq!(
        tap(&mut b, &release.frame(), t, &mut out),
        TapOutcome::Answered
    );
    assert!(out.take().is_empty());
    let mut changes = Vec::new();
    b.take_lease_changes(&mut changes);
    assert!(!changes.is_empty(), "the release is a lease change");
    // DHCP from a peer never reaches our LAN while our server runs.
    peer(&mut b, PeerId::new(0), &discover, t, &mut out);
    assert!(out.take().is_empty());
    // Other DHCP from the LAN is not tunnelled either.
    tap(&mut b, &fixtures::udp_frame(67, 68), t, &mut out);
    assert!(out.take().is_empty());
}

/// A probe round at `now`: the probes sent, by peer.
fn probe_round(b: &mut Bridge, now: Instant, out: &mut Rec) -> Vec<(PeerId, Vec<u8>)> {
    b.handle_timeout(now, wall(), out);
    out.take()
        .into_iter()
        .filter_map(|o| match o {
            Out::Peer(p, f) if f[..6] == PROBE_DST => Some((p, f)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_loop_through_one_peer_cuts_off_that_peer_only_until_it_is_gone() {
    let t = Instant::now();
    let mut b = bridge(true, 3, guards(0, true, false, BpduPolicy::Forward), t);
    let mut out = Rec::default();
    // Quiet: no timer, no probe.
    assert_eq!(b.poll_timeout(), None);
    assert!(probe_round(&mut b, t, &mut out).is_empty());
    // B learned behind peer 1 shows up on our LAN: a move, so probes go
    // to the peers that are up (peer 2 is down), each naming its peer.
    peer(&mut b, PeerId::new(1), &data(BCAST, C), t, &mut out);
    peer(&mut b, PeerId::new(1), &data(BCAST, B), t, &mut out);
    out.take();
    assert_eq!(b.poll_timeout(), None, "no move yet");
    tap(&mut b, &data(BCAST, B), t, &mut out);
    out.take();
    assert!(b.poll_timeout().is_some_and(|d| d <= t));
    out.down = vec![PeerId::new(2)];
    let probes = probe_round(&mut b, t, &mut out);
    assert_eq!(
        probes.iter().map(|p| p.0.index()).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(&probes[0].1[12..14], &PROBE_ETHERTYPE.to_be_bytes());
    assert_ne!(probes[0].1, probes[1].1, "each names its peer");
    // A probe from a peer goes to our TAP only, even at a hub.
    peer(&mut b, PeerId::new(0), &probes[0].1, t, &mut out);
    assert_eq!(out.take(), vec![Out::Tap(probes[0].1.clone())]);
    // The probe sent to peer 1 comes back through our TAP: a loop through
    // peer 1. It is never forwarded.
    let t1 = t + Duration::from_millis(5);
    assert_eq!(tap(&mut b, &probes[1].1, t1, &mut out), TapOutcome::Dropped);
    assert!(out.take().is_empty());
    // Until the event is polled the MAC table still says C is behind peer
    // 1: a frame to C is refused all the same.
    tap(&mut b, &data(C, A), t1, &mut out);
    assert!(out.take().is_empty(), "known unicast into the loop");
    b.handle_timeout(t1, wall(), &mut out);
    assert!(matches!(
        b.poll_event(),
        Some(LoopEvent::LoopStarted { peer, .. }) if peer == PeerId::new(1)
    ));
    assert_eq!(b.mac_entries(t1), 0, "the MAC table was flushed");
    assert_eq!(b.guard_counters().loops_detected, 1);
    // Nothing but probes with peer 1, either way; the others unaffected.
    out.take();
    tap(&mut b, &data(BCAST, A), t1, &mut out);
    assert_eq!(out.peers(), vec![0, 2]);
    out.take();
    peer(&mut b, PeerId::new(1), &data(BCAST, C), t1, &mut out);
    assert!(out.take().is_empty(), "from the looped peer: dropped");
    peer(&mut b, PeerId::new(0), &data(BCAST, C), t1, &mut out);
    assert_eq!(out.taps(), 1);
    assert_eq!(out.peers(), vec![2], "a hub never relays into the loop");
    out.take();
    assert!(b.guard_counters().loop_dropped >= 3);
    // The other path goes away: no probe comes back for the hold-down,
    // and frames flow to peer 1 again.
    let mut now = t1;
    while now < t1 + Duration::from_secs(5) {
        now += Duration::from_millis(100);
        b.handle_timeout(now, wall(), &mut out);
    }
    out.take();
    assert!(matches!(
        b.poll_event(),
        Some(LoopEvent::LoopEnded { peer, .. }) if peer == PeerId::new(1)
    ));
    tap(&mut b, &data(BCAST, A), now, &mut out);
    assert_eq!(out.peers(), vec![0, 1, 2]);
}

/// Two spokes' LANs joined behind a hub. At the hub: a MAC moving from
/// spoke 1 to spoke 2 starts probing; the probe for spoke 1 comes back
/// marked from spoke 2 (which read it from its LAN); relaying between the
/// two stops, both ways, while both still reach the hub and spoke 0. At a
/// spoke: another site's probe read from the LAN goes back to every peer
/// that is up, marked, once.
#[test]
fn a_loop_between_two_spokes_is_cut_at_the_hub_between_them_only() {
    let t = Instant::now();
    let mut hub = bridge(true, 3, guards(0, true, false, BpduPolicy::Forward), t);
    let mut spoke = Bridge::new(
        Switch::new(false),
        Guard::new(&guards(0, true, false, BpduPolicy::Forward), [8; 8], t),
        None,
        0,
        1,
    );
    let mut out = Rec::default();
    let (p0, p1, p2) = (PeerId::new(0), PeerId::new(1), PeerId::new(2));
    peer(&mut hub, p1, &data(BCAST, B), t, &mut out);
    assert_eq!(out.peers(), vec![0, 2], "relayed");
    out.take();
    assert_eq!(hub.poll_timeout(), None, "no move yet");
    peer(&mut hub, p2, &data(BCAST, B), t, &mut out);
    out.take();
    let probes = probe_round(&mut hub, t, &mut out);
    assert_eq!(
        probes.len(),
        3,
        "a MAC moving between spokes starts probing"
    );
    // Spoke 2's gateway reads the probe for spoke 1 from its LAN.
    let for_p1 = probes[1].1.clone();
    assert_eq!(tap(&mut spoke, &for_p1, t, &mut out), TapOutcome::Dropped);
    let back = match out.take().as_slice() {
        [Out::Peer(p, f)] if *p == p0 => f.clone(),
        o => panic!("sent back to its one peer: {o:?}"),
    };
    assert_ne!(back, for_p1, "marked");
    // Marked, it is not sent back again, nor written anywhere.
    assert_eq!(tap(&mut spoke, &back, t, &mut out), TapOutcome::Dropped);
    peer(&mut spoke, p0, &back, t, &mut out);
    assert!(out.take().is_empty());
    // At the hub, from spoke 2: the loop is between 1 and 2.
    peer(&mut hub, p2, &back, t, &mut out);
    assert!(out.take().is_empty(), "never written, never relayed");
    hub.handle_timeout(t, wall(), &mut out);
    assert!(matches!(
        hub.poll_event(),
        Some(LoopEvent::PairLoopStarted { a, b, .. }) if a == p1 && b == p2
    ));
    out.take();
    // Floods from 1 reach the hub's LAN and spoke 0, not spoke 2; and the
    // other way round; spoke 0 still reaches both.
    peer(&mut hub, p1, &data(BCAST, C), t, &mut out);
    assert_eq!((out.taps(), out.peers()), (1, vec![0]));
    out.take();
    peer(&mut hub, p2, &data(BCAST, B), t, &mut out);
    assert_eq!((out.taps(), out.peers()), (1, vec![0]));
    out.take();
    peer(&mut hub, p0, &data(BCAST, A), t, &mut out);
    assert_eq!(out.peers(), vec![1, 2]);
    out.take();
    // Known unicast from 1 to B (now behind 2): not relayed either.
    peer(&mut hub, p1, &data(B, C), t, &mut out);
    assert!(out.peers().is_empty(), "{:?}", out.out);
    out.take();
    tap(&mut hub, &data(BCAST, A), t, &mut out);
    assert_eq!(out.peers(), vec![0, 1, 2], "the hub's own LAN reaches all");
    assert!(hub.guard_counters().loop_dropped >= 3);
}

#[test]
fn a_mac_learned_here_and_seen_from_a_peer_starts_probing_too() {
    let t = Instant::now();
    let mut b = bridge(false, 1, guards(0, true, false, BpduPolicy::Forward), t);
    let mut out = Rec::default();
    tap(&mut b, &data(BCAST, A), t, &mut out);
    peer(&mut b, PeerId::new(0), &data(BCAST, B), t, &mut out);
    assert_eq!(b.poll_timeout(), None, "no move yet");
    peer(&mut b, PeerId::new(0), &data(BCAST, A), t, &mut out);
    assert_eq!(probe_round(&mut b, t, &mut out).len(), 1);
    // Off: no probing, ever.
    let mut off = plain(false, 1, t);
    tap(&mut off, &data(BCAST, A), t, &mut out);
    peer(&mut off, PeerId::new(0), &data(BCAST, A), t, &mut out);
    assert_eq!(off.poll_timeout(), None);
}

#[test]
fn a_storm_of_made_up_sources_leaves_loop_detection_working() {
    // Issue 28: a storm from random source MACs filled the MAC table, so
    // the hosts that talked afterwards were never learned, no move was
    // seen, and a loop formed after (or during) the storm went unnoticed.
    let t = Instant::now();
    let mut b = bridge(false, 1, guards(2000, true, false, BpduPolicy::Forward), t);
    let mut out = Rec::default();
    // 4 s at 20,000 frames a second, each from a new address.
    let mut now = t;
    for i in 0..80_000u32 {
        now = t + Duration::from_micros(50 * u64::from(i));
        let n = i.to_be_bytes();
        let src = [0x02, 0x5a, n[0], n[1], n[2], n[3]];
        tap(
            &mut b,
            &eth(BCAST, src, None, 0x88b5, b"storm"),
            now,
            &mut out,
        );
        if i % 1000 == 0 {
            out.take();
        }
    }
    out.take();
    assert!(b.guard_counters().storm_dropped > 70_000);
    // The storm alone makes the guard probe (a storm is a loop's symptom).
    assert!(b.poll_timeout().is_some());
    // 2 s later, with the storm's timers run, a loop forms and A's
    // broadcast circulates: out through the tunnel, back from the peer,
    // and in again from our TAP.
    now += Duration::from_secs(2);
    b.handle_timeout(now, wall(), &mut out);
    out.take();
    let later = now + Duration::from_secs(5);
    while now < later && b.guard_counters().loops_detected == 0 {
        now += Duration::from_millis(10);
        tap(&mut b, &data(BCAST, A), now, &mut out);
        peer(&mut b, PeerId::new(0), &data(BCAST, A), now, &mut out);
        b.handle_timeout(now, wall(), &mut out);
        // Our probes come back through the TAP.
        for o in out.take() {
            if let Out::Peer(_, f) = o {
                if f[..6] == PROBE_DST {
                    tap(&mut b, &f, now, &mut out);
                }
            }
        }
    }
    assert_eq!(
        b.guard_counters().loops_detected,
        1,
        "the loop is found after the storm"
    );
}

#[test]
fn a_bad_virtio_header_from_a_peer_is_refused_and_counted() {
    let t = Instant::now();
    let g = guards(0, false, false, BpduPolicy::Forward);
    let mut b = Bridge::new(
        Switch::new(false),
        Guard::new(&g, [7; 8], t),
        None,
        HDR_LEN,
        1,
    );
    let mut out = Rec::default();
    let mut packet = vec![0u8; HDR_LEN];
    packet.extend_from_slice(&data(BCAST, B));
    assert!(b.from_peer(PeerId::new(0), &packet, t, &mut out).is_none());
    assert_eq!(out.take(), vec![Out::Tap(packet.clone())]);
    // A segmentation request no kernel makes for a plain frame.
    packet[1] = crate::wire::virtio::GSO_UDP;
    assert!(b.from_peer(PeerId::new(0), &packet, t, &mut out).is_none());
    assert!(out.take().is_empty());
    assert_eq!(b.counters().rx_bad_vnet_hdr, 1);
    // From the TAP the header travels with the frame.
    let mut from_tap = vec![0u8; HDR_LEN];
    from_tap.extend_from_slice(&data(BCAST, A));
    tap(&mut b, &from_tap, t, &mut out);
    assert_eq!(out.take(), vec![Out::Peer(PeerId::new(0), from_tap)]);
}

#[test]
fn a_removed_peer_is_forgotten_everywhere() {
    let t = Instant::now();
    let mut b = plain(false, 2, t);
    let mut out = Rec::default();
    peer(&mut b, PeerId::new(1), &data(BCAST, B), t, &mut out);
    out.take();
    tap(&mut b, &data(B, A), t, &mut out);
    assert_eq!(out.take(), vec![Out::Peer(PeerId::new(1), data(B, A))]);
    b.forget_peer(PeerId::new(1), t);
    b.set_peer_count(1);
    tap(&mut b, &data(B, A), t, &mut out);
    assert_eq!(
        out.peers(),
        vec![0],
        "B unknown now; flooded to the one peer left"
    );
}

#[test]
fn a_standby_forwards_nothing_answers_nothing_and_probes_nothing() {
    let t = Instant::now();
    let g = guards(0, true, false, BpduPolicy::Forward);
    let mut b = Bridge::new(
        Switch::new(false),
        Guard::new(&g, [7; 8], t),
        Some(responder(true, true)),
        0,
        2,
    );
    let mut out = Rec::default();
    assert_eq!(b.role(), Role::Active);
    // Active: B learned behind peer 0, then demoted.
    peer(&mut b, PeerId::new(0), &data(BCAST, B), t, &mut out);
    out.take();
    assert_eq!(b.set_role(Role::Standby, t, &mut out), Role::Active);
    assert!(out.take().is_empty(), "a demotion announces nothing");
    // Nothing from the LAN goes anywhere, ARP and DHCP for the responder
    // included; nothing from a peer reaches the LAN.
    let arp = arp_request(A, [198, 19, 0, 9], [198, 19, 0, 1]);
    let discover = Client::new(DhcpMessageType::Discover, A).frame();
    for f in [data(B, A), data(BCAST, A), arp, discover] {
        assert_eq!(tap(&mut b, &f, t, &mut out), TapOutcome::Dropped);
    }
    peer(&mut b, PeerId::new(1), &data(BCAST, C), t, &mut out);
    assert!(out.take().is_empty());
    // A MAC move that would start loop probes on an active box: none.
    for i in 0..20 {
        b.handle_timeout(t + Duration::from_secs(i), wall(), &mut out);
    }
    assert!(out.take().is_empty(), "a standby probed or answered");
}

#[test]
fn promotion_announces_the_responder_and_the_remote_macs() {
    let t = Instant::now();
    let mut b = with_responder(responder(true, true), t);
    let mut out = Rec::default();
    // Known remote MACs: B untagged behind peer 0, C in VLAN 20 behind 1.
    peer(&mut b, PeerId::new(0), &data(BCAST, B), t, &mut out);
    peer(
        &mut b,
        PeerId::new(1),
        &eth(BCAST, C, Some(20), 0x88b6, b"x"),
        t,
        &mut out,
    );
    tap(&mut b, &data(BCAST, A), t, &mut out);
    b.set_role(Role::Standby, t, &mut out);
    out.take();
    assert_eq!(b.set_role(Role::Active, t, &mut out), Role::Standby);
    let frames: Vec<Vec<u8>> = out
        .take()
        .into_iter()
        .map(|o| match o {
            Out::Tap(f) => f,
            other => panic!("announcements go to the TAP only: {other:?}"),
        })
        .collect();
    // Gratuitous ARP for 198.19.0.1 (arp.respond) and the DHCP server's
    // address; one RARP frame per remote MAC; nothing for A (local).
    let garps: Vec<_> = frames
        .iter()
        .filter(|f| f[12..14] == [0x08, 0x06])
        .map(|f| (f[6..12].to_vec(), f[28..32].to_vec(), f[38..42].to_vec()))
        .collect();
    assert!(garps.contains(&(
        RESPONDER_MAC.to_vec(),
        vec![198, 19, 0, 1],
        vec![198, 19, 0, 1]
    )));
    assert_eq!(garps.len(), 2, "{garps:02x?}");
    let mut rarps: Vec<_> = frames
        .iter()
        .filter(|f| f[12..14] == [0x80, 0x35] || f[16..18] == [0x80, 0x35])
        .map(|f| f[6..12].to_vec())
        .collect();
    rarps.sort();
    assert_eq!(rarps, vec![B.to_vec(), C.to_vec()]);
    assert!(frames.iter().all(|f| f[..6] == BCAST));
    // Active again: frames flow. Active to active announces nothing.
    assert_eq!(tap(&mut b, &data(B, A), t, &mut out), TapOutcome::Forwarded);
    assert_eq!(out.take(), vec![Out::Peer(PeerId::new(0), data(B, A))]);
    b.set_role(Role::Active, t, &mut out);
    assert!(out.take().is_empty());
    // With `announce = false` nothing is announced.
    b.set_announce(false);
    b.set_role(Role::Standby, t, &mut out);
    b.set_role(Role::Active, t, &mut out);
    assert!(out.take().is_empty());
}
