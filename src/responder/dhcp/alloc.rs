//! The DHCP server's address allocator (pure): which address a client gets.
//!
//! [`Allocator`] keeps the records in a [`LeaseDb`] (see [`crate::leases`]
//! for what a record is and how it is kept) and adds the configured pool,
//! reservations (by MAC), short-lived offers and quarantined (declined)
//! addresses. It promises that **no address is ever held by two clients at
//! once** (a held address is an unexpired lease or a live offer). Expired
//! leases stay on record so a returning client gets its old address back,
//! and are reclaimed for other clients only when no never-used address is
//! left. Every change to the records is handed out as a [`LeaseChange`]
//! ([`Allocator::take_changes`]) for the lease store to make durable.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;

use crate::leases::{Lease, LeaseChange, LeaseDb, hex_key, mac_key};
use crate::mac::MacAddr;

/// How long an offered address stays reserved for the client it was offered to.
pub const OFFER_HOLD_SECS: u64 = 30;

/// How long a declined address (RFC 2131 DHCPDECLINE: in use by someone else)
/// is kept out of the pool.
pub const DECLINE_QUARANTINE_SECS: u64 = 600;

/// Longest first lease of a client never seen renewing: a burst of clients
/// that vanish (random MACs) frees the pool after this, not after `lease_time`.
pub const SHORT_LEASE_SECS: u64 = 300;

/// One lease as the operator sees it (`bridge-ctl leases`, status JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The client's hardware address.
    pub mac: MacAddr,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// Seconds until the lease expires (0 once it has).
    pub expires_in_secs: u64,
    /// The client identifier (option 61) the lease is keyed by, as
    /// colon-separated hex; `None` for a client keyed by its MAC.
    pub client_id: Option<String>,
}
/// The pool's dynamic addresses that nobody holds and that have no record:
/// a bitmap over the range with a summary word per 64 words, so finding
/// the lowest member costs a scan of at most `len / 4096` words (16 for the
/// largest pool) and no pass over the pool.
#[derive(Debug, Clone, Default)]
struct FreeSet {
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
    fn full(first: u32, last: u32) -> FreeSet {
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

    fn insert(&mut self, ip: Ipv4Addr) {
        if let Some(i) = self.index(ip) {
            self.words[i / 64] |= 1 << (i % 64);
            self.summary[i / 4096] |= 1 << ((i / 64) % 64);
        }
    }

    fn remove(&mut self, ip: Ipv4Addr) {
        if let Some(i) = self.index(ip) {
            let w = &mut self.words[i / 64];
            *w &= !(1 << (i % 64));
            if *w == 0 {
                self.summary[i / 4096] &= !(1 << ((i / 64) % 64));
            }
        }
    }

    #[cfg(test)]
    fn contains(&self, ip: Ipv4Addr) -> bool {
        self.index(ip)
            .is_some_and(|i| self.words[i / 64] & (1 << (i % 64)) != 0)
    }

    /// The lowest member.
    fn first(&self) -> Option<Ipv4Addr> {
        let (s, sw) = self.summary.iter().enumerate().find(|(_, w)| **w != 0)?;
        let wi = s * 64 + sw.trailing_zeros() as usize;
        let bit = self.words[wi].trailing_zeros() as usize;
        Some(Ipv4Addr::from(self.base + (wi * 64 + bit) as u32))
    }
}

/// The pool an [`Allocator`] hands out addresses from.
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
    fn host_range(&self) -> (u32, u32) {
        let mask = self.mask();
        let net = u32::from(self.subnet) & mask;
        let first = u32::from(self.start).max(net.saturating_add(1));
        let last = u32::from(self.end).min((net | !mask).saturating_sub(1));
        (first, last)
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
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

/// A client as the allocator sees it: its key (option 61, or [`mac_key`])
/// and its hardware address (for reservations and display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRef<'a> {
    /// Option 61 as sent, or `01 ‖ chaddr`.
    pub key: &'a [u8],
    /// The client hardware address (chaddr).
    pub mac: MacAddr,
}

/// Address allocation over a [`LeaseDb`]: offers, commits, releases, declines.
///
/// All times are wall-clock UNIX seconds supplied by the caller.
///
/// Cost: no operation passes over the pool or the leases (only
/// [`Allocator::usage`] and [`Allocator::leases`], which are for status).
/// Beside the records the allocator keeps a free set (the dynamic addresses
/// with no record, offer or quarantine, lowest first), an index of the
/// other dynamic addresses with a record (neither offered nor quarantined)
/// by expiry, a per-client index of pending offers, and offers and
/// quarantine in expiry order. Every change to an address's record, offer
/// or quarantine goes through `detach`/`attach`, which keep those indexes
/// right; the proptests below check them against a full scan.
#[derive(Debug, Clone)]
pub struct Allocator {
    pool: Pool,
    reserved_ip: HashMap<Ipv4Addr, MacAddr>,
    reserved_mac: HashMap<MacAddr, Ipv4Addr>,
    db: LeaseDb,
    /// Address → (key of the client it was offered to, held until).
    offers: HashMap<Ipv4Addr, (Box<[u8]>, u64)>,
    /// Client key → the address offered to it (the inverse of `offers`).
    offer_of: HashMap<Box<[u8]>, Ipv4Addr>,
    /// (held until, address) of offers in the order they were made (times
    /// only grow while the wall clock does): lapsed ones leave from the front.
    offer_queue: VecDeque<(u64, Ipv4Addr)>,
    /// Address → quarantined until.
    quarantine: HashMap<Ipv4Addr, u64>,
    /// (quarantined until, address), oldest first.
    quarantine_queue: VecDeque<(u64, Ipv4Addr)>,
    /// Dynamic addresses with no record, offer or quarantine.
    free: FreeSet,
    /// (expires, address) of dynamic addresses with a record and no offer
    /// or quarantine: the first one that has expired is reclaimed when the
    /// free set is empty.
    reclaim: BTreeSet<(u64, Ipv4Addr)>,
    /// Record changes not yet taken by [`Allocator::take_changes`].
    changes: Vec<LeaseChange>,
}

impl Allocator {
    /// Take over `db` for `pool`, dropping records the pool no longer allows
    /// (address left the subnet or pool, or is now reserved for another MAC).
    pub fn new(pool: Pool, db: LeaseDb) -> Allocator {
        let reserved_ip = pool.reservations.iter().map(|(m, ip)| (*ip, *m)).collect();
        let reserved_mac = pool.reservations.iter().copied().collect();
        let (first, last) = pool.host_range();
        let mut a = Allocator {
            free: FreeSet::full(first, last),
            pool,
            reserved_ip,
            reserved_mac,
            db: LeaseDb::default(),
            offers: HashMap::new(),
            offer_of: HashMap::new(),
            offer_queue: VecDeque::new(),
            quarantine: HashMap::new(),
            quarantine_queue: VecDeque::new(),
            reclaim: BTreeSet::new(),
            changes: Vec::new(),
        };
        let not_dynamic: Vec<Ipv4Addr> = std::iter::once(a.pool.server)
            .chain(a.pool.excluded.iter().copied())
            .chain(a.reserved_ip.keys().copied())
            .collect();
        for ip in not_dynamic {
            a.free.remove(ip);
        }
        for (key, lease) in db.iter() {
            if a.statically_allowed(&lease.mac, lease.ip) {
                a.db.insert(key, lease);
                a.free.remove(lease.ip);
                if a.is_dynamic(lease.ip) {
                    a.reclaim.insert((lease.expires, lease.ip));
                }
            } else {
                a.changes.push(LeaseChange {
                    key: key.into(),
                    lease: None,
                });
            }
        }
        a
    }

