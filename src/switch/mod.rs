//! MAC learning switch between the local side (the TAP) and the peers.
//!
//! Pure: it learns which port a source MAC lives behind and says where a
//! frame goes. Promises: known unicast goes to exactly one port; broadcast,
//! multicast and unknown unicast are flooded; a frame received from one peer
//! is never sent to another peer (split horizon) unless the link is a hub;
//! the table is bounded and entries age out.
//!
//! On a hub the table also keeps each peer to its policy
//! ([`Switch::learn_from_peer`]): a peer owns at most its `max_macs`
//! entries, and an entry owned by one port (a peer, or the local side)
//! moves to another peer only once it has been silent for
//! [`MOVE_HOLD`] where it is: one forged frame takes no host's traffic.
//! The local side is trusted: what the hub's own LAN sends is learned at
//! once, as everywhere.
//!
//! VLAN-aware (SPEC §5 Switching): the table keys on (VLAN, MAC), the VLAN
//! being the frame's outer 802.1Q/802.1ad tag or none
//! ([`crate::wire::ethernet::vlan`]). The same MAC in two VLANs is two
//! entries that may live behind different ports, and a tagged frame never
//! matches an untagged entry, nor the other way round.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use crate::bridge::policy::MOVE_HOLD;
use crate::mac::MacAddr;
use crate::peer_id::PeerId;
use crate::wire::ethernet::Vlan;

/// How long a learned MAC stays valid without being seen again.
pub const AGING: Duration = Duration::from_secs(300);
/// Most MACs remembered.
pub const MAX_ENTRIES: usize = 8192;
/// How long after a host was last seen on the local side a unicast the TAP
/// reads for it is still kept home ([`LocalRoute::Drop`]); later it is
/// flooded to the peers as unknown unicast. The LAN bridge hands the TAP a
/// unicast for a local host only when it no longer knows the host's port:
/// the port went away or the LAN's shape changed (a loop through another
/// path ended), and the host may now be reachable only through a peer.
/// Trusting the old entry for [`AGING`] would cut it off until then.
pub const LOCAL_HOLD: Duration = Duration::from_secs(5);

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

/// Why a hub's switch refused a peer's source address: the frame must be
/// dropped (and counted in `policy_dropped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A new address beyond the peer's `max_macs`.
    Limit,
    /// An address another port owns and used within [`MOVE_HOLD`].
    Owned,
}

/// How often, at most, a peer at its limit makes the table drop its stale
/// entries to see whether it is still at it (each time is one pass over the
/// table).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

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

impl Entry {
    /// How long ago it was last seen, if that is within [`AGING`].
    fn live_age(&self, now: Instant) -> Option<Duration> {
        let age = now.saturating_duration_since(self.seen);
        (age < AGING).then_some(age)
    }

    fn is_live(&self, now: Instant) -> bool {
        self.live_age(now).is_some()
    }
}

/// The learning table.
pub struct Switch {
    hub: bool,
    table: HashMap<(Vlan, MacAddr), Entry>,
    /// Entries in `table` per peer (stale ones included until they go),
    /// indexed by peer; grown on demand.
    owned: Vec<u32>,
    /// When a peer at its limit may next sweep the stale entries.
    next_sweep: Option<Instant>,
}

impl Switch {
    /// A switch; `hub` allows forwarding between peers.
    pub fn new(hub: bool) -> Self {
        Switch {
            hub,
            table: HashMap::with_capacity(256),
            owned: Vec::new(),
            next_sweep: None,
        }
    }

    /// Where `mac` was learned in `vlan` and how long ago it was last seen
    /// there, if that is within [`AGING`].
    fn live(&self, vlan: Vlan, mac: MacAddr, now: Instant) -> Option<(Port, Duration)> {
        let e = self.table.get(&(vlan, mac))?;
        Some((e.port, e.live_age(now)?))
    }

