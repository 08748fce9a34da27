//! Token buckets for handshake processing: per source (or source prefix)
//! in a fixed table, and single ones ([`TokenBucket`]) for a whole link or
//! one peer.
//!
//! A handshake costs X25519 work, and finding and checking an initiation's
//! key costs a MAC; floods of either must not eat the CPU. The tunnel uses
//! a [`RateLimiter`] twice: per source prefix (IPv4 /24, IPv6 /56) for the
//! unauthenticated work on initiations, where an empty bucket only makes the
//! source prove its address with a cookie round trip; and per source
//! (IPv4 address, IPv6 /64) for the X25519 work of initiations whose source
//! that round trip proved. Everything else is charged to the authenticated
//! peer's own [`TokenBucket`], so an address someone spoofs is never charged
//! for them (see `exchange.rs`).
//!
//! The table is a fixed array of buckets indexed by a
//! keyed hash of the source (the key is random per process, so nobody can
//! aim at another source's bucket): O(1) per packet, bounded memory, and no
//! "table full" state in which new sources are refused. Two sources that
//! happen to share a bucket share its tokens, which with 4096 buckets and a
//! few hundred peers is rare and harmless (the burst covers both). A table
//! costs 96 KiB, whatever the number of peers; a link has two.

use std::hash::Hasher;
use std::net::IpAddr;
use std::time::Instant;

/// Buckets in the table.
#[cfg(not(fuzzing))]
const BUCKETS: usize = 4096;
/// Under `cfg(fuzzing)` (cargo-fuzz builds only, never a shipped binary) a
/// smaller table, the logic unchanged: the tunnel fuzz target builds six
/// tunnels (two tables each) for every input, and filling 4096-bucket
/// tables was about a tenth of that setup, instrumented. Sources share a
/// bucket more often, which the limiter allows for anyway.
#[cfg(fuzzing)]
const BUCKETS: usize = 256;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn take(&mut self, per_sec: f64, burst: f64, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * per_sec).min(burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One token bucket: `per_sec` tokens a second, at most `burst` saved.
pub struct TokenBucket {
    per_sec: f64,
    burst: f64,
    bucket: Bucket,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            per_sec: f64::from(per_sec),
            burst,
            bucket: Bucket {
                tokens: burst,
                last: None,
            },
        }
    }

    /// Takes one token; `false` means the budget is spent.
    pub fn allow(&mut self, now: Instant) -> bool {
        self.bucket.take(self.per_sec, self.burst, now)
    }
}

/// How much of an address is one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// IPv4 address, IPv6 /64: one host, one subscriber's network.
    Host,
    /// IPv4 /24, IPv6 /56: one site's or one small provider's block.
    Block,
}

/// The limiter.
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    prefix: Prefix,
    key: (u64, u64),
    buckets: Box<[Bucket]>,
}

/// What a source is limited as: IPv4 address or /24, IPv6 /64 or /56.
pub(super) fn source_key(ip: IpAddr, prefix: Prefix) -> [u8; 9] {
    let mut k = [0u8; 9];
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let n = if prefix == Prefix::Host { 4 } else { 3 };
            k[1..1 + n].copy_from_slice(&v4.octets()[..n]);
        }
        IpAddr::V6(v6) => {
            k[0] = 6;
            let n = if prefix == Prefix::Host { 8 } else { 7 };
            k[1..1 + n].copy_from_slice(&v6.octets()[..n]);
        }
    }
    k
}

impl RateLimiter {
    /// `per_sec` handshakes per second per source (an IPv4 address or an
    /// IPv6 /64), bursts of `burst`; `key` (random, secret) keys the hash
    /// that picks a source's bucket.
    pub fn new(per_sec: u32, burst: u32, key: [u8; 16]) -> Self {
        Self::per(Prefix::Host, per_sec, burst, key)
    }

