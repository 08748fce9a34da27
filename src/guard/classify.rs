//! What a frame is, as far as the guards care, read with etherparse's sliced
//! (zero-copy) views: Ethernet II with up to three 802.1Q/802.1ad tags,
//! IPv4/IPv6 (with extension headers), UDP and ICMPv6.
//!
//! Pure and allocation-free; never panics on any input.

use etherparse::err::{Layer, packet::SliceError};
use etherparse::{IpNumber, NetSlice, SlicedPacket, TransportSlice};

/// The spanning-tree group address (IEEE 802.1D STP, RSTP, MSTP BPDUs).
pub const STP_DST: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x00];
/// Cisco's PVST+ BPDUs (SNAP-encapsulated, one per VLAN).
pub const PVST_DST: [u8; 6] = [0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcd];

/// ICMPv6 router advertisement (RFC 4861 §4.2).
const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
/// DHCPv6 messages only a server or relay sends (RFC 8415 §7.3):
/// ADVERTISE, REPLY, RECONFIGURE, RELAY-REPL.
const DHCPV6_SERVER_MESSAGES: [u8; 4] = [2, 7, 10, 13];
/// BOOTP `op` of a reply.
const BOOTREPLY: u8 = 2;

/// The kinds of frame the guards act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A DHCPv4 server message: UDP from port 67 to a client (68), or a
    /// BOOTREPLY from port 67 to a relay (67). Tagged or not.
    Dhcpv4Server,
    /// An ICMPv6 router advertisement. Tagged or not.
    RouterAdvertisement,
    /// A DHCPv6 server message: UDP from port 547 to a client (546), or an
    /// ADVERTISE/REPLY/RECONFIGURE/RELAY-REPL from port 547.
    Dhcpv6Server,
    /// An IPv6 frame whose headers could not be followed to the upper
    /// layer (RFC 7113: an RA could hide behind them).
    Ipv6Undecodable,
    /// A spanning-tree BPDU (by destination address).
    Bpdu,
    /// Anything else.
    Other,
}

/// Classifies an Ethernet frame (no virtio-net header).
pub fn classify(frame: &[u8]) -> Kind {
    let Some(dst) = frame.get(..6) else {
        return Kind::Other;
    };
    if dst == STP_DST || dst == PVST_DST {
        return Kind::Bpdu;
    }
    let packet = match SlicedPacket::from_ethernet(frame) {
        Ok(p) => p,
        Err(e) => {
            return if carries_ipv6(frame) && ipv6_headers_broken(&e) {
                Kind::Ipv6Undecodable
            } else {
                Kind::Other
            };
        }
    };
    let v6 = matches!(packet.net, Some(NetSlice::Ipv6(_)));
    match &packet.transport {
        Some(TransportSlice::Udp(udp)) => {
            let (src, dst) = (udp.source_port(), udp.destination_port());
            let first = udp.payload().first().copied();
            if v6 {
                if src == 547
                    && (dst == 546 || first.is_some_and(|t| DHCPV6_SERVER_MESSAGES.contains(&t)))
                {
                    return Kind::Dhcpv6Server;
                }
            } else if src == 67 && (dst == 68 || (dst == 67 && first == Some(BOOTREPLY))) {
                return Kind::Dhcpv4Server;
            }
            Kind::Other
        }
        Some(TransportSlice::Icmpv6(icmp)) if icmp.type_u8() == ICMPV6_ROUTER_ADVERTISEMENT => {
            Kind::RouterAdvertisement
        }
        Some(_) => Kind::Other,
        None => match packet.net {
            // IPv6 whose upper layer etherparse could not reach unfragmented
            // (an unknown next header): treated like an undecodable one. A
            // fragment is fine: hosts ignore fragmented ND (RFC 6980).
            Some(NetSlice::Ipv6(ip))
                if !ip.payload().fragmented && ip.payload().ip_number == IpNumber::IPV6_ICMP =>
            {
                Kind::Ipv6Undecodable
            }
            _ => Kind::Other,
        },
    }
}

/// Whether slicing failed in the IPv6 header or its extension headers
/// (before the upper layer was found), rather than in TCP, UDP or ICMPv6,
/// whose truncation hosts reject themselves.
fn ipv6_headers_broken(e: &SliceError) -> bool {
    match e {
        SliceError::Ip(_) | SliceError::Ipv6(_) | SliceError::Ipv6Exts(_) => true,
        SliceError::Len(l) => matches!(
            l.layer,
            Layer::IpHeader
                | Layer::Ipv6Header
                | Layer::Ipv6Packet
                | Layer::Ipv6ExtHeader
                | Layer::Ipv6HopByHopHeader
                | Layer::Ipv6DestOptionsHeader
                | Layer::Ipv6RouteHeader
                | Layer::Ipv6FragHeader
                | Layer::IpAuthHeader
        ),
        _ => false,
    }
}

/// Whether the ether type after up to three VLAN tags is IPv6.
fn carries_ipv6(frame: &[u8]) -> bool {
    let mut at = 12;
    for _ in 0..4 {
        match frame.get(at..at + 2) {
            Some([0x86, 0xdd]) => return true,
            Some([0x81, 0x00] | [0x88, 0xa8] | [0x91, 0x00]) => at += 4,
            _ => return false,
        }
    }
    false
}
