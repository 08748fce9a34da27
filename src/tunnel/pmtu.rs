//! Path MTU discovery without relying on ICMP, per peer, in the spirit of
//! RFC 8899 (DPLPMTUD): the tunnel sends authenticated, zero-padded
//! [`Probe`](crate::wire::tunnel::MessageType::Probe) messages of the size
//! it wants to test, and the peer acknowledges each one it receives. A size
//! is usable once a probe of that size was acknowledged; nothing else (no
//! ICMP, no guess) raises it.
//!
//! The search, between [`BASE_MTU`] (always assumed to work: the tunnel
//! starts there, so traffic flows from the first second) and the ceiling
//! (the WAN side's own limit, which the shell reads from the kernel: the
//! route's MTU, lowered by any ICMP "fragmentation needed" the kernel has
//! seen — a hint, never the only signal):
//! 1. probe the ceiling first (the usual case: the path is as wide as the
//!    link), then halve the gap between the largest size that passed and
//!    the smallest that failed, until it is under [`GRANULARITY`];
//! 2. a size fails after [`SEARCH_LOSSES`] probes in a row went
//!    unanswered for [`PROBE_TIMEOUT`] each (one loss is not a verdict);
//! 3. while frames are being sent, the size in use is re-probed every
//!    [`VERIFY_EVERY`]; after [`VERIFY_LOSSES`] losses in a row a probe
//!    of [`BASE_MTU`] (sent again at once if lost, up to [`SEARCH_LOSSES`]
//!    times) tells a shrunk path from a dead peer: acknowledged,
//!    the path shrank (full-size packets are lost while small ones pass):
//!    fall back to [`BASE_MTU`] and search again below the old size; lost
//!    too, nothing passes at all: the peer stopped answering, which is the
//!    session timers' verdict (peer down), not a path MTU change, so the
//!    size in use is kept;
//! 4. every [`RAISE_AFTER`] the failed sizes are forgotten and the search
//!    tries upward again (the path may have grown);
//! 5. after the peer moved to a new address, one [`BASE_MTU`] probe must be
//!    acknowledged before the search sends anything larger, so a move to
//!    an address that does not answer (a forged or relayed packet made it)
//!    costs that address small probes only.
//!
//! Probes share the session's counter (the AEAD nonce) like any data
//! message, so they pass the replay window in order; they never count as
//! frames, and only an authenticated probe is answered. Pure: it takes
//! instants and returns what to send; [`super::Tunnel`] seals and sends.

use std::time::{Duration, Instant};

/// The outer packet size the tunnel starts with and falls back to: IPv6's
/// minimum link MTU, which any path a tunnel runs over carries.
pub const BASE_MTU: usize = 1280;
/// The largest outer packet ever probed.
pub const MAX_MTU: usize = 9000;
/// A probe not acknowledged within this time is lost.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Lost probes in a row after which a search size counts as too large.
pub const SEARCH_LOSSES: u8 = 2;
/// How often the size in use is confirmed while frames are being sent.
pub const VERIFY_EVERY: Duration = Duration::from_secs(2);
/// Lost confirmations in a row after which the path counts as shrunk.
pub const VERIFY_LOSSES: u8 = 2;
/// How long failed sizes are remembered before the search tries upward.
pub const RAISE_AFTER: Duration = Duration::from_secs(600);
/// The search stops when the gap is smaller than this many bytes.
pub const GRANULARITY: usize = 8;

/// A probe to send: its id and outer packet size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRequest {
    /// Echoed by the acknowledgement.
    pub id: u32,
    /// The outer IP packet size to pad the probe to.
    pub size: usize,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    id: u32,
    size: usize,
    deadline: Instant,
}

