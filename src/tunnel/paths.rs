//! A peer's uplinks: the addresses its site can be reached at, in order of
//! preference (`endpoint = [..]`), which one is in use, and the choice
//! between them. Pure: it takes instants and says what to probe and where
//! to move; [`super::Tunnel`] seals and sends the probes.
//!
//! With two or more known addresses:
//! 1. **Dead path.** Frames were sent and nothing authentic came back for
//!    [`DEAD_PATH_AFTER`]: every configured address (the one in use
//!    included) gets an authenticated path probe (the path MTU probe
//!    message with an id that has [`PATH_PROBE_ID`] set). After
//!    [`PATH_PROBE_WAIT`] the peer moves to the most preferred address that
//!    answered, at once if the most preferred one probed answers first. So a
//!    dead path is left within about 2 s of its last answer, never more
//!    than 3 s. A round nobody answers is followed by another while the
//!    silence lasts, until the dead-peer timer marks the peer down.
//! 2. **Return.** While not on the most preferred address, the more
//!    preferred ones are probed every [`RETURN_EVERY`]; the peer moves back
//!    to the best that answers.
//! 3. **No flapping.** An authenticated packet from one of the configured
//!    addresses does not move an up peer (the other site may answer from
//!    any of its addresses); one from an address not configured does
//!    (roaming, NAT rebinding), as for a peer without configured endpoints.
//!    The exception is a handshake the peer initiated: the first packet
//!    under the new session moves the peer to where it came from, configured
//!    or not (the standby box of a high-availability pair took over, and
//!    its handshake is the only sign of it).
//! 4. **Down.** Handshakes of a peer that is not up cycle through the
//!    known addresses, most preferred first; the response moves the peer.
//!
//! With one address (or none) nothing here probes or moves: roaming works as
//! it always did. Sending a frame costs one comparison; nothing allocates
//! after construction.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Frames sent without anything authentic back for this long make the
/// path suspect and start a probe round.
pub const DEAD_PATH_AFTER: Duration = Duration::from_secs(1);
/// How long a probe round waits for answers.
pub const PATH_PROBE_WAIT: Duration = Duration::from_secs(1);
/// How often more preferred addresses are probed while a less preferred
/// one is in use.
pub const RETURN_EVERY: Duration = Duration::from_secs(5);
/// Probe ids with this bit set are path probes (the path MTU search counts
/// its ids up from 0 and never gets here).
pub const PATH_PROBE_ID: u32 = 0x8000_0000;
/// Bits of a path probe id that hold the address's position.
const SLOT_BITS: u32 = 4;

/// What the timer wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathAction {
    /// Send a path probe with `id` to each address whose bit is set in
    /// `slots` (bit i = position i; see [`Uplinks::probe_id`]).
    Probe {
        /// Round number, to build the probe ids.
        round: u32,
        /// Which positions to probe.
        slots: u16,
    },
    /// Move to the address at this position.
    Move(usize),
}

#[derive(Debug, Clone, Copy)]
struct Round {
    seq: u32,
    probed: u16,
    answered: u16,
    deadline: Instant,
}

/// One peer's configured addresses and the choice among them.
#[derive(Debug, Clone)]
pub struct Uplinks {
    /// In order of preference; `None`: a host name not resolved yet.
    configured: Vec<Option<SocketAddr>>,
    /// Position of the address in use, if it is a configured one.
    in_use: Option<usize>,
    /// The first frame sent since the last authentic packet.
    unanswered_since: Option<Instant>,
    round: Option<Round>,
    next_seq: u32,
    /// When to probe the more preferred addresses again.
    next_return: Option<Instant>,
    /// Handshakes while not up: the next position to try.
    next_handshake: usize,
}

impl Uplinks {
    /// The configured addresses, most preferred first; the first is used.
    pub fn new(endpoints: &[SocketAddr]) -> Uplinks {
        Uplinks {
            configured: endpoints.iter().copied().map(Some).collect(),
            in_use: (!endpoints.is_empty()).then_some(0),
            unanswered_since: None,
            round: None,
            next_seq: 0,
            next_return: None,
            next_handshake: 0,
        }
    }

    /// The configured addresses (`None`: not resolved yet).
    pub fn configured(&self) -> &[Option<SocketAddr>] {
        &self.configured
    }

    /// A new configured list (a reload); `current` is the address in use.
    pub fn set(&mut self, endpoints: &[Option<SocketAddr>], current: Option<SocketAddr>) {
        self.configured = endpoints.to_vec();
        self.round = None;
        self.next_return = None;
        self.next_handshake = 0;
        self.in_use = current.and_then(|c| self.slot_of(c));
    }

    /// Position `slot` resolved to `addr`. `false` if there is no such
    /// position or it already had that address.
    pub fn set_slot(&mut self, slot: usize, addr: SocketAddr, current: Option<SocketAddr>) -> bool {
        match self.configured.get_mut(slot) {
            Some(s) if *s != Some(addr) => {
                *s = Some(addr);
                self.round = None;
                self.in_use = current.and_then(|c| self.slot_of(c));
                true
            }
            _ => false,
        }
    }

