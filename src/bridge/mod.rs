//! The bridge: the whole layer-2 pipeline between the TAP and the peers, in
//! one pure place. Frames and `Instant`s in; what to do with them out,
//! through a [`Sink`]. No socket, no clock, no lock, no allocation per
//! frame: the worker (the I/O shell) reads, calls in, and carries out what
//! the sink was told.
//!
//! A frame is classified once ([`crate::wire::ethernet::classify`]) and the
//! one view travels through every stage:
//!
//! From the TAP ([`Bridge::from_tap`]):
//! 1. the responder may answer it (ARP, ND, DHCP: [`Sink::reply`]) or take
//!    it (a DHCP message for us, a frame to our own MAC); nothing else sees
//!    such a frame;
//! 2. the guards: a loop probe (ours coming back is a loop; anyone's is
//!    dropped), a BPDU with `guard.bpdu = "drop"`;
//! 3. a source MAC learned behind a peer and now seen here is a move (a
//!    loop sign, [`Guard::mac_moved`]);
//! 4. the switch learns the source and picks the destination: one peer,
//!    nobody (local), or a flood, which storm control may refuse;
//! 5. never to a peer a loop runs through ([`Guard::allow_to_peer`]).
//!
//! From a peer ([`Bridge::from_peer`]):
//! 1. a virtio-net header the peer's kernel could not have written is
//!    refused (counted in `rx_malformed`);
//! 2. the guards: a loop probe goes to the TAP only; nothing from a peer a
//!    loop runs through; DHCP/RA server messages and BPDUs per policy;
//! 3. the peer's policy pins ([`PeerPolicy::admits`]: `macs`, `vlans`);
//! 4. a source MAC learned locally and now seen from a peer is a move;
//! 5. the switch learns the source, at a hub within the peer's policy
//!    ([`Switch::learn_from_peer`]: `max_macs`, no MAC taken from another
//!    port that used it within [`policy::MOVE_HOLD`]); a refused frame is
//!    dropped;
//! 6. the responder learns ARP/ND bindings and drops DHCP for the local
//!    server;
//! 7. the switch routes: to the TAP, and at a hub on to one peer or every
//!    other peer ([`Bridge::relay`], split horizon without a hub), never
//!    back to the sender nor to a peer a loop runs through, never between
//!    a peer with `isolate` and another peer; relayed floods are
//!    storm-limited per source peer ([`Guard::allow_relay_flood`]).
//!
//! What a policy refuses is counted in `policy_dropped`
//! ([`GuardCounters::policy_dropped`]).
//!
//! A box of a high-availability pair may be the **standby**
//! ([`Bridge::set_role`]): then nothing passes either way and nothing is
//! answered or probed; the TAP stays as it is. Becoming active again
//! announces the responder's addresses (gratuitous ARP) and every MAC
//! learned behind a peer (one RARP frame each), so LAN switches move them to
//! this box at once.
//!
//! Timers ([`Bridge::handle_timeout`]): loop probes, loop hold-downs (a
//! start or end flushes the MAC table and is reported as a [`LoopEvent`]), and
//! the responder's own frames (conflict-check ARP probes, held offers).

pub mod policy;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;

use std::time::{Instant, SystemTime};

use crate::guard::{self, Guard, GuardConfig, GuardCounters, LoopEvent, PeerVerdict};
use crate::leases::LeaseChange;
use crate::mac::MacAddr;
use crate::peer_id::PeerId;
use crate::responder::{LocalVerdict, OwnFrame, RemoteVerdict, Responder};
use crate::role::Role;
use crate::switch::{LocalRoute, Port, RemoteRoute, Switch};
use crate::wire::ethernet::{self, Class};
use crate::wire::virtio::{F_NEEDS_CSUM, VirtioNetHdr};

pub use policy::PeerPolicy;

/// The policy of a peer without one of its own (beyond the configured
/// peers, e.g. while a reload adds some).
static DEFAULT_POLICY: PeerPolicy = PeerPolicy {
    isolate: false,
    max_macs: policy::DEFAULT_MAX_MACS,
    macs: Vec::new(),
    vlans: None,
};

