//! DHCP lease store (pure): the address allocator and the lease file format.
//!
//! [`LeaseDb`] and [`Allocator`] record which MAC holds which address until
//! when, expressed in wall-clock UNIX seconds so a lease survives a restart.
//! The allocator adds the configured pool, reservations, short-lived offers
//! and quarantined (declined) addresses, and promises that **no address is
//! ever held by two MACs at once** (a held address is an unexpired lease or a
//! live offer). Expired leases stay on record so a returning client gets its
//! old address back, and are reclaimed for other clients only when no
//! never-used address is left.
//!
//! [`LeaseDb::load`] and [`LeaseDb::to_bytes`] parse and produce the file's
//! bytes; reading and writing the file itself is the I/O shell's job
//! (`crate::datapath::lease_file`).
//!
//! File format (JSON, versioned):
//! `{"version":1,"leases":[{"mac":"02:00:00:00:aa:01","ip":"198.19.0.10","expires":1700000000}]}`
//! where `expires` is UNIX seconds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;

/// Version written into, and required from, the lease file.
const FILE_VERSION: u32 = 1;

/// How long an offered address stays reserved for the client it was offered to.
pub const OFFER_HOLD_SECS: u64 = 30;

/// How long a declined address (RFC 2131 DHCPDECLINE: in use by someone else)
/// is kept out of the pool.
pub const DECLINE_QUARANTINE_SECS: u64 = 600;

/// One lease as the operator sees it (`bridge-ctl leases`, status JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The client's hardware address.
    pub mac: MacAddr,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// Seconds until the lease expires (0 once it has).
    pub expires_in_secs: u64,
}

/// A recorded lease: `mac` held `ip` until `expires` (UNIX seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The leased address.
    pub ip: Ipv4Addr,
    /// Expiry, UNIX seconds (wall clock, so it means the same after a restart).
    pub expires: u64,
}

/// The persisted lease table: at most one lease per MAC and one MAC per address.
///
/// Build it empty with [`LeaseDb::default`] or from a file's bytes with
/// [`LeaseDb::load`]; hand it to the responder, which owns it from then on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseDb {
    by_mac: BTreeMap<MacAddr, Lease>,
    by_ip: BTreeMap<Ipv4Addr, MacAddr>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    version: u32,
    leases: Vec<RecordRepr>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordRepr {
    mac: String,
    ip: Ipv4Addr,
    expires: u64,
}

