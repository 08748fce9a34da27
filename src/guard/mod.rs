//! The L2 edge guards (SPEC §5 Guards): what keeps the bridge from hurting
//! either LAN. Pure: frames (bytes) and `Instant`s in, verdicts out; no
//! socket, no clock, no allocation per frame.
//!
//! The worker asks the guard at three points:
//!
//! - [`Guard::from_local`], for every frame read from the TAP that the
//!   local responder did not answer (ARP for its addresses and DHCP to it
//!   are handled before and never count against anything);
//! - [`Guard::allow_flood`], when the switch decided to flood such a frame
//!   into the tunnel (broadcast, multicast, unknown unicast);
//! - [`Guard::from_peer`], for every authenticated frame from a peer, before
//!   the switch learns from it and before it reaches the TAP.
//!
//! # Storm control (`guard.storm_pps`)
//!
//! A token bucket per link on flooded frames going into the tunnel: it
//! refills at `storm_pps` frames per second and holds at most a quarter of a
//! second's worth (at least 16 frames), so a short burst — hosts waking up
//! and ARPing together — passes, while a sustained storm is cut to
//! `storm_pps` with at most `storm_pps / 4` extra in any window. A flood
//! counts once however many peers it goes to. Known unicast never touches
//! the bucket. The excess is dropped and counted in `storm_dropped`.
//!
//! A hub limits the floods it relays between peers the same way, with one
//! bucket per source peer ([`Guard::allow_relay_flood`]): one spoke's storm
//! reaches each other spoke at `storm_pps` at most, not multiplied by the
//! number of spokes.
//!
//! # DHCP and RA guards (`guard.dhcp_guard`, `guard.ra_guard`)
//!
//! Frames from peers that are DHCPv4 server messages, IPv6 router
//! advertisements or DHCPv6 server messages ([`Threat`]), 802.1Q/802.1ad
//! tagged or not, are dropped before the TAP and counted in `guard_dropped`.
//! With the RA guard, an IPv6 frame whose extension headers cannot be
//! followed to the upper layer is dropped too (RFC 7113 §3), since an RA
//! could hide behind them.
//!
//! # BPDUs (`guard.bpdu`)
//!
//! With `drop`, spanning-tree BPDUs (01:80:c2:00:00:00, and Cisco PVST+) are
//! dropped in both directions and counted in `guard_dropped`; with
//! `forward` (the default) they cross like any multicast, so spanning trees
//! on both sites can see each other and block a redundant link themselves.
//!
//! # Loop detection (`guard.loop_detect`)
//!
//! A second path between the two LANs (a backup line, a cable plugged
//! wrongly, a second bridge) together with the tunnel makes a ring: a
//! broadcast goes out through the tunnel and comes back over the other path,
//! for ever. The guard detects the ring directly, with a probe.
//!
//! Probing is triggered, not constant, so a healthy link sends nothing extra
//! (no frames in the peers' counters, nothing on the LANs): the worker calls
//! [`Guard::mac_moved`] when a source MAC the switch had learned on one side
//! (local or a peer) shows up on the other — which a circulating frame does
//! on every lap, and a host moving between sites does once — and storm
//! control refusing a flood counts the same (a loop is a storm, and a storm
//! of made-up source addresses would otherwise hide the moves). From then
//! on, for [`SUSPECT_WINDOW`] after the last such sign and for as long as a loop
//! lasts, the guard emits a probe once a second ([`Guard::poll_probe`]),
//! the first one at once; the worker sends it through the tunnel to every
//! peer that is up, and a peer writes it to its TAP like any multicast
//! frame. The probe carries a random per-link nonce and the number of the
//! peer it was sent to, and goes to a locally administered multicast
//! address (which Linux bridges flood; it is not in the 01:80:c2:00:00:0x
//! range they keep to themselves) with the IEEE local experimental ether
//! type 0x88b5. If that peer's LAN reaches ours another way, the probe comes
//! back to us *from the TAP*: that is the loop, seen from either end within
//! a round trip of the first frame that circulates, and the number says
//! which peer it runs through. Probes read from the TAP are never forwarded
//! (ours or another site's), and a hub never relays them between peers, so
//! a probe crosses the tunnel once and cannot circulate itself. A loop on
//! which nothing circulates goes unnoticed, and does no harm until
//! something does.
//!
//! While a loop through a peer lasts, nothing but probes is exchanged with
//! **that peer**, in either direction: not floods, and not known unicast
//! either. The other path already joins the two LANs, so the tunnel adds
//! only duplicates, and a unicast frame addressed by a stale MAC table
//! could circulate too; the hosts keep talking over the other path once
//! their bridges relearn. The link's other peers are not affected: at a hub,
//! one branch's miswired cable cuts off that branch's tunnel, not the
//! other branches'. The MAC table is flushed when a loop starts and ends
//! ([`LoopEvent`]), so nothing is sent to where a MAC was before the topology
//! changed. `loops_detected` counts loop events, the frames refused
//! meanwhile are counted in `loop_dropped`.
//!
//! **Loops behind a hub, and a site bridged in twice.** A probe read from
//! the TAP that is *another* site's and was not sent back before is sent
//! back once, marked, to every peer that is up ([`LocalVerdict::Return`]):
//! its LAN received a probe that some site sent to another. A marked probe
//! is never written to a TAP nor sent on again, so it crosses the tunnel at
//! most twice. When one of ours comes back marked from peer Q, naming the
//! peer P it was sent to, P's LAN reaches Q's LAN another way:
//! - P ≠ Q (at a hub: two spokes' LANs are joined behind it): the hub stops
//!   relaying between P and Q, in both directions, while the loop lasts
//!   (the same hold-down and back-off); P and Q stay connected to the hub
//!   and to every other spoke, and reach each other over their own path;
//! - P = Q: P's LAN is bridged into the tunnel twice (the two boxes of an
//!   HA pair both active): nothing runs in a circle through us (frames
//!   from P are never sent back to P), so nothing is cut, but it is counted
//!   and reported ([`LoopEvent::BridgedTwice`], at most once a minute per
//!   peer) so the operator learns of the split brain.
//!
//! The loop is considered gone when no probe of ours came back for a
//! hold-down of 3 s (three probes); then forwarding resumes by itself. A
//! loop that comes back within a minute of ending doubles the hold-down
//! (up to 60 s), so a flapping path neither floods both LANs in bursts nor
//! floods the log: start and end are logged once per event, and events are
//! at least a hold-down apart.

