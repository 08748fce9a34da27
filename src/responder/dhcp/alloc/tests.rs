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

#[test]
fn replicated_records_are_served_and_journalled_as_our_own() {
    let mut a = Allocator::new(pool(100, 101), LeaseDb::default());
    let lease = |m: MacAddr, last| Lease {
        ip: ip(last),
        expires: T0 + 3600,
        mac: m,
        renewed: false,
    };
    // The partner leased .100 to M1, and M2 had been offered .100 here.
    assert_eq!(a.offer(cl(&M2), None, T0), Some(ip(100)));
    let c = LeaseChange {
        key: mac_key(&M1).into(),
        lease: Some(lease(M1, 100)),
    };
    assert!(a.apply_replicated(&c));
    let mut changes = Vec::new();
    a.take_changes(&mut changes);
    assert_eq!(changes, vec![c]);
    // M1 renewing here keeps .100; M2 gets the other address.
    assert!(a.commit(cl(&M1), ip(100), 3600, true, T0));
    assert_eq!(a.offer(cl(&M2), None, T0), Some(ip(101)));
    // A record this pool cannot hold (M3's reservation) is refused; a
    // removal frees the address.
    let reserved = LeaseChange {
        key: mac_key(&M1).into(),
        lease: Some(lease(M1, 10)),
    };
    assert!(!a.apply_replicated(&reserved));
    let gone = LeaseChange {
        key: mac_key(&M1).into(),
        lease: None,
    };
    assert!(a.apply_replicated(&gone));
    assert!(a.db().get_mac(&M1).is_none());
}

#[test]
fn the_lease_table_has_room_for_the_whole_pool_from_the_start() {
    // A /16 pool of 65,279 addresses and one reservation: filling it must
    // never grow (rehash) the table on the worker.
    let big = Pool {
        subnet: Ipv4Addr::new(198, 19, 0, 0),
        prefix_len: 16,
        start: Ipv4Addr::new(198, 19, 1, 0),
        end: Ipv4Addr::new(198, 19, 255, 254),
        server: Ipv4Addr::new(198, 19, 0, 1),
        reservations: vec![(M3, Ipv4Addr::new(198, 19, 0, 10))],
        excluded: vec![],
    };
    let mut a = Allocator::new(big, LeaseDb::default());
    let room = a.db().capacity();
    // 65,279 pool addresses and the reservation.
    assert!(room >= 65_280, "room for {room} leases");
    for n in 0..65_279u32 {
        let mac = MacAddr([0x52, 0x54, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
        let ip = a
            .offer(cl(&mac), None, T0)
            .expect("the pool is not full yet");
        assert!(a.commit(cl(&mac), ip, 3600, false, T0));
    }
    assert_eq!(a.db().len(), 65_279);
    assert_eq!(a.db().capacity(), room, "the table never grew");
    // The lease store's copy (a clone, `Responder::lease_db`) keeps the room.
    assert!(a.db().clone().capacity() >= room);
    // A small pool reserves little.
    let small = Allocator::new(pool(100, 109), LeaseDb::default());
    assert!(small.db().capacity() < 64, "{}", small.db().capacity());
}
