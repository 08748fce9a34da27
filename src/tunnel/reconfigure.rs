//! Reconfiguring a running [`Tunnel`] from outside its message flow: what a
//! configuration reload changes (peers added and removed, new keys,
//! endpoints, transport, timers) and what the shell learns along the way (a
//! peer's host name resolved, a TCP connection closed, the kernel's path MTU
//! towards a peer). Also moving a peer to another of its configured
//! addresses, whether a reload or a round of path probes chose it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::keys::{IncomingKeys, KeySlot, PresharedKey};
use super::peer::{Peer, PeerParams};
use super::pmtu::PathMtu;
use super::transport::TransportMode;
use super::tunnel::{Event, PeerId, Tunnel, new_pmtu};

impl Tunnel {
    /// Replaces the keys of peer `id` (a key rotation or revocation).
    /// Sessions already established keep running until they are replaced at
    /// the next rekey, which uses the new keys; a handshake in flight under
    /// a key that is gone is restarted.
    pub fn set_peer_keys(&mut self, id: PeerId, keys: Vec<PresharedKey>, now: Instant) {
        self.touch_all();
        let Some(pp) = self.params.peers.get_mut(id.index()) else {
            return;
        };
        // The same keys again: what is derived from them (per peer and in
        // the link's table) would come out the same, so it is kept; the
        // handshake state is reset all the same. The tunnel fuzz target
        // restarts a handshake this way for each initiation of a flood.
        let same = pp.keys.len() == keys.len()
            && pp
                .keys
                .iter()
                .zip(&keys)
                .all(|(a, b)| bool::from(a.bytes().ct_eq(b.bytes())));
        pp.keys = keys;
        if !same {
            let slots = pp
                .keys
                .iter()
                .map(|k| KeySlot::new(k, &self.params.local_name, &pp.name))
                .collect();
            self.peers[id].keys = slots;
            self.incoming = IncomingKeys::new(&self.params.local_name, &self.params.peers);
        }
        let p = &mut self.peers[id];
        p.first_key_worked = false;
        p.cookie = None;
        if let Some(old) = p.pending.take() {
            self.index.remove(&old.local_index);
            p.timers.retransmit = None;
            p.timers.rekey = Some(now);
        }
    }

    /// Adds a peer (a reload). It is contacted at once if it has an
    /// endpoint. The id of a removed peer is reused, so ids stay small.
    pub fn add_peer(&mut self, params: PeerParams, now: Instant) -> PeerId {
        self.touch_all();
        let pmtu = new_pmtu(&self.params);
        let peer = Peer::new(
            &params,
            &self.params.local_name,
            self.params.max_frame,
            pmtu,
            self.params.transport,
            now,
        );
        let id = match self.peers.iter().position(|p| p.removed).map(PeerId::new) {
            Some(id) => {
                self.peers[id] = peer;
                self.params.peers[id] = params;
                id
            }
            None => {
                self.peers.push(peer);
                self.params.peers.push(params);
                PeerId::new(self.peers.len() - 1)
            }
        };
        self.incoming = IncomingKeys::new(&self.params.local_name, &self.params.peers);
        id
    }

    /// Removes peer `id` (a reload): its sessions and pending handshake end
    /// at once (datagrams for them are unknown sessions from now on), its
    /// queued frames are dropped, and its keys no longer authenticate
    /// anything. Its counters disappear from the status with it.
    pub fn remove_peer(&mut self, id: PeerId, now: Instant) {
        self.touch_all();
        let Some(p) = self.peers.get(id.index()).filter(|p| !p.removed) else {
            return;
        };
        let indices: Vec<u32> = [&p.current, &p.next]
            .into_iter()
            .chain(p.older.iter())
            .flatten()
            .map(|s| s.local_index)
            .chain(p.pending.as_ref().map(|h| h.local_index))
            .collect();
        for i in indices {
            self.index.remove(&i);
        }
        // And the indices reserved for responses whose DH the shell is
        // doing (`deferred.rs`): their sessions must not go to whoever
        // takes this id next.
        self.index.retain(|_, owner| *owner != id);
        self.jobs.retain(|j| j.peer() != id);
        let params = PeerParams {
            name: String::new(),
            keys: Vec::new(),
            endpoints: Vec::new(),
        };
        let pmtu = PathMtu::fixed(self.params.wan_mtu);
        let mut inert = Peer::new(
            &params,
            &self.params.local_name,
            self.params.max_frame,
            pmtu,
            self.params.transport,
            now,
        );
        inert.removed = true;
        self.peers[id] = inert;
        self.params.peers[id] = params;
        self.incoming = IncomingKeys::new(&self.params.local_name, &self.params.peers);
    }

    /// Sets the configured endpoint of peer `id`: a single address, or
    /// `None` to keep the current one (see
    /// [`set_peer_endpoints`](Self::set_peer_endpoints)).
    pub fn set_peer_endpoint(&mut self, id: PeerId, endpoint: Option<SocketAddr>, now: Instant) {
        self.touch_all();
        self.set_peer_endpoints(id, &[endpoint], now);
    }