    /// The pool this allocator serves.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The underlying lease records.
    pub fn db(&self) -> &LeaseDb {
        &self.db
    }

    /// Whether `ip` is one the pool may give to any client (not reserved).
    fn is_dynamic(&self, ip: Ipv4Addr) -> bool {
        self.pool.in_range(ip)
            && self.pool.is_host_in_subnet(ip)
            && ip != self.pool.server
            && !self.pool.excluded.contains(&ip)
            && !self.reserved_ip.contains_key(&ip)
    }

    /// The address reserved for `mac`, if any.
    pub fn reservation(&self, mac: &MacAddr) -> Option<Ipv4Addr> {
        self.reserved_mac.get(mac).copied()
    }

    /// Whether the server knows the client at all: a lease record (expired or
    /// not), a pending offer, or a reservation for its MAC. RFC 2131 §4.3.2:
    /// a REQUEST from a client with no record is not answered from nothing.
    pub fn knows(&self, c: ClientRef<'_>, now: u64) -> bool {
        self.db.get(c.key).is_some()
            || self.reserved_mac.contains_key(&c.mac)
            || self
                .offer_of
                .get(c.key)
                .and_then(|ip| self.offers.get(ip))
                .is_some_and(|(_, until)| *until > now)
    }

    /// The pool's size and how much of it is taken at `now`. Costs one pass
    /// over the leases, offers and quarantined addresses (not over the pool:
    /// a large range is counted arithmetically).
    pub fn usage(&self, now: u64) -> PoolUsage {
        let (first, last) = self.pool.host_range();
        let span = if first <= last {
            u64::from(last - first) + 1
        } else {
            0
        };
        let not_handed_out: BTreeSet<Ipv4Addr> = std::iter::once(self.pool.server)
            .chain(self.pool.excluded.iter().copied())
            .chain(self.reserved_ip.keys().copied())
            .filter(|ip| (first..=last).contains(&u32::from(*ip)))
            .collect();
        let size = span - not_handed_out.len() as u64;
        let leased = self
            .db
            .iter()
            .filter(|(_, l)| l.expires > now)
            .map(|(_, l)| l.ip);
        let offered = self
            .offers
            .iter()
            .filter(|(_, (_, until))| *until > now)
            .map(|(ip, _)| *ip);
        let quarantined = self
            .quarantine
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(ip, _)| *ip);
        let taken: BTreeSet<Ipv4Addr> = leased
            .chain(offered)
            .chain(quarantined)
            .filter(|ip| self.is_dynamic(*ip))
            .collect();
        PoolUsage {
            size,
            in_use: taken.len() as u64,
        }
    }

    /// Whether `mac` may ever hold `ip`, regardless of who holds what right now.
    fn statically_allowed(&self, mac: &MacAddr, ip: Ipv4Addr) -> bool {
        if ip == self.pool.server
            || !self.pool.is_host_in_subnet(ip)
            || self.pool.excluded.contains(&ip)
        {
            return false;
        }
        if let Some(&r) = self.reserved_mac.get(mac) {
            return r == ip;
        }
        if self.reserved_ip.contains_key(&ip) {
            return false;
        }
        self.pool.in_range(ip)
    }

    /// The key of who holds `ip` right now: an unexpired lease or a live offer.
    fn holder(&self, ip: Ipv4Addr, now: u64) -> Option<&[u8]> {
        if let Some(key) = self.db.owner_key(ip)
            && self.db.get(key).is_some_and(|l| l.expires > now)
        {
            return Some(key);
        }
        match self.offers.get(&ip) {
            Some((key, until)) if *until > now => Some(key),
            _ => None,
        }
    }

