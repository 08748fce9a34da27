//! DHCP server tests: every message type and option, parsed back with smoltcp.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smoltcp::wire::{DhcpMessageType as M, DhcpPacket};

use super::super::fixtures::{
    Client, DHCLIENT_MAC, DHCLIENT_XID, Reply, arp_request, dhclient_discover, ipv4_udp_frame,
    parse_reply, tagged,
};
use super::super::{DhcpPlan, DhcpSettings, LocalVerdict, RemoteVerdict, Responder};
use super::alloc::{DECLINE_QUARANTINE_SECS, OFFER_HOLD_SECS, SHORT_LEASE_SECS};
use crate::leases::LeaseDb;
use crate::mac::MacAddr;
use crate::peer_id::PeerId;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 254);
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const RESERVED_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const T0: u64 = 1_700_000_000;
const LEASE: u32 = 12 * 3600;
/// A first lease: short until the client renews.
const SHORT: u32 = SHORT_LEASE_SECS as u32;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, last)
}

fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 1, n]
}

fn settings() -> DhcpSettings {
    DhcpSettings {
        server_address: SERVER,
        server_mac: MacAddr(SERVER_MAC),
        pool_start: ip(100),
        pool_end: ip(199),
        subnet_addr: ip(0),
        prefix_len: 24,
        router: Some(ip(1)),
        dns: vec![ip(1), Ipv4Addr::new(198, 18, 0, 53)],
        domain: Some("branch.example".into()),
        lease_time: Duration::from_secs(u64::from(LEASE)),
        first_lease: Duration::from_secs(300),
        routes: vec![(Ipv4Addr::new(198, 19, 64, 0), 18, ip(1))],
        mtu: Some(1400),
        reservations: vec![(MacAddr(RESERVED_MAC), ip(10))],
        search: Vec::new(),
        ntp: Vec::new(),
        extra_options: Vec::new(),
        conflict_check: false,
    }
}

/// A responder on a virtual clock.
struct Harness {
    r: Responder,
    mono: Instant,
    wall: u64,
}

/// `s`, checked.
fn plan(s: DhcpSettings) -> DhcpPlan {
    s.check(&[]).expect("valid DHCP settings")
}

impl Harness {
    fn new(s: DhcpSettings) -> Harness {
        Harness::with_db(s, LeaseDb::default())
    }

    fn with_db(s: DhcpSettings, db: LeaseDb) -> Harness {
        Harness {
            r: Responder::new(None, Some(plan(s)), db).expect("valid settings"),
            mono: Instant::now(),
            wall: T0,
        }
    }

    fn advance(&mut self, secs: u64) {
        self.wall += secs;
        self.mono += Duration::from_secs(secs);
    }

    fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.wall)
    }

    fn send(&mut self, frame: &[u8]) -> (LocalVerdict, Option<Reply>) {
        let mut buf = [0u8; 1600];
        let wall = self.wall();
        let v = self.r.handle_local(frame, self.mono, wall, &mut buf);
        let reply = match v {
            LocalVerdict::Reply(n) => Some(parse_reply(&buf[..n])),
            _ => None,
        };
        (v, reply)
    }

    fn reply(&mut self, c: &Client) -> Reply {
        match self.send(&c.frame()) {
            (_, Some(r)) => r,
            (v, None) => panic!("expected a reply to {:?}, got {v:?}", c.kind),
        }
    }

    fn silent(&mut self, c: &Client) {
        let (v, r) = self.send(&c.frame());
        assert_eq!(
            v,
            LocalVerdict::Consumed,
            "{:?} must be consumed: {r:?}",
            c.kind
        );
    }

    /// DISCOVER + REQUEST; returns the ACK.
    fn lease(&mut self, m: [u8; 6]) -> Reply {
        let offer = self.reply(&Client::new(M::Discover, m));
        assert_eq!(offer.message_type, M::Offer);
        let mut req = Client::new(M::Request, m);
        req.server_id = Some(SERVER);
        req.requested = Some(offer.yiaddr);
        let ack = self.reply(&req);
        assert_eq!(ack.message_type, M::Ack);
        assert_eq!(ack.yiaddr, offer.yiaddr);
        ack
    }
}

/// A RELEASE of `addr` by `m`, unicast to the server as a client sends it.
fn release(m: [u8; 6], addr: Ipv4Addr) -> Client {
    let mut rel = Client::new(M::Release, m);
    rel.ciaddr = addr;
    rel.ip_src = addr;
    rel.ip_dst = SERVER;
    rel.eth_dst = SERVER_MAC;
    rel.server_id = Some(SERVER);
    rel
}

