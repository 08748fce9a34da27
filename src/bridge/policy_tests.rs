//! Hub policy tests (SPEC §5 "Hub policy"): fixture frames through the
//! real [`Bridge`] on a virtual clock, one rule each. Every test here
//! fails on a bridge without per-peer policy (before `policy.rs`): the
//! storm is relayed whole, a spoke owns every MAC it sends, one frame moves
//! a MAC, pins and `isolate` do not exist.

use std::time::Duration;

use super::policy::{MOVE_HOLD, MacPrefix, VlanSet};
use super::tests::{BCAST, Out, Rec, bridge, data, eth, guards, peer, plain, tap};
use super::*;
use crate::guard::BpduPolicy;
use crate::switch::AGING;
use crate::wire::ethernet::Vlan;

const P0: PeerId = PeerId::new(0);
const P1: PeerId = PeerId::new(1);
const P2: PeerId = PeerId::new(2);

/// A host behind a spoke, numbered.
fn host(site: u8, n: u16) -> [u8; 6] {
    let n = n.to_be_bytes();
    [0x02, 0, 0, site, n[0], n[1]]
}

/// A local host of the hub.
const LOCAL: [u8; 6] = [0x02, 0, 0, 0xee, 0, 1];

fn policies(b: &mut Bridge, list: &[PeerPolicy]) {
    b.set_policies(list.to_vec());
}

fn to_peer(out: &Rec, p: PeerId) -> usize {
    out.out
        .iter()
        .filter(|o| matches!(o, Out::Peer(q, _) if *q == p))
        .count()
}

#[test]
fn a_relayed_storm_is_limited_per_source_peer() {
    let t = Instant::now();
    let pps = 100;
    let mut b = bridge(true, 3, guards(pps, false, false, BpduPolicy::Forward), t);
    let mut out = Rec::default();
    // Peer 0 floods 1,000 broadcasts in one second; peer 2 sends 50 in the
    // same second.
    for i in 0..1000u32 {
        let now = t + Duration::from_millis(u64::from(i));
        peer(&mut b, P0, &data(BCAST, host(1, 1)), now, &mut out);
        if i % 20 == 0 {
            peer(&mut b, P2, &data(BCAST, host(3, 1)), now, &mut out);
        }
    }
    let from_p0_at_p1 = out
        .out
        .iter()
        .filter(|o| matches!(o, Out::Peer(q, f) if *q == P1 && f[6..12] == host(1, 1)))
        .count();
    let from_p2_at_p1 = out
        .out
        .iter()
        .filter(|o| matches!(o, Out::Peer(q, f) if *q == P1 && f[6..12] == host(3, 1)))
        .count();
    // One second at 100 pps plus the bucket (a quarter second, at least 16).
    assert!(
        from_p0_at_p1 <= (pps + pps / 4) as usize + 1,
        "{from_p0_at_p1} relayed"
    );
    assert!(from_p0_at_p1 >= pps as usize, "{from_p0_at_p1} relayed");
    // The other spoke's floods have their own bucket: all through.
    assert_eq!(from_p2_at_p1, 50);
    // The hub's LAN sees every frame (the spoke's storm control guards it).
    assert_eq!(out.taps(), 1050);
    assert_eq!(
        b.guard_counters().storm_dropped,
        1000 - from_p0_at_p1 as u64
    );
    // The hub's own floods have the link bucket, untouched by the relay.
    out.take();
    tap(
        &mut b,
        &data(BCAST, LOCAL),
        t + Duration::from_secs(1),
        &mut out,
    );
    assert_eq!(out.peers(), vec![0, 1, 2]);
}

