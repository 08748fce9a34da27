//! When the tunnel next has work to do, and doing it. [`Deadlines`] caches
//! each peer's earliest timer for [`Tunnel::poll_timeout`];
//! [`Tunnel::touch`] and [`Tunnel::touch_all`] mark entries stale whenever a
//! peer's timers may have moved. [`Tunnel::handle_timeout`] runs whatever is
//! due, peer by peer: session expiry, reassembly timeouts, dead-peer
//! detection, handshake retries and rekeys, keepalives, path MTU probes,
//! transport switches and uplink probe rounds. [`Unanswered`] keeps count
//! of the handshakes a peer left unanswered and decides when that is worth
//! a line in the log.

use std::time::{Duration, Instant};

use super::paths::{PathAction, Uplinks};
use super::peer::{Peer, PeerState, ProbeDest};
use super::tunnel::{Event, PeerId, Transmit, Tunnel};
use crate::wire::tunnel::probe;

/// Initiations in a row with nothing authentic back from the peer before
/// the silence is reported ([`Event::NoAnswer`]): with the retry backoff
/// (1, 2, 4, 8 s) the fifth goes out about 15 s after the first.
pub const NO_ANSWER_AFTER: u32 = 5;
/// While the silence lasts it is reported again at most this often.
pub const NO_ANSWER_EVERY: Duration = Duration::from_secs(60);

/// The handshakes a peer left unanswered, and when that was last reported.
/// Every initiation sent counts ([`on_sent`](Self::on_sent)); anything
/// authentic from the peer (a response, an initiation we accepted, data)
/// ends the count ([`on_heard`](Self::on_heard)).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Unanswered {
    /// Initiations sent since the peer was last heard from.
    pub(super) count: u32,
    /// When the first of them was sent.
    pub(super) since: Option<Instant>,
    /// When the last initiation was sent (answered or not).
    pub(super) last_attempt: Option<Instant>,
    /// When the silence was last reported; `None` once the peer is heard.
    reported: Option<Instant>,
}

impl Unanswered {
    /// An initiation went out at `now`. `true` if the silence is to be
    /// reported now: at the [`NO_ANSWER_AFTER`]th in a row, then at most
    /// once per [`NO_ANSWER_EVERY`].
    pub(super) fn on_sent(&mut self, now: Instant) -> bool {
        self.count = self.count.saturating_add(1);
        self.since.get_or_insert(now);
        self.last_attempt = Some(now);
        let due = self.count >= NO_ANSWER_AFTER
            && self
                .reported
                .is_none_or(|t| now.saturating_duration_since(t) >= NO_ANSWER_EVERY);
        if due {
            self.reported = Some(now);
        }
        due
    }

    /// The peer was heard from. `Some(count)` if its silence had been
    /// reported (so its end is reported too): the initiations it left
    /// unanswered.
    pub(super) fn on_heard(&mut self) -> Option<u32> {
        if self.count == 0 {
            return None;
        }
        let after = self.reported.take().map(|_| self.count);
        self.count = 0;
        self.since = None;
        after
    }
}

/// The per-peer timer deadlines [`Tunnel::poll_timeout`] takes the
/// earliest of. A peer's is recomputed only after something touched the
/// peer ([`Tunnel::touch`]: sending to it, an authentic message from it) or
/// after anything else changed (every other `&mut` entry point, rare,
/// marks them all stale), so a wake-up at a hub costs a scan of this array,
/// not of every peer's timers: the full scan took 3.8 µs at 100 peers and
/// 125 µs at 1000 (`cargo bench --bench tunnel -- poll_timeout`). Debug
/// builds check every answer against the full scan.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    at: Vec<Option<Instant>>,
    /// Peers whose entry in `at` is stale (each at most once).
    stale: Vec<PeerId>,
    is_stale: Vec<bool>,
    /// Every entry is stale.
    all: bool,
}

impl Deadlines {
    /// Deadlines with every entry stale: the first
    /// [`Tunnel::poll_timeout`] computes them all.
    pub(super) fn all_stale() -> Self {
        Deadlines {
            all: true,
            ..Deadlines::default()
        }
    }
}

impl Tunnel {
    /// Peer `id`'s timers may have changed: its deadline is recomputed at
    /// the next [`poll_timeout`](Self::poll_timeout).
    pub(super) fn touch(&self, id: PeerId) {
        let mut d = self.deadlines.borrow_mut();
        if d.all {
            return;
        }
        match d.is_stale.get_mut(id.index()) {
            Some(true) => {}
            Some(flag) => {
                *flag = true;
                d.stale.push(id);
            }
            None => d.all = true,
        }
    }

