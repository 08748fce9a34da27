//! Per-source token buckets for handshake processing.
//!
//! A handshake costs X25519 work; a flood of valid handshakes must not eat
//! the CPU. The tunnel charges this limiter only for handshakes that are
//! authentic *and* fresh (an initiation that decrypted under a peer's key and
//! carries a newer timestamp than the last one accepted; a response that
//! answers the initiation we are waiting for), so replaying captured
//! handshake messages with a peer's address spoofed costs that peer nothing.
//!
//! Sources are IPv4 addresses and IPv6 /64 prefixes (one subscriber usually
//! holds a whole /64). The table is a fixed array of buckets indexed by a
//! keyed hash of the source (the key is random per process, so nobody can
//! aim at another source's bucket): O(1) per packet, bounded memory, and no
//! "table full" state in which new sources are refused. Two sources that
//! happen to share a bucket share its tokens, which with 4096 buckets and a
//! few hundred peers is rare and harmless (the burst covers both). The table
//! costs 96 KiB per link, whatever its number of peers.

use std::hash::Hasher;
use std::net::IpAddr;
use std::time::Instant;

/// Buckets in the table.
const BUCKETS: usize = 4096;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Option<Instant>,
}

/// The limiter.
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    key: (u64, u64),
    buckets: Box<[Bucket]>,
}

/// What a source is limited as: IPv4 address, or IPv6 /64.
fn source_key(ip: IpAddr) -> [u8; 9] {
    let mut k = [0u8; 9];
    match ip.to_canonical() {
        IpAddr::V4(v4) => k[1..5].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => {
            k[0] = 6;
            k[1..].copy_from_slice(&v6.octets()[..8]);
        }
    }
    k
}

impl RateLimiter {
    /// `per_sec` handshakes per second per source, bursts of `burst`;
    /// `key` (random, secret) keys the hash that picks a source's bucket.
    pub fn new(per_sec: u32, burst: u32, key: [u8; 16]) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            per_sec: f64::from(per_sec),
            burst,
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
        h.write(&source_key(src));
        (h.finish() as usize) % BUCKETS
    }

    /// Takes one token for `src`; `false` means drop the message.
    pub fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        let (per_sec, burst) = (self.per_sec, self.burst);
        let i = self.slot(src);
        let b = &mut self.buckets[i];
        if let Some(last) = b.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            b.tokens = (b.tokens + elapsed * per_sec).min(burst);
        }
        b.last = Some(now);
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
        assert_eq!(
            source_key(ip("2001:2:0:0:1::1")),
            source_key(ip("2001:2::7"))
        );
        assert_ne!(source_key(ip("2001:2:0:1::1")), source_key(ip("2001:2::1")));
        // An IPv4-mapped address is its IPv4 address.
        assert_eq!(
            source_key(ip("::ffff:198.18.0.1")),
            source_key(ip("198.18.0.1"))
        );
    }
}
