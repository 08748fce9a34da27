//! Two ends of the partner channel wired in memory on a virtual clock, each
//! with its own lease table (applying what it is told, as the shell does).

use std::net::Ipv4Addr;

use super::*;
use crate::leases::{Lease, mac_key};
use crate::mac::MacAddr;

const PSK: [u8; 32] = [0x17; 32];

struct Box_ {
    p: Partner,
    db: LeaseDb,
}

impl Box_ {
    fn new(boot: u8, role: Role, now: Instant) -> Box_ {
        Box_ {
            p: Partner::new(&PSK, [boot; 16], role, now),
            db: LeaseDb::default(),
        }
    }

    /// Everything it has to send now.
    fn send(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; MAX_DATAGRAM];
        while let Some(n) = self.p.poll_transmit(now, &self.db, &mut buf) {
            out.push(buf[..n].to_vec());
            assert!(out.len() < 10_000, "never stops sending");
        }
        out
    }

    fn receive(&mut self, datagrams: Vec<Vec<u8>>, now: Instant) {
        for mut d in datagrams {
            let mut apply = Vec::new();
            self.p.handle_datagram(&mut d, now, &self.db, &mut apply);
            for c in &apply {
                c.apply(&mut self.db);
            }
        }
    }

    /// A lease granted here (as the DHCP server would), handed to the channel.
    fn grant(&mut self, n: u16) {
        let [hi, lo] = n.to_be_bytes();
        let mac = MacAddr([2, 0, 0, 0xaa, hi, lo]);
        let c = LeaseChange {
            key: mac_key(&mac).into(),
            lease: Some(Lease {
                ip: Ipv4Addr::new(198, 19, hi, lo),
                expires: 1_800_000_000 + u64::from(n),
                mac,
                renewed: false,
            }),
        };
        c.apply(&mut self.db);
        self.p.queue_changes(&[c]);
    }
}

/// One exchange both ways at `now`.
fn exchange(a: &mut Box_, s: &mut Box_, now: Instant) {
    let d = a.send(now);
    s.receive(d, now);
    let d = s.send(now);
    a.receive(d, now);
}

#[test]
fn the_standby_gets_every_lease_and_status_counts_them() {
    let t = Instant::now();
    let mut active = Box_::new(1, Role::Active, t);
    let mut standby = Box_::new(2, Role::Standby, t);
    // Leases from before the partner was heard: a full sync brings them.
    for n in 0..3 {
        active.grant(n);
    }
    exchange(&mut active, &mut standby, t);
    exchange(&mut active, &mut standby, t);
    assert_eq!(standby.db, active.db);
    // Changes after that, one by one.
    active.grant(7);
    let d = active.send(t);
    assert_eq!(d.len(), 1, "one change, one datagram");
    standby.receive(d, t);
    assert_eq!(standby.db, active.db);
    let t1 = t + HEARTBEAT;
    exchange(&mut active, &mut standby, t1);
    let h = active.p.heard().expect("heard the standby");
    assert_eq!((h.role, h.leases), (Role::Standby, 4));
    assert!(active.p.is_up(t1) && standby.p.is_up(t1));
    assert!(!active.p.is_up(t1 + DOWN_AFTER));
    // The standby never sends changes, even if asked to.
    standby.grant(9);
    assert!(
        standby.send(t1 + HEARTBEAT * 2).len() == 1,
        "a heartbeat only"
    );
    assert_eq!(active.p.dropped + standby.p.dropped, 0);
}

#[test]
fn a_full_sync_prunes_what_the_active_box_no_longer_has() {
    let t = Instant::now();
    let mut active = Box_::new(1, Role::Active, t);
    let mut standby = Box_::new(2, Role::Standby, t);
    // The standby returns with old records the active box dropped since.
    for n in 0..200 {
        standby.grant(n);
    }
    for n in 150..160 {
        active.grant(n);
    }
    standby.p.pending.clear();
    exchange(&mut active, &mut standby, t);
    exchange(&mut active, &mut standby, t);
    assert_eq!(standby.db, active.db);
    assert_eq!(standby.db.len(), 10);
    // A big table goes in several chunks, all applied.
    for n in 0..250 {
        active.grant(n);
    }
    active.p.set_role(Role::Standby);
    active.p.set_role(Role::Active); // a promotion re-sends everything
    let d = active.send(t + FULL_RETRY);
    assert!(d.len() > 2, "{} chunks", d.len());
    standby.receive(d, t + FULL_RETRY);
    assert_eq!(standby.db, active.db);
}

#[test]
fn a_lost_chunk_prunes_nothing_and_a_disagreement_resends() {
    let t = Instant::now();
    let mut active = Box_::new(1, Role::Active, t);
    let mut standby = Box_::new(2, Role::Standby, t);
    for n in 0..250 {
        active.grant(n);
        standby.grant(n);
    }
    standby.p.pending.clear();
    let d = standby.send(t);
    active.receive(d, t);
    let mut d = active.send(t);
    assert!(d.len() > 2);
    d.remove(1);
    standby.receive(d, t);
    assert_eq!(standby.db.len(), 250, "nothing pruned after a lost chunk");
    // The count agrees: nothing more. A lost change makes it disagree, and
    // the next full sync (after FULL_RETRY) repairs it.
    active.grant(251);
    let _lost = active.send(t);
    let t2 = t + FULL_RETRY;
    exchange(&mut active, &mut standby, t2);
    exchange(&mut active, &mut standby, t2);
    assert_eq!(standby.db, active.db);
}