mod probe;
mod storm;
#[cfg(test)]
mod tests;
mod threat;

use std::time::{Duration, Instant};

use crate::peer_id::PeerId;

use probe::{PairLoop, PeerLoop, Probing};
pub use probe::{is_bpdu, is_probe};
use storm::Storm;

pub use threat::Threat;

/// The guards' settings (`[guard]`, SPEC §4): the config produces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// Flooded frames (broadcast, multicast, unknown unicast) sent into the
    /// tunnel per second; 0 turns storm control off. At most 10,000,000.
    pub storm_pps: u32,
    /// Probe for a second path between the sites and stop forwarding while
    /// one exists.
    pub loop_detect: bool,
    /// Drop DHCPv4 server messages arriving from peers.
    pub dhcp_guard: bool,
    /// Drop IPv6 router advertisements and DHCPv6 server messages arriving
    /// from peers.
    pub ra_guard: bool,
    /// What happens to spanning-tree BPDUs crossing the tunnel.
    pub bpdu: BpduPolicy,
}

/// `guard.bpdu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BpduPolicy {
    /// Carry BPDUs both ways, so the sites' spanning trees see each other.
    Forward,
    /// Drop BPDUs both ways.
    Drop,
}

impl GuardConfig {
    /// The defaults of SPEC §4; `dhcp_enabled` decides the DHCP and RA guards.
    pub fn defaults(dhcp_enabled: bool) -> GuardConfig {
        GuardConfig {
            storm_pps: 2000,
            loop_detect: true,
            dhcp_guard: dhcp_enabled,
            ra_guard: dhcp_enabled,
            bpdu: BpduPolicy::Forward,
        }
    }
}

/// How often a loop probe is sent.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long without a returning probe before a loop counts as gone.
pub const LOOP_HOLD: Duration = Duration::from_secs(3);
/// The longest hold-down a flapping loop backs off to.
pub const LOOP_HOLD_MAX: Duration = Duration::from_secs(60);
/// How long after the last MAC move probes are sent.
pub const SUSPECT_WINDOW: Duration = Duration::from_secs(3);
/// A loop starting again within this long after the last one ended counts
/// as flapping.
const FLAP_WINDOW: Duration = Duration::from_secs(60);

