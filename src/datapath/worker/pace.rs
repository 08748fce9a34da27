//! When the first worker runs its bookkeeping, and how it steps aside for
//! the tasks it wakes. The bookkeeping runs at once when something asks
//! for it (a deadline, a session event, a signal, a command, TCP or partner
//! input), and otherwise, what only the clock asks for, once frames stop.
//!
//! A wake-up for frames sends them and sleeps again, so neither the peer
//! daemon nor the application the frames woke waits behind the bookkeeping;
//! the next sleep is then cut to [`QUIET`], and the bookkeeping runs when it
//! ends without frames (at the latest after [`LATEST`], while frames never
//! stop for that long).

use std::time::{Duration, Instant};

/// How often the bookkeeping that has no deadline of its own runs (the logs
/// of refused ARP bindings and of leases, re-resolving peer names).
pub(super) const EVERY: Duration = Duration::from_millis(10);
/// Frames absent this long, the bookkeeping that was put off runs. Longer
/// than a 250 Hz tick: a shorter sleep arms the CPU's earliest timer, and
/// reprogramming it costs a VM about 13 µs on the way to sleep
/// (`bench.sh --breakdown`: 18 µs from entering the wait to the switch
/// with a 1 ms timeout, 5 µs with 5 ms or 1 s).
pub(super) const QUIET: Duration = Duration::from_millis(5);
/// Longest the bookkeeping is put off while frames never stop for
/// [`QUIET`].
pub(super) const LATEST: Duration = Duration::from_millis(100);

/// The first worker's bookkeeping schedule.
#[derive(Debug)]
pub(super) struct Pace {
    /// When the bookkeeping last ran.
    kept: Instant,
    /// Whether the clock asked for it and a wake-up for frames put it off.
    owed: bool,
}

impl Pace {
    /// A schedule whose bookkeeping last ran at `now`.
    pub(super) fn new(now: Instant) -> Pace {
        Pace {
            kept: now,
            owed: false,
        }
    }

    /// How long the worker may sleep, given the `wait` its timers allow.
    pub(super) fn wait(&self, wait: Duration) -> Duration {
        if self.owed { wait.min(QUIET) } else { wait }
    }

    /// Whether the bookkeeping runs now, after a wake-up at `now`: `asked`
    /// when something besides the clock asks for it, `frames` when the
    /// wake-up brought frames or datagrams. Running it is recorded.
    pub(super) fn due(&mut self, now: Instant, asked: bool, frames: bool) -> bool {
        let clock = now >= self.kept + EVERY;
        let due = asked || (clock && !frames) || now >= self.kept + LATEST;
        self.owed = clock && !due;
        if due {
            self.kept = now;
        }
        due
    }
}

/// Lets whatever else is runnable on this CPU run first.
pub(super) fn step_aside() {
    // Can only fail where a seccomp filter refuses it: no matter.
    let _ = nix::sched::sched_yield();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_put_off_what_only_the_clock_asks_for_until_they_stop() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        let second = Duration::from_secs(1);
        // Not yet asked for: the sleep is the timers' own.
        assert!(!p.due(t0 + EVERY / 2, false, true));
        assert_eq!(p.wait(second), second);
        // Asked for by the clock, but the wake-up brought frames: put off,
        // and the next sleep ends after QUIET.
        assert!(!p.due(t0 + EVERY, false, true));
        assert_eq!(p.wait(second), QUIET);
        assert_eq!(p.wait(Duration::from_millis(2)), Duration::from_millis(2));
        // More frames: still put off.
        assert!(!p.due(t0 + EVERY * 2, false, true));
        // The sleep ends without frames: it runs, and is no longer owed.
        let quiet = t0 + EVERY * 2 + QUIET;
        assert!(p.due(quiet, false, false));
        assert_eq!(p.wait(second), second);
        assert!(!p.due(quiet + EVERY / 2, false, false));
    }

    #[test]
    fn what_asks_besides_the_clock_runs_it_at_once() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        assert!(p.due(t0 + Duration::from_millis(1), true, true));
        // Recorded: the clock asks again only EVERY after it.
        assert!(!p.due(t0 + EVERY, false, false));
        assert!(p.due(t0 + Duration::from_millis(1) + EVERY, false, false));
    }

    #[test]
    fn frames_that_never_stop_put_it_off_until_the_latest() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        let mut t = t0;
        while t < t0 + LATEST {
            assert!(!p.due(t, false, true), "put off at {:?}", t - t0);
            t += Duration::from_millis(1);
        }
        assert!(p.due(t0 + LATEST, false, true));
        assert!(!p.due(t0 + LATEST + Duration::from_millis(1), false, true));
    }
}