/// One peer's path MTU.
#[derive(Debug, Clone)]
pub struct PathMtu {
    /// `false`: a pinned `wan_mtu`; nothing is probed.
    auto: bool,
    /// The size in use: the largest acknowledged (or [`BASE_MTU`]).
    mtu: usize,
    /// The largest size worth probing.
    ceiling: usize,
    /// The smallest size that failed since the last raise.
    failed: Option<usize>,
    in_flight: Option<InFlight>,
    losses: u8,
    /// When to send the next probe (`None`: no session yet).
    next: Option<Instant>,
    next_id: u32,
    raise_at: Option<Instant>,
    /// Frames sent when the last confirmation was due: confirm only a path
    /// that carries traffic.
    frames_at_verify: u64,
    /// The size in use stopped passing: a [`BASE_MTU`] probe decides
    /// between a narrower path and a dead peer.
    suspect: bool,
    /// That probe was lost too: nothing passes. When one passes again, the
    /// size in use is confirmed again before anything is concluded.
    silent: bool,
    /// The path is new (an endpoint move): a [`BASE_MTU`] probe first.
    confirm: bool,
    /// A fallback found by an acknowledgement, reported by the next
    /// [`on_timeout`](Self::on_timeout) (which reports losses).
    fell_back: Option<usize>,
}

impl PathMtu {
    /// A pinned MTU: never probed.
    pub fn fixed(mtu: usize) -> PathMtu {
        PathMtu {
            auto: false,
            mtu,
            ceiling: mtu,
            failed: None,
            in_flight: None,
            losses: 0,
            next: None,
            next_id: 0,
            raise_at: None,
            frames_at_verify: 0,
            suspect: false,
            silent: false,
            confirm: false,
            fell_back: None,
        }
    }

    /// Discovered, starting at [`BASE_MTU`], searching up to `ceiling`.
    pub fn auto(ceiling: usize) -> PathMtu {
        PathMtu {
            auto: true,
            mtu: BASE_MTU,
            ceiling: ceiling.clamp(BASE_MTU, MAX_MTU),
            ..PathMtu::fixed(BASE_MTU)
        }
    }

    /// The outer packet size to fragment for.
    pub fn current(&self) -> usize {
        self.mtu
    }

    /// Whether the search has more to do (for tests and status).
    pub fn searching(&self) -> bool {
        self.target().is_some_and(|t| t > self.mtu)
    }

    /// No session to probe with: stop until [`start`](Self::start).
    pub fn pause(&mut self) {
        self.next = None;
        self.in_flight = None;
        self.losses = 0;
        self.suspect = false;
        self.silent = false;
    }

    /// A session is up: start probing (if not already).
    pub fn start(&mut self, now: Instant) {
        if self.auto && self.next.is_none() && self.in_flight.is_none() {
            self.next = Some(now);
        }
    }

    /// The path changed (a new endpoint): start over from [`BASE_MTU`].
    /// Returns the new size if it changed.
    pub fn reset(&mut self, now: Instant) -> Option<usize> {
        if !self.auto {
            return None;
        }
        let old = self.mtu;
        *self = PathMtu {
            next_id: self.next_id,
            confirm: true,
            ..PathMtu::auto(self.ceiling)
        };
        self.next = Some(now);
        (old != self.mtu).then_some(self.mtu)
    }

    /// The WAN side's limit changed (the shell read it from the kernel).
    /// Returns the new size if the one in use had to shrink.
    pub fn set_ceiling(&mut self, ceiling: usize, now: Instant) -> Option<usize> {
        if !self.auto {
            return None;
        }
        self.ceiling = ceiling.clamp(BASE_MTU, MAX_MTU);
        if self.next.is_some() || self.in_flight.is_some() {
            // Search with the new limit from now on.
            self.next = Some(self.next.map_or(now, |n| n.min(now)));
        }
        if self.mtu > self.ceiling {
            self.mtu = self.ceiling;
            return Some(self.mtu);
        }
        None
    }