/// Destination of loop probes: locally administered multicast ("tbloo").
pub const PROBE_DST: [u8; 6] = [0x03, 0x74, 0x62, 0x6c, 0x6f, 0x6f];
/// Ether type of loop probes: IEEE 802 local experimental ether type 1.
pub const PROBE_ETHERTYPE: u16 = 0x88b5;
/// What follows the ether type in a probe, before the nonce.
const PROBE_MAGIC: &[u8; 16] = b"tapbridge-loop\x00\x01";
/// The byte of a probe that says it was sent back by a site that read it
/// from its LAN (1), or not (0).
const PROBE_RETURNED: usize = 40;
/// Pairs of peers with a loop between them, at most (a hub's spokes; a
/// spoke that reports more pairs than this only fills its own).
const MAX_PAIR_LOOPS: usize = 256;
/// Probe length: the Ethernet minimum without FCS.
pub const PROBE_LEN: usize = 60;

/// What to do with a frame read from the TAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalVerdict {
    /// Carry on: the switch decides where it goes.
    Forward,
    /// Drop it (counted by the guard).
    Drop,
    /// Another site's probe that reached our LAN: send it back, marked
    /// ([`mark_returned`]), to every peer that is up, and nowhere else.
    Return,
}

/// What to do with a frame from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerVerdict {
    /// Carry on: learn, write to the TAP, forward as a hub would.
    Forward,
    /// A loop probe: write it to the TAP only (no learning, no hub
    /// forwarding), even while a loop lasts.
    Probe,
    /// Drop it (counted by the guard).
    Drop,
}

/// A state change, for the log (and to flush the MAC table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopEvent {
    /// A probe of ours came back from the LAN side: the peer's LAN and
    /// ours are also joined another way. Nothing but probes is exchanged
    /// with that peer until the loop ends.
    LoopStarted {
        /// The peer whose probe came back: its LAN reaches ours another way.
        peer: PeerId,
        /// How long the loop must be gone before forwarding resumes.
        hold: Duration,
    },
    /// No probe came back through that peer for the hold-down: frames to
    /// and from it flow again.
    LoopEnded {
        /// The peer the loop ran through.
        peer: PeerId,
        /// How long the loop lasted.
        lasted: Duration,
    },
    /// A probe of ours sent to peer `a` came back marked from peer `b`:
    /// their LANs are joined behind us, and nothing is relayed between them
    /// until the loop ends.
    PairLoopStarted {
        /// The peer the probe was sent to.
        a: PeerId,
        /// The peer it came back from.
        b: PeerId,
        /// How long the loop must be gone before relaying resumes.
        hold: Duration,
    },
    /// The loop between `a` and `b` is gone: relaying between them resumes.
    PairLoopEnded {
        /// One peer of the pair.
        a: PeerId,
        /// The other.
        b: PeerId,
        /// How long the loop lasted.
        lasted: Duration,
    },
    /// A probe of ours sent to `peer` came back marked from `peer` itself:
    /// its LAN is bridged into the tunnel twice (two active boxes). Nothing
    /// is cut; at most one such event a minute per peer.
    BridgedTwice {
        /// The peer whose LAN is attached twice.
        peer: PeerId,
    },
}

/// What the guards dropped and saw (SPEC §6 counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardCounters {
    /// Flooded frames refused by storm control.
    pub storm_dropped: u64,
    /// Frames refused by the DHCP, RA and BPDU guards.
    pub guard_dropped: u64,
    /// Loops detected (events, not frames).
    pub loops_detected: u64,
    /// Frames refused because a loop was present.
    pub loop_dropped: u64,
    /// Frames from peers refused by their hub policy (`[[peer]]` `macs`,
    /// `vlans`, `max_macs`, a MAC another port owns, `isolate`).
    pub policy_dropped: u64,
}

/// Events kept for the caller to poll; beyond this the oldest is dropped
/// (the counters still count every loop).
const MAX_EVENTS: usize = 64;