impl LeaseDb {
    /// Parse the bytes of a lease file. Empty input is an empty database.
    ///
    /// If the file names one address or one MAC twice, the lease that expires
    /// last wins, so a damaged file can never make two clients share an address.
    pub fn load(bytes: &[u8]) -> Result<LeaseDb, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(LeaseDb::default());
        }
        let file: FileRepr = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.version != FILE_VERSION {
            return Err(format!(
                "unsupported lease file version {} (expected {FILE_VERSION})",
                file.version
            ));
        }
        let mut records = Vec::with_capacity(file.leases.len());
        for r in file.leases {
            let mac: MacAddr = r
                .mac
                .parse()
                .map_err(|_| format!("invalid MAC address {:?}", r.mac))?;
            records.push((mac, r.ip, r.expires));
        }
        // Latest expiry first, so the first insert for a MAC or an IP wins.
        records.sort_by_key(|r| std::cmp::Reverse(r.2));
        let mut db = LeaseDb::default();
        for (mac, ip, expires) in records {
            if !db.by_mac.contains_key(&mac) && !db.by_ip.contains_key(&ip) {
                db.insert(mac, ip, expires);
            }
        }
        Ok(db)
    }

    /// Serialize to the lease file format (deterministic: sorted by MAC).
    pub fn to_bytes(&self) -> Vec<u8> {
        let file = FileRepr {
            version: FILE_VERSION,
            leases: self
                .by_mac
                .iter()
                .map(|(mac, l)| RecordRepr {
                    mac: mac.to_string(),
                    ip: l.ip,
                    expires: l.expires,
                })
                .collect(),
        };
        let mut out = serde_json::to_vec_pretty(&file).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The lease recorded for `mac`, expired or not.
    pub fn get(&self, mac: &MacAddr) -> Option<Lease> {
        self.by_mac.get(mac).copied()
    }

    /// The MAC recorded for `ip`, expired or not.
    pub fn owner(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.by_ip.get(&ip).copied()
    }

    /// Number of recorded leases (expired ones included).
    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }

    /// Iterate over all records, expired ones included, sorted by MAC.
    pub fn iter(&self) -> impl Iterator<Item = (MacAddr, Lease)> + '_ {
        self.by_mac.iter().map(|(m, l)| (*m, *l))
    }

    /// Record `mac` → `ip` until `expires`, dropping the MAC's previous record
    /// and any other MAC's record for `ip`. Callers decide whether that is allowed.
    pub fn insert(&mut self, mac: MacAddr, ip: Ipv4Addr, expires: u64) {
        self.remove_mac(&mac);
        if let Some(other) = self.by_ip.remove(&ip) {
            self.by_mac.remove(&other);
        }
        self.by_mac.insert(mac, Lease { ip, expires });
        self.by_ip.insert(ip, mac);
    }

    /// Forget the MAC's record entirely.
    pub fn remove_mac(&mut self, mac: &MacAddr) -> Option<Lease> {
        let old = self.by_mac.remove(mac)?;
        self.by_ip.remove(&old.ip);
        Some(old)
    }

    fn set_expiry(&mut self, mac: &MacAddr, expires: u64) {
        if let Some(l) = self.by_mac.get_mut(mac) {
            l.expires = expires;
        }
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

/// Address allocation over a [`LeaseDb`]: offers, commits, releases, declines.
///
/// All times are wall-clock UNIX seconds supplied by the caller.
#[derive(Debug, Clone)]
pub struct Allocator {
    pool: Pool,
    reserved_ip: HashMap<Ipv4Addr, MacAddr>,
    reserved_mac: HashMap<MacAddr, Ipv4Addr>,
    db: LeaseDb,
    /// Address → (MAC it was offered to, held until).
    offers: HashMap<Ipv4Addr, (MacAddr, u64)>,
    /// Address → quarantined until.
    quarantine: HashMap<Ipv4Addr, u64>,
    dirty: bool,
}

impl Allocator {
    /// Take over `db` for `pool`, dropping records the pool no longer allows
    /// (address left the subnet or pool, or is now reserved for another MAC).
    pub fn new(pool: Pool, db: LeaseDb) -> Allocator {
        let reserved_ip = pool.reservations.iter().map(|(m, ip)| (*ip, *m)).collect();
        let reserved_mac = pool.reservations.iter().copied().collect();
        let mut a = Allocator {
            pool,
            reserved_ip,
            reserved_mac,
            db: LeaseDb::default(),
            offers: HashMap::new(),
            quarantine: HashMap::new(),
            dirty: false,
        };
        for (mac, lease) in db.iter() {
            if a.statically_allowed(&mac, lease.ip) {
                a.db.insert(mac, lease.ip, lease.expires);
            } else {
                a.dirty = true;
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

    /// The pool's size and how much of it is taken at `now`. Costs one pass
    /// over the leases, offers and quarantined addresses (not over the pool:
    /// a large range is counted arithmetically).
    pub fn usage(&self, now: u64) -> PoolUsage {
        let mask = self.pool.mask();
        let net = u32::from(self.pool.subnet) & mask;
        // The range's part inside the subnet's host addresses.
        let first = u32::from(self.pool.start).max(net.saturating_add(1));
        let last = u32::from(self.pool.end).min((net | !mask).saturating_sub(1));
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

    /// Who holds `ip` right now: an unexpired lease or a live offer.
    fn holder(&self, ip: Ipv4Addr, now: u64) -> Option<MacAddr> {
        if let Some(mac) = self.db.owner(ip)
            && self.db.get(&mac).is_some_and(|l| l.expires > now)
        {
            return Some(mac);
        }
        match self.offers.get(&ip) {
            Some(&(mac, until)) if until > now => Some(mac),
            _ => None,
        }
    }

    /// Whether `mac` may be given `ip` right now.
    pub fn usable_by(&self, mac: &MacAddr, ip: Ipv4Addr, now: u64) -> bool {
        self.statically_allowed(mac, ip)
            && self.quarantine.get(&ip).is_none_or(|&until| until <= now)
            && self.holder(ip, now).is_none_or(|h| h == *mac)
    }

    fn purge(&mut self, now: u64) {
        self.offers.retain(|_, (_, until)| *until > now);
        self.quarantine.retain(|_, until| *until > now);
    }

    fn drop_offers_of(&mut self, mac: &MacAddr) {
        self.offers.retain(|_, (m, _)| m != mac);
    }

    /// Pick an address for `mac` (DHCPDISCOVER) and hold it for
    /// [`OFFER_HOLD_SECS`]. `None` when nothing is free.
    ///
    /// Preference: the MAC's reservation; its current or previous lease; its
    /// pending offer; the address it asked for; a never-used pool address; and
    /// last the pool address whose lease expired longest ago.
    pub fn offer(
        &mut self,
        mac: MacAddr,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        self.purge(now);
        let ip = self.choose(&mac, requested, now)?;
        self.drop_offers_of(&mac);
        self.offers
            .insert(ip, (mac, now.saturating_add(OFFER_HOLD_SECS)));
        Some(ip)
    }

    fn choose(&self, mac: &MacAddr, requested: Option<Ipv4Addr>, now: u64) -> Option<Ipv4Addr> {
        if let Some(&r) = self.reserved_mac.get(mac) {
            return self.usable_by(mac, r, now).then_some(r);
        }
        let pending = self
            .offers
            .iter()
            .find(|(_, (m, _))| m == mac)
            .map(|(ip, _)| *ip);
        let previous = self.db.get(mac).map(|l| l.ip);
        for ip in [previous, pending, requested].into_iter().flatten() {
            if self.usable_by(mac, ip, now) {
                return Some(ip);
            }
        }
        let (start, end) = (u32::from(self.pool.start), u32::from(self.pool.end));
        let fresh = (start..=end)
            .map(Ipv4Addr::from)
            .find(|&ip| self.db.owner(ip).is_none() && self.usable_by(mac, ip, now));
        if fresh.is_some() {
            return fresh;
        }
        self.db
            .iter()
            .filter(|(_, l)| self.usable_by(mac, l.ip, now))
            .min_by_key(|(_, l)| l.expires)
            .map(|(_, l)| l.ip)
    }

    /// Bind `ip` to `mac` until `now + lease_secs` (DHCPREQUEST → DHCPACK).
    /// Returns false, changing nothing, when `mac` may not have `ip` (→ DHCPNAK).
    pub fn commit(&mut self, mac: MacAddr, ip: Ipv4Addr, lease_secs: u64, now: u64) -> bool {
        self.purge(now);
        if !self.usable_by(&mac, ip, now) {
            return false;
        }
        self.drop_offers_of(&mac);
        self.offers.remove(&ip);
        self.db.insert(mac, ip, now.saturating_add(lease_secs));
        self.dirty = true;
        true
    }

    /// Withdraw a pending offer (the client chose another server).
    pub fn cancel_offer(&mut self, mac: &MacAddr) {
        self.drop_offers_of(mac);
    }

    /// DHCPRELEASE: end the lease now but remember it, so the MAC gets the same
    /// address next time if it is still free. Ignored unless `mac` holds `ip`.
    pub fn release(&mut self, mac: &MacAddr, ip: Ipv4Addr, now: u64) -> bool {
        self.drop_offers_of(mac);
        match self.db.get(mac) {
            Some(l) if l.ip == ip && l.expires > now => {
                self.db.set_expiry(mac, now);
                self.dirty = true;
                true
            }
            _ => false,
        }
    }

    /// DHCPDECLINE: the client found `ip` in use. Forget the MAC's claim and keep
    /// the address out of the pool for [`DECLINE_QUARANTINE_SECS`]. Ignored unless
    /// `mac` holds `ip` (as a lease or an offer), so nobody can quarantine others'
    /// addresses.
    pub fn decline(&mut self, mac: &MacAddr, ip: Ipv4Addr, now: u64) -> bool {
        let leased = self.db.get(mac).is_some_and(|l| l.ip == ip);
        let offered = self.offers.get(&ip).is_some_and(|(m, _)| m == mac);
        if !leased && !offered {
            return false;
        }
        if leased {
            self.db.remove_mac(mac);
            self.dirty = true;
        }
        self.offers.remove(&ip);
        self.quarantine
            .insert(ip, now.saturating_add(DECLINE_QUARANTINE_SECS));
        true
    }

    /// Unexpired leases, sorted by address.
    pub fn leases(&self, now: u64) -> Vec<LeaseInfo> {
        let mut v: Vec<LeaseInfo> = self
            .db
            .iter()
            .filter(|(_, l)| l.expires > now)
            .map(|(mac, l)| LeaseInfo {
                mac,
                ip: l.ip,
                expires_in_secs: l.expires - now,
            })
            .collect();
        v.sort_by_key(|l| l.ip);
        v
    }

    /// `Some(file bytes)` if the records changed since the last call.
    pub fn take_snapshot(&mut self) -> Option<Vec<u8>> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
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
        let o1 = a.offer(M1, None, T0).expect("free address");
        let o2 = a.offer(M2, None, T0).expect("free address");
        assert_ne!(o1, o2);
        // Pool of two is now fully held by offers.
        assert_eq!(a.offer(MacAddr([2, 9, 9, 9, 9, 9]), None, T0), None);
        // After the hold, the offers lapse.
        assert!(
            a.offer(MacAddr([2, 9, 9, 9, 9, 9]), None, T0 + OFFER_HOLD_SECS)
                .is_some()
        );
    }

    #[test]
    fn reservation_wins_and_is_not_given_to_others() {
        let mut a = Allocator::new(pool(10, 10), LeaseDb::default());
        // 198.19.0.10 is inside the range but reserved for M3.
        assert_eq!(a.offer(M1, Some(ip(10)), T0), None);
        assert!(!a.commit(M1, ip(10), 60, T0));
        assert_eq!(a.offer(M3, None, T0), Some(ip(10)));
        // M3 cannot take a dynamic address instead of its reservation.
        let mut b = Allocator::new(pool(100, 110), LeaseDb::default());
        assert!(!b.commit(M3, ip(100), 60, T0));
        assert!(b.commit(M3, ip(10), 60, T0));
    }

    #[test]
    fn same_mac_gets_previous_address_back_even_after_expiry() {
        let mut a = Allocator::new(pool(100, 110), LeaseDb::default());
        assert!(a.commit(M1, ip(105), 60, T0));
        assert_eq!(a.offer(M1, None, T0 + 10_000), Some(ip(105)));
        assert!(!a.release(&M1, ip(105), T0 + 10_001), "already expired");
        assert!(a.commit(M1, ip(105), 60, T0 + 20_000));
        assert!(a.release(&M1, ip(105), T0 + 20_001));
        assert_eq!(a.offer(M1, None, T0 + 20_002), Some(ip(105)));
    }

    #[test]
    fn expired_leases_are_reclaimed_only_when_pool_is_otherwise_full() {
        let mut a = Allocator::new(pool(100, 101), LeaseDb::default());
        assert!(a.commit(M1, ip(100), 60, T0));
        // While M1's lease runs, M2 gets the other address and nothing else.
        assert_eq!(a.offer(M2, None, T0 + 1), Some(ip(101)));
        assert!(a.commit(M2, ip(101), 60, T0 + 1));
        // M3's reservation lies outside the dynamic range and is still served.
        assert_eq!(a.offer(M3, None, T0 + 1), Some(ip(10)));
        let m4 = MacAddr([2, 0, 0, 0, 0xaa, 4]);
        assert_eq!(a.offer(m4, None, T0 + 2), None);
        // After M1 expires its address can be reclaimed.
        assert_eq!(a.offer(m4, None, T0 + 61), Some(ip(100)));
        assert!(a.commit(m4, ip(100), 60, T0 + 61));
        assert_eq!(a.db().get(&M1), None, "M1's stale record is gone");
    }

    #[test]
    fn excluded_addresses_are_never_handed_out() {
        let mut p = pool(100, 101);
        p.excluded.push(ip(100));
        let mut a = Allocator::new(p, LeaseDb::default());
        assert_eq!(a.offer(M1, Some(ip(100)), T0), Some(ip(101)));
        assert_eq!(a.offer(M2, None, T0), None);
        assert!(!a.commit(M2, ip(100), 60, T0));
    }

    #[test]
    fn decline_quarantines_address() {
        let mut a = Allocator::new(pool(100, 100), LeaseDb::default());
        assert!(a.commit(M1, ip(100), 600, T0));
        // Someone else cannot decline M1's address.
        assert!(!a.decline(&M2, ip(100), T0));
        assert!(a.decline(&M1, ip(100), T0));
        assert_eq!(a.db().get(&M1), None);
        assert_eq!(a.offer(M2, None, T0 + 1), None);
        assert_eq!(a.offer(M1, None, T0 + 1), None);
        assert!(!a.commit(M2, ip(100), 60, T0 + 1));
        assert_eq!(
            a.offer(M2, None, T0 + DECLINE_QUARANTINE_SECS),
            Some(ip(100))
        );
    }

    #[test]
    fn persistence_round_trip_and_dirty_tracking() {
        let mut a = Allocator::new(pool(100, 110), LeaseDb::default());
        assert_eq!(a.take_snapshot(), None);
        assert!(a.commit(M1, ip(100), 3600, T0));
        assert!(a.commit(M3, ip(10), 3600, T0));
        let bytes = a.take_snapshot().expect("changed");
        assert_eq!(a.take_snapshot(), None, "no change since last snapshot");
        let db = LeaseDb::load(&bytes).expect("valid");
        assert_eq!(db.len(), 2);
        assert_eq!(
            db.get(&M1),
            Some(Lease {
                ip: ip(100),
                expires: T0 + 3600
            })
        );
        let b = Allocator::new(pool(100, 110), db);
        assert_eq!(b.leases(T0 + 600), a.leases(T0 + 600));
        assert_eq!(b.leases(T0 + 600)[0].expires_in_secs, 3000);
        let text = String::from_utf8(bytes).expect("utf8");
        assert!(text.contains("\"mac\": \"02:00:00:00:aa:01\""), "{text}");
        assert!(text.contains("\"version\": 1"), "{text}");
    }

    #[test]
    fn load_rejects_garbage_and_resolves_duplicates() {
        assert!(LeaseDb::load(b"").expect("empty ok").is_empty());
        assert!(LeaseDb::load(b"{").is_err());
        assert!(LeaseDb::load(br#"{"version":2,"leases":[]}"#).is_err());
        assert!(
            LeaseDb::load(br#"{"version":1,"leases":[{"mac":"zz","ip":"1.2.3.4","expires":1}]}"#)
                .is_err()
        );
        let dup = br#"{"version":1,"leases":[
            {"mac":"02:00:00:00:aa:01","ip":"198.19.0.100","expires":5},
            {"mac":"02:00:00:00:aa:02","ip":"198.19.0.100","expires":9},
            {"mac":"02:00:00:00:aa:02","ip":"198.19.0.101","expires":7}]}"#;
        let db = LeaseDb::load(dup).expect("valid");
        assert_eq!(db.len(), 1);
        assert_eq!(db.owner(ip(100)), Some(M2));
    }

    #[test]
    fn new_drops_records_the_pool_no_longer_allows() {
        let mut db = LeaseDb::default();
        db.insert(M1, ip(100), T0 + 100); // fine
        db.insert(M2, ip(10), T0 + 100); // reserved for M3
        db.insert(
            MacAddr([2, 0, 0, 0, 0xaa, 5]),
            Ipv4Addr::new(10, 0, 0, 1),
            T0 + 100,
        ); // foreign
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
        assert!(a.commit(M1, ip(100), 60, T0));
        a.offer(M2, None, T0).expect("free address");
        // A reservation's lease is not the dynamic pool's.
        assert!(a.commit(M3, ip(10), 60, T0));
        assert_eq!(a.usage(T0), PoolUsage { size: 9, in_use: 2 });
        assert!(a.decline(&M1, ip(100), T0 + 1));
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
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6usize, proptest::option::of(95u8..115)).prop_map(|(m, r)| Op::Discover(m, r)),
            (0..6usize, 95u8..115).prop_map(|(m, i)| Op::Request(m, i)),
            (0..6usize).prop_map(Op::Release),
            (0..6usize).prop_map(Op::Decline),
            (0..700u64).prop_map(Op::Advance),
        ]
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
                        offered[m] = a.offer(macs[m], r.map(ip), now)
                            .map(|i| (i, now + OFFER_HOLD_SECS));
                    }
                    Op::Request(m, i) => {
                        if a.commit(macs[m], ip(i), 300, now) {
                            granted[m] = Some((ip(i), now + 300));
                            offered[m] = None;
                        }
                    }
                    Op::Release(m) => {
                        if let Some((i, _)) = granted[m] {
                            // Releasing also withdraws any pending offer.
                            a.release(&macs[m], i, now);
                            granted[m] = None;
                            offered[m] = None;
                        }
                    }
                    Op::Decline(m) => {
                        if let Some((i, _)) = granted[m].or(offered[m]) {
                            a.decline(&macs[m], i, now);
                            granted[m] = None;
                            offered[m] = None;
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
                    Op::Discover(m, r) => { a.offer(macs[m], r.map(ip), now); }
                    Op::Request(m, i) => { a.commit(macs[m], ip(i), 300, now); }
                    Op::Release(m) => {
                        if let Some(l) = a.db().get(&macs[m]) {
                            a.release(&macs[m], l.ip, now);
                        }
                    }
                    Op::Decline(m) => {
                        if let Some(l) = a.db().get(&macs[m]) {
                            a.decline(&macs[m], l.ip, now);
                        }
                    }
                    Op::Advance(s) => now += s,
                }
                let u = a.usage(now);
                prop_assert_eq!(u.size, 4);
                prop_assert!(u.in_use <= u.size);
                let newcomer = MacAddr([2, 0, 0, 0, 0xcc, 1]);
                let offered = a.clone().offer(newcomer, None, now);
                prop_assert_eq!(u.in_use == u.size, offered.is_none(), "{:?}", u);
            }
        }
    }
}
