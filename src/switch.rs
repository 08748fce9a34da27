//! MAC learning switch between the local side (the TAP) and the peers.
//!
//! Pure: it learns which port a source MAC lives behind and says where a
//! frame goes. Promises: known unicast goes to exactly one port; broadcast,
//! multicast and unknown unicast are flooded; a frame received from one peer
//! is never sent to another peer (split horizon) unless the link is a hub;
//! the table is bounded and entries age out.
//!
//! VLAN-aware (SPEC §5 Switching): the table keys on (VLAN, MAC), the VLAN
//! being the frame's outer 802.1Q/802.1ad tag or none
//! ([`crate::wire::ethernet::vlan`]). The same MAC in two VLANs is two
//! entries that may live behind different ports, and a tagged frame never
//! matches an untagged entry, nor the other way round.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::mac::MacAddr;
use crate::peer_id::PeerId;
use crate::wire::ethernet::Vlan;

/// How long a learned MAC stays valid without being seen again.
pub const AGING: Duration = Duration::from_secs(300);
/// Most MACs remembered.
pub const MAX_ENTRIES: usize = 8192;

/// Where a MAC was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The TAP (this site's LAN or stack).
    Local,
    /// A tunnel peer.
    Peer(PeerId),
}

/// Where a frame from the local side goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalRoute {
    /// To one peer.
    Peer(PeerId),
    /// To every peer.
    Flood,
    /// Nowhere: the destination is on the local side itself.
    Drop,
}

/// Where a frame from a peer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteRoute {
    /// Write it to the TAP.
    pub local: bool,
    /// Hub only: also send it to this peer ...
    pub peer: Option<PeerId>,
    /// ... or to every peer but the sender.
    pub flood_peers: bool,
}

struct Entry {
    port: Port,
    seen: Instant,
}

/// The learning table.
pub struct Switch {
    hub: bool,
    table: HashMap<(Vlan, MacAddr), Entry>,
}

impl Switch {
    /// A switch; `hub` allows forwarding between peers.
    pub fn new(hub: bool) -> Self {
        Switch {
            hub,
            table: HashMap::with_capacity(256),
        }
    }

    fn lookup(&self, vlan: Vlan, mac: MacAddr, now: Instant) -> Option<Port> {
        self.table
            .get(&(vlan, mac))
            .filter(|e| now.saturating_duration_since(e.seen) < AGING)
            .map(|e| e.port)
    }

    /// Records that `src` was seen in `vlan` behind `port`. Group addresses
    /// are never learned. A full table makes room (the stale entries, else
    /// the eighth seen longest ago): a new address is always learned, so a
    /// host that talks after a flood of made-up source addresses is still
    /// known, and still seen when it moves (which is how a loop is first
    /// suspected).
    pub fn learn(&mut self, vlan: Vlan, src: MacAddr, port: Port, now: Instant) {
        if src.is_group() {
            return;
        }
        if let Some(e) = self.table.get_mut(&(vlan, src)) {
            e.port = port;
            e.seen = now;
            return;
        }
        if self.table.len() >= MAX_ENTRIES {
            self.make_room(now);
        }
        self.table.insert((vlan, src), Entry { port, seen: now });
    }