/// The guards of one link.
#[derive(Debug)]
pub struct Guard {
    config: GuardConfig,
    storm: Storm,
    probing: Probing,
    /// Indexed by peer; grown when a probe through a new peer returns.
    peers: Vec<PeerLoop>,
    /// How many entries of `peers` have a loop (0: the common case, every
    /// check is one comparison).
    looped_peers: usize,
    /// Loops between two peers (behind a hub); empty in the common case.
    pairs: Vec<PairLoop>,
    /// Peer numbers at or above this are not ours ([`Guard::set_peer_count`]).
    peer_limit: usize,
    probe: [u8; PROBE_LEN],
    counters: GuardCounters,
    events: std::collections::VecDeque<LoopEvent>,
    /// When the oldest event in `events` happened: it is due at once.
    event_at: Option<Instant>,
    /// Events ever queued (see [`Guard::events_queued`]).
    events_queued: u64,
}

impl Guard {
    /// Guards for a link with `config`; `nonce` must be random per link
    /// start (it tells our probes from other sites').
    pub fn new(config: &GuardConfig, nonce: [u8; 8], now: Instant) -> Guard {
        let mut probe = [0u8; PROBE_LEN];
        probe[..6].copy_from_slice(&PROBE_DST);
        // Source: a locally administered unicast MAC from the nonce, so
        // bridges that see the probe twice relearn nobody real.
        probe[6] = 0x02;
        probe[7..12].copy_from_slice(&nonce[..5]);
        probe[12..14].copy_from_slice(&PROBE_ETHERTYPE.to_be_bytes());
        probe[14..30].copy_from_slice(PROBE_MAGIC);
        probe[30..38].copy_from_slice(&nonce);
        Guard {
            config: *config,
            storm: Storm::new(config.storm_pps, now),
            probing: Probing {
                suspect_until: None,
                next_probe: now,
            },
            peers: Vec::new(),
            looped_peers: 0,
            pairs: Vec::new(),
            peer_limit: usize::from(u16::MAX),
            probe,
            counters: GuardCounters::default(),
            events: std::collections::VecDeque::new(),
            events_queued: 0,
            event_at: None,
        }
    }

    /// Applies new settings (a reload). Counters stay; a changed rate
    /// starts a full bucket; turning loop detection off ends every loop.
    pub fn reconfigure(&mut self, config: &GuardConfig, now: Instant) {
        self.storm.set_rate(config.storm_pps, now);
        if !config.loop_detect {
            for p in PeerId::all(self.peers.len()) {
                self.end_loop(p, now);
            }
            while let Some(pair) = self.pairs.first().copied() {
                self.end_pair(pair, now);
            }
            self.probing.suspect_until = None;
        }
        self.config = *config;
    }

    /// `peer` was removed (a reload): a loop through it ends.
    pub fn forget_peer(&mut self, peer: PeerId, now: Instant) {
        self.end_loop(peer, now);
        while let Some(pair) = self
            .pairs
            .iter()
            .find(|l| l.a == peer || l.b == peer)
            .copied()
        {
            self.end_pair(pair, now);
        }
        self.storm.forget_peer(peer, now);
        if let Some(l) = self.peers.get_mut(peer.index()) {
            *l = PeerLoop::IDLE;
        }
    }

    /// How many peers the link has (peer numbers are `0..n`).
    pub fn set_peer_count(&mut self, n: usize) {
        self.peer_limit = n;
    }

    /// The settings in force.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// What was dropped and seen so far.
    pub fn counters(&self) -> GuardCounters {
        self.counters
    }

    /// Whether a loop is present through any peer (or between two).
    pub fn looped(&self) -> bool {
        self.looped_peers > 0 || !self.pairs.is_empty()
    }

    /// Whether a loop is present through `peer` (nothing is exchanged with
    /// it but probes).
    pub fn peer_looped(&self, peer: PeerId) -> bool {
        self.looped_peers > 0
            && self
                .peers
                .get(peer.index())
                .is_some_and(|l| l.since.is_some())
    }