    fn lookup(&self, vlan: Vlan, mac: MacAddr, now: Instant) -> Option<Port> {
        self.live(vlan, mac, now).map(|(port, _)| port)
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
            if e.port != port {
                uncount(&mut self.owned, e.port);
                count(&mut self.owned, port);
            }
            e.port = port;
            e.seen = now;
            return;
        }
        self.insert(vlan, src, port, now);
    }

    fn insert(&mut self, vlan: Vlan, src: MacAddr, port: Port, now: Instant) {
        if self.table.len() >= MAX_ENTRIES {
            self.make_room(now);
        }
        count(&mut self.owned, port);
        self.table.insert((vlan, src), Entry { port, seen: now });
    }

    /// Learns `src` in `vlan` behind peer `from`, within the hub policy
    /// when the link is a hub (else as [`Switch::learn`]): a new address
    /// only while `from` owns fewer than `max_macs` entries; an address
    /// another port owns only once it has been silent there for
    /// [`MOVE_HOLD`]. A refused frame must be dropped: what it would teach
    /// (here, and to the LANs it reaches) is what the policy forbids.
    /// Group addresses are never learned (and never refused).
    pub fn learn_from_peer(
        &mut self,
        from: PeerId,
        vlan: Vlan,
        src: MacAddr,
        max_macs: u32,
        now: Instant,
    ) -> Result<(), Refusal> {
        let port = Port::Peer(from);
        if !self.hub || src.is_group() {
            self.learn(vlan, src, port, now);
            return Ok(());
        }
        if let Some(e) = self.table.get_mut(&(vlan, src)) {
            if e.port == port {
                e.seen = now;
                return Ok(());
            }
            if now.saturating_duration_since(e.seen) < MOVE_HOLD {
                return Err(Refusal::Owned);
            }
            if owned(&self.owned, from) >= max_macs {
                return Err(Refusal::Limit);
            }
            uncount(&mut self.owned, e.port);
            count(&mut self.owned, port);
            e.port = port;
            e.seen = now;
            return Ok(());
        }
        if owned(&self.owned, from) >= max_macs {
            // Stale entries count until they go: sweep them, at most once
            // a second (a peer at its limit sending new addresses must not
            // cost a pass over the table per frame).
            if self.next_sweep.is_some_and(|t| now < t) {
                return Err(Refusal::Limit);
            }
            self.next_sweep = Some(now + SWEEP_EVERY);
            self.drop_stale(now);
            if owned(&self.owned, from) >= max_macs {
                return Err(Refusal::Limit);
            }
        }
        self.insert(vlan, src, port, now);
        Ok(())
    }

    /// Drops the entries not seen for [`AGING`].
    fn drop_stale(&mut self, now: Instant) {
        let owned = &mut self.owned;
        self.table.retain(|_, e| {
            let keep = e.is_live(now);
            if !keep {
                uncount(owned, e.port);
            }
            keep
        });
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
        self.drop_stale(now);
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
        let owned = &mut self.owned;
        self.table.retain(|_, e| {
            let c = class(e).min(23);
            let keep = if c == from && partial > 0 {
                partial -= 1;
                false
            } else {
                c <= from
            };
            if !keep {
                uncount(owned, e.port);
            }
            keep
        });
    }

    /// A frame read from the TAP, in `vlan`: learn its source, route its
    /// destination (a host seen on the local side keeps unicast for it home
    /// for [`LOCAL_HOLD`] only).
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
        match self.live(vlan, dst, now) {
            Some((Port::Peer(p), _)) => LocalRoute::Peer(p),
            Some((Port::Local, age)) if age < LOCAL_HOLD => LocalRoute::Drop,
            _ => LocalRoute::Flood,
        }
    }

    /// A frame in `vlan` that arrived from peer `from`: learn its source
    /// (without a policy: see [`Switch::learn_from_peer`]), route it.
    pub fn from_peer(
        &mut self,
        from: PeerId,
        vlan: Vlan,
        dst: MacAddr,
        src: MacAddr,
        now: Instant,
    ) -> RemoteRoute {
        self.learn(vlan, src, Port::Peer(from), now);
        self.route_from_peer(from, vlan, dst, now)
    }

    /// Where a frame in `vlan` from peer `from` to `dst` goes (its source
    /// learned already).
    pub fn route_from_peer(
        &self,
        from: PeerId,
        vlan: Vlan,
        dst: MacAddr,
        now: Instant,
    ) -> RemoteRoute {
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
        if let Some(n) = self.owned.get_mut(peer.index()) {
            *n = 0;
        }
    }

    /// Allows or stops forwarding between peers (a reload of `tunnel.hub`).
    pub fn set_hub(&mut self, hub: bool) {
        self.hub = hub;
    }

    /// Whether frames are forwarded between peers.
    pub fn is_hub(&self) -> bool {
        self.hub
    }

    /// Where `mac` was learned in `vlan`, if it is known and fresh.
    pub fn port_of(&self, vlan: Vlan, mac: MacAddr, now: Instant) -> Option<Port> {
        self.lookup(vlan, mac, now)
    }

    /// Forgets every MAC (after a topology change: a loop formed or ended,
    /// so where a MAC was learned says nothing about where it is now).
    pub fn flush(&mut self) {
        self.table.clear();
        self.owned.fill(0);
    }

    /// Live entries behind each of the first `peers` peers (for status:
    /// one pass over the table).
    pub fn peer_macs(&self, peers: usize, now: Instant) -> Vec<u64> {
        let mut out = vec![0; peers];
        for e in self.table.values() {
            if let Port::Peer(p) = e.port
                && e.is_live(now)
                && let Some(n) = out.get_mut(p.index())
            {
                *n += 1;
            }
        }
        out
    }

    /// The live entries learned behind a peer, in no order: what a box
    /// that becomes active announces to its LAN.
    pub fn remote_macs(&self, now: Instant) -> impl Iterator<Item = (Vlan, MacAddr)> + '_ {
        self.table
            .iter()
            .filter(move |(_, e)| matches!(e.port, Port::Peer(_)) && e.is_live(now))
            .map(|(k, _)| *k)
    }

    /// Number of live entries (for status).
    pub fn len(&self, now: Instant) -> usize {
        self.table.values().filter(|e| e.is_live(now)).count()
    }
}

fn owned(owned: &[u32], peer: PeerId) -> u32 {
    owned.get(peer.index()).copied().unwrap_or(0)
}

fn count(owned: &mut Vec<u32>, port: Port) {
    if let Port::Peer(p) = port {
        if owned.len() <= p.index() {
            owned.resize(p.index() + 1, 0);
        }
        owned[p] += 1;
    }
}

fn uncount(owned: &mut [u32], port: Port) {
    if let Port::Peer(p) = port
        && let Some(n) = owned.get_mut(p.index())
    {
        *n = n.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests;