    /// Any peer's timers may have changed.
    pub(super) fn touch_all(&self) {
        self.deadlines.borrow_mut().all = true;
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout)
    /// has work to do. Cheap: only the peers touched since the last call
    /// are looked at (see `Deadlines`).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.standby {
            return None;
        }
        let reject = self.reject_after();
        let mut d = self.deadlines.borrow_mut();
        let n = self.peers.len();
        if d.all || d.at.len() != n {
            d.at.clear();
            d.at.extend(self.peers.iter().map(|p| peer_deadline(p, reject)));
            d.is_stale.clear();
            d.is_stale.resize(n, false);
            d.stale.clear();
            d.stale.reserve(n);
            d.all = false;
        } else {
            while let Some(id) = d.stale.pop() {
                d.is_stale[id] = false;
                d.at[id] = peer_deadline(&self.peers[id], reject);
            }
        }
        let earliest = d.at.iter().flatten().min().copied();
        debug_assert_eq!(
            earliest,
            self.peers
                .iter()
                .filter_map(|p| peer_deadline(p, reject))
                .min(),
            "a peer's timers changed without Tunnel::touch"
        );
        earliest
    }

    /// Runs every timer that is due at `now`: handshake retransmission,
    /// rekey, keepalives, dead-peer detection, key expiry, reassembly
    /// timeout, path MTU probes, transport switches and uplink probes.
    pub fn handle_timeout<T: Transmit + ?Sized>(&mut self, now: Instant, tx: &mut T) {
        if self.standby {
            return;
        }
        self.touch_all();
        let reject = self.reject_after();
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        for id in PeerId::all(self.peers.len()) {
            let p = &mut self.peers[id];
            let slots = [&mut p.current, &mut p.next]
                .into_iter()
                .chain(p.older.iter_mut());
            for slot in slots {
                if slot.as_ref().is_some_and(|s| s.created + reject <= now) {
                    Self::drop_session(&mut self.index, slot.take());
                }
            }
            self.counters.reassembly_dropped += p.reassembly.expire(now) as u64;
            if due(p.timers.dead) {
                p.timers.dead = None;
                if p.state == PeerState::Up {
                    p.state = PeerState::Down;
                    p.transport.on_down();
                    self.events.push_back(Event::PeerDown { peer: id });
                    if p.pending.is_none() {
                        p.attempts = 0;
                        self.start_handshake(id, now, tx);
                    }
                }
            }
            let p = &mut self.peers[id];
            if due(p.timers.retransmit) {
                p.timers.retransmit = None;
                if p.transport.take_trial_in_flight() {
                    // A UDP trial went unanswered: UDP still does not work.
                    // Not retried; a rekey that fell due meanwhile runs now.
                    if let Some(old) = p.pending.take() {
                        self.index.remove(&old.local_index);
                    }
                    p.timers.rekey.get_or_insert(now);
                } else if p.pending.is_some() {
                    self.start_handshake(id, now, tx);
                }
            }
            let p = &mut self.peers[id];
            if due(p.timers.rekey) {
                p.timers.rekey = None;
                if p.pending.is_none() {
                    p.attempts = 0;
                    self.start_handshake(id, now, tx);
                }
            }
            let p = &mut self.peers[id];
            if due(p.timers.keepalive) {
                p.timers.keepalive = None;
                if p.current.is_some() {
                    self.send_keepalive(id, now, tx);
                }
            }
            let p = &mut self.peers[id];
            if due(p.pmtu.deadline()) {
                if p.current.is_none() || p.endpoint.is_none() || p.transport.tcp() {
                    p.pmtu.pause();
                } else {
                    let (probe, changed) = p.pmtu.on_timeout(now, p.stats.tx_frames);
                    if let Some(mtu) = changed {
                        self.events.push_back(Event::PathMtuChanged {
                            peer: id,
                            mtu,
                            lost: true,
                        });
                    }
                    if let Some(pr) = probe {
                        // Not sent (no room, key exhausted): lost, like any probe.
                        let dest = ProbeDest::Endpoint;
                        self.send_probe(id, probe::REQUEST, pr.id, pr.size, dest, tx);
                    }
                }
            }
            let p = &mut self.peers[id];
            let up = p.state == PeerState::Up && p.current.is_some();
            if due(p.transport.deadline(up)) {
                p.transport.on_timeout(now);
                if p.pending.is_none() {
                    p.attempts = 0;
                    self.start_handshake(id, now, tx);
                }
            }
            let p = &mut self.peers[id];
            // Uplinks are UDP paths: a TCP peer's connection is its path.
            let up = up && !p.transport.tcp();
            if due(p.uplinks.deadline(up)) {
                match p.uplinks.on_timeout(now, up) {
                    Some(PathAction::Probe { round, slots }) => {
                        for slot in (0..16).filter(|i| slots & (1 << i) != 0) {
                            if let Some(to) = self.peers[id].uplinks.addr(slot) {
                                let pid = Uplinks::probe_id(round, slot);
                                let dest = ProbeDest::To(to);
                                self.send_probe(id, probe::REQUEST, pid, 0, dest, tx);
                            }
                        }
                    }
                    Some(PathAction::Move(slot)) => self.move_to_slot(id, slot, now),
                    None => {}
                }
            }
        }
    }
}

/// The earliest of one peer's timers (`reject`: how long a session lives).
fn peer_deadline(p: &Peer, reject: Duration) -> Option<Instant> {
    let t = &p.timers;
    let expiry = [&p.current, &p.next]
        .into_iter()
        .chain(p.older.iter())
        .flatten()
        .map(|s| s.created + reject)
        .min();
    [
        t.retransmit,
        t.rekey,
        t.keepalive.filter(|_| p.current.is_some()),
        t.dead,
        expiry,
        p.reassembly.next_deadline(),
        p.pmtu.deadline(),
        p.uplinks
            .deadline(p.state == PeerState::Up && p.current.is_some() && !p.transport.tcp()),
        p.transport
            .deadline(p.state == PeerState::Up && p.current.is_some()),
    ]
    .into_iter()
    .flatten()
    .min()
}