    /// Sets the configured endpoints of peer `id` in order of preference
    /// (a reload); `None` stands for a host name not resolved yet. If the
    /// address in use is not the most preferred known one, the peer moves
    /// there and is contacted at once with a fresh handshake; until it
    /// completes, the running session keeps carrying frames to the new
    /// address (the peer accepts them wherever they come from). Without any
    /// known address the current endpoint stays as it is: the peer may keep
    /// roaming to us.
    pub fn set_peer_endpoints(
        &mut self,
        id: PeerId,
        endpoints: &[Option<SocketAddr>],
        now: Instant,
    ) {
        self.touch_all();
        let Some(p) = self.peers.get_mut(id.index()).filter(|p| !p.removed) else {
            return;
        };
        self.params.peers[id].endpoints = endpoints.iter().flatten().copied().collect();
        p.uplinks.set(endpoints, p.endpoint);
        self.retarget(id, now);
    }

    /// A host name in peer `id`'s endpoint list (position `slot`) resolved
    /// to `addr`. If that makes another address the one to use (the most
    /// preferred known one, or the address in use is not configured at
    /// all), the peer moves there and handshakes at once.
    pub fn set_peer_endpoint_at(
        &mut self,
        id: PeerId,
        slot: usize,
        addr: SocketAddr,
        now: Instant,
    ) {
        self.touch_all();
        let Some(p) = self.peers.get_mut(id.index()).filter(|p| !p.removed) else {
            return;
        };
        if !p.uplinks.set_slot(slot, addr, p.endpoint) {
            return;
        }
        self.params.peers[id].endpoints =
            p.uplinks.configured().iter().flatten().copied().collect();
        self.retarget(id, now);
    }

    /// Points peer `id` at its most preferred known address, with a fresh
    /// handshake, unless it is already there.
    fn retarget(&mut self, id: PeerId, now: Instant) {
        let p = &mut self.peers[id];
        let Some(to) = p.uplinks.best() else {
            return;
        };
        if p.endpoint == Some(to) {
            return;
        }
        let from = p.endpoint.replace(to);
        p.uplinks.moved(Some(to), now);
        if from.is_some() {
            p.stats.endpoint_changes += 1;
        }
        self.events
            .push_back(Event::EndpointMoved { peer: id, from, to });
        if let Some(mtu) = p.pmtu.reset(now) {
            self.events.push_back(Event::PathMtuChanged {
                peer: id,
                mtu,
                lost: false,
            });
        }
        if let Some(old) = p.pending.take() {
            self.index.remove(&old.local_index);
            p.timers.retransmit = None;
        }
        p.attempts = 0;
        p.timers.rekey = Some(now);
    }

    /// A new `tunnel.transport` (a reload). Peers whose messages change
    /// transport get a fresh handshake over the new one at once; until it
    /// completes, their session carries frames the new way (the other site
    /// takes authentic messages however they come).
    pub fn set_transport(&mut self, mode: TransportMode, now: Instant) {
        self.touch_all();
        self.params.transport = mode;
        for (i, p) in self.peers.iter_mut().enumerate() {
            if p.removed || !p.transport.set_mode(mode) {
                continue;
            }
            self.events.push_back(Event::TransportChanged {
                peer: PeerId::new(i),
                tcp: p.transport.tcp(),
            });
            if let Some(old) = p.pending.take() {
                self.index.remove(&old.local_index);
                p.timers.retransmit = None;
            }
            p.attempts = 0;
            p.timers.rekey = Some(now);
        }
    }

    /// The TCP connection named `conn` closed: peers that were reached
    /// over it are reached at their endpoint again (a new connection), or
    /// wait to be contacted.
    pub fn stream_closed(&mut self, conn: SocketAddr) {
        self.touch_all();
        for p in &mut self.peers {
            p.transport.forget_stream(conn);
        }
    }

    /// New keepalive and rekey intervals (a reload). Timers already running
    /// keep their deadline; the next ones use the new values.
    pub fn set_timers(&mut self, keepalive: Duration, rekey_after: Duration) {
        self.touch_all();
        self.params.keepalive = keepalive;
        self.params.rekey_after = rekey_after;
    }

    /// The WAN side's own limit towards peer `id`'s endpoint, as the kernel
    /// knows it (the route's MTU, lowered by any ICMP "fragmentation
    /// needed" it has seen): the ceiling of the path MTU search. A hint:
    /// only acknowledged probes raise the size in use.
    pub fn set_path_ceiling(&mut self, id: PeerId, mtu: usize, now: Instant) {
        self.touch_all();
        let Some(p) = self.peers.get_mut(id.index()).filter(|p| !p.removed) else {
            return;
        };
        if let Some(mtu) = p.pmtu.set_ceiling(mtu, now) {
            self.events.push_back(Event::PathMtuChanged {
                peer: id,
                mtu,
                lost: true,
            });
        }
    }

    /// Moves peer `id` to its configured address at `slot` (a path probe
    /// round chose it). The session stays: the other site takes
    /// authenticated packets from anywhere.
    pub(super) fn move_to_slot(&mut self, id: PeerId, slot: usize, now: Instant) {
        if let Some(to) = self.peers[id].uplinks.addr(slot) {
            self.move_endpoint(id, to, now);
        }
    }
}