    /// When [`on_timeout`](Self::on_timeout) has work.
    pub fn deadline(&self) -> Option<Instant> {
        let lost = self.in_flight.map(|f| f.deadline);
        match (lost, self.next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The size the next probe should test, if any.
    fn target(&self) -> Option<usize> {
        let upper = self
            .failed
            .map_or(self.ceiling, |f| f.saturating_sub(1).min(self.ceiling));
        if self.suspect || self.confirm {
            Some(BASE_MTU)
        } else if upper >= self.mtu + GRANULARITY {
            // The ceiling first; then halve the gap.
            Some(if self.failed.is_none() {
                upper
            } else {
                (self.mtu + upper).div_ceil(2)
            })
        } else if self.mtu > BASE_MTU {
            Some(self.mtu)
        } else {
            None
        }
    }

    /// Runs the timers at `now`. `frames_sent` is the peer's frame counter
    /// (confirmations are sent only while it moves). Returns the probe to
    /// send, if any, and the new size if it changed (a fallback).
    pub fn on_timeout(
        &mut self,
        now: Instant,
        frames_sent: u64,
    ) -> (Option<ProbeRequest>, Option<usize>) {
        let changed = self.fell_back.take();
        if let Some(f) = self.in_flight.filter(|f| f.deadline <= now) {
            self.in_flight = None;
            self.losses += 1;
            if self.confirm && f.size == BASE_MTU {
                if self.losses >= SEARCH_LOSSES {
                    // The new address answers nothing (yet): ask again
                    // later, never with a larger probe.
                    self.losses = 0;
                    self.next = Some(now + VERIFY_EVERY);
                    return (None, changed);
                }
            } else if self.suspect && f.size == BASE_MTU {
                if self.losses >= SEARCH_LOSSES {
                    // Not even the smallest size passes: the peer is gone
                    // (or the whole path is). That is the session timers'
                    // to report as peer down; the size in use stays. Ask
                    // again later.
                    self.losses = 0;
                    self.silent = true;
                    self.next = Some(now + VERIFY_EVERY);
                    return (None, changed);
                }
                // One lost probe is not a verdict here either: ask again at
                // once (losing the decision would cost a whole new round).
            } else if f.size <= self.mtu {
                if self.losses >= VERIFY_LOSSES {
                    // Full-size packets no longer pass: does the smallest?
                    self.suspect = true;
                    self.losses = 0;
                }
            } else if self.losses >= SEARCH_LOSSES {
                self.failed = Some(self.failed.map_or(f.size, |x| x.min(f.size)));
                self.losses = 0;
            }
            self.next = Some(now);
        }
        if self.raise_at.is_some_and(|t| t <= now) {
            self.raise_at = None;
            self.failed = None;
            self.next = Some(now);
        }
        if self.in_flight.is_some() || self.next.is_none_or(|t| t > now) {
            return (None, changed);
        }
        let Some(size) = self.target() else {
            // Nothing to search; look again when failed sizes expire.
            self.next = self.raise_at;
            return (None, changed);
        };
        if size == self.mtu && self.losses == 0 && frames_sent == self.frames_at_verify {
            // Idle: no need to confirm a path nobody uses.
            self.next = Some(now + VERIFY_EVERY);
            return (None, changed);
        }
        self.frames_at_verify = frames_sent;
        self.next = None;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.in_flight = Some(InFlight {
            id,
            size,
            deadline: now + PROBE_TIMEOUT,
        });
        (Some(ProbeRequest { id, size }), changed)
    }

    /// The probe `id` of `size` bytes was acknowledged. Returns the new
    /// size if it grew.
    pub fn on_ack(&mut self, id: u32, size: usize, now: Instant) -> Option<usize> {
        let f = self.in_flight.filter(|f| f.id == id && f.size == size)?;
        self.in_flight = None;
        self.losses = 0;
        let suspect = std::mem::take(&mut self.suspect);
        let recovered = std::mem::take(&mut self.silent);
        let confirmed = std::mem::take(&mut self.confirm);
        if recovered {
            // The peer answers again after answering nothing: confirm the
            // size in use afresh rather than blame the path.
        } else if suspect && f.size < self.mtu {
            // Small packets pass, full-size ones did not: the path shrank.
            // Fall back; the next on_timeout reports it (as a loss).
            self.failed = Some(self.mtu);
            self.mtu = f.size;
            self.fell_back = Some(self.mtu);
        }
        let grew = (f.size > self.mtu).then(|| {
            self.mtu = f.size;
            self.mtu
        });
        self.next = Some(
            if self.searching() || recovered || confirmed || self.fell_back.is_some() {
                now
            } else {
                now + VERIFY_EVERY
            },
        );
        if self.failed.is_some() && self.raise_at.is_none() {
            self.raise_at = Some(now + RAISE_AFTER);
        }
        grew
    }

    /// The size of the probe awaiting its acknowledgement.
    #[cfg(test)]
    pub fn in_flight_size(&self) -> Option<usize> {
        self.in_flight.map(|f| f.size)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// Runs the machine against a path that passes packets up to `path`
    /// bytes, for `secs` seconds of virtual time, with frames flowing.
    fn run(m: &mut PathMtu, path: usize, t: &mut Instant, secs: u64) -> Vec<usize> {
        let end = *t + Duration::from_secs(secs);
        let mut changes = Vec::new();
        let mut frames = 0;
        while *t < end {
            frames += 1;
            let (probe, changed) = m.on_timeout(*t, frames);
            changes.extend(changed);
            if let Some(p) = probe
                && p.size <= path
            {
                // Acknowledged 10 ms later.
                changes.extend(m.on_ack(p.id, p.size, *t + Duration::from_millis(10)));
            }
            *t += Duration::from_millis(50);
        }
        changes
    }

    #[test]
    fn a_pinned_mtu_never_probes() {
        let t = Instant::now();
        let mut m = PathMtu::fixed(1400);
        m.start(t);
        assert_eq!(m.on_timeout(t, 1), (None, None));
        assert_eq!(m.deadline(), None);
        assert_eq!(m.current(), 1400);
    }

    #[test]
    fn a_clean_path_is_found_with_one_probe() {
        let mut t = Instant::now();
        let mut m = PathMtu::auto(1500);
        assert_eq!(
            m.current(),
            BASE_MTU,
            "traffic flows at the base size first"
        );
        m.start(t);
        let (p, _) = m.on_timeout(t, 1);
        assert_eq!(p.unwrap().size, 1500, "the ceiling first");
        t += Duration::from_millis(10);
        assert_eq!(m.on_ack(p.unwrap().id, 1500, t), Some(1500));
        assert!(!m.searching());
    }

    #[test]
    fn a_narrower_path_is_found_within_granularity_in_seconds() {
        let mut t = Instant::now();
        let start = t;
        let mut m = PathMtu::auto(1500);
        m.start(t);
        while m.searching() && t < start + Duration::from_secs(30) {
            run(&mut m, 1400, &mut t, 1);
        }
        let took = t - start;
        assert!(
            m.current() <= 1400 && m.current() + GRANULARITY > 1400,
            "{}",
            m.current()
        );
        assert!(took <= Duration::from_secs(10), "search took {took:?}");
    }

    #[test]
    fn a_shrinking_path_falls_back_within_seconds_and_searches_again() {
        let mut t = Instant::now();
        let mut m = PathMtu::auto(1500);
        m.start(t);
        run(&mut m, 1400, &mut t, 15);
        assert!(m.current() > 1390);
        let changes = run(&mut m, 1280, &mut t, 10);
        assert_eq!(changes.first(), Some(&BASE_MTU), "{changes:?}");
        assert_eq!(m.current(), BASE_MTU);
        // And when the path grows back, the raise timer finds it again.
        run(&mut m, 1500, &mut t, RAISE_AFTER.as_secs() + 20);
        assert_eq!(m.current(), 1500);
    }

    #[test]
    fn one_lost_probe_is_not_a_verdict() {
        let t = Instant::now();
        let mut m = PathMtu::auto(1500);
        m.start(t);
        let (p, _) = m.on_timeout(t, 1);
        let first = p.unwrap();
        // Lost once: the same size is tried again.
        let (p, _) = m.on_timeout(t + PROBE_TIMEOUT, 2);
        let again = p.unwrap();
        assert_eq!(again.size, first.size);
        assert_ne!(again.id, first.id);
        assert_eq!(
            m.on_ack(again.id, again.size, t + PROBE_TIMEOUT),
            Some(1500)
        );
    }

    #[test]
    fn stale_or_forged_acks_change_nothing() {
        let t = Instant::now();
        let mut m = PathMtu::auto(1500);
        m.start(t);
        let (p, _) = m.on_timeout(t, 1);
        let p = p.unwrap();
        assert_eq!(m.on_ack(p.id.wrapping_add(1), p.size, t), None);
        assert_eq!(m.on_ack(p.id, p.size - 1, t), None);
        assert_eq!(m.current(), BASE_MTU);
        assert_eq!(m.in_flight_size(), Some(1500));
    }

    #[test]
    fn an_idle_path_is_not_confirmed_and_a_lower_ceiling_shrinks_at_once() {
        let mut t = Instant::now();
        let mut m = PathMtu::auto(1500);
        m.start(t);
        run(&mut m, 1500, &mut t, 1);
        assert_eq!(m.current(), 1500);
        // No frames: no confirmation probes.
        let mut probes = 0;
        for _ in 0..100 {
            t += Duration::from_millis(100);
            if let (Some(p), _) = m.on_timeout(t, 7) {
                probes += 1;
                m.on_ack(p.id, p.size, t);
            }
        }
        assert!(probes <= 1, "{probes}");
        assert_eq!(m.set_ceiling(1420, t), Some(1420));
        assert_eq!(m.current(), 1420);
        assert_eq!(PathMtu::auto(100).ceiling, BASE_MTU);
    }

    #[test]
    fn after_a_move_a_small_probe_comes_first() {
        let mut t = Instant::now();
        let mut m = PathMtu::auto(1500);
        m.start(t);
        run(&mut m, 1500, &mut t, 3);
        assert_eq!(m.current(), 1500);
        // Moved to an address that answers nothing: only small probes.
        assert_eq!(m.reset(t), Some(BASE_MTU));
        let mut sizes = Vec::new();
        for i in 0..600 {
            t += Duration::from_millis(50);
            if let (Some(p), _) = m.on_timeout(t, i) {
                sizes.push(p.size);
            }
        }
        assert!(!sizes.is_empty());
        assert!(sizes.iter().all(|&s| s == BASE_MTU), "{sizes:?}");
        // Once it answers, the search goes on upward.
        let (p, _) = m.on_timeout(t + VERIFY_EVERY, 1000);
        let p = p.expect("a confirming probe");
        assert_eq!(p.size, BASE_MTU);
        assert_eq!(m.on_ack(p.id, p.size, t + VERIFY_EVERY), None);
        let (p, _) = m.on_timeout(t + VERIFY_EVERY, 1001);
        assert_eq!(p.expect("the search").size, 1500);
    }

    #[test]
    fn a_lost_deciding_probe_is_asked_again_at_once() {
        let mut t = Instant::now();
        let mut m = PathMtu::auto(1500);
        m.start(t);
        run(&mut m, 1500, &mut t, 5);
        assert_eq!(m.current(), 1500);
        // The path shrinks: confirmations of 1500 are lost until the
        // machine asks whether the smallest size passes.
        let mut frames = 100;
        let base = loop {
            frames += 1;
            if let (Some(p), _) = m.on_timeout(t, frames)
                && p.size == BASE_MTU
            {
                break p;
            }
            t += Duration::from_millis(50);
            assert!(frames < 1000, "no base-size probe");
        };
        // That probe is lost (a random drop): the same question is sent
        // again as soon as it times out, not after another verify round.
        t += PROBE_TIMEOUT;
        let (p, changed) = m.on_timeout(t, frames + 1);
        assert_eq!(changed, None);
        let again = p.expect("asked again at once");
        assert_eq!(again.size, BASE_MTU);
        assert_ne!(again.id, base.id);
        assert_eq!(m.on_ack(again.id, again.size, t), None);
        let (_, changed) = m.on_timeout(t, frames + 2);
        assert_eq!(changed, Some(BASE_MTU), "the path shrank");
    }

    #[test]
    fn a_peer_that_stops_answering_is_not_a_narrower_path() {
        let mut t = Instant::now();
        let mut m = PathMtu::auto(1500);
        m.start(t);
        run(&mut m, 1500, &mut t, 5);
        assert_eq!(m.current(), 1500);
        // Nothing passes, not even the smallest probe: a dead peer.
        let changes = run(&mut m, 0, &mut t, 30);
        assert_eq!(changes, Vec::<usize>::new());
        assert_eq!(m.current(), 1500);
        // It answers again: the size in use is confirmed, not lowered.
        let changes = run(&mut m, 1500, &mut t, 10);
        assert_eq!(changes, Vec::<usize>::new());
        assert_eq!(m.current(), 1500);
        // A real shrink after that is still found.
        let changes = run(&mut m, 1300, &mut t, 10);
        assert_eq!(changes.first(), Some(&BASE_MTU), "{changes:?}");
    }
}
