//! Per-source token buckets for handshake processing.
//!
//! A handshake costs two X25519 operations; a flood of valid-looking
//! initiations (replayed ones carry a valid MAC) must not eat the CPU. Each
//! source IP gets a bucket of `burst` tokens refilled at `per_sec`. The table
//! is bounded: when full, entries whose bucket is full again are forgotten,
//! and if none is, the new source is refused (fail closed under attack).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Most sources tracked at once.
const MAX_SOURCES: usize = 4096;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The limiter.
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// `per_sec` handshakes per second per source, bursts of `burst`.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        RateLimiter {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `src`; `false` means drop the message.
    pub fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&src) && self.buckets.len() >= MAX_SOURCES {
            let (per_sec, burst) = (self.per_sec, self.burst);
            self.buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_sec < burst
            });
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let b = self.buckets.entry(src).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10, 5);
        let a: IpAddr = "198.18.0.1".parse().expect("ip");
        let b: IpAddr = "198.18.0.2".parse().expect("ip");
        for _ in 0..5 {
            assert!(r.allow(a, t0));
        }
        assert!(!r.allow(a, t0));
        assert!(r.allow(b, t0), "other sources unaffected");
        assert!(!r.allow(a, t0 + Duration::from_millis(50)));
        assert!(r.allow(a, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn table_is_bounded() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1, 1);
        for i in 0..MAX_SOURCES as u32 {
            assert!(r.allow(IpAddr::from(i.to_be_bytes()), t0));
        }
        // Everyone spent their token: a new source is refused, not stored.
        assert!(!r.allow("198.19.255.255".parse().expect("ip"), t0));
        assert_eq!(r.buckets.len(), MAX_SOURCES);
        // A second later the buckets refilled and are forgotten.
        assert!(r.allow(
            "198.19.255.255".parse().expect("ip"),
            t0 + Duration::from_secs(1)
        ));
        assert_eq!(r.buckets.len(), 1);
    }
}