/// Where frames for the TAP go: all a frame from a peer can lead to
/// directly (what a hub sends on goes through [`Bridge::relay`], once the
/// frame no longer borrows the tunnel).
///
/// Every `packet` is a TAP packet: the virtio-net header (if the link uses
/// one) and the frame.
pub trait ToTap {
    /// Write `packet` to the TAP.
    fn to_tap(&mut self, packet: &[u8]);
}

/// Where the bridge's decisions go. The worker implements it over the TAP,
/// the tunnel and the lease store; tests record what they are told.
pub trait Sink: ToTap {
    /// Write the responder's answer `packet` to the TAP. `leases` are the
    /// lease changes it depends on (an ACK must not reach the client before
    /// its lease is durable): the sink takes them (leaving `leases` empty),
    /// and holds the answer until they are on disk.
    fn reply(&mut self, packet: &[u8], leases: &mut Vec<LeaseChange>);
    /// Send `packet` to `peer` through the tunnel.
    fn to_peer(&mut self, peer: PeerId, packet: &[u8]);
    /// Whether `peer` has a session (loop probes go only to those).
    fn peer_up(&self, peer: PeerId) -> bool;
}

/// What became of a frame read from the TAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapOutcome {
    /// The responder answered or took it: lease changes may be pending.
    Answered,
    /// It went where the switch said (possibly nowhere).
    Forwarded,
    /// Too short, or dropped by a guard.
    Dropped,
}

/// A frame from a peer that a hub sends on to other peers: hand it to
/// [`Bridge::relay`] with the same packet (copied out of the tunnel's
/// buffers first, as it may borrow them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a hub's frame goes nowhere until it is relayed"]
pub struct Relay {
    from: PeerId,
    route: RemoteRoute,
}

/// What the bridge counted that the status reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeCounters {
    /// Frames from peers with a virtio-net header their kernel could not
    /// have written (part of `rx_malformed`).
    pub rx_bad_vnet_hdr: u64,
}

/// The layer-2 pipeline of one link.
pub struct Bridge {
    switch: Switch,
    guard: Guard,
    responder: Option<Responder>,
    /// Length of the virtio-net header before each frame (0: none).
    vnet_hdr: usize,
    /// Peers are numbered `0..peers`.
    peers: usize,
    counters: BridgeCounters,
    /// The responder's answer, its header space included.
    reply: Vec<u8>,
    /// A loop probe, its header space included.
    probe: Vec<u8>,
    /// Lease changes on their way to the sink.
    leases: Vec<LeaseChange>,
    /// [`Guard::events_queued`] when the MAC table was last flushed for them.
    events_seen: u64,
    /// Each peer's policy, indexed by peer (missing: the default).
    policies: Vec<PeerPolicy>,
    /// Forwarding between peers is on (`tunnel.hub`).
    hub: bool,
    /// Active, or standby: nothing passes.
    role: Role,
    /// Announce to the LAN on becoming active (`ha.announce`).
    announce: bool,
}

impl Bridge {
    /// The pipeline of a link with `peers` peers. `vnet_hdr`: the length of
    /// the virtio-net header before each frame (0 without offloads).
    pub fn new(
        switch: Switch,
        guard: Guard,
        responder: Option<Responder>,
        vnet_hdr: usize,
        peers: usize,
    ) -> Bridge {
        let hub = switch.is_hub();
        let mut bridge = Bridge {
            switch,
            guard,
            responder,
            vnet_hdr,
            peers: 0,
            counters: BridgeCounters::default(),
            reply: vec![0; vnet_hdr + crate::responder::REPLY_BUFFER_LEN],
            probe: vec![0; vnet_hdr + guard::PROBE_LEN],
            leases: Vec::with_capacity(16),
            events_seen: 0,
            policies: Vec::new(),
            hub,
            role: Role::Active,
            announce: true,
        };
        bridge.set_peer_count(peers);
        bridge
    }

