//! Test fixtures: realistic client frames (a dhclient DISCOVER as a hex dump,
//! builders for the other DHCP messages and ARP), and a reply parser.

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr,
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet,
    Ipv4Repr, UdpPacket, UdpRepr,
};

/// Plain DHCP settings for tests: server 198.19.0.254 answering as
/// `server_mac`, pool .100-.199 of 198.19.0.0/24, router and DNS .1, an
/// hour's leases, nothing else (no conflict check). Tests set what they test
/// with `..dhcp_settings(mac)`.
pub fn dhcp_settings(server_mac: [u8; 6]) -> crate::responder::DhcpSettings {
    let ip = |n| Ipv4Addr::new(198, 19, 0, n);
    crate::responder::DhcpSettings {
        server_address: ip(254),
        server_mac: crate::mac::MacAddr(server_mac),
        pool_start: ip(100),
        pool_end: ip(199),
        subnet_addr: ip(0),
        prefix_len: 24,
        router: Some(ip(1)),
        dns: vec![ip(1)],
        domain: None,
        lease_time: std::time::Duration::from_secs(3600),
        first_lease: std::time::Duration::from_secs(300),
        routes: Vec::new(),
        mtu: None,
        reservations: Vec::new(),
        search: Vec::new(),
        ntp: Vec::new(),
        extra_options: Vec::new(),
        conflict_check: false,
    }
}

/// The MAC of the dhclient fixture.
pub const DHCLIENT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Its transaction id.
pub const DHCLIENT_XID: u32 = 0x3903_f326;

/// What ISC dhclient on Linux broadcasts on `dhclient tb0` after a reboot:
/// Ethernet broadcast from 52:54:00:12:34:56, IP 0.0.0.0 → 255.255.255.255
/// (TOS 0x10, TTL 128), UDP 68 → 67, BOOTREQUEST xid 0x3903f326, no flags,
/// options 53=DISCOVER, 50=198.19.0.101 (its previous lease), 12="branch-pc",
/// 55=[1,28,2,3,15,6,119,12,44,47,26,121,42], end, zero padding to 300 bytes.
const DHCLIENT_DISCOVER_HEX: &[&str] = &[
    "ffffffffffff525400123456080045100148000000008011399600000000ffff",
    "ffff004400430134e48e010106003903f3260000000000000000000000000000",
    "0000000000005254001234560000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "00000000000000000000000000000000000000000000638253633501013204c6",
    "1300650c096272616e63682d7063370d011c02030f06770c2c2f1a792aff0000",
    "00000000000000000000000000000000000000000000",
];

fn unhex(lines: &[&str]) -> Vec<u8> {
    let s: String = lines.concat();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("fixture hex"))
        .collect()
}

/// The dhclient DISCOVER frame.
pub fn dhclient_discover() -> Vec<u8> {
    unhex(DHCLIENT_DISCOVER_HEX)
}

/// A client message to build.
#[derive(Debug, Clone)]
pub struct Client {
    pub kind: DhcpMessageType,
    pub xid: u32,
    pub mac: [u8; 6],
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub broadcast: bool,
    pub requested: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    /// Raw option 61 payload.
    pub client_id: Option<Vec<u8>>,
    /// A BOOTP request: no option 53 (nor other DHCP options).
    pub bootp: bool,
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
    pub eth_dst: [u8; 6],
}

impl Client {
    /// A broadcast message of `kind` from `mac`, like udhcpc sends it
    /// (client id 01:mac, broadcast flag clear).
    pub fn new(kind: DhcpMessageType, mac: [u8; 6]) -> Client {
        let mut id = vec![1];
        id.extend_from_slice(&mac);
        Client {
            kind,
            xid: 0x1234_5678,
            mac,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            broadcast: false,
            requested: None,
            server_id: None,
            client_id: Some(id),
            bootp: false,
            ip_src: Ipv4Addr::UNSPECIFIED,
            ip_dst: Ipv4Addr::BROADCAST,
            eth_dst: [0xff; 6],
        }
    }

    /// The Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        let prl = [1u8, 3, 6, 15, 26, 28, 51, 54, 58, 59, 121];
        let mut extra = Vec::new();
        if let Some(id) = &self.client_id {
            extra.push(DhcpOption { kind: 61, data: id });
        }
        let repr = DhcpRepr {
            message_type: self.kind,
            transaction_id: self.xid,
            secs: 3,
            client_hardware_address: EthernetAddress(self.mac),
            client_ip: self.ciaddr,
            your_ip: Ipv4Addr::UNSPECIFIED,
            server_ip: Ipv4Addr::UNSPECIFIED,
            router: None,
            subnet_mask: None,
            relay_agent_ip: self.giaddr,
            broadcast: self.broadcast,
            requested_ip: self.requested,
            client_identifier: None,
            server_identifier: self.server_id,
            parameter_request_list: Some(&prl),
            dns_servers: None,
            max_size: Some(576),
            lease_duration: None,
            renew_duration: None,
            rebind_duration: None,
            additional_options: &extra,
        };
        let dhcp_len = repr.buffer_len().max(300);
        let mut payload = vec![0u8; dhcp_len];
        repr.emit(&mut DhcpPacket::new_unchecked(&mut payload))
            .expect("emit client message");
        if self.bootp {
            // Only the magic cookie and the end option (RFC 1497).
            payload[240..].fill(0);
            payload[240] = 255;
        }
        ipv4_udp_frame(
            self.mac,
            self.eth_dst,
            self.ip_src,
            self.ip_dst,
            68,
            67,
            &payload,
        )
    }
}