    /// A frame read from the TAP (no virtio-net header), after the local
    /// responder passed it and before the switch sees it.
    pub fn from_local(&mut self, frame: &[u8], now: Instant) -> LocalVerdict {
        if self.config.loop_detect && is_probe(frame) {
            // Never forwarded: a probe on the LAN side came over another path.
            if frame.get(30..38) == Some(&self.probe[30..38]) {
                if let Some(peer) = probe_peer(frame) {
                    self.probe_returned(peer, now);
                }
                return LocalVerdict::Drop;
            }
            // Another site's, reaching our LAN: back to that site (once),
            // unless it was sent back already.
            if frame.get(PROBE_RETURNED) == Some(&0) {
                return LocalVerdict::Return;
            }
            return LocalVerdict::Drop;
        }
        if self.config.bpdu == BpduPolicy::Drop && is_bpdu(frame) {
            self.counters.guard_dropped += 1;
            return LocalVerdict::Drop;
        }
        LocalVerdict::Forward
    }

    /// May a hub relay a frame from peer `from` to peer `to`? Not while a
    /// loop runs through either, nor between the two; each refusal is
    /// counted in `loop_dropped`.
    pub fn allow_relay(&mut self, from: PeerId, to: PeerId) -> bool {
        if !self.allow_to_peer(to) {
            return false;
        }
        let joined = self
            .pairs
            .iter()
            .any(|l| (l.a == from && l.b == to) || (l.a == to && l.b == from));
        if joined {
            self.counters.loop_dropped += 1;
        }
        !joined
    }

    /// May a frame (from the TAP, or relayed by a hub) go to `peer`? Not
    /// while a loop runs through it; each refusal is counted in
    /// `loop_dropped`.
    pub fn allow_to_peer(&mut self, peer: PeerId) -> bool {
        if self.peer_looped(peer) {
            self.counters.loop_dropped += 1;
            false
        } else {
            true
        }
    }

    /// Whether the worker should report MAC moves ([`Guard::mac_moved`]):
    /// only with loop detection on, so the extra MAC table lookup is skipped
    /// otherwise.
    pub fn watches_moves(&self) -> bool {
        self.config.loop_detect
    }

    /// A source MAC the switch had learned on one side (local, or a peer)
    /// was seen on the other: a loop may have formed. Probing starts (or
    /// continues) for [`SUSPECT_WINDOW`]. Cheap: call it for every such
    /// frame.
    pub fn mac_moved(&mut self, now: Instant) {
        if self.config.loop_detect {
            self.probing.suspect_until = Some(now + SUSPECT_WINDOW);
        }
    }

    /// The switch wants to flood a frame from the TAP into the tunnel: may
    /// it? Each call that returns `false` is counted in `storm_dropped`, and
    /// (with loop detection) starts or extends probing as a MAC move does:
    /// a storm is what a loop looks like, so storm control must not be what
    /// hides one.
    pub fn allow_flood(&mut self, now: Instant) -> bool {
        if self.storm.allow_flood(now) {
            return true;
        }
        self.counters.storm_dropped += 1;
        self.mac_moved(now);
        false
    }

    /// A hub wants to relay a flood (broadcast, multicast, unknown unicast)
    /// from peer `from` to the other peers: may it? Limited per source peer
    /// to `storm_pps`; a refusal is counted and treated as
    /// [`Guard::allow_flood`]'s.
    pub fn allow_relay_flood(&mut self, from: PeerId, now: Instant) -> bool {
        if self.storm.allow_relay(from, now) {
            return true;
        }
        self.counters.storm_dropped += 1;
        self.mac_moved(now);
        false
    }

    /// A frame from a peer was refused by its hub policy (the bridge
    /// decides; the guards count, with the other drops).
    pub fn policy_dropped(&mut self) {
        self.counters.policy_dropped += 1;
    }

    /// An authenticated frame from `peer` (no virtio-net header).
    pub fn from_peer(&mut self, frame: &[u8], peer: PeerId, now: Instant) -> PeerVerdict {
        self.from_peer_classified(frame, None, peer, now)
    }

