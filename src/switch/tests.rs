//! MAC table tests: learning, routing, aging, bounds, VLANs, and the hub
//! policy's ownership rules, on a virtual clock.

use super::*;

const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
const C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc]);
const BCAST: MacAddr = MacAddr([0xff; 6]);
const MCAST: MacAddr = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]);
const U: Vlan = Vlan::Untagged;
const V10: Vlan = Vlan::Tagged(10);
const V20: Vlan = Vlan::Tagged(20);

#[test]
fn flush_forgets_everything() {
    let now = Instant::now();
    let mut sw = Switch::new(false);
    sw.from_peer(PeerId::new(0), U, A, B, now);
    assert_eq!(
        sw.from_local(U, B, A, now),
        LocalRoute::Peer(PeerId::new(0))
    );
    sw.flush();
    assert_eq!(sw.len(now), 0);
    assert_eq!(sw.from_local(U, B, C, now), LocalRoute::Flood);
}

#[test]
fn learns_and_routes_unicast_to_one_peer() {
    let t = Instant::now();
    let mut s = Switch::new(false);
    assert_eq!(s.from_local(U, B, A, t), LocalRoute::Flood, "unknown");
    s.from_peer(PeerId::new(1), U, A, B, t);
    assert_eq!(s.from_local(U, B, A, t), LocalRoute::Peer(PeerId::new(1)));
    assert_eq!(s.from_local(U, BCAST, A, t), LocalRoute::Flood);
    assert_eq!(s.from_local(U, MCAST, A, t), LocalRoute::Flood);
    // A MAC that moves follows.
    s.from_peer(PeerId::new(2), U, A, B, t);
    assert_eq!(s.from_local(U, B, A, t), LocalRoute::Peer(PeerId::new(2)));
}

#[test]
fn local_destinations_are_not_tunneled() {
    let t = Instant::now();
    let mut s = Switch::new(false);
    s.from_local(U, BCAST, C, t);
    assert_eq!(s.from_local(U, C, A, t), LocalRoute::Drop);
}

#[test]
fn a_local_host_keeps_unicast_home_only_while_recently_seen() {
    let t = Instant::now();
    let mut s = Switch::new(false);
    s.from_local(U, BCAST, C, t);
    let just_before = t + LOCAL_HOLD - Duration::from_millis(1);
    assert_eq!(s.from_local(U, C, A, just_before), LocalRoute::Drop);
    // The LAN bridge still hands the TAP unicast for C: it lost C's port
    // (a link went away), so C may now be behind a peer.
    assert_eq!(s.from_local(U, C, A, t + LOCAL_HOLD), LocalRoute::Flood);
    // Routing refreshes nothing: only C's own frames do.
    assert_eq!(s.from_local(U, C, A, t + LOCAL_HOLD), LocalRoute::Flood);
    let later = t + LOCAL_HOLD * 3;
    s.from_local(U, BCAST, C, later);
    assert_eq!(s.from_local(U, C, A, later), LocalRoute::Drop);
    // The entry is still there for what else reads it (loop suspicion).
    assert_eq!(s.port_of(U, C, later + LOCAL_HOLD), Some(Port::Local));
}

#[test]
fn a_host_that_moved_behind_a_peer_is_reached_once_it_talks() {
    let t = Instant::now();
    let mut s = Switch::new(false);
    s.from_local(U, BCAST, C, t);
    let later = t + LOCAL_HOLD;
    assert_eq!(s.from_local(U, C, A, later), LocalRoute::Flood);
    // The flood reached C at its new site; its answer comes from the peer.
    s.from_peer(PeerId::new(3), U, A, C, later);
    assert_eq!(
        s.from_local(U, C, A, later),
        LocalRoute::Peer(PeerId::new(3))
    );
}

#[test]
fn entries_age_out() {
    let t = Instant::now();
    let mut s = Switch::new(false);
    s.from_peer(PeerId::new(0), U, A, B, t);
    assert_eq!(
        s.from_local(U, B, A, t + AGING - Duration::from_secs(1)),
        LocalRoute::Peer(PeerId::new(0))
    );
    assert_eq!(s.from_local(U, B, A, t + AGING), LocalRoute::Flood);
}

