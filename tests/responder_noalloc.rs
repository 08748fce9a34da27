//! Proof that the responder's per-frame paths do not allocate: a counting
//! global allocator (per thread, so parallel tests don't interfere) around
//! `handle_local`/`handle_remote` for everything except DHCP client requests,
//! which are allowed to allocate while building a reply.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use tapbridge::leases::LeaseDb;
use tapbridge::mac::MacAddr;
use tapbridge::peer_id::PeerId;
use tapbridge::responder::{
    ArpSettings, DhcpSettings, LocalVerdict, REPLY_BUFFER_LEN, RemoteVerdict, Responder,
};

#[path = "common/counting.rs"]
mod counting;
use counting::allocations;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

fn responder() -> Responder {
    let ip = |d| Ipv4Addr::new(198, 19, 0, d);
    let dhcp = DhcpSettings {
        server_address: ip(254),
        server_mac: MacAddr(OUR_MAC),
        pool_start: ip(100),
        pool_end: ip(199),
        subnet_addr: ip(0),
        prefix_len: 24,
        router: Some(ip(1)),
        dns: vec![ip(1)],
        domain: None,
        lease_time: Duration::from_secs(3600),
        first_lease: Duration::from_secs(300),
        routes: vec![],
        mtu: None,
        reservations: vec![],
        search: Vec::new(),
        ntp: Vec::new(),
        extra_options: Vec::new(),
        conflict_check: true,
    };
    let arp = ArpSettings {
        respond: vec![ip(1)],
        mac: MacAddr(OUR_MAC),
        suppress: true,
        binding_timeout: Duration::from_secs(300),
        suppress_nd: true,
    };
    let dhcp = dhcp.check(&arp.respond).expect("valid DHCP settings");
    Responder::new(Some(arp), Some(dhcp), LeaseDb::default()).expect("valid settings")
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: [u8; 2], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype);
    f.extend_from_slice(payload);
    f
}

fn arp(op: u8, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4, 0, op];
    p.extend_from_slice(&sha);
    p.extend_from_slice(&spa);
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&tpa);
    eth([0xff; 6], sha, [8, 6], &p)
}

/// An IPv4/UDP frame (checksums irrelevant to classification).
fn udp(dst_mac: [u8; 6], sport: u16, dport: u16) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&[198, 19, 0, 16, 198, 19, 0, 32]);
    ip.extend_from_slice(&sport.to_be_bytes());
    ip.extend_from_slice(&dport.to_be_bytes());
    ip.extend_from_slice(&[0, 28, 0, 0]);
    ip.extend_from_slice(&[0xab; 20]);
    eth(dst_mac, [0x52, 0x54, 0, 0, 0, 1], [8, 0], &ip)
}

/// An Ethernet/IPv6 neighbour solicitation (135) or advertisement (136)
/// with a link-layer address option naming `mac`, checksum filled.
fn nd(
    icmp_type: u8,
    mac: [u8; 6],
    eth_dst: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    target: [u8; 16],
) -> Vec<u8> {
    let opt = if icmp_type == 135 { 1 } else { 2 };
    let mut icmp = vec![icmp_type, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target);
    icmp.extend_from_slice(&[opt, 1]);
    icmp.extend_from_slice(&mac);
    let mut sum: u32 = 0;
    let mut pseudo = src.to_vec();
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 0, 0, icmp.len() as u8, 0, 0, 0, 58]);
    for c in pseudo.chunks(2).chain(icmp.chunks(2)) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    icmp[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0, 0, icmp.len() as u8, 58, 255];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(&icmp);
    eth(eth_dst, mac, [0x86, 0xdd], &ip)
}

/// 2001:2::`last`.
fn v6(last: u16) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0, 2]);
    a[14..].copy_from_slice(&last.to_be_bytes());
    a
}

/// The solicited-node group of 2001:2::`last` and its MAC.
fn group(last: u16) -> ([u8; 6], [u8; 16]) {
    let t = v6(last);
    let mut g = [0u8; 16];
    g[..2].copy_from_slice(&[0xff, 0x02]);
    g[11..].copy_from_slice(&[1, 0xff, t[13], t[14], t[15]]);
    ([0x33, 0x33, 0xff, t[13], t[14], t[15]], g)
}

/// `frame` with an 802.1Q tag for VLAN 10.
fn tag(frame: &[u8]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00, 0, 10]);
    f.extend_from_slice(&frame[12..]);
    f
}