    /// [`Guard::from_peer`] with the shared classifier's view of the frame,
    /// when the caller has it (the bridge classifies each frame once).
    pub fn from_peer_classified(
        &mut self,
        frame: &[u8],
        class: Option<&crate::wire::ethernet::Class>,
        peer: PeerId,
        now: Instant,
    ) -> PeerVerdict {
        if self.config.loop_detect && is_probe(frame) {
            if frame.get(PROBE_RETURNED) == Some(&0) {
                return PeerVerdict::Probe;
            }
            // Sent back by a site whose LAN it reached: ours tells a loop
            // between the peer it was sent to and this one; another site's
            // goes no further.
            if frame.get(30..38) == Some(&self.probe[30..38])
                && let Some(named) = probe_peer(frame)
            {
                self.probe_returned_via(named, peer, now);
            }
            return PeerVerdict::Drop;
        }
        if self.peer_looped(peer) {
            self.counters.loop_dropped += 1;
            return PeerVerdict::Drop;
        }
        let (dhcp, ra, bpdu) = (
            self.config.dhcp_guard,
            self.config.ra_guard,
            self.config.bpdu == BpduPolicy::Drop,
        );
        if !(dhcp || ra || bpdu) {
            return PeerVerdict::Forward;
        }
        let kind = class.map_or_else(|| Threat::in_frame(frame), Threat::of);
        let drop = match kind {
            Threat::Dhcpv4Server => dhcp,
            Threat::RouterAdvertisement | Threat::Dhcpv6Server | Threat::Ipv6Undecodable => ra,
            Threat::Bpdu => bpdu,
            Threat::Other => false,
        };
        if drop {
            self.counters.guard_dropped += 1;
            PeerVerdict::Drop
        } else {
            PeerVerdict::Forward
        }
    }