    /// Whether the client may be given `ip` right now.
    pub fn usable_by(&self, c: ClientRef<'_>, ip: Ipv4Addr, now: u64) -> bool {
        self.statically_allowed(&c.mac, ip)
            && self.quarantine.get(&ip).is_none_or(|&until| until <= now)
            && self.holder(ip, now).is_none_or(|h| h == c.key)
    }

    /// Take `ip` out of the free set and the reclaim index before its
    /// record, offer or quarantine changes; [`Self::attach`] puts it back
    /// where it belongs afterwards.
    fn detach(&mut self, ip: Ipv4Addr) {
        self.free.remove(ip);
        if let Some(l) = self.db.owner_key(ip).and_then(|k| self.db.get(k)) {
            self.reclaim.remove(&(l.expires, ip));
        }
    }

    fn attach(&mut self, ip: Ipv4Addr) {
        if !self.is_dynamic(ip)
            || self.offers.contains_key(&ip)
            || self.quarantine.contains_key(&ip)
        {
            return;
        }
        match self.db.owner_key(ip).and_then(|k| self.db.get(k)) {
            None => self.free.insert(ip),
            Some(l) => {
                self.reclaim.insert((l.expires, ip));
            }
        }
    }

    /// Record `lease` for the client `key` (see [`LeaseDb::insert`]).
    fn set_record(&mut self, key: &[u8], lease: Lease) {
        let old = self.db.get(key).map(|l| l.ip);
        if let Some(o) = old {
            self.detach(o);
        }
        self.detach(lease.ip);
        self.db.insert(key, lease);
        if let Some(o) = old {
            self.attach(o);
        }
        self.attach(lease.ip);
        self.changes.push(LeaseChange {
            key: key.into(),
            lease: Some(lease),
        });
    }

    fn remove_record(&mut self, key: &[u8]) {
        let Some(ip) = self.db.get(key).map(|l| l.ip) else {
            return;
        };
        self.detach(ip);
        self.db.remove(key);
        self.attach(ip);
        self.changes.push(LeaseChange {
            key: key.into(),
            lease: None,
        });
    }

    fn remove_offer_at(&mut self, ip: Ipv4Addr) {
        if self.offers.contains_key(&ip) {
            self.detach(ip);
            if let Some((key, _)) = self.offers.remove(&ip) {
                self.offer_of.remove(&key);
            }
            self.attach(ip);
        }
    }

    fn add_offer(&mut self, ip: Ipv4Addr, key: &[u8], until: u64) {
        self.drop_offers_of(key);
        self.remove_offer_at(ip);
        self.detach(ip);
        let key: Box<[u8]> = key.into();
        self.offer_of.insert(key.clone(), ip);
        self.offers.insert(ip, (key, until));
        self.offer_queue.push_back((until, ip));
    }

    fn purge(&mut self, now: u64) {
        while let Some(&(until, ip)) = self.offer_queue.front() {
            if until > now {
                break;
            }
            self.offer_queue.pop_front();
            if self.offers.get(&ip).is_some_and(|(_, u)| *u <= now) {
                self.remove_offer_at(ip);
            }
        }
        while let Some(&(until, ip)) = self.quarantine_queue.front() {
            if until > now {
                break;
            }
            self.quarantine_queue.pop_front();
            if self.quarantine.get(&ip).is_some_and(|u| *u <= now) {
                self.detach(ip);
                self.quarantine.remove(&ip);
                self.attach(ip);
            }
        }
    }

    fn drop_offers_of(&mut self, key: &[u8]) {
        if let Some(&ip) = self.offer_of.get(key) {
            self.remove_offer_at(ip);
        }
    }

    /// Pick an address for the client (DHCPDISCOVER) and hold it for
    /// [`OFFER_HOLD_SECS`]. `None` when nothing is free.
    ///
    /// Preference: the MAC's reservation; the client's current or previous
    /// lease; its pending offer; the address it asked for; the lowest
    /// never-used pool address; and last the pool address whose lease
    /// expired longest ago.
    pub fn offer(
        &mut self,
        c: ClientRef<'_>,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        self.purge(now);
        let ip = self.choose(c, requested, now)?;
        self.add_offer(ip, c.key, now.saturating_add(OFFER_HOLD_SECS));
        Some(ip)
    }

    fn choose(&self, c: ClientRef<'_>, requested: Option<Ipv4Addr>, now: u64) -> Option<Ipv4Addr> {
        if let Some(&r) = self.reserved_mac.get(&c.mac) {
            return self.usable_by(c, r, now).then_some(r);
        }
        let pending = self.offer_of.get(c.key).copied();
        let previous = self.db.get(c.key).map(|l| l.ip);
        for ip in [previous, pending, requested].into_iter().flatten() {
            if self.usable_by(c, ip, now) {
                return Some(ip);
            }
        }
        if let Some(ip) = self.free.first() {
            debug_assert!(self.usable_by(c, ip, now), "free set holds {ip}");
            return Some(ip);
        }
        self.reclaim
            .first()
            .filter(|(expires, _)| *expires <= now)
            .map(|(_, ip)| *ip)
    }

