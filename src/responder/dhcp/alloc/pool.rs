//! The pool the allocator hands addresses out of: its addresses
//! ([`Pool`]), how much of it is taken ([`PoolUsage`]), and the bitmap of
//! its never-used addresses ([`FreeSet`]) that lets the allocator find the
//! lowest free one without a pass over the pool.

use std::net::Ipv4Addr;

use crate::mac::MacAddr;

/// The pool's dynamic addresses that nobody holds and that have no record:
/// a bitmap over the range with a summary word per 64 words, so finding
/// the lowest member costs a scan of at most `len / 4096` words (16 for the
/// largest pool) and no pass over the pool.
#[derive(Debug, Clone, Default)]
pub(super) struct FreeSet {
    /// The first address of the range, as a number.
    base: u32,
    /// Number of addresses covered.
    len: u32,
    words: Vec<u64>,
    /// Bit `i` set when `words[i] != 0`.
    summary: Vec<u64>,
}

impl FreeSet {
    /// Every address of `first..=last` a member (none if `first > last`).
    pub(super) fn full(first: u32, last: u32) -> FreeSet {
        let len = if first <= last {
            // At most 2^32 - 1 covered: the last address is never a host.
            (last - first).saturating_add(1)
        } else {
            0
        };
        let nwords = (len as usize).div_ceil(64);
        let mut words = vec![u64::MAX; nwords];
        if len % 64 != 0
            && let Some(w) = words.last_mut()
        {
            *w = (1u64 << (len % 64)) - 1;
        }
        let mut summary = vec![u64::MAX; nwords.div_ceil(64)];
        if nwords % 64 != 0
            && let Some(w) = summary.last_mut()
        {
            *w = (1u64 << (nwords % 64)) - 1;
        }
        FreeSet {
            base: first,
            len,
            words,
            summary,
        }
    }

    fn index(&self, ip: Ipv4Addr) -> Option<usize> {
        let i = u32::from(ip).checked_sub(self.base)?;
        (i < self.len).then_some(i as usize)
    }

    pub(super) fn insert(&mut self, ip: Ipv4Addr) {
        if let Some(i) = self.index(ip) {
            self.words[i / 64] |= 1 << (i % 64);
            self.summary[i / 4096] |= 1 << ((i / 64) % 64);
        }
    }

    pub(super) fn remove(&mut self, ip: Ipv4Addr) {
        if let Some(i) = self.index(ip) {
            let w = &mut self.words[i / 64];
            *w &= !(1 << (i % 64));
            if *w == 0 {
                self.summary[i / 4096] &= !(1 << ((i / 64) % 64));
            }
        }
    }

    #[cfg(test)]
    pub(super) fn contains(&self, ip: Ipv4Addr) -> bool {
        self.index(ip)
            .is_some_and(|i| self.words[i / 64] & (1 << (i % 64)) != 0)
    }

    /// The lowest member.
    pub(super) fn first(&self) -> Option<Ipv4Addr> {
        let (s, sw) = self.summary.iter().enumerate().find(|(_, w)| **w != 0)?;
        let wi = s * 64 + sw.trailing_zeros() as usize;
        let bit = self.words[wi].trailing_zeros() as usize;
        Some(Ipv4Addr::from(self.base + (wi * 64 + bit) as u32))
    }
}

/// The pool an [`Allocator`](super::Allocator) hands out addresses from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Subnet network address (host bits zero).
    pub subnet: Ipv4Addr,
    /// Subnet prefix length, 0..=30.
    pub prefix_len: u8,
    /// First dynamic address (inclusive).
    pub start: Ipv4Addr,
    /// Last dynamic address (inclusive).
    pub end: Ipv4Addr,
    /// The server's own address: never handed out.
    pub server: Ipv4Addr,
    /// Fixed MAC → address bindings; the address may lie outside `start..=end`
    /// but inside the subnet, and is never handed to anyone else.
    pub reservations: Vec<(MacAddr, Ipv4Addr)>,
    /// Addresses in use by infrastructure (router, DNS, ARP-answered
    /// addresses): never handed out even if they fall inside the range.
    pub excluded: Vec<Ipv4Addr>,
}

impl Pool {
    fn mask(&self) -> u32 {
        prefix_mask(self.prefix_len)
    }

    /// True if `ip` is a host address of the subnet (not network or broadcast).
    pub fn is_host_in_subnet(&self, ip: Ipv4Addr) -> bool {
        let (ip, net, mask) = (u32::from(ip), u32::from(self.subnet), self.mask());
        ip & mask == net & mask && ip != net & mask && ip != (net & mask) | !mask
    }

    /// True if `ip` lies in the subnet at all.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = self.mask();
        u32::from(ip) & mask == u32::from(self.subnet) & mask
    }

    /// The range's part inside the subnet's host addresses, as numbers
    /// (`first > last` when empty).
    pub(super) fn host_range(&self) -> (u32, u32) {
        let mask = self.mask();
        let net = u32::from(self.subnet) & mask;
        let first = u32::from(self.start).max(net.saturating_add(1));
        let last = u32::from(self.end).min((net | !mask).saturating_sub(1));
        (first, last)
    }

    pub(super) fn in_range(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.start)..=u32::from(self.end)).contains(&u32::from(ip))
    }
}

/// Netmask for a prefix length (0..=32).
pub fn prefix_mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - u32::from(p)),
    }
}

/// How much of the dynamic pool is taken (for the pool-size metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Addresses the pool can hand out to any client: the range's host
    /// addresses without the server's, the excluded and the reserved ones.
    pub size: u64,
    /// Of those, how many are not free right now: leased, offered or
    /// quarantined after a decline. `in_use == size` is exactly when a new
    /// client's DISCOVER goes unanswered (pool exhausted).
    pub in_use: u64,
}