    /// A frame read from the TAP: answer it, or send it where it goes.
    /// `packet` is mutable because a DHCP request whose UDP checksum the
    /// kernel left for "hardware" is completed in place before the
    /// responder checks it.
    pub fn from_tap(
        &mut self,
        packet: &mut [u8],
        now: Instant,
        wall: SystemTime,
        out: &mut impl Sink,
    ) -> TapOutcome {
        let h = self.vnet_hdr;
        if packet.len() < h + 14 || self.role == Role::Standby {
            return TapOutcome::Dropped;
        }
        let class = ethernet::classify(&packet[h..]);
        if let Some(r) = self.responder.as_mut() {
            if h > 0
                && is_dhcp_to_server(&class)
                && VirtioNetHdr::new_checked(&packet[..h])
                    .is_some_and(|v| v.flags() & F_NEEDS_CSUM != 0)
            {
                crate::wire::virtio::finish_checksum(packet);
            }
            let reply = &mut self.reply[h..];
            match r.handle_local_classified(&packet[h..], &class, now, wall, reply) {
                LocalVerdict::Forward => {}
                LocalVerdict::Consumed => return TapOutcome::Answered,
                LocalVerdict::Reply(len) => {
                    self.reply[..h].fill(0); // plain frame: no offload
                    r.take_lease_changes(&mut self.leases);
                    out.reply(&self.reply[..h + len], &mut self.leases);
                    self.leases.clear();
                    return TapOutcome::Answered;
                }
            }
        }
        let packet = &*packet;
        let frame = &packet[h..];
        match self.guard.from_local(frame, now) {
            guard::LocalVerdict::Forward => {}
            guard::LocalVerdict::Drop => return TapOutcome::Dropped,
            guard::LocalVerdict::Return => {
                // Another site's probe reached our LAN: back into the
                // tunnel once, marked, so its sender learns which LANs
                // are joined. A storm of made-up probes is a storm.
                if self.guard.allow_flood(now) {
                    let n = guard::PROBE_LEN.min(frame.len());
                    self.probe[..h].fill(0); // plain frame: no offload
                    self.probe[h..h + n].copy_from_slice(&frame[..n]);
                    guard::mark_returned(&mut self.probe[h..]);
                    for p in PeerId::all(self.peers) {
                        if out.peer_up(p) {
                            out.to_peer(p, &self.probe[..h + n]);
                        }
                    }
                }
                return TapOutcome::Dropped;
            }
        }
        let (dst, src) = addresses(frame);
        if self.guard.watches_moves()
            && matches!(
                self.switch.port_of(class.vlan, src, now),
                Some(Port::Peer(_))
            )
        {
            self.guard.mac_moved(now);
        }
        match self.switch.from_local(class.vlan, dst, src, now) {
            LocalRoute::Peer(p) => {
                if self.guard.allow_to_peer(p) {
                    out.to_peer(p, packet);
                }
            }
            // Broadcast, multicast, unknown unicast: storm control.
            LocalRoute::Flood if !self.guard.allow_flood(now) => {}
            LocalRoute::Flood => {
                for p in PeerId::all(self.peers) {
                    if self.guard.allow_to_peer(p) {
                        out.to_peer(p, packet);
                    }
                }
            }
            LocalRoute::Drop => {}
        }
        TapOutcome::Forwarded
    }