    /// Two or more known addresses: failover is on.
    pub fn multi(&self) -> bool {
        self.configured.iter().flatten().nth(1).is_some()
    }

    /// The position of `addr` among the configured addresses.
    pub fn slot_of(&self, addr: SocketAddr) -> Option<usize> {
        self.configured.iter().position(|a| *a == Some(addr))
    }

    /// The address at `slot`, if known.
    pub fn addr(&self, slot: usize) -> Option<SocketAddr> {
        self.configured.get(slot).copied().flatten()
    }

    /// The most preferred known address.
    pub fn best(&self) -> Option<SocketAddr> {
        self.configured.iter().flatten().next().copied()
    }

    fn best_slot(&self) -> Option<usize> {
        self.configured.iter().position(Option::is_some)
    }

    /// Whether an authentic packet from `from` (not the address in use)
    /// should move an up peer there: not if it is one of the configured
    /// addresses of a multi-address peer.
    pub fn roams_to(&self, from: SocketAddr) -> bool {
        !self.multi() || self.slot_of(from).is_none()
    }

    /// The peer now uses `addr`: remember its position and, when it is not
    /// the most preferred, when to look back.
    pub fn moved(&mut self, addr: Option<SocketAddr>, now: Instant) {
        self.in_use = addr.and_then(|a| self.slot_of(a));
        self.unanswered_since = None;
        self.next_return =
            (self.multi() && self.in_use != self.best_slot()).then(|| now + RETURN_EVERY);
    }

    /// A frame was sent (O(1): the hot path calls this).
    #[inline]
    pub fn on_sent(&mut self, now: Instant) {
        if self.unanswered_since.is_none() {
            self.unanswered_since = Some(now);
        }
    }

    /// Something authentic came from the peer.
    #[inline]
    pub fn on_authentic(&mut self) {
        self.unanswered_since = None;
    }

    /// The address for the next handshake: the one in use while `up`,
    /// otherwise the known addresses in turn, most preferred first.
    pub fn handshake_target(
        &mut self,
        current: Option<SocketAddr>,
        up: bool,
    ) -> Option<SocketAddr> {
        if up || !self.multi() {
            return current;
        }
        let known = self.configured.iter().flatten().count();
        let pick = self
            .configured
            .iter()
            .flatten()
            .nth(self.next_handshake % known)
            .copied();
        self.next_handshake = (self.next_handshake + 1) % known;
        pick
    }

    /// A session is up: the next handshakes while down start with the most
    /// preferred address again.
    pub fn on_session(&mut self) {
        self.next_handshake = 0;
    }

