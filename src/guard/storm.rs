//! Storm control's token bucket (`guard.storm_pps`): refills at the rate,
//! holds a quarter of a second's worth (at least 16 frames), and never
//! overflows however long it sat idle.

use std::time::Instant;

/// Token bucket in nanosecond-scaled units: one frame costs `1e9`, and
/// each nanosecond adds `rate`.
#[derive(Debug)]
pub(super) struct Bucket {
    rate: u64,
    cap: u64,
    level: u64,
    last: Instant,
}

const UNIT: u64 = 1_000_000_000;

impl Bucket {
    pub(super) fn new(pps: u32, now: Instant) -> Bucket {
        let rate = u64::from(pps);
        let burst = (rate / 4).max(16);
        Bucket {
            rate,
            cap: burst * UNIT,
            level: burst * UNIT,
            last: now,
        }
    }

    pub(super) fn take(&mut self, now: Instant) -> bool {
        // At most 10 s of refill at once keeps the product far from u64::MAX
        // (rate ≤ 10^7 by config validation).
        let ns = now
            .saturating_duration_since(self.last)
            .as_nanos()
            .min(10 * u128::from(UNIT));
        self.last = self.last.max(now);
        let ns = u64::try_from(ns).unwrap_or(10 * UNIT);
        self.level = self
            .level
            .saturating_add(ns.saturating_mul(self.rate))
            .min(self.cap);
        if self.level >= UNIT {
            self.level -= UNIT;
            true
        } else {
            false
        }
    }
}