#[test]
fn per_frame_paths_do_not_allocate() {
    let mut r = responder();
    let host = [0x52, 0x54, 0, 0, 0, 1];
    let remote = [0x52, 0x54, 0, 0, 0, 2];
    let tcp_like = {
        let mut f = udp([0x52, 0x54, 0, 0, 0, 9], 40000, 443);
        f[23] = 6; // protocol TCP
        f
    };
    let ipv6 = eth([0x33, 0x33, 0, 0, 0, 1], host, [0x86, 0xdd], &[0x60; 60]);
    let local_frames = [
        tcp_like.clone(),
        ipv6.clone(),
        udp([0xff; 6], 5353, 5353),
        udp(OUR_MAC, 4000, 4000),
        udp([0xff; 6], 67, 68),
        arp(1, host, [198, 19, 0, 20], [198, 19, 0, 1]),
        arp(1, host, [198, 19, 0, 20], [198, 19, 0, 77]),
        arp(1, host, [198, 19, 0, 20], [198, 19, 0, 99]),
        arp(2, host, [198, 19, 0, 20], [198, 19, 0, 77]),
        // A local host using a pool address it holds no lease for, and a
        // probe for one (the DHCP conflict check records and checks them).
        arp(1, host, [198, 19, 0, 150], [198, 19, 0, 99]),
        arp(1, host, [0; 4], [198, 19, 0, 152]),
        // IPv6 ND: a multicast NS for the remote host (answered), for an
        // unknown one, and DAD (both forwarded).
        nd(135, host, group(0xb).0, v6(0xa), group(0xb).1, v6(0xb)),
        nd(135, host, group(0xc).0, v6(0xa), group(0xc).1, v6(0xc)),
        nd(135, host, group(0xd).0, [0; 16], group(0xd).1, v6(0xd)),
        vec![0; 10],
        // Tagged: an ARP request for our address (forwarded) and a DHCP
        // DISCOVER (consumed unanswered).
        tag(&arp(1, host, [198, 19, 0, 20], [198, 19, 0, 1])),
        tag(&udp([0xff; 6], 68, 67)),
        // Last: the remote host shows up here (a frame from its MAC, and a
        // RARP announcement), dropping its binding until the next round.
        eth([0xff; 6], remote, [8, 0], &[0x45; 40]),
        {
            let mut rarp = arp(3, remote, [0; 4], [0; 4]);
            rarp[12..14].copy_from_slice(&[0x80, 0x35]);
            rarp
        },
    ];
    let remote_frames = [
        tcp_like,
        ipv6,
        udp([0xff; 6], 68, 67),
        arp(2, remote, [198, 19, 0, 77], [198, 19, 0, 20]),
        // A peer's host using a pool address (the conflict check's record).
        arp(2, remote, [198, 19, 0, 151], [198, 19, 0, 20]),
        // ND: an NA and an NS with a source link-layer option.
        nd(
            136,
            remote,
            [0x33, 0x33, 0, 0, 0, 1],
            v6(0xb),
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            v6(0xb),
        ),
        nd(135, remote, group(0xa).0, v6(0xe), group(0xa).1, v6(0xa)),
        // Refused: a claim on the router's address.
        arp(2, remote, [198, 19, 0, 1], [198, 19, 0, 20]),
        tag(&arp(2, remote, [198, 19, 0, 78], [198, 19, 0, 20])),
        tag(&udp([0xff; 6], 68, 67)),
    ];
    let mut reply = vec![0u8; REPLY_BUFFER_LEN];
    let t0 = Instant::now();
    let wall = SystemTime::now();
    // Warm-up.
    for f in &remote_frames {
        r.handle_remote(f, PeerId::new(0), t0);
    }
    for f in &local_frames {
        r.handle_local(f, t0, wall, &mut reply);
    }

    let before = allocations();
    let mut replies = 0;
    for i in 0..1000u32 {
        let now = t0 + Duration::from_millis(u64::from(i));
        for f in &remote_frames {
            r.handle_remote(f, PeerId::new(0), now);
        }
        for f in &local_frames {
            if let LocalVerdict::Reply(_) = r.handle_local(f, now, wall, &mut reply) {
                replies += 1;
            }
        }
    }
    assert_eq!(
        allocations() - before,
        0,
        "allocations on the per-frame paths"
    );
    // Our address and the learned ARP and ND bindings were answered every
    // round.
    assert_eq!(replies, 3000);
    assert_eq!(r.counters().nd_replies, 1001);

    // Learning thousands of new bindings, past the table's bound, does not
    // allocate either (the table is sized once).
    let learn: Vec<Vec<u8>> = (0..6000u32)
        .map(|i| arp(1, remote, (0x0a00_0000 + i).to_be_bytes(), [198, 19, 0, 20]))
        .collect();
    let before = allocations();
    for (i, f) in learn.iter().enumerate() {
        let v = r.handle_remote(f, PeerId::new(0), t0 + Duration::from_millis(i as u64));
        assert_eq!(v, RemoteVerdict::Deliver);
    }
    assert_eq!(
        allocations() - before,
        0,
        "allocations while learning bindings"
    );
    let learn: Vec<Vec<u8>> = (0..6000u16)
        .map(|i| {
            nd(
                136,
                remote,
                [0x33, 0x33, 0, 0, 0, 1],
                v6(0x1000 + i),
                [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                v6(0x1000 + i),
            )
        })
        .collect();
    let before = allocations();
    for (i, f) in learn.iter().enumerate() {
        r.handle_remote(f, PeerId::new(0), t0 + Duration::from_millis(i as u64));
    }
    assert_eq!(
        allocations() - before,
        0,
        "allocations while learning ND bindings"
    );
    assert_eq!(r.counters().nd_bindings_learned, 2 * 1001 + 6000);
}