#[test]
fn a_removed_peer_is_forgotten_and_hub_can_be_switched() {
    let t = Instant::now();
    let mut s = Switch::new(false);
    s.from_peer(PeerId::new(0), U, BCAST, B, t);
    s.from_peer(PeerId::new(1), U, BCAST, C, t);
    s.forget_peer(PeerId::new(0));
    assert_eq!(
        s.from_local(U, B, A, t),
        LocalRoute::Flood,
        "B was behind 0"
    );
    assert_eq!(
        s.from_local(U, C, A, t),
        LocalRoute::Peer(PeerId::new(1)),
        "C untouched"
    );
    assert!(
        !s.from_peer(PeerId::new(0), U, C, B, t).flood_peers
            && s.from_peer(PeerId::new(0), U, C, B, t).peer.is_none()
    );
    s.set_hub(true);
    assert_eq!(
        s.from_peer(PeerId::new(0), U, C, B, t).peer,
        Some(PeerId::new(1)),
        "hub forwards now"
    );
}

#[test]
fn split_horizon_without_hub() {
    let t = Instant::now();
    let mut s = Switch::new(false);
    s.from_peer(PeerId::new(1), U, BCAST, C, t);
    for dst in [BCAST, C, A] {
        let r = s.from_peer(PeerId::new(0), U, dst, B, t);
        assert_eq!(
            r,
            RemoteRoute {
                local: true,
                peer: None,
                flood_peers: false
            }
        );
    }
}

#[test]
fn hub_forwards_between_peers() {
    let t = Instant::now();
    let mut s = Switch::new(true);
    s.from_peer(PeerId::new(1), U, BCAST, C, t);
    s.from_local(U, BCAST, A, t);
    // Known at another peer: only there.
    assert_eq!(
        s.from_peer(PeerId::new(0), U, C, B, t),
        RemoteRoute {
            local: false,
            peer: Some(PeerId::new(1)),
            flood_peers: false
        }
    );
    // Local destination: only local.
    assert!(s.from_peer(PeerId::new(0), U, A, B, t).local);
    assert!(!s.from_peer(PeerId::new(0), U, A, B, t).flood_peers);
    // Broadcast and unknown: local and the other peers.
    let r = s.from_peer(PeerId::new(0), U, BCAST, B, t);
    assert!(r.local && r.flood_peers);
    let r = s.from_peer(PeerId::new(0), U, MacAddr([2, 9, 9, 9, 9, 9]), B, t);
    assert!(r.local && r.flood_peers);
    // Back to where it came from: nowhere.
    s.from_peer(PeerId::new(0), U, BCAST, MacAddr([2, 1, 1, 1, 1, 1]), t);
    let r = s.from_peer(PeerId::new(0), U, MacAddr([2, 1, 1, 1, 1, 1]), B, t);
    assert!(!r.local && r.peer.is_none() && !r.flood_peers);
}

#[test]
fn table_is_bounded_and_group_sources_ignored() {
    let t = Instant::now();
    let mut s = Switch::new(false);
    s.learn(U, BCAST, Port::Peer(PeerId::new(0)), t);
    assert_eq!(s.len(t), 0);
    for i in 0..(MAX_ENTRIES as u32 + 100) {
        let b = i.to_be_bytes();
        s.learn(
            U,
            MacAddr([2, 0, b[0], b[1], b[2], b[3]]),
            Port::Peer(PeerId::new(0)),
            t,
        );
    }
    // Full of entries of one age: an eighth made room for the rest.
    assert_eq!(s.len(t), MAX_ENTRIES - MAX_ENTRIES / 8 + 100);
    // Once they are stale, they all go at once.
    s.learn(U, A, Port::Peer(PeerId::new(1)), t + AGING);
    assert_eq!(s.len(t + AGING), 1);
}