fn assert_config_options(r: &Reply) {
    assert_eq!(r.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(r.router, Some(ip(1)));
    assert_eq!(r.option(6), Some(&[198, 19, 0, 1, 198, 18, 0, 53][..]));
    assert_eq!(r.option(15), Some(&b"branch.example"[..]));
    assert_eq!(r.option(26), Some(&1400u16.to_be_bytes()[..]));
    // 198.19.64.0/18 via .1, then the default route via the router.
    assert_eq!(
        r.option(121),
        Some(&[18, 198, 19, 64, 198, 19, 0, 1, 0, 198, 19, 0, 1][..])
    );
}

#[test]
fn dhclient_discover_gets_full_offer() {
    let mut h = Harness::new(settings());
    let (v, offer) = h.send(&dhclient_discover());
    assert!(matches!(v, LocalVerdict::Reply(_)));
    let offer = offer.expect("offer");
    assert_eq!(offer.message_type, M::Offer);
    assert_eq!(offer.xid, DHCLIENT_XID);
    assert_eq!(offer.chaddr, DHCLIENT_MAC);
    // dhclient asked for its previous address, which is free.
    assert_eq!(offer.yiaddr, ip(101));
    assert_eq!(offer.ciaddr, Ipv4Addr::UNSPECIFIED);
    // No broadcast flag, no ciaddr: unicast to yiaddr at chaddr.
    assert!(!offer.broadcast);
    assert_eq!(offer.eth_dst, DHCLIENT_MAC);
    assert_eq!(offer.ip_dst, ip(101));
    assert_eq!(offer.eth_src, SERVER_MAC);
    assert_eq!(offer.ip_src, SERVER);
    assert_eq!((offer.sport, offer.dport), (67, 68));
    assert_eq!(offer.ttl, 64);
    assert!((300..=548).contains(&offer.dhcp_len), "{}", offer.dhcp_len);
    assert_eq!(offer.server_id, Some(SERVER));
    // A client never seen: the short first lease.
    assert_eq!(offer.lease, Some(SHORT));
    assert_eq!(offer.renew, Some(SHORT / 2));
    assert_eq!(offer.rebind, Some(SHORT * 7 / 8));
    assert_config_options(&offer);
    assert_eq!(offer.option(61), None, "dhclient sent no client id");
    assert_eq!(h.r.counters().dhcp_replies, 1);
    // An offer is not a lease.
    assert!(h.r.leases(h.wall()).is_empty());
}

#[test]
fn full_exchange_with_broadcast_flag_and_client_id() {
    let mut h = Harness::new(settings());
    let m = mac(1);
    let mut disc = Client::new(M::Discover, m);
    disc.broadcast = true;
    let offer = h.reply(&disc);
    assert_eq!(offer.eth_dst, [0xff; 6]);
    assert_eq!(offer.ip_dst, Ipv4Addr::BROADCAST);
    assert!(offer.broadcast);
    let id = [1, 0x52, 0x54, 0, 0, 1, 1];
    assert_eq!(offer.option(61), Some(&id[..]), "client id echoed");
    assert_eq!(offer.yiaddr, ip(100), "first free pool address");

    let mut req = Client::new(M::Request, m);
    req.broadcast = true;
    req.server_id = Some(SERVER);
    req.requested = Some(offer.yiaddr);
    let ack = h.reply(&req);
    assert_eq!(ack.message_type, M::Ack);
    assert_eq!(ack.yiaddr, ip(100));
    assert_eq!(ack.ip_dst, Ipv4Addr::BROADCAST);
    assert_eq!(ack.lease, Some(SHORT));
    assert_config_options(&ack);

    let leases = h.r.leases(h.wall());
    assert_eq!(leases.len(), 1);
    assert_eq!((leases[0].mac, leases[0].ip), (MacAddr(m), ip(100)));
    assert_eq!(leases[0].expires_in_secs, u64::from(SHORT));
    assert_eq!(
        leases[0].client_id, None,
        "01 ‖ chaddr is the MAC's own key"
    );
    let snap = h.r.take_lease_snapshot().expect("lease db changed");
    assert!(String::from_utf8_lossy(&snap).contains("198.19.0.100"));
    assert_eq!(h.r.take_lease_snapshot(), None);
}

#[test]
fn concurrent_discovers_get_distinct_offers() {
    let mut h = Harness::new(settings());
    let a = h.reply(&Client::new(M::Discover, mac(1)));
    let b = h.reply(&Client::new(M::Discover, mac(2)));
    assert_ne!(a.yiaddr, b.yiaddr);
    // Asking for the other client's offered address does not steal it.
    let mut c = Client::new(M::Discover, mac(3));
    c.requested = Some(a.yiaddr);
    let c = h.reply(&c);
    assert!(c.yiaddr != a.yiaddr && c.yiaddr != b.yiaddr);
    // Repeating the DISCOVER re-offers the same address.
    assert_eq!(h.reply(&Client::new(M::Discover, mac(1))).yiaddr, a.yiaddr);
}

#[test]
fn request_for_another_server_is_silent_and_frees_the_offer() {
    let mut s = settings();
    s.pool_end = ip(100);
    let mut h = Harness::new(s);
    let offer = h.reply(&Client::new(M::Discover, mac(1)));
    assert_eq!(
        h.send(&Client::new(M::Discover, mac(2)).frame())
            .1
            .map(|r| r.yiaddr),
        None
    );
    let mut req = Client::new(M::Request, mac(1));
    req.server_id = Some(Ipv4Addr::new(198, 19, 0, 253));
    req.requested = Some(offer.yiaddr);
    h.silent(&req);
    assert_eq!(h.reply(&Client::new(M::Discover, mac(2))).yiaddr, ip(100));
}

#[test]
fn naks_for_wrong_foreign_or_taken_addresses() {
    let mut h = Harness::new(settings());
    let held = h.lease(mac(1)).yiaddr;

    // SELECTING for an address another client holds.
    let mut req = Client::new(M::Request, mac(2));
    req.server_id = Some(SERVER);
    req.requested = Some(held);
    let nak = h.reply(&req);
    assert_eq!(nak.message_type, M::Nak);
    assert_eq!(nak.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(nak.eth_dst, [0xff; 6], "NAK is broadcast");
    assert_eq!(nak.ip_dst, Ipv4Addr::BROADCAST);
    assert_eq!(nak.server_id, Some(SERVER));
    assert_eq!(nak.lease, None);
    assert_eq!(nak.option(1), None, "no configuration in a NAK");

    // INIT-REBOOT from another network.
    let mut reboot = Client::new(M::Request, mac(3));
    reboot.requested = Some(Ipv4Addr::new(192, 0, 2, 7));
    assert_eq!(h.reply(&reboot).message_type, M::Nak);
    // mac(3) becomes a client we know (an unknown one gets silence).
    h.reply(&Client::new(M::Discover, mac(3)));
    // INIT-REBOOT for a taken address, for the server's own address, for a
    // reserved address, outside the pool.
    for bad in [held, SERVER, ip(10), ip(50)] {
        reboot.requested = Some(bad);
        assert_eq!(h.reply(&reboot).message_type, M::Nak, "{bad}");
    }
    // REBINDING with a foreign ciaddr.
    let mut rebind = Client::new(M::Request, mac(4));
    rebind.ciaddr = Ipv4Addr::new(192, 0, 2, 8);
    rebind.ip_src = rebind.ciaddr;
    assert_eq!(h.reply(&rebind).message_type, M::Nak);
    assert_eq!(h.r.counters().dhcp_naks, 7);
    // The holder is untouched.
    assert_eq!(h.r.leases(h.wall())[0].mac, MacAddr(mac(1)));

    // SELECTING without option 50 is malformed: silence.
    let mut bare = Client::new(M::Request, mac(5));
    bare.server_id = Some(SERVER);
    h.silent(&bare);
}

/// RFC 2131 §4.3.2: a REQUEST from a client with no record, for an address
/// with no record, is never ACKed from nothing (the old responder ACKed any
/// free address, so a REQUEST alone could take the pool). INIT-REBOOT and
/// RENEWING/REBINDING get silence ("MUST remain silent" for INIT-REBOOT);
/// SELECTING, where the client named us, gets a NAK so it starts over.
#[test]
fn request_from_an_unknown_client_is_never_acked() {
    let mut h = Harness::new(settings());
    let mut reboot = Client::new(M::Request, mac(1));
    reboot.requested = Some(ip(150));
    h.silent(&reboot);
    let mut renew = Client::new(M::Request, mac(1));
    renew.ciaddr = ip(150);
    renew.ip_src = ip(150);
    renew.ip_dst = SERVER;
    renew.eth_dst = SERVER_MAC;
    h.silent(&renew);
    // Renewing an address it may not have (reserved, or another's): NAK.
    for bad in [ip(10), h.lease(mac(2)).yiaddr] {
        renew.ciaddr = bad;
        renew.ip_src = bad;
        assert_eq!(h.reply(&renew).message_type, M::Nak, "{bad}");
    }
    let _ = h.r.take_lease_snapshot();
    let mut select = Client::new(M::Request, mac(1));
    select.server_id = Some(SERVER);
    select.requested = Some(ip(150));
    assert_eq!(h.reply(&select).message_type, M::Nak);
    assert_eq!(h.r.leases(h.wall()).len(), 1, "only mac(2)'s lease");
    assert_eq!(h.r.take_lease_snapshot(), None);
    // Once known (here by an offer), the same INIT-REBOOT is answered.
    h.reply(&Client::new(M::Discover, mac(1)));
    let ack = h.reply(&reboot);
    assert_eq!((ack.message_type, ack.yiaddr), (M::Ack, ip(150)));
    // A reserved MAC is known by its reservation.
    let mut reserved = Client::new(M::Request, RESERVED_MAC);
    reserved.requested = Some(ip(10));
    assert_eq!(h.reply(&reserved).message_type, M::Ack);
}

/// `dhcp.first_lease` sets the cap on first leases; zero turns it off.
#[test]
fn first_lease_is_the_configured_cap_or_none() {
    for (first, want) in [(60, 60), (0, LEASE), (u64::from(LEASE) * 2, LEASE)] {
        let mut s = settings();
        s.first_lease = Duration::from_secs(first);
        let mut h = Harness::new(s);
        let offer = h.reply(&Client::new(M::Discover, mac(1)));
        assert_eq!(offer.lease, Some(want), "first_lease {first} s");
    }
    let mut s = settings();
    s.first_lease = Duration::from_secs(5);
    let e = s.check(&[]).expect_err("below 10 s");
    assert_eq!(e.key, "dhcp.first_lease");
}

/// The first lease is short; renewing it (after a while: a retransmitted
/// first REQUEST is no renewal) earns the full lease time, remembered in the
/// lease file; a client that vanishes frees its address after the short time.
#[test]
fn first_lease_is_short_until_the_client_renews() {
    let mut h = Harness::new(settings());
    let m = mac(1);
    let ack = h.lease(m);
    assert_eq!(ack.lease, Some(SHORT));
    let addr = ack.yiaddr;
    let mut again = Client::new(M::Request, m);
    again.server_id = Some(SERVER);
    again.requested = Some(addr);
    assert_eq!(h.reply(&again).lease, Some(SHORT), "a retransmission");
    let db = LeaseDb::load(&h.r.take_lease_snapshot().expect("dirty")).expect("valid");
    assert_eq!(
        db.get(&[1, 0x52, 0x54, 0, 0, 1, 1]).map(|l| l.renewed),
        Some(false)
    );

    h.advance(u64::from(SHORT / 2));
    let mut renew = Client::new(M::Request, m);
    renew.ciaddr = addr;
    renew.ip_src = addr;
    renew.ip_dst = SERVER;
    renew.eth_dst = SERVER_MAC;
    assert_eq!(h.reply(&renew).lease, Some(LEASE));
    let db = LeaseDb::load(&h.r.take_lease_snapshot().expect("dirty")).expect("valid");
    let rec = db.get(&[1, 0x52, 0x54, 0, 0, 1, 1]).expect("recorded");
    assert!(rec.renewed);
    // After a restart it is still a known, renewed client: full offers.
    let mut h2 = Harness::with_db(settings(), db);
    h2.wall = h.wall;
    assert_eq!(h2.reply(&Client::new(M::Discover, m)).lease, Some(LEASE));

    // A burst of clients that never renew: their addresses free up after
    // the short time, not after lease_time.
    let mut s = settings();
    s.pool_end = ip(103);
    let mut h = Harness::new(s);
    for n in 10..14 {
        h.lease(mac(n));
    }
    h.silent(&Client::new(M::Discover, mac(20)));
    h.advance(u64::from(SHORT));
    assert_eq!(h.lease(mac(20)).lease, Some(SHORT));
}

/// systemd-networkd style: option 61 type 255 (IAID + DUID). The lease is
/// keyed by it, renewed by it; the same MAC with another identifier is
/// another client; the same identifier on another MAC is the same client.
#[test]
fn duid_client_identifier_keys_the_lease() {
    let mut h = Harness::new(settings());
    let duid = vec![
        0xff, 0x5c, 0x3a, 0x01, 0x02, 0, 2, 0, 0, 0xab, 0x11, 0x6e, 0x1f, 0x22, 0x9a, 0x01, 0x02,
        0x03, 0x04,
    ];
    let m = mac(1);
    let mut disc = Client::new(M::Discover, m);
    disc.client_id = Some(duid.clone());
    let offer = h.reply(&disc);
    let mut req = Client::new(M::Request, m);
    req.client_id = Some(duid.clone());
    req.server_id = Some(SERVER);
    req.requested = Some(offer.yiaddr);
    let ack = h.reply(&req);
    assert_eq!(
        (ack.message_type, ack.option(61)),
        (M::Ack, Some(&duid[..]))
    );
    let addr = ack.yiaddr;
    // Renewal by the same identifier: full lease.
    h.advance(u64::from(SHORT / 2));
    let mut renew = Client::new(M::Request, m);
    renew.client_id = Some(duid.clone());
    renew.ciaddr = addr;
    renew.ip_src = addr;
    renew.ip_dst = SERVER;
    renew.eth_dst = SERVER_MAC;
    let ack = h.reply(&renew);
    assert_eq!((ack.message_type, ack.lease), (M::Ack, Some(LEASE)));
    let snap = h.r.take_lease_snapshot().expect("dirty");
    let db = LeaseDb::load(&snap).expect("valid");
    assert_eq!(
        db.get(&duid).map(|l| (l.ip, l.mac)),
        Some((addr, MacAddr(m)))
    );
    assert_eq!(db.get_mac(&MacAddr(m)), None);
    // `leases` shows the identifier the lease is keyed by.
    let shown = h.r.leases(h.wall());
    let hex: Vec<String> = duid.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].client_id.as_deref(), Some(hex.join(":").as_str()));
    // Same MAC, other identifier (or none): another client, which neither
    // gets nor may take the address.
    let mut other = Client::new(M::Discover, m);
    other.client_id = None;
    assert_ne!(h.reply(&other).yiaddr, addr);
    let mut steal = Client::new(M::Request, m);
    steal.client_id = None;
    steal.server_id = Some(SERVER);
    steal.requested = Some(addr);
    assert_eq!(h.reply(&steal).message_type, M::Nak);
    // Same identifier from a new NIC: the same client, the same address.
    let mut moved = Client::new(M::Discover, mac(2));
    moved.client_id = Some(duid);
    assert_eq!(h.reply(&moved).yiaddr, addr);
}

