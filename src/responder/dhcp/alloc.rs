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

mod pool;
use pool::FreeSet;
pub use pool::{Pool, PoolUsage, prefix_mask};

/// How long an offered address stays reserved for the client it was offered to.
pub const OFFER_HOLD_SECS: u64 = 30;

/// How long a declined address (RFC 2131 DHCPDECLINE: in use by someone else)
/// is kept out of the pool.
pub const DECLINE_QUARANTINE_SECS: u64 = 600;

/// The default of `dhcp.first_lease`: the longest first lease of a client
/// never seen renewing, so a burst of clients that vanish (random MACs)
/// frees the pool after this, not after `lease_time`.
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
/// right; the proptests (in `tests.rs`) check them against a full scan.
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
        // Room from the start for a lease on every address the pool can
        // give (at most MAX_POOL_SIZE and the reservations): a table that
        // grows is rehashed whole, and at 57,344 leases that took 7-8 ms
        // here, a pause of the worker in the middle of the burst of
        // clients that made it grow.
        let room = last.saturating_sub(first) as usize + 1 + pool.reservations.len();
        let mut a = Allocator {
            free: FreeSet::full(first, last),
            pool,
            reserved_ip,
            reserved_mac,
            db: LeaseDb::with_capacity(room),
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

    /// A record the partner of a high-availability pair made (the active
    /// box's lease, or its end): recorded here as if granted here, so the
    /// client keeps its address when it renews at this box, and journalled
    /// like any change. A record this pool could never hold (outside it,
    /// reserved for another MAC) is not taken: false.
    pub fn apply_replicated(&mut self, change: &LeaseChange) -> bool {
        match change.lease {
            Some(l) if self.statically_allowed(&l.mac, l.ip) => {
                self.drop_offers_of(&change.key);
                self.remove_offer_at(l.ip);
                self.set_record(&change.key, l);
                true
            }
            Some(_) => false,
            None => {
                self.remove_record(&change.key);
                true
            }
        }
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
mod tests;