    /// An authenticated frame from `peer`: to the TAP if it goes there. At
    /// a hub, a frame that goes on to other peers comes back as a
    /// [`Relay`] for [`Bridge::relay`].
    pub fn from_peer(
        &mut self,
        peer: PeerId,
        packet: &[u8],
        now: Instant,
        out: &mut impl ToTap,
    ) -> Option<Relay> {
        let h = self.vnet_hdr;
        if packet.len() < h + 14 || self.role == Role::Standby {
            return None;
        }
        if h > 0
            && !VirtioNetHdr::new_checked(&packet[..h]).is_some_and(|v| v.is_sane(packet.len() - h))
        {
            // The peer's kernel would never write this header; ours is not
            // handed what a buggy or hostile (but authenticated) peer made
            // up.
            self.counters.rx_bad_vnet_hdr += 1;
            return None;
        }
        let frame = &packet[h..];
        let class = ethernet::classify(frame);
        match self
            .guard
            .from_peer_classified(frame, Some(&class), peer, now)
        {
            PeerVerdict::Forward => {}
            PeerVerdict::Drop => return None,
            PeerVerdict::Probe => {
                // Out to our LAN only: if it comes back to the peer's TAP,
                // its LAN and ours are also joined.
                out.to_tap(packet);
                return None;
            }
        }
        let (dst, src) = addresses(frame);
        let policy = self.policies.get(peer.index()).unwrap_or(&DEFAULT_POLICY);
        if !policy.admits(class.vlan, src) {
            self.guard.policy_dropped();
            return None;
        }
        if self.guard.watches_moves() {
            // A MAC seen on our side, or (at a hub) behind another peer,
            // now comes from this one: a loop may have formed.
            let moved = match self.switch.port_of(class.vlan, src, now) {
                Some(Port::Local) => true,
                Some(Port::Peer(other)) => self.hub && other != peer,
                None => false,
            };
            if moved {
                self.guard.mac_moved(now);
            }
        }
        if self
            .switch
            .learn_from_peer(peer, class.vlan, src, policy.max_macs, now)
            .is_err()
        {
            self.guard.policy_dropped();
            return None;
        }
        let isolated = policy.isolate;
        if let Some(r) = self.responder.as_mut() {
            if r.handle_remote_classified(frame, &class, peer, now) == RemoteVerdict::Drop {
                return None;
            }
        }
        let mut route = self.switch.route_from_peer(peer, class.vlan, dst, now);
        if let Some(to) = route.peer
            && (isolated || self.isolated(to))
        {
            // Known unicast to another spoke, across an isolation.
            route.peer = None;
            self.guard.policy_dropped();
        }
        if let Some(to) = route.peer
            && !self.guard.allow_relay(peer, to)
        {
            // The two LANs are joined another way (a loop behind us).
            route.peer = None;
        }
        if route.flood_peers && (isolated || !self.guard.allow_relay_flood(peer, now)) {
            route.flood_peers = false;
        }
        if route.local {
            out.to_tap(packet);
        }
        (route.peer.is_some() || route.flood_peers).then_some(Relay { from: peer, route })
    }

    /// Whether `peer` is kept from other peers (`isolate`, at a hub).
    fn isolated(&self, peer: PeerId) -> bool {
        self.hub && self.policies.get(peer.index()).is_some_and(|p| p.isolate)
    }

    /// Sends a hub's frame on (`packet`: the one [`Bridge::from_peer`] was
    /// given): to the one peer the destination lives behind, or to every
    /// peer but the sender; never to a peer a loop runs through.
    pub fn relay(&mut self, relay: Relay, packet: &[u8], out: &mut impl Sink) {
        let Relay { from, route } = relay;
        for p in PeerId::all(self.peers) {
            if p != from
                && (route.flood_peers || route.peer == Some(p))
                && !self.isolated(p)
                && self.guard.allow_relay(from, p)
            {
                out.to_peer(p, packet);
            }
        }
    }