/// BOOTP (no option 53): a reserved MAC gets a BOOTREPLY with its address
/// and configuration and none of the DHCP lease options; others nothing.
#[test]
fn bootp_requests_from_reserved_macs_are_answered() {
    let mut h = Harness::new(settings());
    let bootp = |m: [u8; 6]| {
        let mut c = Client::new(M::Discover, m);
        c.client_id = None;
        c.bootp = true;
        c
    };
    let mut buf = [0u8; 1600];
    let LocalVerdict::Reply(n) =
        h.r.handle_local(&bootp(RESERVED_MAC).frame(), h.mono, h.wall(), &mut buf)
    else {
        panic!("a reserved MAC's BOOTP request is answered");
    };
    let frame = &buf[..n];
    let p = DhcpPacket::new_checked(&frame[42..]).expect("bootp");
    assert_eq!(frame[42], 2, "BOOTREPLY");
    assert_eq!(p.transaction_id(), 0x1234_5678);
    assert_eq!(p.your_ip(), ip(10));
    assert_eq!(p.server_ip(), SERVER);
    assert_eq!(p.client_hardware_address().0, RESERVED_MAC);
    assert!(n - 42 >= 300);
    let codes: Vec<u8> = p.options().map(|o| o.kind).collect();
    for absent in [53, 54, 51, 58, 59] {
        assert!(!codes.contains(&absent), "{absent} in {codes:?}");
    }
    for present in [1, 3, 6, 15] {
        assert!(codes.contains(&present), "{present} in {codes:?}");
    }
    // Unicast to yiaddr at chaddr (no broadcast flag, no ciaddr).
    assert_eq!(&frame[..6], &RESERVED_MAC);
    assert_eq!(&frame[30..34], &ip(10).octets());
    assert!(h.r.leases(h.wall()).is_empty(), "no lease record");
    h.silent(&bootp(mac(1)));
}