#[test]
fn a_full_table_of_fresh_entries_still_learns_and_drops_the_oldest() {
    // A storm of made-up source addresses fills the table; hosts that
    // talk afterwards must be learned (issue 28: otherwise their moves,
    // and so a loop, go unseen).
    let t = Instant::now();
    let mut s = Switch::new(false);
    s.learn(U, C, Port::Local, t);
    for i in 0..(4 * MAX_ENTRIES as u32) {
        let b = i.to_be_bytes();
        let at = t + Duration::from_micros(500 * u64::from(i));
        s.learn(
            U,
            MacAddr([2, 0x5a, b[0], b[1], b[2], b[3]]),
            Port::Local,
            at,
        );
        if i % 100 == 0 {
            // C keeps talking: it is never the oldest.
            s.learn(U, C, Port::Local, at);
        }
    }
    let end = t + Duration::from_micros(500 * 4 * MAX_ENTRIES as u64);
    assert!(s.table.len() <= MAX_ENTRIES);
    assert_eq!(
        s.port_of(U, C, end),
        Some(Port::Local),
        "an active host is kept"
    );
    s.learn(U, A, Port::Peer(PeerId::new(0)), end);
    assert_eq!(
        s.port_of(U, A, end),
        Some(Port::Peer(PeerId::new(0))),
        "a new host is learned"
    );
    s.learn(U, A, Port::Local, end);
    assert_eq!(
        s.port_of(U, A, end),
        Some(Port::Local),
        "and its move is seen"
    );
    // The first addresses of the storm went, the last ones stayed.
    assert_eq!(s.port_of(U, MacAddr([2, 0x5a, 0, 0, 0, 0]), end), None);
    let last = (4 * MAX_ENTRIES as u32 - 1).to_be_bytes();
    let last = MacAddr([2, 0x5a, last[0], last[1], last[2], last[3]]);
    assert_eq!(s.port_of(U, last, end), Some(Port::Local));
}

#[test]
fn the_same_mac_in_two_vlans_goes_two_ways() {
    let t = Instant::now();
    let mut s = Switch::new(false);
    // B lives behind peer 0 untagged and behind peer 1 in VLAN 10.
    s.from_peer(PeerId::new(0), U, BCAST, B, t);
    s.from_peer(PeerId::new(1), V10, BCAST, B, t);
    assert_eq!(s.from_local(U, B, A, t), LocalRoute::Peer(PeerId::new(0)));
    assert_eq!(s.from_local(V10, B, A, t), LocalRoute::Peer(PeerId::new(1)));
    assert_eq!(
        s.from_local(V20, B, A, t),
        LocalRoute::Flood,
        "unknown in VLAN 20"
    );
    assert_eq!(s.port_of(U, B, t), Some(Port::Peer(PeerId::new(0))));
    assert_eq!(s.port_of(V10, B, t), Some(Port::Peer(PeerId::new(1))));
    assert_eq!(s.len(t), 5, "A in three VLANs, B in two");
    // Learning from the local side records the VLAN too: A sends in
    // VLAN 10 only, so untagged A is still unknown at the hub.
    let mut hub = Switch::new(true);
    hub.from_local(V10, BCAST, A, t);
    assert!(
        !hub.from_peer(PeerId::new(0), V10, A, B, t).flood_peers,
        "known local"
    );
    let r = hub.from_peer(PeerId::new(0), U, A, B, t);
    assert!(r.local && r.flood_peers, "untagged A is unknown: {r:?}");
}

#[test]
fn a_tagged_frame_never_matches_an_untagged_entry() {
    let t = Instant::now();
    let mut s = Switch::new(false);
    s.from_local(U, BCAST, C, t);
    // Untagged C is local: unicast to it stays home ...
    assert_eq!(s.from_local(U, C, A, t), LocalRoute::Drop);
    // ... but C in VLAN 10 is not known: flooded, not dropped.
    assert_eq!(s.from_local(V10, C, A, t), LocalRoute::Flood);
    // And the other way round.
    s.from_peer(PeerId::new(0), V10, BCAST, B, t);
    assert_eq!(s.from_local(U, B, A, t), LocalRoute::Flood);
    assert_eq!(s.port_of(U, B, t), None);
    // Forgetting a peer forgets it in every VLAN.
    s.from_peer(PeerId::new(0), U, BCAST, B, t);
    s.forget_peer(PeerId::new(0));
    assert_eq!(s.port_of(U, B, t), None);
    assert_eq!(s.port_of(V10, B, t), None);
}