#[test]
fn a_spoke_owns_at_most_max_macs() {
    let t = Instant::now();
    let mut b = plain(true, 2, t);
    let limited = PeerPolicy {
        max_macs: 10,
        ..PeerPolicy::default()
    };
    policies(&mut b, &[limited.clone(), PeerPolicy::default()]);
    let mut out = Rec::default();
    for n in 0..50 {
        peer(&mut b, P0, &data(BCAST, host(1, n)), t, &mut out);
    }
    assert_eq!(b.peer_macs(t), vec![10, 0]);
    assert_eq!(out.taps(), 10, "the other 40 are dropped");
    assert_eq!(to_peer(&out, P1), 10);
    assert_eq!(b.guard_counters().policy_dropped, 40);
    // The ten it owns keep working.
    out.take();
    peer(&mut b, P0, &data(BCAST, host(1, 3)), t, &mut out);
    assert_eq!(out.taps(), 1);
    // A refused address was not learned: unicast to it is unknown, flooded.
    out.take();
    tap(&mut b, &data(host(1, 20), LOCAL), t, &mut out);
    assert_eq!(out.peers(), vec![0, 1]);
    // Once its addresses are stale, new ones are learned again.
    let later = t + AGING;
    out.take();
    peer(&mut b, P0, &data(BCAST, host(1, 40)), later, &mut out);
    assert_eq!(out.taps(), 1);
    assert_eq!(b.peer_macs(later), vec![1, 0]);
    // Another spoke is not limited by peer 0's policy.
    for n in 0..30 {
        peer(&mut b, P1, &data(BCAST, host(2, n)), later, &mut out);
    }
    assert_eq!(b.peer_macs(later), vec![1, 30]);
}

#[test]
fn one_frame_does_not_take_another_ports_mac() {
    let t = Instant::now();
    let mut b = plain(true, 3, t);
    let mut out = Rec::default();
    let victim = host(2, 1);
    peer(&mut b, P1, &data(BCAST, victim), t, &mut out);
    tap(&mut b, &data(BCAST, LOCAL), t, &mut out);
    out.take();
    // Peer 0 forges the victim's and the hub LAN host's addresses.
    let soon = t + Duration::from_secs(1);
    for forged in [victim, LOCAL] {
        assert!(
            b.from_peer(P0, &data(BCAST, forged), soon, &mut out)
                .is_none()
        );
    }
    assert!(
        out.take().is_empty(),
        "dropped: not to the TAP, not relayed"
    );
    assert_eq!(b.guard_counters().policy_dropped, 2);
    // Traffic for the victim still goes to peer 1, and the hub LAN host's
    // replies stay home.
    tap(&mut b, &data(victim, LOCAL), soon, &mut out);
    assert_eq!(out.take(), vec![Out::Peer(P1, data(victim, LOCAL))]);
    peer(&mut b, P2, &data(LOCAL, host(3, 1)), soon, &mut out);
    assert_eq!(out.taps(), 1);
    assert!(out.peers().is_empty());
    out.take();
    // The victim keeps talking: it is never taken.
    let mut now = soon;
    for _ in 0..10 {
        now += Duration::from_secs(2);
        peer(&mut b, P1, &data(BCAST, victim), now, &mut out);
        peer(&mut b, P0, &data(BCAST, victim), now, &mut out);
    }
    out.take();
    tap(&mut b, &data(victim, LOCAL), now, &mut out);
    assert_eq!(out.peers(), vec![1]);
    // It moves to peer 2's site (a real move): refused until it has been
    // silent at peer 1 for MOVE_HOLD, then learned there.
    out.take();
    let moved = now + MOVE_HOLD - Duration::from_millis(1);
    peer(&mut b, P2, &data(BCAST, victim), moved, &mut out);
    assert!(out.take().is_empty(), "still peer 1's");
    let moved = now + MOVE_HOLD;
    peer(&mut b, P2, &data(BCAST, victim), moved, &mut out);
    assert_eq!(out.taps(), 1);
    out.take();
    tap(&mut b, &data(victim, LOCAL), moved, &mut out);
    assert_eq!(out.peers(), vec![2]);
    // The hub's own LAN is trusted: a host that moves there is learned at
    // once.
    tap(&mut b, &data(BCAST, victim), moved, &mut out);
    out.take();
    peer(&mut b, P1, &data(victim, host(2, 2)), moved, &mut out);
    assert_eq!(out.taps(), 1, "to the hub's LAN");
    assert!(out.peers().is_empty());
}