/// A full pool is counted per DISCOVER but reported (for the log) at most
/// once per interval, with the count.
#[test]
fn pool_exhausted_is_reported_rate_limited() {
    let mut s = settings();
    s.pool_end = ip(100);
    let mut h = Harness::new(s);
    h.lease(mac(1));
    assert_eq!(h.r.take_pool_exhausted(h.wall()), None);
    for n in 2..12 {
        h.silent(&Client::new(M::Discover, mac(n)));
    }
    assert_eq!(h.r.counters().dhcp_pool_exhausted, 10);
    assert_eq!(h.r.take_pool_exhausted(h.wall()), Some(10));
    h.silent(&Client::new(M::Discover, mac(20)));
    assert_eq!(h.r.take_pool_exhausted(h.wall()), None, "too soon");
    h.advance(super::POOL_EXHAUSTED_REPORT_SECS - 1);
    h.silent(&Client::new(M::Discover, mac(21)));
    assert_eq!(h.r.take_pool_exhausted(h.wall()), None, "too soon");
    h.advance(1);
    assert_eq!(h.r.take_pool_exhausted(h.wall()), Some(2));
    assert_eq!(h.r.take_pool_exhausted(h.wall()), None, "nothing new");
}

/// A burst of grants and releases is logged one by one up to
/// LEASE_LOG_PER_SEC in a second; the rest is counted and handed to the
/// shell once the second is over. Renewals are not lease events.
#[test]
fn lease_log_lines_are_budgeted_per_second() {
    let per_sec = super::LEASE_LOG_PER_SEC as u8;
    let mut s = settings();
    (s.pool_start, s.pool_end) = (ip(20), ip(250));
    let mut h = Harness::new(s);
    let first = h.lease(mac(1)).yiaddr;
    for n in 2..=per_sec + 9 {
        h.lease(mac(n));
    }
    h.silent(&release(mac(1), first));
    assert_eq!(
        h.r.take_unlogged_leases(h.wall()),
        None,
        "the second is not over"
    );
    h.advance(1);
    // 59 grants and 1 release, 50 of them logged.
    assert_eq!(h.r.take_unlogged_leases(h.wall()), Some(10));
    assert_eq!(h.r.take_unlogged_leases(h.wall()), None, "reported once");
    // A new second has a fresh budget, and renewals use none of it: 50 of
    // them and then one new client, whose line is logged.
    for n in 2..=per_sec + 1 {
        h.lease(mac(n));
    }
    h.lease(mac(per_sec + 10));
    h.advance(1);
    assert_eq!(h.r.take_unlogged_leases(h.wall()), None);

    // A burst that goes on is reported while it lasts, not only after it
    // ends: 55 new clients in each of two seconds; in the second one, the
    // count so far (5 + 5) comes out.
    let mut n = per_sec + 11;
    for expect in [None, Some(10)] {
        for _ in 0..55 {
            h.lease(mac(n));
            n += 1;
        }
        assert_eq!(h.r.take_unlogged_leases(h.wall()), expect);
        h.advance(1);
    }
    assert_eq!(h.r.take_unlogged_leases(h.wall()), None, "reported once");
}