    /// Bind `ip` to the client until `now + lease_secs` (DHCPREQUEST →
    /// DHCPACK); `renewed` is stored with it (see [`Lease::renewed`]).
    /// Returns false, changing nothing, when the client may not have `ip`
    /// (→ DHCPNAK).
    pub fn commit(
        &mut self,
        c: ClientRef<'_>,
        ip: Ipv4Addr,
        lease_secs: u64,
        renewed: bool,
        now: u64,
    ) -> bool {
        self.purge(now);
        if !self.usable_by(c, ip, now) {
            return false;
        }
        self.drop_offers_of(c.key);
        self.remove_offer_at(ip);
        let lease = Lease {
            ip,
            expires: now.saturating_add(lease_secs),
            mac: c.mac,
            renewed,
        };
        self.set_record(c.key, lease);
        true
    }

    /// Withdraw a pending offer (the client chose another server).
    pub fn cancel_offer(&mut self, key: &[u8]) {
        self.drop_offers_of(key);
    }

    /// DHCPRELEASE: end the lease now but remember it, so the client gets the
    /// same address next time if it is still free. Ignored unless the client
    /// holds `ip`.
    pub fn release(&mut self, key: &[u8], ip: Ipv4Addr, now: u64) -> bool {
        self.drop_offers_of(key);
        match self.db.get(key) {
            Some(l) if l.ip == ip && l.expires > now => {
                self.set_record(key, Lease { expires: now, ..l });
                true
            }
            _ => false,
        }
    }

    /// DHCPDECLINE: the client found `ip` in use. Forget the client's claim and
    /// keep the address out of the pool for [`DECLINE_QUARANTINE_SECS`].
    /// Ignored unless the client holds `ip` (as a lease or an offer), so nobody
    /// can quarantine others' addresses.
    pub fn decline(&mut self, key: &[u8], ip: Ipv4Addr, now: u64) -> bool {
        let leased = self.db.get(key).is_some_and(|l| l.ip == ip);
        let offered = self.offers.get(&ip).is_some_and(|(k, _)| **k == *key);
        if !leased && !offered {
            return false;
        }
        if leased {
            self.remove_record(key);
        }
        self.remove_offer_at(ip);
        let until = now.saturating_add(DECLINE_QUARANTINE_SECS);
        self.detach(ip);
        self.quarantine.insert(ip, until);
        self.queue_quarantine(ip, until);
        true
    }

    /// Queues the end of `ip`'s quarantine at `until`, in order: a
    /// conflict's term may end before a decline's queued earlier, and
    /// `purge` lifts them front first.
    fn queue_quarantine(&mut self, ip: Ipv4Addr, until: u64) {
        let at = self.quarantine_queue.partition_point(|e| *e <= (until, ip));
        self.quarantine_queue.insert(at, (until, ip));
    }

    /// Keep `ip` out of the pool until `until` (UNIX seconds), withdrawing
    /// any offer of it; leases are untouched. The hook of the conflict check
    /// ([`super::conflict`]): another host was seen using the address.
    pub fn set_aside(&mut self, ip: Ipv4Addr, until: u64) {
        self.remove_offer_at(ip);
        self.detach(ip);
        let q = self.quarantine.entry(ip).or_insert(0);
        if until > *q {
            *q = until;
            self.queue_quarantine(ip, until);
        }
        self.attach(ip);
    }

    /// Unexpired leases, sorted by address.
    pub fn leases(&self, now: u64) -> Vec<LeaseInfo> {
        let mut v: Vec<LeaseInfo> = self
            .db
            .iter()
            .filter(|(_, l)| l.expires > now)
            .map(|(key, l)| LeaseInfo {
                mac: l.mac,
                ip: l.ip,
                expires_in_secs: l.expires - now,
                client_id: (key != mac_key(&l.mac).as_slice()).then(|| hex_key(key)),
            })
            .collect();
        v.sort_by_key(|l| l.ip);
        v
    }

    /// Move the record changes made since the last call to the end of
    /// `out`, oldest first (the shell journals them).
    pub fn take_changes(&mut self, out: &mut Vec<LeaseChange>) {
        out.append(&mut self.changes);
    }

    /// Whether records changed since the last [`Self::take_changes`] or
    /// [`Self::take_snapshot`].
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// `Some(file bytes)` if the records changed since the last call (or
    /// the last [`Self::take_changes`]), which it forgets.
    pub fn take_snapshot(&mut self) -> Option<Vec<u8>> {
        if self.changes.is_empty() {
            return None;
        }
        self.changes.clear();
        Some(self.db.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M1: MacAddr = MacAddr([2, 0, 0, 0, 0xaa, 1]);
    const M2: MacAddr = MacAddr([2, 0, 0, 0, 0xaa, 2]);
    const M3: MacAddr = MacAddr([2, 0, 0, 0, 0xaa, 3]);
    const T0: u64 = 1_700_000_000;

    fn cl(m: &MacAddr) -> ClientRef<'static> {
        ClientRef {
            key: Box::leak(Box::new(mac_key(m))),
            mac: *m,
        }
    }

    fn ins(db: &mut LeaseDb, m: MacAddr, ip: Ipv4Addr, expires: u64) {
        let lease = Lease {
            ip,
            expires,
            mac: m,
            renewed: true,
        };
        db.insert(&mac_key(&m), lease);
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, 0, last)
    }

    fn pool(start: u8, end: u8) -> Pool {
        Pool {
            subnet: ip(0),
            prefix_len: 24,
            start: ip(start),
            end: ip(end),
            server: ip(254),
            reservations: vec![(M3, ip(10))],
            excluded: vec![ip(1)],
        }
    }