    /// As [`new`](Self::new), with sources of the size `prefix`.
    pub fn per(prefix: Prefix, per_sec: u32, burst: u32, key: [u8; 16]) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            per_sec: f64::from(per_sec),
            burst,
            prefix,
            key: (
                u64::from_le_bytes(key[..8].try_into().expect("8 bytes")),
                u64::from_le_bytes(key[8..].try_into().expect("8 bytes")),
            ),
            buckets: vec![
                Bucket {
                    tokens: burst,
                    last: None
                };
                BUCKETS
            ]
            .into_boxed_slice(),
        }
    }

    fn slot(&self, src: IpAddr) -> usize {
        // SipHash-2-4: std keeps it (deprecated only as a public name), and a
        // keyed PRF is exactly what picking an unguessable bucket needs.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(self.key.0, self.key.1);
        h.write(&source_key(src, self.prefix));
        (h.finish() as usize) % BUCKETS
    }

    /// Takes one token for `src`; `false` means drop the message.
    pub fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        let (per_sec, burst) = (self.per_sec, self.burst);
        let i = self.slot(src);
        self.buckets[i].take(per_sec, burst, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const KEY: [u8; 16] = *b"tapbridge tests!";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10, 5, KEY);
        let (a, b) = (ip("198.18.0.1"), ip("198.18.0.2"));
        assert_ne!(r.slot(a), r.slot(b), "pick sources in different buckets");
        for _ in 0..5 {
            assert!(r.allow(a, t0));
        }
        assert!(!r.allow(a, t0));
        assert!(r.allow(b, t0), "other sources unaffected");
        assert!(!r.allow(a, t0 + Duration::from_millis(50)));
        assert!(r.allow(a, t0 + Duration::from_millis(100)));
    }

    /// The old table refused every new source once 4096 sources were
    /// tracked, and scanned all of them for each refusal. Now a new source
    /// is refused only if its own bucket is empty.
    #[test]
    fn many_sources_never_lock_out_a_new_one() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1, 1, KEY);
        let victim = ip("198.19.255.255");
        let mut spent = 0;
        for i in 0..20_000u32 {
            let src = IpAddr::from((0xc612_0000 | (i & 0xffff)).to_be_bytes());
            if r.slot(src) != r.slot(victim) {
                r.allow(src, t0);
                spent += 1;
            }
        }
        assert!(spent > 19_000);
        assert!(r.allow(victim, t0));
        assert_eq!(r.buckets.len(), BUCKETS, "memory is fixed");
    }

    #[test]
    fn ipv6_sources_are_limited_per_64() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1, 2, KEY);
        assert!(r.allow(ip("2001:2::1"), t0));
        assert!(r.allow(ip("2001:2::ffff:1"), t0));
        assert!(!r.allow(ip("2001:2::abcd"), t0), "same /64, bucket empty");
        let host = |s| source_key(ip(s), Prefix::Host);
        assert_eq!(host("2001:2:0:0:1::1"), host("2001:2::7"));
        assert_ne!(host("2001:2:0:1::1"), host("2001:2::1"));
        // An IPv4-mapped address is its IPv4 address.
        assert_eq!(host("::ffff:198.18.0.1"), host("198.18.0.1"));
        assert_ne!(host("198.18.0.1"), host("198.18.0.2"));
    }

    #[test]
    fn blocks_are_ipv4_24_and_ipv6_56() {
        let block = |s| source_key(ip(s), Prefix::Block);
        assert_eq!(block("198.18.0.1"), block("198.18.0.254"));
        assert_ne!(block("198.18.0.1"), block("198.18.1.1"));
        assert_eq!(block("::ffff:198.18.0.1"), block("198.18.0.9"));
        assert_eq!(block("2001:2:0:ff::1"), block("2001:2:0:1::1"));
        assert_ne!(block("2001:2:0:100::1"), block("2001:2::1"));
        assert_ne!(block("198.18.0.1"), block("::c612:1"), "families apart");
        let t0 = Instant::now();
        let mut r = RateLimiter::per(Prefix::Block, 1, 2, KEY);
        assert!(r.allow(ip("198.18.0.1"), t0));
        assert!(r.allow(ip("198.18.0.2"), t0));
        assert!(!r.allow(ip("198.18.0.3"), t0), "same /24, bucket empty");
    }

    #[test]
    fn token_bucket_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3);
        assert!((0..3).all(|_| b.allow(t0)));
        assert!(!b.allow(t0));
        assert!(!b.allow(t0 + Duration::from_millis(50)));
        assert!(b.allow(t0 + Duration::from_millis(100)));
        assert!(!b.allow(t0 + Duration::from_millis(100)));
    }
}