#[test]
fn renewal_unicast_extends_lease() {
    let mut h = Harness::new(settings());
    let m = mac(1);
    let addr = h.lease(m).yiaddr;
    h.advance(u64::from(SHORT / 2));
    let mut renew = Client::new(M::Request, m);
    renew.ciaddr = addr;
    renew.ip_src = addr;
    renew.ip_dst = SERVER;
    renew.eth_dst = SERVER_MAC;
    let ack = h.reply(&renew);
    assert_eq!(ack.message_type, M::Ack);
    assert_eq!(ack.yiaddr, addr);
    assert_eq!(ack.ciaddr, addr);
    assert_eq!((ack.eth_dst, ack.ip_dst), (m, addr), "unicast to ciaddr");
    assert_eq!(h.r.leases(h.wall())[0].expires_in_secs, u64::from(LEASE));

    // A renewal unicast to some other server is not ours.
    renew.ip_dst = Ipv4Addr::new(198, 19, 0, 2);
    renew.eth_dst = [0x02, 9, 9, 9, 9, 9];
    h.silent(&renew);
}

#[test]
fn renewal_to_a_stale_server_mac_is_answered() {
    // After a restart the derived server MAC may differ; clients renew to the
    // MAC still in their ARP cache, and the bridge floods that frame to us.
    let mut h = Harness::new(settings());
    let m = mac(1);
    let addr = h.lease(m).yiaddr;
    let mut renew = Client::new(M::Request, m);
    renew.ciaddr = addr;
    renew.ip_src = addr;
    renew.ip_dst = SERVER;
    renew.eth_dst = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    let ack = h.reply(&renew);
    assert_eq!((ack.message_type, ack.yiaddr), (M::Ack, addr));
    assert_eq!((ack.eth_dst, ack.ip_dst), (m, addr), "unicast to ciaddr");

    // Broadcast IP on a unicast frame for some other host stays not ours.
    renew.ip_dst = Ipv4Addr::BROADCAST;
    h.silent(&renew);
}

#[test]
fn release_ends_lease_and_same_mac_gets_it_back() {
    let mut h = Harness::new(settings());
    let m = mac(1);
    let addr = h.lease(m).yiaddr;
    h.lease(mac(2));
    h.silent(&release(m, addr));
    assert_eq!(h.r.leases(h.wall()).len(), 1);
    // Another new client does not take the released address while fresh ones exist.
    assert_ne!(h.reply(&Client::new(M::Discover, mac(3))).yiaddr, addr);
    assert_eq!(h.lease(m).yiaddr, addr);
}

#[test]
fn decline_quarantines_the_address() {
    let mut s = settings();
    s.pool_end = ip(101);
    let mut h = Harness::new(s);
    let addr = h.lease(mac(1)).yiaddr;
    let mut decl = Client::new(M::Decline, mac(1));
    decl.requested = Some(addr);
    decl.server_id = Some(SERVER);
    h.silent(&decl);
    assert!(h.r.leases(h.wall()).is_empty());
    let other = h.lease(mac(2)).yiaddr;
    assert_ne!(other, addr);
    // Pool: one address quarantined, one leased → nothing to offer.
    h.silent(&Client::new(M::Discover, mac(1)));
    assert_eq!(h.r.counters().dhcp_pool_exhausted, 1);
    h.advance(DECLINE_QUARANTINE_SECS);
    assert_eq!(h.reply(&Client::new(M::Discover, mac(1))).yiaddr, addr);
}

#[test]
fn inform_gets_configuration_without_lease() {
    let mut h = Harness::new(settings());
    let mut inf = Client::new(M::Inform, mac(9));
    inf.ciaddr = ip(20);
    inf.ip_src = ip(20);
    let ack = h.reply(&inf);
    assert_eq!(ack.message_type, M::Ack);
    assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.ciaddr, ip(20));
    assert_eq!((ack.eth_dst, ack.ip_dst), (mac(9), ip(20)));
    assert_eq!((ack.lease, ack.renew, ack.rebind), (None, None, None));
    assert_config_options(&ack);
    assert!(h.r.leases(h.wall()).is_empty());
}

#[test]
fn reservations_by_mac() {
    let mut h = Harness::new(settings());
    let ack = h.lease(RESERVED_MAC);
    assert_eq!(ack.yiaddr, ip(10));
    let mut steal = Client::new(M::Discover, mac(1));
    steal.requested = Some(ip(10));
    assert_ne!(h.reply(&steal).yiaddr, ip(10));
}