    #[test]
    fn offers_distinct_addresses_and_holds_them() {
        let mut a = Allocator::new(pool(100, 101), LeaseDb::default());
        let o1 = a.offer(cl(&M1), None, T0).expect("free address");
        let o2 = a.offer(cl(&M2), None, T0).expect("free address");
        assert_ne!(o1, o2);
        // Pool of two is now fully held by offers.
        assert_eq!(a.offer(cl(&MacAddr([2, 9, 9, 9, 9, 9])), None, T0), None);
        // After the hold, the offers lapse.
        assert!(
            a.offer(cl(&MacAddr([2, 9, 9, 9, 9, 9])), None, T0 + OFFER_HOLD_SECS)
                .is_some()
        );
    }

    #[test]
    fn reservation_wins_and_is_not_given_to_others() {
        let mut a = Allocator::new(pool(10, 10), LeaseDb::default());
        // 198.19.0.10 is inside the range but reserved for M3.
        assert_eq!(a.offer(cl(&M1), Some(ip(10)), T0), None);
        assert!(!a.commit(cl(&M1), ip(10), 60, true, T0));
        assert_eq!(a.offer(cl(&M3), None, T0), Some(ip(10)));
        // M3 cannot take a dynamic address instead of its reservation.
        let mut b = Allocator::new(pool(100, 110), LeaseDb::default());
        assert!(!b.commit(cl(&M3), ip(100), 60, true, T0));
        assert!(b.commit(cl(&M3), ip(10), 60, true, T0));
    }

    #[test]
    fn same_mac_gets_previous_address_back_even_after_expiry() {
        let mut a = Allocator::new(pool(100, 110), LeaseDb::default());
        assert!(a.commit(cl(&M1), ip(105), 60, true, T0));
        assert_eq!(a.offer(cl(&M1), None, T0 + 10_000), Some(ip(105)));
        assert!(
            !a.release(&mac_key(&M1), ip(105), T0 + 10_001),
            "already expired"
        );
        assert!(a.commit(cl(&M1), ip(105), 60, true, T0 + 20_000));
        assert!(a.release(&mac_key(&M1), ip(105), T0 + 20_001));
        assert_eq!(a.offer(cl(&M1), None, T0 + 20_002), Some(ip(105)));
    }

    #[test]
    fn expired_leases_are_reclaimed_only_when_pool_is_otherwise_full() {
        let mut a = Allocator::new(pool(100, 101), LeaseDb::default());
        assert!(a.commit(cl(&M1), ip(100), 60, true, T0));
        // While M1's lease runs, M2 gets the other address and nothing else.
        assert_eq!(a.offer(cl(&M2), None, T0 + 1), Some(ip(101)));
        assert!(a.commit(cl(&M2), ip(101), 60, true, T0 + 1));
        // M3's reservation lies outside the dynamic range and is still served.
        assert_eq!(a.offer(cl(&M3), None, T0 + 1), Some(ip(10)));
        let m4 = MacAddr([2, 0, 0, 0, 0xaa, 4]);
        assert_eq!(a.offer(cl(&m4), None, T0 + 2), None);
        // After M1 expires its address can be reclaimed.
        assert_eq!(a.offer(cl(&m4), None, T0 + 61), Some(ip(100)));
        assert!(a.commit(cl(&m4), ip(100), 60, true, T0 + 61));
        assert_eq!(a.db().get_mac(&M1), None, "M1's stale record is gone");
    }

    #[test]
    fn excluded_addresses_are_never_handed_out() {
        let mut p = pool(100, 101);
        p.excluded.push(ip(100));
        let mut a = Allocator::new(p, LeaseDb::default());
        assert_eq!(a.offer(cl(&M1), Some(ip(100)), T0), Some(ip(101)));
        assert_eq!(a.offer(cl(&M2), None, T0), None);
        assert!(!a.commit(cl(&M2), ip(100), 60, true, T0));
    }

    #[test]
    fn decline_quarantines_address() {
        let mut a = Allocator::new(pool(100, 100), LeaseDb::default());
        assert!(a.commit(cl(&M1), ip(100), 600, true, T0));
        // Someone else cannot decline M1's address.
        assert!(!a.decline(&mac_key(&M2), ip(100), T0));
        assert!(a.decline(&mac_key(&M1), ip(100), T0));
        assert_eq!(a.db().get_mac(&M1), None);
        assert_eq!(a.offer(cl(&M2), None, T0 + 1), None);
        assert_eq!(a.offer(cl(&M1), None, T0 + 1), None);
        assert!(!a.commit(cl(&M2), ip(100), 60, true, T0 + 1));
        assert_eq!(
            a.offer(cl(&M2), None, T0 + DECLINE_QUARANTINE_SECS),
            Some(ip(100))
        );
    }

    #[test]
    fn persistence_round_trip_and_dirty_tracking() {
        let mut a = Allocator::new(pool(100, 110), LeaseDb::default());
        assert_eq!(a.take_snapshot(), None);
        assert!(a.commit(cl(&M1), ip(100), 3600, true, T0));
        assert!(a.commit(cl(&M3), ip(10), 3600, true, T0));
        let bytes = a.take_snapshot().expect("changed");
        assert_eq!(a.take_snapshot(), None, "no change since last snapshot");
        let db = LeaseDb::load(&bytes).expect("valid");
        assert_eq!(db.len(), 2);
        assert_eq!(
            db.get_mac(&M1),
            Some(Lease {
                ip: ip(100),
                expires: T0 + 3600,
                mac: M1,
                renewed: true,
            })
        );
        let b = Allocator::new(pool(100, 110), db);
        assert_eq!(b.leases(T0 + 600), a.leases(T0 + 600));
        assert_eq!(b.leases(T0 + 600)[0].expires_in_secs, 3000);
        let text = String::from_utf8(bytes).expect("utf8");
        assert!(text.contains("\"mac\": \"02:00:00:00:aa:01\""), "{text}");
        assert!(text.contains("\"version\": 2"), "{text}");
        assert!(
            text.contains("\"client\": \"01:02:00:00:00:aa:01\""),
            "{text}"
        );
    }