#[test]
fn garbage_replays_and_other_keys_are_dropped_silently() {
    let t = Instant::now();
    let mut active = Box_::new(1, Role::Active, t);
    let mut standby = Box_::new(2, Role::Standby, t);
    active.grant(1);
    let d = active.send(t);
    let copy = d.clone();
    standby.receive(d, t);
    assert_eq!(standby.db.len(), 1);
    // A replay of the same datagrams: dropped.
    standby.db = LeaseDb::default();
    standby.receive(copy.clone(), t);
    assert!(standby.db.is_empty());
    // Every byte flipped in turn, truncations, garbage: dropped, no panic.
    let mut fresh = Box_::new(3, Role::Standby, t);
    for i in 0..copy[0].len() {
        let mut bad = copy[0].clone();
        bad[i] ^= 0x40;
        fresh.receive(vec![bad], t);
    }
    for n in 0..copy[0].len() {
        fresh.receive(vec![copy[0][..n].to_vec()], t);
    }
    fresh.receive(vec![vec![1; 3000], vec![]], t);
    assert!(fresh.db.is_empty());
    assert!(fresh.p.heard().is_none());
    // Another key: nothing.
    let mut other = Partner::new(&[0x18; 32], [9; 16], Role::Standby, t);
    let mut apply = Vec::new();
    let mut d = copy[0].clone();
    other.handle_datagram(&mut d, t, &LeaseDb::default(), &mut apply);
    assert!(apply.is_empty() && other.heard().is_none());
    // Our own datagram reflected: ignored.
    let mut own = active.send(t + HEARTBEAT);
    let mut apply = Vec::new();
    active
        .p
        .handle_datagram(&mut own[0], t, &LeaseDb::default(), &mut apply);
    assert!(
        active.p.heard().is_none(),
        "took its own datagram for the partner's"
    );
}

#[test]
fn the_standby_learns_the_remote_macs_to_announce() {
    let t = Instant::now();
    let mut active = Box_::new(1, Role::Active, t);
    let mut standby = Box_::new(2, Role::Standby, t);
    assert!(active.p.macs_due(t) && !standby.p.macs_due(t));
    let macs: Vec<RemoteMac> = (0..300u16)
        .map(|n| {
            let [hi, lo] = n.to_be_bytes();
            ((n % 2 == 0).then_some(20), MacAddr([2, 0, 0, 0xbb, hi, lo]))
        })
        .collect();
    active.p.offer_macs(macs.iter().copied());
    let d = active.send(t);
    assert!(d.len() >= 3, "two MAC datagrams and a heartbeat");
    standby.receive(d, t);
    let mut got = standby.p.partner_macs(t);
    got.sort();
    let mut want = macs.clone();
    want.sort();
    assert_eq!(got, want);
    assert!(!active.p.macs_due(t));
    assert!(standby.p.partner_macs(t + MAC_FRESH).is_empty(), "stale");
}

#[test]
fn the_remote_macs_kept_are_bounded_however_many_the_partner_lists() {
    let t = Instant::now();
    let mut active = Box_::new(1, Role::Active, t);
    let mut standby = Box_::new(2, Role::Standby, t);
    // Three heartbeats' worth of distinct MACs within MAC_FRESH: more than
    // the active box may list, as a broken or hostile partner could.
    let mac = |n: u32| {
        let [_, a, b, c] = n.to_be_bytes();
        (None, MacAddr([2, 0, 0xee, a, b, c]))
    };
    for round in 0..3u32 {
        let at = t + Duration::from_millis(u64::from(round));
        active.p.next_heartbeat = at;
        let first = round * MAX_MACS as u32;
        active
            .p
            .offer_macs((first..first + MAX_MACS as u32).map(mac));
        standby.receive(active.send(at), at);
    }
    let now = t + Duration::from_millis(3);
    let kept = standby.p.partner_macs(now);
    assert_eq!(kept.len(), 2 * MAX_MACS);
    // What is already known is refreshed all the same.
    active.p.next_heartbeat = now;
    active.p.offer_macs(std::iter::once(mac(0)));
    standby.receive(active.send(now), now);
    // The others were last listed by t + 2 ms.
    let later = t + Duration::from_millis(2) + MAC_FRESH;
    let fresh = standby.p.partner_macs(later);
    assert!(
        fresh == [mac(0)],
        "{} fresh, want only the refreshed one",
        fresh.len()
    );
}

#[test]
fn the_standby_gets_the_arp_bindings() {
    let t = Instant::now();
    let mut active = Box_::new(1, Role::Active, t);
    let mut standby = Box_::new(2, Role::Standby, t);
    let bindings: Vec<RemoteBinding> = (0..200u16)
        .map(|n| {
            let [hi, lo] = n.to_be_bytes();
            (
                Ipv4Addr::new(198, 19, hi, lo).into(),
                MacAddr([2, 0, 0, 0xcc, hi, lo]),
                n % 3,
            )
        })
        // And ND bindings (IPv6), after them on the wire.
        .chain((0..100u16).map(|n| {
            let [hi, lo] = n.to_be_bytes();
            (
                std::net::Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, n + 1).into(),
                MacAddr([2, 0, 0, 0xdd, hi, lo]),
                n % 3,
            )
        }))
        .collect();
    active.p.offer_bindings(bindings.iter().copied());
    let d = active.send(t);
    standby.receive(d, t);
    let mut got = Vec::new();
    standby.p.take_bindings(&mut got);
    assert_eq!(got, bindings);
    standby.p.take_bindings(&mut got);
    assert_eq!(got.len(), 300, "taken once");
    // A standby offers nothing, and an active box takes nothing.
    standby.p.offer_bindings(bindings.iter().copied());
    let d = standby.send(t + HEARTBEAT);
    assert_eq!(d.len(), 1, "a heartbeat only");
    active.receive(d, t + HEARTBEAT);
    let mut none = Vec::new();
    active.p.take_bindings(&mut none);
    assert!(none.is_empty());
}
