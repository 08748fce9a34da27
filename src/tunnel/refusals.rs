//! How often refused handshakes reach the log: a token bucket over all of
//! them, and a short memory of recent (source, reason) pairs so that one
//! misconfigured site retrying forever is a line a minute, not one per
//! retry. The counters count every refusal; this only rations the lines.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Refused handshakes are reported (for the log) at most this often, with
/// bursts of `REFUSAL_BURST`; the counters count every one.
const REFUSAL_EVERY: Duration = Duration::from_secs(1);
const REFUSAL_BURST: u32 = 5;
/// The same reason from the same address is reported at most this often
/// (a misconfigured site retries every 16 s, forever), remembered for the
/// last `REFUSAL_SOURCES` reports.
const REFUSAL_REPEAT: Duration = Duration::from_secs(60);
const REFUSAL_SOURCES: usize = 16;

/// What may be reported of refused handshakes: a token bucket, and the
/// recent reports (source address, reason, when), so that one source's
/// repeated refusal for one reason is a line a minute, not one per retry.
pub(super) struct RefusalBudget {
    tokens: u32,
    last: Option<Instant>,
    recent: [Option<(IpAddr, &'static str, Instant)>; REFUSAL_SOURCES],
}

impl RefusalBudget {
    pub(super) fn new() -> Self {
        RefusalBudget {
            tokens: REFUSAL_BURST,
            last: None,
            recent: [None; REFUSAL_SOURCES],
        }
    }

    /// Whether a refusal for `reason` from `from` is to be reported now.
    pub(super) fn report(&mut self, from: IpAddr, reason: &'static str, now: Instant) -> bool {
        let repeat = self.recent.iter().flatten().any(|&(ip, r, at)| {
            ip == from && r == reason && now.saturating_duration_since(at) < REFUSAL_REPEAT
        });
        if repeat || !self.take(now) {
            return false;
        }
        let slot = self
            .recent
            .iter()
            .position(Option::is_none)
            .or_else(|| (0..REFUSAL_SOURCES).min_by_key(|&i| self.recent[i].map(|(_, _, at)| at)))
            .unwrap_or(0);
        self.recent[slot] = Some((from, reason, now));
        true
    }

    fn take(&mut self, now: Instant) -> bool {
        let last = *self.last.get_or_insert(now);
        let earned = now.saturating_duration_since(last).as_nanos() / REFUSAL_EVERY.as_nanos();
        if earned > 0 {
            self.tokens = (self.tokens as u128 + earned).min(u128::from(REFUSAL_BURST)) as u32;
            self.last = Some(now);
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}