    #[test]
    fn client_ids_key_leases_and_reservations_stay_by_mac() {
        let duid: &[u8] = &[0xff, 0, 0, 0, 1, 0, 2, 0, 1, 0x52, 0x54, 0, 0, 1, 1];
        let other: &[u8] = &[0xff, 0, 0, 0, 2, 0, 2, 0, 1, 0x52, 0x54, 0, 0, 1, 1];
        let a1 = ClientRef { key: duid, mac: M1 };
        let a2 = ClientRef {
            key: other,
            mac: M1,
        };
        let mut a = Allocator::new(pool(100, 110), LeaseDb::default());
        let o1 = a.offer(a1, None, T0).expect("free");
        assert!(a.commit(a1, o1, 60, false, T0));
        // Same MAC, another client identifier: another client.
        let o2 = a.offer(a2, Some(o1), T0).expect("free");
        assert_ne!(o1, o2);
        assert!(!a.commit(a2, o1, 60, false, T0));
        assert_eq!(a.db().get(duid).map(|l| l.ip), Some(o1));
        assert_eq!(a.db().get_mac(&M1), None, "not keyed by MAC");
        // A reserved MAC gets its reservation whatever client id it sends.
        let r = ClientRef { key: duid, mac: M3 };
        let mut b = Allocator::new(pool(100, 110), LeaseDb::default());
        assert_eq!(b.offer(r, None, T0), Some(ip(10)));
        let bytes = {
            assert!(b.commit(r, ip(10), 60, true, T0));
            b.take_snapshot().expect("dirty")
        };
        let db = LeaseDb::load(&bytes).expect("valid");
        assert_eq!(db.get(duid).map(|l| (l.ip, l.mac)), Some((ip(10), M3)));
    }

    #[test]
    fn new_drops_records_the_pool_no_longer_allows() {
        let mut db = LeaseDb::default();
        ins(&mut db, M1, ip(100), T0 + 100); // fine
        ins(&mut db, M2, ip(10), T0 + 100); // reserved for M3
        let foreign = Ipv4Addr::new(10, 0, 0, 1);
        ins(&mut db, MacAddr([2, 0, 0, 0, 0xaa, 5]), foreign, T0 + 100);
        let mut a = Allocator::new(pool(100, 110), db);
        assert_eq!(a.db().len(), 1);
        assert!(
            a.take_snapshot().is_some(),
            "dropping records marks it dirty"
        );
    }

    #[test]
    fn usage_counts_the_dynamic_pool_and_what_is_taken() {
        // 100..=110: eleven addresses, of which .105 is excluded and .110
        // reserved for M3; the server (.254) and M3's other reservation (.10)
        // lie outside the range.
        let mut p = pool(100, 110);
        p.excluded.push(ip(105));
        p.reservations
            .push((MacAddr([2, 0, 0, 0, 0xaa, 9]), ip(110)));
        let mut a = Allocator::new(p, LeaseDb::default());
        assert_eq!(a.usage(T0), PoolUsage { size: 9, in_use: 0 });
        assert!(a.commit(cl(&M1), ip(100), 60, true, T0));
        a.offer(cl(&M2), None, T0).expect("free address");
        // A reservation's lease is not the dynamic pool's.
        assert!(a.commit(cl(&M3), ip(10), 60, true, T0));
        assert_eq!(a.usage(T0), PoolUsage { size: 9, in_use: 2 });
        assert!(a.decline(&mac_key(&M1), ip(100), T0 + 1));
        assert_eq!(a.usage(T0 + 1).in_use, 2, "quarantined counts as taken");
        // Offers lapse, leases and quarantine expire.
        assert_eq!(a.usage(T0 + DECLINE_QUARANTINE_SECS + 1).in_use, 0);
    }