#[test]
fn full_pool_answers_nothing_until_a_lease_expires() {
    let mut s = settings();
    s.pool_end = ip(101);
    s.lease_time = Duration::from_secs(600);
    let mut h = Harness::new(s);
    let a = h.lease(mac(1)).yiaddr;
    h.lease(mac(2));
    h.silent(&Client::new(M::Discover, mac(3)));
    assert_eq!(h.r.counters().dhcp_pool_exhausted, 1);
    // First leases are short.
    h.advance(u64::from(SHORT) - 1);
    h.silent(&Client::new(M::Discover, mac(3)));
    h.advance(1);
    // mac(1)'s and mac(2)'s leases expired: the oldest is reclaimed.
    assert!(h.r.leases(h.wall()).is_empty());
    assert_eq!(h.lease(mac(3)).yiaddr, a);
    assert_eq!(h.r.leases(h.wall()).len(), 1);
}

#[test]
fn offers_lapse_after_the_hold() {
    let mut s = settings();
    s.pool_end = ip(100);
    let mut h = Harness::new(s);
    h.reply(&Client::new(M::Discover, mac(1)));
    h.silent(&Client::new(M::Discover, mac(2)));
    h.advance(OFFER_HOLD_SECS);
    assert_eq!(h.reply(&Client::new(M::Discover, mac(2))).yiaddr, ip(100));
}

#[test]
fn leases_survive_restart() {
    let mut h = Harness::new(settings());
    let addr = h.lease(mac(1)).yiaddr;
    let snap = h.r.take_lease_snapshot().expect("changed");
    let db = LeaseDb::load(&snap).expect("valid file");
    let mut h2 = Harness::with_db(settings(), db);
    h2.wall = h.wall + 60;
    assert_eq!(h2.r.leases(h2.wall()).len(), 1);
    let mut reboot = Client::new(M::Request, mac(1));
    reboot.requested = Some(addr);
    assert_eq!(h2.reply(&reboot).message_type, M::Ack);
    let mut thief = Client::new(M::Request, mac(2));
    thief.requested = Some(addr);
    h2.silent(&thief);
    thief.server_id = Some(SERVER);
    assert_eq!(h2.reply(&thief).message_type, M::Nak);
}

#[test]
fn dhcpcd_duid_client_id_is_accepted_and_echoed() {
    let mut h = Harness::new(settings());
    let mut d = Client::new(M::Discover, mac(1));
    // RFC 4361: type 255, IAID, DUID-LLT.
    let id = vec![
        0xff, 0, 0, 0, 1, 0, 1, 0, 1, 0x2c, 0x6e, 0x1f, 0x22, 0x52, 0x54, 0, 0, 1, 1,
    ];
    d.client_id = Some(id.clone());
    assert_eq!(h.reply(&d).option(61), Some(&id[..]));
    // A 7-byte id of a non-Ethernet type: smoltcp's `DhcpRepr::parse` refuses
    // it (so we check the reply's raw options here), our server must not.
    let odd = [0, b'h', b'o', b's', b't', b'-', b'1'];
    d.client_id = Some(odd.to_vec());
    let mut buf = [0u8; 1600];
    let LocalVerdict::Reply(n) = h.r.handle_local(&d.frame(), h.mono, h.wall(), &mut buf) else {
        panic!("must be answered");
    };
    let dhcp = DhcpPacket::new_checked(&buf[42..n]).expect("bootp");
    let opts: Vec<(u8, Vec<u8>)> = dhcp.options().map(|o| (o.kind, o.data.to_vec())).collect();
    assert!(opts.contains(&(53, vec![2])), "an OFFER: {opts:?}");
    assert!(opts.contains(&(61, odd.to_vec())), "echoed: {opts:?}");
}

#[test]
fn ignores_relayed_malformed_and_odd_frames_but_never_forwards() {
    let mut h = Harness::new(settings());
    let mut relayed = Client::new(M::Discover, mac(1));
    relayed.giaddr = Ipv4Addr::new(198, 18, 0, 1);
    h.silent(&relayed);
    // Corrupt UDP checksum.
    let mut f = Client::new(M::Discover, mac(1)).frame();
    let last = f.len() - 1;
    f[last] ^= 0xff;
    assert_eq!(h.send(&f).0, LocalVerdict::Consumed);
    // Truncated BOOTP.
    let f = Client::new(M::Discover, mac(1)).frame();
    assert_eq!(h.send(&f[..200]).0, LocalVerdict::Consumed);
    assert_eq!(h.r.counters().dhcp_malformed, 2);
    // Group chaddr, unknown message types, server messages.
    h.silent(&Client::new(M::Discover, [0x01, 0, 0x5e, 0, 0, 1]));
    h.silent(&Client::new(M::Offer, mac(1)));
    h.silent(&Client::new(M::Unknown(42), mac(1)));
    // A rogue local DHCP server's reply (67 → 68) is consumed too.
    let rogue = ipv4_udp_frame(
        mac(7),
        [0xff; 6],
        ip(2),
        Ipv4Addr::BROADCAST,
        67,
        68,
        &[0; 300],
    );
    assert_eq!(h.send(&rogue).0, LocalVerdict::Consumed);
    assert_eq!(h.r.counters().dhcp_replies, 0);
}

#[test]
fn dhcp_from_the_tunnel_is_dropped() {
    let mut h = Harness::new(settings());
    let now = h.mono;
    assert_eq!(
        h.r.handle_remote(&dhclient_discover(), PeerId::new(0), now),
        RemoteVerdict::Drop
    );
    let offer = ipv4_udp_frame(
        mac(7),
        [0xff; 6],
        ip(2),
        Ipv4Addr::BROADCAST,
        67,
        68,
        &[0; 300],
    );
    assert_eq!(
        h.r.handle_remote(&offer, PeerId::new(0), now),
        RemoteVerdict::Drop
    );
    assert_eq!(h.r.counters().remote_dhcp_dropped, 2);
    let other = ipv4_udp_frame(mac(7), mac(8), ip(2), ip(3), 5000, 53, b"x");
    assert_eq!(
        h.r.handle_remote(&other, PeerId::new(0), now),
        RemoteVerdict::Deliver
    );
    // Without DHCP, the same frames pass both ways.
    let mut plain = Responder::new(None, None, LeaseDb::default()).expect("empty");
    assert_eq!(
        plain.handle_remote(&dhclient_discover(), PeerId::new(0), now),
        RemoteVerdict::Deliver
    );
    let mut buf = [0u8; 1600];
    assert_eq!(
        plain.handle_local(&dhclient_discover(), now, h.wall(), &mut buf),
        LocalVerdict::Forward
    );
}