    /// When [`Guard::handle_timeout`] wants to run next (`None`: never).
    /// O(1) unless a loop is present (then O(peers)).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.config.loop_detect {
            return None;
        }
        if self.event_at.is_some() {
            // A state change waits to be polled (the caller flushes tables on it).
            return self.event_at;
        }
        let pr = &self.probing;
        if self.looped() {
            let hold_ends = self
                .peers
                .iter()
                .filter(|l| l.since.is_some())
                .filter_map(|l| l.last_seen.map(|t| t + l.hold))
                .chain(self.pairs.iter().map(|l| l.last_seen + l.hold))
                .min();
            return Some(hold_ends.map_or(pr.next_probe, |e| e.min(pr.next_probe)));
        }
        // Probing because a MAC moved: the next probe, or the window's end.
        pr.suspect_until.map(|s| s.min(pr.next_probe))
    }

    /// Ends the loops whose hold-down passed. Call when
    /// [`Guard::poll_timeout`] is due (calling more often is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.looped_peers > 0 {
            for p in PeerId::all(self.peers.len()) {
                let l = self.peers[p.index()];
                if let (Some(_), Some(seen)) = (l.since, l.last_seen) {
                    if now.saturating_duration_since(seen) >= l.hold {
                        self.end_loop(p, now);
                    }
                }
            }
        }
        while let Some(pair) = self
            .pairs
            .iter()
            .find(|l| now.saturating_duration_since(l.last_seen) >= l.hold)
            .copied()
        {
            self.end_pair(pair, now);
        }
        if self.probing.suspect_until.is_some_and(|s| now >= s) {
            self.probing.suspect_until = None;
        }
    }

    /// Whether a round of probes is due: at most once per
    /// [`PROBE_INTERVAL`], while a loop lasts or a MAC moved in the last
    /// [`SUSPECT_WINDOW`]. Then send [`Guard::probe_for`] to every peer
    /// that is up.
    pub fn poll_probe(&mut self, now: Instant) -> bool {
        let pr = &self.probing;
        let active = self.looped() || pr.suspect_until.is_some_and(|s| now < s);
        if !self.config.loop_detect || !active || now < pr.next_probe {
            return false;
        }
        self.probing.next_probe = now + PROBE_INTERVAL;
        true
    }

    /// The probe for `peer`: it names the peer, so the one that comes back
    /// tells which peer's LAN also reaches ours.
    pub fn probe_for(&mut self, peer: PeerId) -> &[u8] {
        let n = u16::try_from(peer.index()).unwrap_or(u16::MAX);
        self.probe[38..40].copy_from_slice(&n.to_be_bytes());
        &self.probe
    }

    /// The next state change, if any (for the log).
    pub fn poll_event(&mut self) -> Option<LoopEvent> {
        let ev = self.events.pop_front();
        if self.events.is_empty() {
            self.event_at = None;
        }
        ev
    }

    /// How many events were ever queued: it grows with each new one, so a
    /// caller that must act once per change (the bridge flushes its MAC
    /// table) sees a change without taking the events.
    pub fn events_queued(&self) -> u64 {
        self.events_queued
    }

    fn push_event(&mut self, ev: LoopEvent, now: Instant) {
        self.events_queued += 1;
        self.event_at.get_or_insert(now);
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(ev);
    }

    fn probe_returned(&mut self, peer: PeerId, now: Instant) {
        // A probe names a peer we sent it to; a number beyond our peers
        // (a LAN host replaying a probe it forged) is ignored.
        if peer.index() >= self.peer_limit {
            return;
        }
        if self.peers.len() <= peer.index() {
            self.peers.resize(peer.index() + 1, PeerLoop::IDLE);
        }
        let l = &mut self.peers[peer.index()];
        l.last_seen = Some(now);
        if l.since.is_some() {
            return;
        }
        let flapping = l
            .ended
            .is_some_and(|e| now.saturating_duration_since(e) < FLAP_WINDOW);
        l.hold = if flapping {
            (l.hold * 2).min(LOOP_HOLD_MAX)
        } else {
            LOOP_HOLD
        };
        l.since = Some(now);
        let hold = l.hold;
        self.looped_peers += 1;
        self.counters.loops_detected += 1;
        self.push_event(LoopEvent::LoopStarted { peer, hold }, now);
    }

    /// A probe of ours, sent to `named`, came back marked from `via`.
    fn probe_returned_via(&mut self, named: PeerId, via: PeerId, now: Instant) {
        if named.index() >= self.peer_limit || via.index() >= self.peer_limit {
            return;
        }
        if named == via {
            if self.peers.len() <= via.index() {
                self.peers.resize(via.index() + 1, PeerLoop::IDLE);
            }
            let l = &mut self.peers[via.index()];
            if l.twice_reported
                .is_none_or(|t| now.saturating_duration_since(t) >= FLAP_WINDOW)
            {
                l.twice_reported = Some(now);
                self.counters.loops_detected += 1;
                self.push_event(LoopEvent::BridgedTwice { peer: via }, now);
            }
            return;
        }
        let (a, b) = (named, via);
        if let Some(l) = self
            .pairs
            .iter_mut()
            .find(|l| (l.a == a && l.b == b) || (l.a == b && l.b == a))
        {
            l.last_seen = now;
            return;
        }
        if self.pairs.len() >= MAX_PAIR_LOOPS {
            return;
        }
        self.pairs.push(PairLoop {
            a,
            b,
            since: now,
            last_seen: now,
            hold: LOOP_HOLD,
        });
        self.counters.loops_detected += 1;
        self.push_event(
            LoopEvent::PairLoopStarted {
                a,
                b,
                hold: LOOP_HOLD,
            },
            now,
        );
    }

    fn end_pair(&mut self, pair: PairLoop, now: Instant) {
        self.pairs.retain(|l| !(l.a == pair.a && l.b == pair.b));
        self.push_event(
            LoopEvent::PairLoopEnded {
                a: pair.a,
                b: pair.b,
                lasted: now.saturating_duration_since(pair.since),
            },
            now,
        );
    }

    fn end_loop(&mut self, peer: PeerId, now: Instant) {
        let Some(l) = self.peers.get_mut(peer.index()) else {
            return;
        };
        l.last_seen = None;
        if let Some(since) = l.since.take() {
            l.ended = Some(now);
            self.looped_peers -= 1;
            self.push_event(
                LoopEvent::LoopEnded {
                    peer,
                    lasted: now.saturating_duration_since(since),
                },
                now,
            );
        }
    }
}

/// The peer number a probe names (bytes 38..40).
fn probe_peer(frame: &[u8]) -> Option<PeerId> {
    let n = frame.get(38..40)?;
    Some(PeerId::new(usize::from(u16::from_be_bytes([n[0], n[1]]))))
}

/// Marks the probe at the start of `frame` as sent back
/// ([`LocalVerdict::Return`]).
pub fn mark_returned(frame: &mut [u8]) {
    if let Some(b) = frame.get_mut(PROBE_RETURNED) {
        *b = 1;
    }
}
