#![no_main]
//! Fuzz the DHCP responder: a sequence of frames, each either raw or a fuzzed
//! BOOTP payload wrapped in a valid Ethernet/IPv4/UDP frame (so the fuzzer
//! gets past the checksums and into the server's state machine), sent from
//! the local side or the tunnel, with the virtual clock moving in between
//! and the conflict check's probes and held offers drained after each;
//! a record with the top control bit set is a lease file to load instead.
//! Nothing may panic, and every reply must fit the buffer and be DHCP.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use tapbridge::leases::LeaseDb;
use tapbridge::mac::MacAddr;
use tapbridge::peer_id::PeerId;
use tapbridge::responder::{
    ArpSettings, DhcpSettings, LocalVerdict, OwnFrame, REPLY_BUFFER_LEN, Responder,
};

fn responder(leases: LeaseDb) -> Responder {
    let ip = |d| Ipv4Addr::new(198, 19, 0, d);
    let dhcp = DhcpSettings {
        server_address: ip(254),
        server_mac: MacAddr([2, 0, 0, 0, 0, 0xfe]),
        pool_start: ip(100),
        pool_end: ip(103),
        subnet_addr: ip(0),
        prefix_len: 24,
        router: Some(ip(1)),
        dns: vec![ip(1)],
        domain: Some("branch.example".into()),
        lease_time: Duration::from_secs(60),
        first_lease: Duration::from_secs(300),
        routes: vec![(Ipv4Addr::new(198, 19, 64, 0), 18, ip(1))],
        mtu: Some(1400),
        reservations: vec![(MacAddr([2, 0, 0, 0, 0xaa, 1]), ip(10))],
        search: Vec::new(),
        ntp: Vec::new(),
        extra_options: Vec::new(),
        conflict_check: true,
    };
    let arp = ArpSettings {
        respond: vec![ip(1)],
        mac: MacAddr([2, 0, 0, 0, 0, 0xfd]),
        suppress: true,
        binding_timeout: Duration::from_secs(30),
        suppress_nd: false,
    };
    let dhcp = dhcp.check(&arp.respond).expect("valid DHCP settings");
    Responder::new(Some(arp), Some(dhcp), leases).expect("valid settings")
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet broadcast / IPv4 0.0.0.0 → 255.255.255.255 / UDP 68 → 67 (no
/// UDP checksum, which IPv4 allows) around `bootp`.
fn wrap(bootp: &[u8], src_mac: u8) -> Vec<u8> {
    let udp_len = 8 + bootp.len();
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, src_mac & 0xfe]);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[16..20].copy_from_slice(&[255; 4]);
    let c = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&68u16.to_be_bytes());
    f.extend_from_slice(&67u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(bootp);
    f
}

fuzz_target!(|data: &[u8]| {
    let mut r = responder(LeaseDb::default());
    let mut mono = Instant::now();
    let mut wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut reply = [0u8; REPLY_BUFFER_LEN];
    let mut rest = data;
    // Each record: control byte, length byte, then that many bytes.
    while let [ctrl, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len()) + if ctrl & 0x40 != 0 { 256 } else { 0 };
        let n = n.min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        if ctrl & 0x80 != 0 {
            // A lease file (version 1 or 2): parsing never panics, and what
            // parses survives the allocator and a round trip.
            if let Ok(db) = LeaseDb::load(body) {
                let again = responder(db);
                let reloaded = LeaseDb::load(&again.lease_snapshot().expect("DHCP enabled"));
                assert!(reloaded.is_ok(), "own snapshot loads");
            }
            continue;
        }
        let frame = if ctrl & 1 != 0 {
            wrap(body, *ctrl)
        } else {
            body.to_vec()
        };
        if ctrl & 2 != 0 {
            r.handle_remote(&frame, PeerId::new(0), mono);
        } else if let LocalVerdict::Reply(n) = r.handle_local(&frame, mono, wall, &mut reply) {
            assert!(n <= reply.len() && n >= 42);
        }
        // The conflict check's probes and held offers: whatever is due now
        // (a handful at most: one per held offer and candidate).
        let mut sent = 0;
        while let Some(t) = r.poll_transmit(mono, wall, &mut reply) {
            let (OwnFrame::Local(n) | OwnFrame::Probe(n)) = t;
            assert!(n <= reply.len() && n >= 42);
            sent += 1;
            assert!(sent <= 64, "poll_transmit ends");
        }
        // Steps of 0.2 s (within and past the probe hold) or of 10 s (leases,
        // offers and quarantines expiring).
        let v = u64::from(ctrl >> 2 & 0x0f);
        let step = if v < 4 {
            Duration::from_millis(v * 200)
        } else {
            Duration::from_secs((v - 3) * 10)
        };
        mono += step;
        wall += step;
    }
    // Whatever happened, the lease database must round-trip.
    let snapshot = r.lease_snapshot().expect("DHCP enabled");
    let db = LeaseDb::load(&snapshot).expect("own snapshot loads");
    let again = responder(db);
    assert_eq!(again.leases(wall), r.leases(wall));
});