#[test]
fn server_address_answers_arp_and_owns_its_mac() {
    let mut h = Harness::new(settings());
    let mut buf = [0u8; 1600];
    let (now, wall) = (h.mono, h.wall());
    let req = arp_request(mac(1), ip(100).octets(), SERVER.octets());
    let LocalVerdict::Reply(n) = h.r.handle_local(&req, now, wall, &mut buf) else {
        panic!("ARP for the DHCP server must be answered");
    };
    assert_eq!(&buf[6..12], &SERVER_MAC);
    assert_eq!(&buf[22..28], &SERVER_MAC, "ARP sender hardware address");
    assert_eq!(n, 42);
    // Anything else sent to the server's MAC (here a ping-like UDP) is ours.
    let to_us = ipv4_udp_frame(mac(1), SERVER_MAC, ip(100), SERVER, 4000, 4000, b"x");
    assert_eq!(
        h.r.handle_local(&to_us, now, wall, &mut buf),
        LocalVerdict::Consumed
    );
    let elsewhere = ipv4_udp_frame(mac(1), mac(2), ip(100), ip(101), 4000, 4000, b"x");
    assert_eq!(
        h.r.handle_local(&elsewhere, now, wall, &mut buf),
        LocalVerdict::Forward
    );
}

#[test]
fn infrastructure_addresses_inside_the_pool_are_skipped() {
    let mut s = settings();
    // The DNS servers .1 and .2 lie inside the range (a router may not:
    // `check` refuses it), and so does the ARP responder's .3.
    s.pool_start = ip(1);
    s.router = None;
    s.dns = vec![ip(1), ip(2)];
    let arp = super::super::ArpSettings {
        respond: vec![ip(3)],
        mac: MacAddr(SERVER_MAC),
        suppress: false,
        binding_timeout: Duration::from_secs(60),
        suppress_nd: false,
    };
    let mut h = Harness::new(settings());
    let s = s.check(&arp.respond).expect("valid DHCP settings");
    h.r = Responder::new(Some(arp), Some(s), LeaseDb::default()).expect("valid");
    assert_eq!(h.reply(&Client::new(M::Discover, mac(1))).yiaddr, ip(4));
    let mut reboot = Client::new(M::Request, mac(1));
    for taken in [ip(1), ip(2), ip(3)] {
        reboot.requested = Some(taken);
        assert_eq!(h.reply(&reboot).message_type, M::Nak, "{taken}");
    }
}

#[test]
fn rejects_unworkable_settings_naming_the_key() {
    type Edit = Box<dyn Fn(&mut DhcpSettings)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("dhcp.subnet", Box::new(|s| s.prefix_len = 31)),
        (
            "dhcp.server_address",
            Box::new(|s| s.server_address = Ipv4Addr::new(10, 0, 0, 1)),
        ),
        (
            "dhcp.server_address",
            Box::new(|s| s.server_address = ip(255)),
        ),
        (
            "dhcp.server_address",
            Box::new(|s| s.server_address = ip(150)),
        ),
        ("dhcp.pool", Box::new(|s| s.pool_start = ip(200))),
        (
            "dhcp.pool",
            Box::new(|s| s.pool_end = Ipv4Addr::new(198, 19, 1, 5)),
        ),
        (
            "dhcp.router",
            Box::new(|s| s.router = Some(Ipv4Addr::new(10, 0, 0, 1))),
        ),
        ("dhcp.router", Box::new(|s| s.router = Some(ip(150)))),
        (
            "dhcp.lease_time",
            Box::new(|s| s.lease_time = Duration::from_secs(1)),
        ),
        ("dhcp.mtu", Box::new(|s| s.mtu = Some(40))),
        ("dhcp.domain", Box::new(|s| s.domain = Some(String::new()))),
        (
            "dhcp.routes",
            Box::new(|s| s.routes = vec![(ip(1), 24, ip(1))]),
        ),
        ("dhcp.search", Box::new(|s| s.search = vec!["a..b".into()])),
        (
            "dhcp.option",
            Box::new(|s| s.extra_options = vec![(6, vec![1, 2, 3, 4])]),
        ),
        (
            "dhcp.reservation.ip",
            Box::new(|s| s.reservations.push((MacAddr(mac(1)), ip(10)))),
        ),
        (
            "dhcp.reservation.ip",
            Box::new(|s| s.reservations = vec![(MacAddr(mac(1)), SERVER)]),
        ),
        (
            "dhcp.reservation.ip",
            Box::new(|s| s.reservations = vec![(MacAddr(mac(1)), ip(1))]),
        ),
        (
            "dhcp.reservation.mac",
            Box::new(|s| s.reservations = vec![(MacAddr([0xff; 6]), ip(20))]),
        ),
        ("dhcp", Box::new(|s| s.dns = vec![ip(1); 63])),
        (
            "dhcp.pool",
            Box::new(|s| {
                s.prefix_len = 8;
                s.subnet_addr = Ipv4Addr::new(10, 0, 0, 0);
                s.server_address = Ipv4Addr::new(10, 0, 0, 1);
                s.router = None;
                s.reservations.clear();
                s.pool_start = Ipv4Addr::new(10, 0, 0, 2);
                s.pool_end = Ipv4Addr::new(10, 9, 0, 0);
            }),
        ),
    ];
    for (key, f) in cases {
        let mut s = settings();
        f(&mut s);
        match s.check(&[]) {
            Err(e) => {
                assert_eq!(e.key, key, "{e}");
                assert!(!e.message.is_empty());
            }
            Ok(_) => panic!("{key}: accepted"),
        }
    }
    // An address the ARP responder answers for is never reserved.
    let mut s = settings();
    s.reservations = vec![(MacAddr(mac(1)), ip(20))];
    let e = s.check(&[ip(20)]).expect_err("taken by [arp]");
    assert_eq!((e.key, e.index), ("dhcp.reservation.ip", Some(0)));
    // Host bits in the subnet address are tolerated.
    let mut s = settings();
    s.subnet_addr = ip(77);
    assert!(s.check(&[]).is_ok());
}

