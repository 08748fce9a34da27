//! The client side of the conversation: reading a BOOTREQUEST (our own
//! parser, since smoltcp's refuses DUID client identifiers), walking its
//! options, and the option codes and payload sizes every reply obeys.

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    DhcpMessageType, DhcpPacket, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket,
    UdpRepr,
};

use super::super::ETH_HEADER_LEN;
use crate::leases::MAX_KEY_LEN;
use crate::mac::MacAddr;

/// Largest DHCP payload we send: 576 (the minimum IP datagram every client
/// accepts) minus IP and UDP headers.
pub(super) const MAX_DHCP_LEN: usize = 576 - 20 - 8;
/// Smallest BOOTP payload; some clients drop shorter replies.
pub(super) const MIN_DHCP_LEN: usize = 300;
/// Fixed BOOTP header up to and including the magic cookie.
pub(super) const BOOTP_FIXED_LEN: usize = 240;
/// Space for the per-reply options: 53 (3), 54 (6), 51/58/59 (18), end (1).
pub(super) const DYNAMIC_OPTIONS_LEN: usize = 3 + 6 + 18 + 1;

pub(super) const OPT_SUBNET_MASK: u8 = 1;
pub(super) const OPT_ROUTER: u8 = 3;
pub(super) const OPT_DNS: u8 = 6;
pub(super) const OPT_DOMAIN: u8 = 15;
pub(super) const OPT_MTU: u8 = 26;
pub(super) const OPT_REQUESTED_IP: u8 = 50;
pub(super) const OPT_MESSAGE_TYPE: u8 = 53;
pub(super) const OPT_SERVER_ID: u8 = 54;
pub(super) const OPT_RENEWAL: u8 = 58;
pub(super) const OPT_REBINDING: u8 = 59;
pub(super) const OPT_CLIENT_ID: u8 = 61;
pub(super) const OPT_CLASSLESS_ROUTES: u8 = 121;
pub(super) const OPT_NTP: u8 = 42;
pub(super) const OPT_SEARCH: u8 = 119;

/// The fields of a client message we act on.
#[derive(Debug)]
pub(super) struct ClientMsg<'a> {
    /// `None`: a BOOTP request (no option 53).
    pub(super) kind: Option<DhcpMessageType>,
    pub(super) xid: u32,
    pub(super) broadcast: bool,
    pub(super) ciaddr: Ipv4Addr,
    pub(super) giaddr: Ipv4Addr,
    pub(super) chaddr: MacAddr,
    pub(super) requested: Option<Ipv4Addr>,
    pub(super) server_id: Option<Ipv4Addr>,
    pub(super) client_id: Option<&'a [u8]>,
}

/// Parse a BOOTREQUEST ourselves: smoltcp's `DhcpRepr::parse` rejects
/// non-Ethernet client identifiers, which dhcpcd (RFC 4361 DUIDs) sends.
pub(super) fn parse_client(payload: &[u8]) -> Option<ClientMsg<'_>> {
    let p = DhcpPacket::new_checked(payload).ok()?;
    if payload[0] != 1 || payload[1] != 1 || payload[2] != 6 || p.magic_number() != 0x6382_5363 {
        return None;
    }
    let mut kind = None;
    let mut requested = None;
    let mut server_id = None;
    let mut client_id = None;
    let ipv4 = |d: &[u8]| <[u8; 4]>::try_from(d).ok().map(Ipv4Addr::from);
    for (code, data) in options(&payload[BOOTP_FIXED_LEN..]) {
        match code {
            OPT_MESSAGE_TYPE if data.len() == 1 => {
                kind = Some(DhcpMessageType::from(data[0]));
            }
            OPT_REQUESTED_IP => requested = ipv4(data),
            OPT_SERVER_ID => server_id = ipv4(data),
            OPT_CLIENT_ID if data.len() >= 2 && data.len() <= MAX_KEY_LEN => {
                client_id = Some(data);
            }
            _ => {}
        }
    }
    Some(ClientMsg {
        kind,
        xid: p.transaction_id(),
        broadcast: p.flags().contains(smoltcp::wire::DhcpFlags::BROADCAST),
        ciaddr: p.client_ip(),
        giaddr: p.relay_agent_ip(),
        chaddr: MacAddr(p.client_hardware_address().0),
        requested,
        server_id,
        client_id,
    })
}

/// Iterate over (code, data) of a DHCP options field, skipping pads and
/// stopping at the end option or at the first truncated option.
pub(super) fn options(mut buf: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        loop {
            match *buf {
                [] | [255, ..] => return None,
                [0, ref rest @ ..] => buf = rest,
                [code, len, ref rest @ ..] if rest.len() >= usize::from(len) => {
                    let (data, rest) = rest.split_at(usize::from(len));
                    buf = rest;
                    return Some((code, data));
                }
                _ => return None,
            }
        }
    })
}

/// Split a local frame into (Ethernet dst, IP dst, DHCP message), verifying
/// the IPv4 and UDP checksums.
pub(super) fn parse_frame(frame: &[u8]) -> Option<(MacAddr, Ipv4Addr, ClientMsg<'_>)> {
    let caps = ChecksumCapabilities::default();
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(frame.get(ETH_HEADER_LEN..)?).ok()?;
    let ip_repr = Ipv4Repr::parse(&ip, &caps).ok()?;
    if ip_repr.next_header != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    UdpRepr::parse(
        &udp,
        &ip_repr.src_addr.into(),
        &ip_repr.dst_addr.into(),
        &caps,
    )
    .ok()?;
    let msg = parse_client(udp.payload())?;
    Some((MacAddr(eth.dst_addr().0), ip_repr.dst_addr, msg))
}