/// An Ethernet/IPv4/UDP frame with correct checksums.
pub fn ipv4_udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let udp_len = 8 + payload.len();
    let mut f = vec![0u8; 14 + 20 + udp_len];
    EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        hop_limit: 64,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]), &caps);
    UdpRepr {
        src_port: sport,
        dst_port: dport,
    }
    .emit(
        &mut UdpPacket::new_unchecked(&mut f[34..]),
        &src.into(),
        &dst.into(),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &caps,
    );
    f
}

/// A small UDP frame between two hosts (not DHCP unless the ports say so).
pub fn udp_frame(sport: u16, dport: u16) -> Vec<u8> {
    ipv4_udp_frame(
        [2, 0, 0, 0, 0, 0x10],
        [2, 0, 0, 0, 0, 0x20],
        Ipv4Addr::new(198, 19, 0, 16),
        Ipv4Addr::new(198, 19, 0, 32),
        sport,
        dport,
        b"hello",
    )
}

/// An ARP frame (Ethernet broadcast for requests, unicast for replies).
pub fn arp_frame(
    op: ArpOperation,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: EthernetAddress(sha),
        source_protocol_addr: Ipv4Addr::from(spa),
        target_hardware_addr: EthernetAddress(tha),
        target_protocol_addr: Ipv4Addr::from(tpa),
    };
    let dst = if op == ArpOperation::Request {
        [0xff; 6]
    } else {
        tha
    };
    let mut f = vec![0u8; 14 + repr.buffer_len()];
    EthernetRepr {
        src_addr: EthernetAddress(sha),
        dst_addr: EthernetAddress(dst),
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    repr.emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
    f
}

/// A broadcast ARP request "who has `tpa`? tell `spa`" from `sha`.
pub fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    arp_frame(ArpOperation::Request, sha, spa, [0; 6], tpa)
}

/// A RARP announcement the way QEMU sends one for a migrated VM: Ethernet
/// broadcast from `mac`, "reverse request" (op 3) with sender and target
/// hardware address `mac`, no addresses.
pub fn rarp_announce(mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x80, 0x35, 0, 1, 0x08, 0x00, 6, 4, 0, 3]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0; 4]);
    f.resize(60, 0);
    f
}

/// A DHCP reply taken apart (checksums verified on the way).
#[derive(Debug)]
pub struct Reply {
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
    pub ttl: u8,
    pub sport: u16,
    pub dport: u16,
    pub dhcp_len: usize,
    pub message_type: DhcpMessageType,
    pub xid: u32,
    pub chaddr: [u8; 6],
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub broadcast: bool,
    pub server_id: Option<Ipv4Addr>,
    pub lease: Option<u32>,
    pub renew: Option<u32>,
    pub rebind: Option<u32>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    /// All options as (kind, data), in wire order.
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Reply {
    /// The data of option `kind`, if present.
    pub fn option(&self, kind: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, d)| d.as_slice())
    }
}

/// Parse a reply frame with smoltcp, verifying IP and UDP checksums.
pub fn parse_reply(frame: &[u8]) -> Reply {
    let caps = ChecksumCapabilities::default();
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
    let ip_repr = Ipv4Repr::parse(&ip, &caps).expect("ipv4 header and checksum");
    assert_eq!(ip_repr.next_header, IpProtocol::Udp);
    let udp = UdpPacket::new_checked(ip.payload()).expect("udp");
    let udp_repr = UdpRepr::parse(
        &udp,
        &ip_repr.src_addr.into(),
        &ip_repr.dst_addr.into(),
        &caps,
    )
    .expect("udp checksum");
    assert_ne!(udp.checksum(), 0, "UDP checksum filled in");
    let dhcp = DhcpPacket::new_checked(udp.payload()).expect("dhcp");
    let repr = DhcpRepr::parse(&dhcp).expect("dhcp repr");
    Reply {
        eth_src: eth.src_addr().0,
        eth_dst: eth.dst_addr().0,
        ip_src: ip_repr.src_addr,
        ip_dst: ip_repr.dst_addr,
        ttl: ip_repr.hop_limit,
        sport: udp_repr.src_port,
        dport: udp_repr.dst_port,
        dhcp_len: udp.payload().len(),
        message_type: repr.message_type,
        xid: repr.transaction_id,
        chaddr: repr.client_hardware_address.0,
        ciaddr: repr.client_ip,
        yiaddr: repr.your_ip,
        broadcast: repr.broadcast,
        server_id: repr.server_identifier,
        lease: repr.lease_duration,
        renew: repr.renew_duration,
        rebind: repr.rebind_duration,
        subnet_mask: repr.subnet_mask,
        router: repr.router,
        options: dhcp.options().map(|o| (o.kind, o.data.to_vec())).collect(),
    }
}

/// `frame` with 802.1Q tags (TPID, VID) inserted after the MAC addresses,
/// outermost first.
pub fn tagged(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for &(tpid, vid) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&vid.to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}