/// A reload: a lease that still fits survives a new option and a new pool
/// that keeps its address, the new option is served at the next renewal,
/// and a pool that no longer holds the address drops the lease (the
/// client's renewal is NAKed, its next DISCOVER gets a fitting address).
#[test]
fn reload_keeps_leases_that_fit_and_serves_new_options() {
    let mut h = Harness::new(settings());
    let m = mac(1);
    let addr = h.lease(m).yiaddr;
    let renew = |h: &mut Harness| {
        let mut r = Client::new(M::Request, m);
        r.ciaddr = addr;
        r.ip_src = addr;
        r.ip_dst = SERVER;
        r.eth_dst = SERVER_MAC;
        h.reply(&r)
    };
    // New DNS server: same lease, new option at the renewal.
    let mut s = settings();
    s.dns = vec![ip(2)];
    let mut next = Responder::new(None, Some(plan(s.clone())), h.r.lease_db()).expect("valid");
    let old = std::mem::replace(
        &mut h.r,
        Responder::new(None, Some(plan(settings())), LeaseDb::default()).expect("valid"),
    );
    let counters = old.counters();
    next.take_over(old);
    h.r = next;
    assert_eq!(h.r.counters(), counters, "counters carry over");
    let ack = renew(&mut h);
    assert_eq!((ack.message_type, ack.yiaddr), (M::Ack, addr));
    assert_eq!(ack.option(6), Some(&[198, 19, 0, 2][..]));
    // A pool that no longer holds the address: the lease is gone.
    s.pool_start = ip(200);
    s.pool_end = ip(220);
    let mut next = Responder::new(None, Some(plan(s)), h.r.lease_db()).expect("valid");
    let old = std::mem::replace(
        &mut h.r,
        Responder::new(None, Some(plan(settings())), LeaseDb::default()).expect("valid"),
    );
    next.take_over(old);
    h.r = next;
    assert!(h.r.leases(h.wall()).is_empty());
    assert!(
        h.r.take_lease_snapshot().is_some(),
        "the dropped lease is persisted"
    );
    // The client is no longer on record and its address left the pool.
    assert_eq!(renew(&mut h).message_type, M::Nak);
    let offer = h.reply(&Client::new(M::Discover, m));
    assert!(
        (200..=220).contains(&offer.yiaddr.octets()[3]),
        "{}",
        offer.yiaddr
    );
}

#[test]
fn search_ntp_and_passed_through_options_are_served() {
    let mut s = settings();
    s.search = vec!["branch.example".into(), "corp.example.".into()];
    s.ntp = vec![ip(1), Ipv4Addr::new(198, 18, 0, 123)];
    s.extra_options = vec![(252, b"http://wpad/wpad.dat".to_vec())];
    let mut h = Harness::new(s);
    let offer = h.reply(&Client::new(M::Discover, mac(1)));
    assert_eq!(
        offer.option(119),
        Some(&b"\x06branch\x07example\x00\x04corp\x07example\x00"[..])
    );
    assert_eq!(
        offer.option(42),
        Some(&[198, 19, 0, 1, 198, 18, 0, 123][..])
    );
    assert_eq!(offer.option(252), Some(&b"http://wpad/wpad.dat"[..]));
    assert_config_options(&offer);
    // Too much for one reply is refused up front, naming the cause.
    let mut s = settings();
    s.extra_options = (200..204).map(|c| (c, vec![b'x'; 200])).collect();
    let err = s.check(&[]).err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("fit in a DHCP reply")),
        "{err:?}"
    );
}

#[test]
fn tagged_dhcp_is_never_served_nor_forwarded() {
    let mut h = Harness::new(settings());
    for tags in [&[(0x8100, 10)][..], &[(0x88a8, 7), (0x8100, 10)]] {
        for kind in [M::Discover, M::Request] {
            let f = tagged(&Client::new(kind, mac(1)).frame(), tags);
            assert_eq!(h.send(&f).0, LocalVerdict::Consumed, "{kind:?} {tags:?}");
        }
        // A tagged server reply from the local side stays local too.
        let rogue = ipv4_udp_frame(
            mac(7),
            [0xff; 6],
            ip(2),
            Ipv4Addr::BROADCAST,
            67,
            68,
            &[0; 300],
        );
        assert_eq!(h.send(&tagged(&rogue, tags)).0, LocalVerdict::Consumed);
        // And from a peer, tagged DHCP is dropped like untagged.
        let now = h.mono;
        let remote = tagged(&dhclient_discover(), tags);
        assert_eq!(
            h.r.handle_remote(&remote, PeerId::new(0), now),
            RemoteVerdict::Drop
        );
    }
    let c = h.r.counters();
    assert_eq!(c.dhcp_replies, 0, "nothing answered in a VLAN");
    assert_eq!(
        c.dhcp_ignored, 6,
        "counted where unanswered untagged ones are"
    );
    assert_eq!(c.remote_dhcp_dropped, 2);
    assert_eq!(h.r.leases(h.wall()).len(), 0);
    // The same client untagged is served.
    assert_eq!(
        h.reply(&Client::new(M::Discover, mac(1))).message_type,
        M::Offer
    );
}