    /// When [`on_timeout`](Self::on_timeout) has work; `up`: the peer has a
    /// session and is up (only then is anything probed).
    pub fn deadline(&self, up: bool) -> Option<Instant> {
        if let Some(r) = &self.round {
            return Some(r.deadline);
        }
        if !up || !self.multi() {
            return None;
        }
        let dead = self.unanswered_since.map(|t| t + DEAD_PATH_AFTER);
        match (dead, self.next_return) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers at `now`.
    pub fn on_timeout(&mut self, now: Instant, up: bool) -> Option<PathAction> {
        if let Some(r) = self.round {
            if r.deadline > now {
                return None;
            }
            self.round = None;
            let winner = lowest(r.answered);
            if winner.is_none() && self.next_return.is_some_and(|t| t <= now) {
                self.next_return = Some(now + RETURN_EVERY);
            }
            return winner
                .filter(|&w| Some(w) != self.in_use)
                .map(PathAction::Move);
        }
        if !up || !self.multi() {
            return None;
        }
        let known = self
            .configured
            .iter()
            .take(16)
            .enumerate()
            .filter(|(_, a)| a.is_some())
            .fold(0u16, |m, (i, _)| m | 1 << i);
        if self
            .unanswered_since
            .is_some_and(|t| t + DEAD_PATH_AFTER <= now)
        {
            // Every address, the one in use too: it may only have hiccuped.
            self.unanswered_since = None;
            return Some(self.start(known, now));
        }
        if self.next_return.is_some_and(|t| t <= now) {
            self.next_return = Some(now + RETURN_EVERY);
            let better = match self.in_use {
                Some(i) => known & ((1u16 << i) - 1),
                None => known,
            };
            if better != 0 {
                return Some(self.start(better, now));
            }
            self.next_return = None;
        }
        None
    }

    fn start(&mut self, slots: u16, now: Instant) -> PathAction {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.round = Some(Round {
            seq,
            probed: slots,
            answered: 0,
            deadline: now + PATH_PROBE_WAIT,
        });
        PathAction::Probe { round: seq, slots }
    }

    /// The probe id for position `slot` in round `round`.
    pub fn probe_id(round: u32, slot: usize) -> u32 {
        PATH_PROBE_ID | (round << SLOT_BITS & !PATH_PROBE_ID) | (slot as u32 & 0xf)
    }

    /// An authenticated acknowledgement of path probe `id`, from `from`.
    /// It counts only from the address that was probed: the peer answers a
    /// probe from the address it arrived at, and an ack that comes back
    /// another way (relayed by whoever holds a working path) says nothing
    /// about the probed one. Returns where to move now, if anywhere: the
    /// most preferred address probed answered, so waiting for the others
    /// cannot find a better one.
    pub fn on_ack(&mut self, id: u32, from: SocketAddr) -> Option<usize> {
        let slot = (id & 0xf) as usize;
        if self.addr(slot) != Some(from) {
            return None;
        }
        let r = self.round.as_mut()?;
        if Self::probe_id(r.seq, slot) != id || r.probed & (1 << slot) == 0 {
            return None;
        }
        r.answered |= 1 << slot;
        if lowest(r.probed) != Some(slot) {
            return None;
        }
        self.round = None;
        (Some(slot) != self.in_use).then_some(slot)
    }
}

fn lowest(mask: u16) -> Option<usize> {
    (mask != 0).then(|| mask.trailing_zeros() as usize)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([198, 18, i as u8, 2], 51901)))
            .collect()
    }

    #[test]
    fn one_address_never_probes() {
        let t0 = Instant::now();
        let mut u = Uplinks::new(&addrs(1));
        u.on_sent(t0);
        assert_eq!(u.deadline(true), None);
        assert_eq!(u.on_timeout(t0 + Duration::from_secs(60), true), None);
        assert!(u.roams_to(addrs(2)[1]));
    }

    #[test]
    fn a_round_probes_every_address_and_only_its_own_acks_count() {
        let t0 = Instant::now();
        let a = addrs(3);
        let mut u = Uplinks::new(&a);
        assert_eq!(u.deadline(true), None, "nothing sent, nothing suspect");
        u.on_sent(t0);
        u.on_sent(t0 + Duration::from_millis(500)); // the first send counts
        assert_eq!(u.deadline(true), Some(t0 + DEAD_PATH_AFTER));
        assert_eq!(
            u.deadline(false),
            None,
            "a peer that is not up is not probed"
        );
        let Some(PathAction::Probe { round, slots }) = u.on_timeout(t0 + DEAD_PATH_AFTER, true)
        else {
            panic!("a probe round");
        };
        assert_eq!(slots, 0b111);
        // Acks of another round, of an unprobed slot, or MTU probe ids: ignored.
        assert_eq!(u.on_ack(Uplinks::probe_id(round + 1, 2), a[2]), None);
        assert_eq!(u.on_ack(Uplinks::probe_id(round, 7), a[0]), None);
        assert_eq!(u.on_ack(5, a[0]), None);
        // Slot 2's ack, but from slot 0's address (relayed by whoever
        // holds that path): it says nothing about slot 2.
        assert_eq!(u.on_ack(Uplinks::probe_id(round, 2), a[0]), None);
        assert_eq!(u.on_ack(Uplinks::probe_id(round, 0), a[1]), None);
        // Slot 2 answers first, then slot 1; slot 0 (in use) never.
        assert_eq!(u.on_ack(Uplinks::probe_id(round, 2), a[2]), None);
        assert_eq!(u.on_ack(Uplinks::probe_id(round, 1), a[1]), None);
        let end = t0 + DEAD_PATH_AFTER + PATH_PROBE_WAIT;
        assert_eq!(u.deadline(true), Some(end));
        assert_eq!(u.on_timeout(end, true), Some(PathAction::Move(1)));
        u.moved(u.addr(1), end);
        // On slot 1: the return probes look at slot 0 only, every 5 s.
        assert_eq!(u.deadline(true), Some(end + RETURN_EVERY));
        let Some(PathAction::Probe { round, slots }) = u.on_timeout(end + RETURN_EVERY, true)
        else {
            panic!("a return round");
        };
        assert_eq!(slots, 0b001);
        // The best possible answered: move at once.
        assert_eq!(u.on_ack(Uplinks::probe_id(round, 0), a[0]), Some(0));
    }

    #[test]
    fn more_addresses_than_probe_slots_do_not_panic() {
        let t0 = Instant::now();
        let mut u = Uplinks::new(&addrs(20));
        u.on_sent(t0);
        let Some(PathAction::Probe { slots, .. }) = u.on_timeout(t0 + DEAD_PATH_AFTER, true) else {
            panic!("a probe round");
        };
        assert_eq!(slots, u16::MAX);
        for id in [u32::MAX, PATH_PROBE_ID, PATH_PROBE_ID | 0xf, 0] {
            let _ = u.on_ack(id, addrs(20)[(id & 0xf) as usize]);
        }
        u.moved(u.addr(19), t0);
        assert_eq!(u.handshake_target(None, false), u.addr(0));
        assert_eq!(u.handshake_target(None, false), u.addr(1));
    }
}