    /// When [`Bridge::handle_timeout`] wants to run next (`None`: nothing
    /// scheduled).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let held = self.responder.as_ref().and_then(|r| r.poll_timeout());
        match (self.guard.poll_timeout(), held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs what is due at `now`: loop hold-downs end, a round of loop
    /// probes to every peer that is up, loop events (the MAC table is
    /// flushed on each), the responder's own frames (an ARP probe for an
    /// address about to be offered is due as soon as the DISCOVER was
    /// handled). Call after each batch of frames and when
    /// [`Bridge::poll_timeout`] is due; calling it more often is harmless.
    pub fn handle_timeout(&mut self, now: Instant, wall: SystemTime, out: &mut impl Sink) {
        if self.guard.poll_timeout().is_some_and(|t| t <= now) {
            self.guard_timers(now, out);
        }
        let Some(r) = self.responder.as_mut() else {
            return;
        };
        let h = self.vnet_hdr;
        while let Some(t) = r.poll_transmit(now, wall, &mut self.reply[h..]) {
            if self.role == Role::Standby {
                // Held since before the demotion: the active box answers now.
                continue;
            }
            self.reply[..h].fill(0); // plain frame: no offload
            let (len, flood) = match t {
                OwnFrame::Local(n) => (n, false),
                OwnFrame::Probe(n) => (n, true),
            };
            let packet = &self.reply[..h + len];
            out.to_tap(packet);
            if flood && self.guard.allow_flood(now) {
                for p in PeerId::all(self.peers) {
                    out.to_peer(p, packet);
                }
            }
        }
    }

    fn guard_timers(&mut self, now: Instant, out: &mut impl Sink) {
        self.guard.handle_timeout(now);
        // A standby sends no loop probes (the round is used up all the same).
        if self.guard.poll_probe(now) && self.role == Role::Active {
            let h = self.vnet_hdr;
            self.probe[..h].fill(0); // plain frame: no offload
            for p in PeerId::all(self.peers) {
                if !out.peer_up(p) {
                    continue;
                }
                // Each peer's probe names it: the one that comes back tells
                // whose LAN also reaches ours.
                self.probe[h..].copy_from_slice(self.guard.probe_for(p));
                out.to_peer(p, &self.probe);
            }
        }
        if self.guard.events_queued() != self.events_seen {
            // A loop started or ended: where a MAC was learned says nothing
            // about where it is now.
            self.events_seen = self.guard.events_queued();
            self.switch.flush();
        }
    }

    /// The box's role now.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether becoming active announces to the LAN (`ha.announce`;
    /// default on).
    pub fn set_announce(&mut self, on: bool) {
        self.announce = on;
    }

    /// Makes this box active or standby; takes effect with the next frame
    /// (a demotion stops forwarding at once). Becoming active (from standby)
    /// with announcements on writes to the TAP one gratuitous ARP per
    /// address the responder answers for and one RARP frame per MAC learned
    /// behind a peer. Returns the role before.
    pub fn set_role(&mut self, role: Role, now: Instant, out: &mut impl ToTap) -> Role {
        let old = std::mem::replace(&mut self.role, role);
        if old == Role::Standby && role == Role::Active && self.announce {
            self.announce_to_lan(now, out);
        }
        old
    }

    /// Announcements to the LAN: see [`Bridge::set_role`]. Returns how many
    /// frames were written.
    pub fn announce_to_lan(&mut self, now: Instant, out: &mut impl ToTap) -> usize {
        let h = self.vnet_hdr;
        let mut sent = 0;
        self.reply[..h].fill(0); // plain frames: no offload
        if let Some(r) = &self.responder {
            for &(ip, mac) in r.own_addresses() {
                if let Some(n) = crate::responder::arp::gratuitous(ip, mac, &mut self.reply[h..]) {
                    out.to_tap(&self.reply[..h + n]);
                    sent += 1;
                }
            }
        }
        for (vlan, mac) in self.switch.remote_macs(now) {
            let tag = match vlan {
                ethernet::Vlan::Untagged => None,
                ethernet::Vlan::Tagged(vid) => Some(vid),
            };
            if let Some(n) =
                crate::responder::arp::rarp_announcement(mac, tag, &mut self.reply[h..])
            {
                out.to_tap(&self.reply[..h + n]);
                sent += 1;
            }
        }
        sent
    }

    /// The MACs learned behind peers, with their VLAN (`None`: untagged):
    /// what the active box of a pair lists to its partner.
    pub fn remote_macs(&self, now: Instant) -> impl Iterator<Item = (Option<u16>, MacAddr)> + '_ {
        self.switch.remote_macs(now).map(|(vlan, mac)| match vlan {
            ethernet::Vlan::Untagged => (None, mac),
            ethernet::Vlan::Tagged(vid) => (Some(vid), mac),
        })
    }

    /// One RARP frame per MAC of `macs` to the TAP (the remote MACs the
    /// partner of a pair listed, announced on promotion besides this box's
    /// own: see [`Bridge::set_role`]). Returns how many were written.
    pub fn announce_macs(
        &mut self,
        macs: &[(Option<u16>, MacAddr)],
        out: &mut impl ToTap,
    ) -> usize {
        let h = self.vnet_hdr;
        self.reply[..h].fill(0);
        let mut sent = 0;
        for &(vlan, mac) in macs {
            if let Some(n) =
                crate::responder::arp::rarp_announcement(mac, vlan, &mut self.reply[h..])
            {
                out.to_tap(&self.reply[..h + n]);
                sent += 1;
            }
        }
        sent
    }

