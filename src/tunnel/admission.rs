//! Admission of TCP connections that have not proved anything yet: which
//! one to drop when another arrives. Pure; the data path
//! (`datapath::tcp`) owns the sockets and applies the verdicts.
//!
//! An accepted connection is *waiting* until its first record proves a peer
//! (or it is closed, or it expires). Waiting connections are bounded two
//! ways, and a new one is always let in (a real peer reconnecting must never
//! find the door shut); what makes room is chosen so that one source can
//! only ever push out its own:
//! 1. at most [`PER_HOST`] per source host (IPv4 address, IPv6 /64): the
//!    host's own oldest makes room;
//! 2. at most [`MAX_WAITING`] in all: the oldest of the *heaviest* source
//!    block (IPv4 /24, IPv6 /56: the block with the most waiting
//!    connections; among equals, the one whose oldest is oldest) makes room.
//!
//! So a host that opens connections as fast as it can holds at most
//! [`PER_HOST`] places and evicts nobody else; a whole block doing so is the
//! heaviest and pays for itself; a peer's single connection goes only when
//! every block has as few waiting as its own.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::ratelimit::{Prefix, source_key};

/// Waiting connections from one host, at most.
pub const PER_HOST: usize = 4;
/// Waiting connections in all, at most.
pub const MAX_WAITING: usize = 32;
/// How long a connection may wait (unauthenticated, or still connecting).
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct Waiting {
    conn: usize,
    host: [u8; 9],
    block: [u8; 9],
    since: Instant,
}

/// The waiting connections, named by the caller's connection ids.
#[derive(Debug, Default)]
pub struct Admission {
    waiting: Vec<Waiting>,
}

impl Admission {
    /// No connection waiting.
    pub fn new() -> Admission {
        Admission {
            waiting: Vec::with_capacity(MAX_WAITING + 1),
        }
    }

    /// Connection `conn` from `src` starts waiting at `now`. Returns the
    /// waiting connection to close to make room for it, if one must go.
    pub fn admit(&mut self, conn: usize, src: IpAddr, now: Instant) -> Option<usize> {
        self.forget(conn);
        let host = source_key(src, Prefix::Host);
        let block = source_key(src, Prefix::Block);
        let same_host = self.waiting.iter().filter(|w| w.host == host).count();
        let evict = if same_host >= PER_HOST {
            self.oldest(|w| w.host == host)
        } else if self.waiting.len() >= MAX_WAITING {
            self.heaviest_block()
                .and_then(|b| self.oldest(|w| w.block == b))
        } else {
            None
        };
        if let Some(e) = evict {
            self.forget(e);
        }
        self.waiting.push(Waiting {
            conn,
            host,
            block,
            since: now,
        });
        evict
    }

    /// Connection `conn` proved a peer, or was closed: it waits no more.
    pub fn forget(&mut self, conn: usize) {
        self.waiting.retain(|w| w.conn != conn);
    }

    /// Whether `conn` is waiting.
    pub fn is_waiting(&self, conn: usize) -> bool {
        self.waiting.iter().any(|w| w.conn == conn)
    }

    /// How many connections wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The next connection that waited [`WAIT_TIMEOUT`] by `now` (forgotten
    /// here; the caller closes it), if any.
    pub fn next_expired(&mut self, now: Instant) -> Option<usize> {
        let i = self
            .waiting
            .iter()
            .position(|w| now.saturating_duration_since(w.since) >= WAIT_TIMEOUT)?;
        Some(self.waiting.swap_remove(i).conn)
    }