    /// Frees at least an eighth of a full table: the stale entries, else the
    /// ones seen longest ago. Two passes over the table, no allocation; as
    /// each call frees [`MAX_ENTRIES`]` / 8` or more, a stream of new
    /// addresses costs a few steps per address.
    ///
    /// Before, a full table of fresh entries learned nothing new: a storm
    /// of random source addresses left the real hosts unknown for
    /// [`AGING`], so no MAC move was seen and a loop formed meanwhile went
    /// undetected.
    fn make_room(&mut self, now: Instant) {
        self.table
            .retain(|_, e| now.saturating_duration_since(e.seen) < AGING);
        if self.table.len() < MAX_ENTRIES {
            return;
        }
        // Ages in power-of-two classes of milliseconds: class c holds ages
        // in [2^(c-1), 2^c) ms, class 0 under 1 ms. AGING is under 2^19 ms.
        let class = |e: &Entry| {
            let ms = now.saturating_duration_since(e.seen).as_millis();
            (u128::BITS - ms.leading_zeros()) as usize
        };
        let mut counts = [0usize; 24];
        for e in self.table.values() {
            counts[class(e).min(23)] += 1;
        }
        // The oldest classes go whole; from the youngest class needed, only
        // as many as make up an eighth (which of them is arbitrary).
        let need = MAX_ENTRIES / 8;
        let (mut from, mut older) = (counts.len(), 0);
        while from > 0 && older + counts[from - 1] < need {
            from -= 1;
            older += counts[from];
        }
        let Some(from) = from.checked_sub(1) else {
            return;
        };
        let mut partial = need - older;
        self.table.retain(|_, e| {
            let c = class(e).min(23);
            if c == from && partial > 0 {
                partial -= 1;
                return false;
            }
            c <= from
        });
    }

    /// A frame read from the TAP, in `vlan`: learn its source, route its
    /// destination.
    pub fn from_local(
        &mut self,
        vlan: Vlan,
        dst: MacAddr,
        src: MacAddr,
        now: Instant,
    ) -> LocalRoute {
        self.learn(vlan, src, Port::Local, now);
        if dst.is_group() {
            return LocalRoute::Flood;
        }
        match self.lookup(vlan, dst, now) {
            Some(Port::Peer(p)) => LocalRoute::Peer(p),
            Some(Port::Local) => LocalRoute::Drop,
            None => LocalRoute::Flood,
        }
    }

    /// A frame in `vlan` that arrived from peer `from`: learn its source,
    /// route it.
    pub fn from_peer(
        &mut self,
        from: PeerId,
        vlan: Vlan,
        dst: MacAddr,
        src: MacAddr,
        now: Instant,
    ) -> RemoteRoute {
        self.learn(vlan, src, Port::Peer(from), now);
        let local_only = RemoteRoute {
            local: true,
            peer: None,
            flood_peers: false,
        };
        if !self.hub {
            return local_only;
        }
        if dst.is_group() {
            return RemoteRoute {
                flood_peers: true,
                ..local_only
            };
        }
        match self.lookup(vlan, dst, now) {
            Some(Port::Local) => local_only,
            Some(Port::Peer(p)) if p == from => RemoteRoute {
                local: false,
                peer: None,
                flood_peers: false,
            },
            Some(Port::Peer(p)) => RemoteRoute {
                local: false,
                peer: Some(p),
                flood_peers: false,
            },
            None => RemoteRoute {
                flood_peers: true,
                ..local_only
            },
        }
    }

    /// Forgets every MAC learned behind `peer` (it was removed).
    pub fn forget_peer(&mut self, peer: PeerId) {
        self.table.retain(|_, e| e.port != Port::Peer(peer));
    }

    /// Allows or stops forwarding between peers (a reload of `tunnel.hub`).
    pub fn set_hub(&mut self, hub: bool) {
        self.hub = hub;
    }

    /// Where `mac` was learned in `vlan`, if it is known and fresh.
    pub fn port_of(&self, vlan: Vlan, mac: MacAddr, now: Instant) -> Option<Port> {
        self.lookup(vlan, mac, now)
    }

    /// Forgets every MAC (after a topology change: a loop formed or ended,
    /// so where a MAC was learned says nothing about where it is now).
    pub fn flush(&mut self) {
        self.table.clear();
    }

    /// Number of live entries (for status).
    pub fn len(&self, now: Instant) -> usize {
        self.table
            .values()
            .filter(|e| now.saturating_duration_since(e.seen) < AGING)
            .count()
    }
}

#[cfg(test)]
mod tests {
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
}