    /// The next loop start or end, if any: for the log and, in bridged
    /// mode, for the Linux bridge to forget what it learned on the TAP's
    /// port (the bridge's own MAC table was flushed already).
    pub fn poll_event(&mut self) -> Option<LoopEvent> {
        self.guard.poll_event()
    }

    /// Lease changes of frames that got no answer (a RELEASE, a DECLINE),
    /// for the lease store: call once per batch.
    pub fn take_lease_changes(&mut self, out: &mut Vec<LeaseChange>) {
        if let Some(r) = self.responder.as_mut() {
            r.take_lease_changes(out);
        }
    }

    /// Peers are now numbered `0..n` (a reload added some).
    pub fn set_peer_count(&mut self, n: usize) {
        self.peers = n;
        self.guard.set_peer_count(n);
    }

    /// `peer` was removed: nothing learned from or about it stays.
    pub fn forget_peer(&mut self, peer: PeerId, now: Instant) {
        if let Some(r) = self.responder.as_mut() {
            r.forget_peer(peer);
        }
        self.switch.forget_peer(peer);
        self.guard.forget_peer(peer, now);
    }

    /// `peer`'s session went down: the ARP/ND bindings it taught may be
    /// stale, so they are no longer answered.
    pub fn peer_down(&mut self, peer: PeerId) {
        if let Some(r) = self.responder.as_mut() {
            r.forget_peer(peer);
        }
    }

    /// Allows or stops forwarding between peers (`tunnel.hub`).
    pub fn set_hub(&mut self, hub: bool) {
        self.hub = hub;
        self.switch.set_hub(hub);
    }

    /// Each peer's policy, in peer order (start-up, and after every
    /// reload: a peer beyond the list has the default). Takes effect with
    /// the next frame; MACs a peer already owns beyond a lowered
    /// `max_macs` stay until they age out.
    pub fn set_policies(&mut self, policies: Vec<PeerPolicy>) {
        self.policies = policies;
    }

    /// The source MACs each peer owns now (live MAC table entries), in
    /// peer order, for status.
    pub fn peer_macs(&self, now: Instant) -> Vec<u64> {
        self.switch.peer_macs(self.peers, now)
    }

    /// New guard settings (a reload).
    pub fn reconfigure_guard(&mut self, config: &GuardConfig, now: Instant) {
        self.guard.reconfigure(config, now);
    }

    /// The responder, if the link has one.
    pub fn responder(&self) -> Option<&Responder> {
        self.responder.as_ref()
    }

    /// The responder, to take its logs and reports.
    pub fn responder_mut(&mut self) -> Option<&mut Responder> {
        self.responder.as_mut()
    }

    /// Puts `next` in place of the running responder (a reload), which is
    /// handed back.
    pub fn replace_responder(&mut self, next: Option<Responder>) -> Option<Responder> {
        std::mem::replace(&mut self.responder, next)
    }

    /// The guards' counters.
    pub fn guard_counters(&self) -> GuardCounters {
        self.guard.counters()
    }

    /// What the bridge itself counted.
    pub fn counters(&self) -> BridgeCounters {
        self.counters
    }

    /// Live MAC table entries.
    pub fn mac_entries(&self, now: Instant) -> usize {
        self.switch.len(now)
    }
}

/// Destination and source of a frame at least 14 bytes long.
fn addresses(frame: &[u8]) -> (MacAddr, MacAddr) {
    let mac = |at: usize| MacAddr(frame[at..at + 6].try_into().expect("14 bytes checked"));
    (mac(0), mac(6))
}

/// Whether `class` is an untagged IPv4 UDP frame to the DHCP server port:
/// one the responder parses, so its checksum must be complete.
fn is_dhcp_to_server(class: &Class) -> bool {
    class.untagged() && class.is_dhcpv4_to_server()
}