    #[test]
    fn usage_of_a_range_wider_than_the_subnet_counts_host_addresses_only() {
        let mut p = pool(0, 255);
        p.excluded.clear();
        p.reservations.clear();
        let a = Allocator::new(p.clone(), LeaseDb::default());
        // 254 host addresses, minus the server.
        assert_eq!(a.usage(T0).size, 253);
        p.subnet = Ipv4Addr::new(10, 0, 0, 0);
        p.prefix_len = 8;
        p.start = Ipv4Addr::new(10, 0, 0, 0);
        p.end = Ipv4Addr::new(10, 255, 255, 255);
        p.server = Ipv4Addr::new(10, 0, 0, 1);
        let a = Allocator::new(p, LeaseDb::default());
        assert_eq!(a.usage(T0).size, (1 << 24) - 3);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Discover(usize, Option<u8>),
        Request(usize, u8),
        Release(usize),
        Decline(usize),
        /// The conflict check saw the address in use for this long.
        SetAside(u8, u64),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6usize, proptest::option::of(95u8..115)).prop_map(|(m, r)| Op::Discover(m, r)),
            (0..6usize, 95u8..115).prop_map(|(m, i)| Op::Request(m, i)),
            (0..6usize).prop_map(Op::Release),
            (0..6usize).prop_map(Op::Decline),
            (95u8..115, 1..900u64).prop_map(|(i, t)| Op::SetAside(i, t)),
            (0..700u64).prop_map(Op::Advance),
        ]
    }

    impl Allocator {
        /// Checks every index against a full scan of the pool, and returns
        /// what the allocator before the indexes (a scan of the range for
        /// the lowest address with no record, then of the records for the
        /// one that expired longest ago) would offer a new client `c`.
        fn check_against_scan(&self, c: ClientRef<'_>, now: u64) -> Option<Ipv4Addr> {
            let (first, last) = self.pool.host_range();
            let mut reclaimable = 0;
            for n in first..=last {
                let ip = Ipv4Addr::from(n);
                let record = self.db.owner_key(ip).and_then(|k| self.db.get(k));
                let idle = self.is_dynamic(ip)
                    && !self.offers.contains_key(&ip)
                    && !self.quarantine.contains_key(&ip);
                assert_eq!(self.free.contains(ip), idle && record.is_none(), "{ip}");
                if let Some(l) = record.filter(|_| idle) {
                    assert!(self.reclaim.contains(&(l.expires, ip)), "{ip}");
                    reclaimable += 1;
                }
            }
            assert_eq!(self.reclaim.len(), reclaimable);
            assert_eq!(self.offers.len(), self.offer_of.len());
            for (ip, (k, _)) in &self.offers {
                assert_eq!(self.offer_of.get(k), Some(ip));
            }
            let fresh = (first..=last)
                .map(Ipv4Addr::from)
                .find(|&ip| self.db.owner_key(ip).is_none() && self.usable_by(c, ip, now));
            fresh.or_else(|| {
                self.db
                    .iter()
                    .filter(|(_, l)| self.usable_by(c, l.ip, now))
                    .min_by_key(|(_, l)| (l.expires, l.ip))
                    .map(|(_, l)| l.ip)
            })
        }
    }

    #[test]
    fn free_set_finds_the_lowest_member_across_words() {
        let mut f = FreeSet::full(10, 10 + 5000);
        assert_eq!(f.first(), Some(Ipv4Addr::from(10)));
        for n in 10..=4200 {
            f.remove(Ipv4Addr::from(n));
        }
        assert_eq!(f.first(), Some(Ipv4Addr::from(4201)));
        f.insert(Ipv4Addr::from(77));
        assert_eq!(f.first(), Some(Ipv4Addr::from(77)));
        f.remove(Ipv4Addr::from(77));
        for n in 4201..=5010 {
            f.remove(Ipv4Addr::from(n));
        }
        assert_eq!(f.first(), None);
        f.insert(Ipv4Addr::from(9)); // outside: ignored
        f.insert(Ipv4Addr::from(5011));
        assert_eq!(f.first(), None);
        assert_eq!(FreeSet::full(5, 4).first(), None);
    }

    #[test]
    fn a_full_large_pool_is_served_without_scanning_it() {
        // 65,534 hosts of a /16: every client gets a distinct address, the
        // lowest free first, then expired ones in expiry order.
        let mut p = pool(0, 0);
        p.subnet = Ipv4Addr::new(198, 18, 0, 0);
        p.prefix_len = 16;
        p.start = Ipv4Addr::new(198, 18, 0, 0);
        p.end = Ipv4Addr::new(198, 18, 255, 255);
        p.server = Ipv4Addr::new(198, 18, 0, 1);
        p.reservations.clear();
        p.excluded.clear();
        let mut a = Allocator::new(p, LeaseDb::default());
        let key = |n: u32| {
            let mut k = [1u8; 7];
            k[3..].copy_from_slice(&n.to_be_bytes());
            k
        };
        let mac = |n: u32| {
            MacAddr([
                2,
                1,
                n.to_be_bytes()[0],
                n.to_be_bytes()[1],
                n.to_be_bytes()[2],
                n.to_be_bytes()[3],
            ])
        };
        let mut seen = BTreeSet::new();
        for n in 0..65_533u32 {
            let k = key(n);
            let c = ClientRef {
                key: &k,
                mac: mac(n),
            };
            let ip = a.offer(c, None, T0).expect("room");
            assert!(a.commit(c, ip, 60 + u64::from(n % 7), true, T0));
            assert!(seen.insert(ip), "{ip} twice");
        }
        assert_eq!(seen.first(), Some(&Ipv4Addr::new(198, 18, 0, 2)));
        let k = key(1 << 20);
        let late = ClientRef {
            key: &k,
            mac: mac(1 << 20),
        };
        assert_eq!(a.offer(late, None, T0 + 1), None, "full");
        // After expiry, the first to have expired (n % 7 == 0, lowest) is reused.
        assert_eq!(
            a.offer(late, None, T0 + 60),
            Some(Ipv4Addr::new(198, 18, 0, 2))
        );
        assert_eq!(a.take_changes_len(), 65_533);
    }

    impl Allocator {
        fn take_changes_len(&mut self) -> usize {
            let mut v = Vec::new();
            self.take_changes(&mut v);
            v.len()
        }
    }

    proptest! {
        /// Whatever clients do, no address is ever granted to two MACs whose
        /// grants are both still running, and offers never collide with grants.
        #[test]
        fn no_address_held_by_two_macs(ops in proptest::collection::vec(op(), 1..200)) {
            let macs: Vec<MacAddr> = (0..6u8).map(|i| MacAddr([2, 0, 0, 0, 0xbb, i])).collect();
            let mut p = pool(100, 104);
            p.reservations = vec![(macs[5], ip(102))];
            let mut a = Allocator::new(p, LeaseDb::default());
            let mut now = T0;
            // What each client was told: granted address and its expiry.
            let mut granted: Vec<Option<(Ipv4Addr, u64)>> = vec![None; macs.len()];
            let mut offered: Vec<Option<(Ipv4Addr, u64)>> = vec![None; macs.len()];
            for op in ops {
                match op {
                    Op::Discover(m, r) => {
                        offered[m] = a.offer(cl(&macs[m]), r.map(ip), now)
                            .map(|i| (i, now + OFFER_HOLD_SECS));
                    }
                    Op::Request(m, i) => {
                        if a.commit(cl(&macs[m]), ip(i), 300, true, now) {
                            granted[m] = Some((ip(i), now + 300));
                            offered[m] = None;
                        }
                    }
                    Op::Release(m) => {
                        if let Some((i, _)) = granted[m] {
                            // Releasing also withdraws any pending offer.
                            a.release(&mac_key(&macs[m]), i, now);
                            granted[m] = None;
                            offered[m] = None;
                        }
                    }
                    Op::Decline(m) => {
                        if let Some((i, _)) = granted[m].or(offered[m]) {
                            a.decline(&mac_key(&macs[m]), i, now);
                            granted[m] = None;
                            offered[m] = None;
                        }
                    }
                    Op::SetAside(i, t) => {
                        a.set_aside(ip(i), now + t);
                        // Any offer of it is withdrawn; leases stay.
                        for o in &mut offered {
                            if o.is_some_and(|(x, _)| x == ip(i)) {
                                *o = None;
                            }
                        }
                    }
                    Op::Advance(s) => now += s,
                }
                let mut held: HashMap<Ipv4Addr, usize> = HashMap::new();
                for (m, g) in granted.iter().enumerate().chain(offered.iter().enumerate()) {
                    if let Some((i, until)) = g && *until > now {
                        let prev = held.insert(*i, m);
                        prop_assert!(prev.is_none_or(|p| p == m),
                            "{i} held by clients {prev:?} and {m}");
                        prop_assert!(i != &ip(102) || m == 5, "reserved address leaked");
                    }
                }
            }
        }

        /// The indexes always agree with a full scan, and a new client is
        /// offered what the scanning allocator would have offered: the
        /// lowest never-used address, else one that expired longest ago.
        #[test]
        fn indexes_match_a_full_scan(ops in proptest::collection::vec(op(), 1..150)) {
            let macs: Vec<MacAddr> = (0..6u8).map(|i| MacAddr([2, 0, 0, 0, 0xbb, i])).collect();
            // Three dynamic addresses (100, 101, 103) for five clients and a
            // newcomer: the free set runs dry and expired leases are reclaimed.
            let mut p = pool(99, 104);
            p.reservations = vec![(macs[5], ip(102))];
            p.excluded.extend([ip(99), ip(104)]);
            let mut a = Allocator::new(p, LeaseDb::default());
            let mut now = T0;
            let newcomer = MacAddr([2, 0, 0, 0, 0xcc, 1]);
            for op in ops {
                match op {
                    Op::Discover(m, r) => { a.offer(cl(&macs[m]), r.map(ip), now); }
                    Op::Request(m, i) => { a.commit(cl(&macs[m]), ip(i), 300, true, now); }
                    Op::Release(m) => {
                        if let Some(l) = a.db().get_mac(&macs[m]) {
                            a.release(&mac_key(&macs[m]), l.ip, now);
                        }
                    }
                    Op::Decline(m) => {
                        let held = a.db().get_mac(&macs[m]).map(|l| l.ip)
                            .or_else(|| a.offer_of.get(&mac_key(&macs[m])[..]).copied());
                        if let Some(i) = held {
                            a.decline(&mac_key(&macs[m]), i, now);
                        }
                    }
                    Op::SetAside(i, t) => a.set_aside(ip(i), now + t),
                    Op::Advance(s) => now += s,
                }
                let mut b = a.clone();
                b.purge(now);
                let want = b.check_against_scan(cl(&newcomer), now);
                let got = b.offer(cl(&newcomer), None, now);
                prop_assert_eq!(got, want);
                b.check_against_scan(cl(&newcomer), now);
            }
        }

        /// The pool is reported full exactly when a new client would get no
        /// offer, whatever happened before.
        #[test]
        fn usage_is_full_exactly_when_a_new_client_gets_nothing(
            ops in proptest::collection::vec(op(), 1..120)
        ) {
            let macs: Vec<MacAddr> = (0..6u8).map(|i| MacAddr([2, 0, 0, 0, 0xbb, i])).collect();
            let mut p = pool(100, 104);
            p.reservations = vec![(macs[5], ip(102))];
            let mut a = Allocator::new(p, LeaseDb::default());
            let mut now = T0;
            for op in ops {
                match op {
                    Op::Discover(m, r) => { a.offer(cl(&macs[m]), r.map(ip), now); }
                    Op::Request(m, i) => { a.commit(cl(&macs[m]), ip(i), 300, true, now); }
                    Op::Release(m) => {
                        if let Some(l) = a.db().get_mac(&macs[m]) {
                            a.release(&mac_key(&macs[m]), l.ip, now);
                        }
                    }
                    Op::Decline(m) => {
                        if let Some(l) = a.db().get_mac(&macs[m]) {
                            a.decline(&mac_key(&macs[m]), l.ip, now);
                        }
                    }
                    Op::SetAside(i, t) => a.set_aside(ip(i), now + t),
                    Op::Advance(s) => now += s,
                }
                let u = a.usage(now);
                prop_assert_eq!(u.size, 4);
                prop_assert!(u.in_use <= u.size);
                let newcomer = MacAddr([2, 0, 0, 0, 0xcc, 1]);
                let offered = a.clone().offer(cl(&newcomer), None, now);
                prop_assert_eq!(u.in_use == u.size, offered.is_none(), "{:?}", u);
            }
        }
    }
}