    /// When [`next_expired`](Self::next_expired) will have one.
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting.iter().map(|w| w.since + WAIT_TIMEOUT).min()
    }

    fn oldest(&self, f: impl Fn(&Waiting) -> bool) -> Option<usize> {
        self.waiting
            .iter()
            .filter(|w| f(w))
            .min_by_key(|w| w.since)
            .map(|w| w.conn)
    }

    /// The block with the most waiting connections; among equals, the one
    /// whose oldest waits longest. At most [`MAX_WAITING`]² comparisons, and
    /// only when the table is full.
    fn heaviest_block(&self) -> Option<[u8; 9]> {
        let weigh = |b: &[u8; 9]| {
            let mine = self.waiting.iter().filter(|w| w.block == *b);
            let count = mine.clone().count();
            let oldest = mine.map(|w| w.since).min();
            (count, std::cmp::Reverse(oldest))
        };
        self.waiting
            .iter()
            .map(|w| w.block)
            .max_by_key(|b| weigh(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    #[test]
    fn one_host_pushes_out_only_its_own() {
        let t = Instant::now();
        let mut a = Admission::new();
        // A peer's connection, then a host opening connections without end.
        assert_eq!(a.admit(0, ip("198.18.5.1"), t), None);
        let mut evicted = Vec::new();
        for i in 1..1000 {
            let now = t + Duration::from_micros(i as u64);
            evicted.extend(a.admit(i, ip("198.18.9.9"), now));
        }
        assert!(a.is_waiting(0), "the peer's connection stays");
        assert!(a.len() <= 1 + PER_HOST);
        // Oldest first: the attacker's first ones went first.
        assert_eq!(&evicted[..3], &[1, 2, 3]);
    }

    #[test]
    fn a_full_table_evicts_from_the_heaviest_block() {
        let t = Instant::now();
        let mut a = Admission::new();
        // The peer first (the oldest of all), then a /24 of hosts, each
        // within its own per-host allowance, until the table is full.
        assert_eq!(a.admit(0, ip("198.18.5.1"), t), None);
        let mut n = 1;
        let mut evicted = Vec::new();
        for host in 1..=200u32 {
            for _ in 0..2 {
                let src = ip(&format!("198.19.7.{host}"));
                evicted.extend(a.admit(n, src, t + Duration::from_micros(n as u64)));
                n += 1;
            }
        }
        assert!(a.is_waiting(0), "the oldest is not the heaviest block's");
        assert_eq!(a.len(), MAX_WAITING);
        assert!(!evicted.contains(&0));
        assert_eq!(evicted.len(), n - MAX_WAITING);
    }

    #[test]
    fn blocks_of_equal_weight_lose_their_oldest() {
        let t = Instant::now();
        let mut a = Admission::new();
        for i in 0..MAX_WAITING {
            // 32 blocks, one connection each.
            let src = ip(&format!("198.18.{i}.1"));
            assert_eq!(a.admit(i, src, t + Duration::from_millis(i as u64)), None);
        }
        let late = t + Duration::from_secs(1);
        assert_eq!(a.admit(100, ip("198.19.0.1"), late), Some(0));
        assert_eq!(a.len(), MAX_WAITING);
    }

    #[test]
    fn ipv6_hosts_are_64s_and_blocks_56s() {
        let t = Instant::now();
        let mut a = Admission::new();
        for i in 0..10 {
            // Ten addresses in one /64: one host.
            a.admit(i, ip(&format!("2001:2:0:1::{}", i + 1)), t);
        }
        assert_eq!(a.len(), PER_HOST);
        // Another /64 is another host.
        assert_eq!(a.admit(50, ip("2001:2:0:2::1"), t), None);
        assert_eq!(a.len(), PER_HOST + 1);
    }

    #[test]
    fn proved_and_expired_connections_stop_waiting() {
        let t = Instant::now();
        let mut a = Admission::new();
        a.admit(1, ip("198.18.0.1"), t);
        a.admit(2, ip("198.18.0.2"), t + Duration::from_secs(1));
        a.forget(1);
        assert!(!a.is_waiting(1));
        assert_eq!(
            a.deadline(),
            Some(t + Duration::from_secs(1) + WAIT_TIMEOUT)
        );
        assert_eq!(a.next_expired(t + WAIT_TIMEOUT), None);
        assert_eq!(
            a.next_expired(t + Duration::from_secs(1) + WAIT_TIMEOUT),
            Some(2)
        );
        assert!(a.is_empty());
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn readmitting_a_connection_id_replaces_it() {
        let t = Instant::now();
        let mut a = Admission::new();
        a.admit(7, ip("198.18.0.1"), t);
        a.admit(7, ip("198.18.0.1"), t);
        assert_eq!(a.len(), 1);
    }
}