#[test]
fn pinned_macs_and_vlans_refuse_what_is_outside() {
    let t = Instant::now();
    // Pins hold on a link that is not a hub too.
    for hub in [true, false] {
        let mut b = plain(hub, 2, t);
        policies(
            &mut b,
            &[PeerPolicy {
                macs: vec![MacPrefix::new(crate::mac::MacAddr(host(1, 0)), 40).expect("a /40")],
                vlans: VlanSet::new([0, 20]),
                ..PeerPolicy::default()
            }],
        );
        let mut out = Rec::default();
        let ours = host(1, 7);
        let theirs = host(9, 7);
        peer(&mut b, P0, &data(BCAST, ours), t, &mut out);
        peer(
            &mut b,
            P0,
            &eth(BCAST, ours, Some(20), 0x88b6, b"v20"),
            t,
            &mut out,
        );
        assert_eq!(out.taps(), 2, "hub {hub}");
        out.take();
        peer(&mut b, P0, &data(BCAST, theirs), t, &mut out);
        peer(
            &mut b,
            P0,
            &eth(BCAST, ours, Some(30), 0x88b6, b"v30"),
            t,
            &mut out,
        );
        assert!(out.take().is_empty(), "hub {hub}");
        assert_eq!(b.guard_counters().policy_dropped, 2);
        // Peer 1 has no pins.
        peer(&mut b, P1, &data(BCAST, theirs), t, &mut out);
        assert_eq!(out.taps(), 1);
    }
    // Without a hub, max_macs and the move rule do not apply.
    let mut b = plain(false, 2, t);
    policies(
        &mut b,
        &[PeerPolicy {
            max_macs: 1,
            ..PeerPolicy::default()
        }],
    );
    let mut out = Rec::default();
    peer(&mut b, P1, &data(BCAST, host(2, 1)), t, &mut out);
    for n in 0..5 {
        peer(&mut b, P0, &data(BCAST, host(1, n)), t, &mut out);
    }
    peer(&mut b, P0, &data(BCAST, host(2, 1)), t, &mut out);
    assert_eq!(out.taps(), 7);
    assert_eq!(b.guard_counters().policy_dropped, 0);
    assert_eq!(
        b.switch
            .port_of(Vlan::Untagged, crate::mac::MacAddr(host(2, 1)), t),
        Some(crate::switch::Port::Peer(P0))
    );
}

#[test]
fn an_isolated_spoke_reaches_the_hub_lan_only() {
    let t = Instant::now();
    let mut b = plain(true, 3, t);
    let isolated = PeerPolicy {
        isolate: true,
        ..PeerPolicy::default()
    };
    policies(
        &mut b,
        &[isolated, PeerPolicy::default(), PeerPolicy::default()],
    );
    let mut out = Rec::default();
    let (h0, h1, h2) = (host(1, 1), host(2, 1), host(3, 1));
    // Floods: the isolated spoke's reach the hub's LAN only; the others'
    // never reach it.
    peer(&mut b, P0, &data(BCAST, h0), t, &mut out);
    assert_eq!(out.take(), vec![Out::Tap(data(BCAST, h0))]);
    peer(&mut b, P1, &data(BCAST, h1), t, &mut out);
    assert_eq!(out.peers(), vec![2]);
    out.take();
    peer(&mut b, P2, &data(BCAST, h2), t, &mut out);
    assert_eq!(out.peers(), vec![1]);
    out.take();
    // Known unicast across the isolation, either way: dropped and counted.
    peer(&mut b, P0, &data(h1, h0), t, &mut out);
    peer(&mut b, P1, &data(h0, h1), t, &mut out);
    assert!(out.take().is_empty());
    assert_eq!(b.guard_counters().policy_dropped, 2);
    // The hub's LAN reaches the isolated spoke, and it answers.
    tap(&mut b, &data(h0, LOCAL), t, &mut out);
    assert_eq!(out.peers(), vec![0]);
    out.take();
    peer(&mut b, P0, &data(LOCAL, h0), t, &mut out);
    assert_eq!(out.taps(), 1);
    out.take();
    // A reload lifts the isolation: the next frame is relayed.
    policies(&mut b, &vec![PeerPolicy::default(); 3]);
    peer(&mut b, P0, &data(h1, h0), t, &mut out);
    assert_eq!(out.take(), vec![Out::Peer(P1, data(h1, h0))]);
    assert_eq!(b.guard_counters().policy_dropped, 2);
}
