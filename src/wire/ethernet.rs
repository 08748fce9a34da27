//! What an Ethernet frame is: the one classifier the responder, the switch
//! and the guards share, read with etherparse's sliced (zero-copy) views.
//!
//! It understands Ethernet II with up to three 802.1Q/802.1ad tags, ARP,
//! IPv4 (first fragments included), IPv6 with extension headers, UDP and
//! ICMPv6, and spots spanning-tree BPDUs by their destination. It says
//! which VLAN a frame is in ([`Vlan`], from the outer tag) and what it
//! carries ([`Kind`]); what to do about it is the caller's business.
//!
//! Promises: pure, allocation-free, and no panic on any input (a frame too
//! short or too odd to read is [`Kind::Other`]). Nothing here imports from
//! the protocol modules.

use etherparse::err::{Layer, packet::SliceError};
use etherparse::{
    EtherType, Ethernet2Slice, IpNumber, LaxLinkExtSlice, LaxNetSlice, LaxSlicedPacket,
    LinkExtSlice, NetSlice, SingleVlanSlice, SlicedPacket, TransportSlice, UdpHeader,
    UdpHeaderSlice,
};

/// The spanning-tree group address (IEEE 802.1D STP, RSTP, MSTP BPDUs).
pub const STP_DST: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x00];
/// Cisco's PVST+ BPDUs (SNAP-encapsulated, one per VLAN).
pub const PVST_DST: [u8; 6] = [0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcd];

/// VID 4095 is reserved by IEEE 802.1Q and never names a VLAN: a frame
/// whose tag is too short to read is put there, so it matches neither the
/// untagged side nor any real VLAN.
pub const VID_UNREADABLE: u16 = 0x0fff;

/// DHCPv4 server port.
pub const DHCPV4_SERVER_PORT: u16 = 67;
/// DHCPv4 client port.
pub const DHCPV4_CLIENT_PORT: u16 = 68;
/// DHCPv6 server/relay port.
const DHCPV6_SERVER_PORT: u16 = 547;
/// DHCPv6 client port.
const DHCPV6_CLIENT_PORT: u16 = 546;
/// ICMPv6 router advertisement (RFC 4861 §4.2).
pub const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
/// DHCPv6 messages only a server or relay sends (RFC 8415 §7.3):
/// ADVERTISE, REPLY, RECONFIGURE, RELAY-REPL.
const DHCPV6_SERVER_MESSAGES: [u8; 4] = [2, 7, 10, 13];
/// BOOTP `op` of a reply.
const BOOTREPLY: u8 = 2;

/// The VLAN a frame belongs to, as the outer tag says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vlan {
    /// No 802.1Q/802.1ad tag.
    Untagged,
    /// The outer tag's VLAN identifier (0 for a priority tag;
    /// [`VID_UNREADABLE`] when the tag is cut short).
    Tagged(u16),
}

/// UDP ports and the first payload byte (the BOOTP `op`, the DHCPv6
/// message type), when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udp {
    /// Source port.
    pub src: u16,
    /// Destination port.
    pub dst: u16,
    /// First byte of the UDP payload.
    pub first: Option<u8>,
}

/// What a frame carries, as far as the bridge cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A spanning-tree BPDU (by destination address).
    Bpdu,
    /// An ARP packet etherparse could slice (any hardware/protocol sizes).
    Arp,
    /// UDP in IPv4: an unfragmented packet or a first fragment; the IPv4
    /// and UDP length fields are not trusted (a truncated packet still
    /// shows its ports).
    Ipv4Udp(Udp),
    /// UDP in IPv6, behind any extension headers.
    Ipv6Udp(Udp),
    /// ICMPv6, behind any extension headers: its type.
    Icmpv6(u8),
    /// An IPv6 frame whose headers could not be followed to the upper
    /// layer (RFC 7113: an RA could hide behind them).
    Ipv6Undecodable,
    /// Anything else.
    Other,
}

/// A classified frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// Its VLAN.
    pub vlan: Vlan,
    /// What it carries.
    pub kind: Kind,
}

impl Class {
    /// Whether it is untagged.
    pub fn untagged(&self) -> bool {
        self.vlan == Vlan::Untagged
    }

    /// IPv4 UDP to the DHCP server port: a client (or relay) talking to a
    /// server.
    pub fn is_dhcpv4_to_server(&self) -> bool {
        matches!(self.kind, Kind::Ipv4Udp(u) if u.dst == DHCPV4_SERVER_PORT)
    }

    /// IPv4 UDP from or to the DHCP server or client port.
    pub fn is_dhcpv4(&self) -> bool {
        const PORTS: [u16; 2] = [DHCPV4_SERVER_PORT, DHCPV4_CLIENT_PORT];
        matches!(self.kind, Kind::Ipv4Udp(u) if PORTS.contains(&u.src) || PORTS.contains(&u.dst))
    }

    /// A DHCPv4 server message: from port 67 to a client (68), or a
    /// BOOTREPLY from port 67 to a relay (67).
    pub fn is_dhcpv4_server(&self) -> bool {
        matches!(self.kind, Kind::Ipv4Udp(u) if u.src == DHCPV4_SERVER_PORT
            && (u.dst == DHCPV4_CLIENT_PORT
                || (u.dst == DHCPV4_SERVER_PORT && u.first == Some(BOOTREPLY))))
    }

    /// A DHCPv6 server message: from port 547 to a client (546), or an
    /// ADVERTISE/REPLY/RECONFIGURE/RELAY-REPL from port 547.
    pub fn is_dhcpv6_server(&self) -> bool {
        matches!(self.kind, Kind::Ipv6Udp(u) if u.src == DHCPV6_SERVER_PORT
            && (u.dst == DHCPV6_CLIENT_PORT
                || u.first.is_some_and(|t| DHCPV6_SERVER_MESSAGES.contains(&t))))
    }

    /// An ICMPv6 router advertisement.
    pub fn is_router_advertisement(&self) -> bool {
        self.kind == Kind::Icmpv6(ICMPV6_ROUTER_ADVERTISEMENT)
    }
}

/// The VLAN of `frame` (Ethernet II, no virtio-net header) from its outer
/// tag: cheaper than [`classify`] when that is all a caller needs (the
/// switch's key), and always the same answer.
pub fn vlan(frame: &[u8]) -> Vlan {
    let Ok(eth) = Ethernet2Slice::from_slice_without_fcs(frame) else {
        return Vlan::Untagged;
    };
    if !is_tag(eth.ether_type()) {
        return Vlan::Untagged;
    }
    match SingleVlanSlice::from_slice(eth.payload_slice()) {
        Ok(tag) => Vlan::Tagged(tag.vlan_identifier().value()),
        Err(_) => Vlan::Tagged(VID_UNREADABLE),
    }
}

fn is_tag(t: EtherType) -> bool {
    matches!(
        t,
        EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME
    )
}

/// Classifies an Ethernet frame (no virtio-net header).
pub fn classify(frame: &[u8]) -> Class {
    Class {
        vlan: vlan(frame),
        kind: kind(frame),
    }
}

fn kind(frame: &[u8]) -> Kind {
    let Some(dst) = frame.get(..6) else {
        return Kind::Other;
    };
    if dst == STP_DST || dst == PVST_DST {
        return Kind::Bpdu;
    }
    quick_other(frame).unwrap_or_else(|| sliced_kind(frame))
}

/// The bulk of the traffic without slicing: `Some(Kind::Other)` for a frame
/// [`sliced_kind`] would call [`Kind::Other`] and that can be told by a few
/// byte reads (an ether type that is neither ARP nor IP; IPv4 that is not
/// UDP; IPv6 whose fixed header is whole and leads straight to TCP); `None`
/// when slicing must decide. A bulk TCP segment costs a few nanoseconds
/// here instead of a full slice (tests check that both always agree).
fn quick_other(frame: &[u8]) -> Option<Kind> {
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    let mut at = 12;
    for _ in 0..3 {
        match frame.get(at..at + 2)? {
            [0x81, 0x00] | [0x88, 0xa8] | [0x91, 0x00] => at += 4,
            _ => break,
        }
    }
    let ip = frame.get(at + 2..)?;
    match frame.get(at..at + 2)? {
        [0x81, 0x00] | [0x88, 0xa8] | [0x91, 0x00] | [0x08, 0x06] => None,
        [0x08, 0x00] => {
            // Version 4 and not UDP: never DHCP, whatever else is wrong.
            (ip.first()? >> 4 == 4 && *ip.get(9)? != UDP).then_some(Kind::Other)
        }
        [0x86, 0xdd] => {
            let fixed = ip.get(..40)?;
            let payload = usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
            let whole = payload <= ip.len() - fixed.len();
            (fixed[0] >> 4 == 6 && fixed[6] == TCP && whole).then_some(Kind::Other)
        }
        _ => Some(Kind::Other),
    }
}

/// [`kind`] by etherparse's views, for frames [`quick_other`] leaves open.
fn sliced_kind(frame: &[u8]) -> Kind {
    // The strict view first: it is what well-formed frames need, and its
    // errors say where an IPv6 header chain broke.
    let packet = match SlicedPacket::from_ethernet(frame) {
        Ok(p) => p,
        Err(e) => return kind_of_broken(frame, &e),
    };
    // MACsec hides what follows; a link extension other than VLAN tags
    // means nothing below is ours to read.
    if packet
        .link_exts
        .iter()
        .any(|x| !matches!(x, LinkExtSlice::Vlan(_)))
    {
        return Kind::Other;
    }
    match (&packet.net, &packet.transport) {
        (Some(NetSlice::Arp(_)), _) => Kind::Arp,
        (Some(NetSlice::Ipv4(_)), Some(TransportSlice::Udp(udp))) => Kind::Ipv4Udp(Udp {
            src: udp.source_port(),
            dst: udp.destination_port(),
            first: udp.payload().first().copied(),
        }),
        (Some(NetSlice::Ipv4(ip)), None) => {
            let h = ip.header();
            ipv4_udp(
                ip.payload().ip_number,
                h.fragments_offset().value(),
                ip.payload().payload,
            )
        }
        (Some(NetSlice::Ipv6(_)), Some(TransportSlice::Udp(udp))) => Kind::Ipv6Udp(Udp {
            src: udp.source_port(),
            dst: udp.destination_port(),
            first: udp.payload().first().copied(),
        }),
        (Some(NetSlice::Ipv6(_)), Some(TransportSlice::Icmpv6(icmp))) => {
            Kind::Icmpv6(icmp.type_u8())
        }
        // IPv6 whose upper layer etherparse could not reach unfragmented
        // (an unknown next header): treated like an undecodable one. A
        // fragment is fine: hosts ignore fragmented ND (RFC 6980).
        (Some(NetSlice::Ipv6(ip)), None)
            if !ip.payload().fragmented && ip.payload().ip_number == IpNumber::IPV6_ICMP =>
        {
            Kind::Ipv6Undecodable
        }
        _ => Kind::Other,
    }
}

/// A frame the strict view refused. IPv6: undecodable when the header
/// chain broke, else (the upper layer is cut short, which hosts reject
/// themselves) nothing. IPv4: the lax view still finds the UDP ports of a
/// truncated or length-lying packet, so DHCP is DHCP however mangled.
fn kind_of_broken(frame: &[u8], e: &SliceError) -> Kind {
    let Ok(lax) = LaxSlicedPacket::from_ethernet(frame) else {
        return Kind::Other;
    };
    if lax
        .link_exts
        .iter()
        .any(|x| !matches!(x, LaxLinkExtSlice::Vlan(_)))
    {
        return Kind::Other;
    }
    match &lax.net {
        Some(LaxNetSlice::Ipv4(ip)) => ipv4_udp(
            ip.payload().ip_number,
            ip.header().fragments_offset().value(),
            ip.payload().payload,
        ),
        Some(LaxNetSlice::Arp(_)) => Kind::Arp,
        _ if carries_ipv6(frame) && ipv6_headers_broken(e) => Kind::Ipv6Undecodable,
        _ => Kind::Other,
    }
}

/// UDP ports from an IPv4 payload, if it is UDP and holds the UDP header
/// (an unfragmented packet or the first fragment).
fn ipv4_udp(proto: IpNumber, fragment_offset: u16, payload: &[u8]) -> Kind {
    if proto != IpNumber::UDP || fragment_offset != 0 {
        return Kind::Other;
    }
    match UdpHeaderSlice::from_slice(payload) {
        Ok(udp) => Kind::Ipv4Udp(Udp {
            src: udp.source_port(),
            dst: udp.destination_port(),
            first: payload.get(UdpHeader::LEN).copied(),
        }),
        Err(_) => Kind::Other,
    }
}

/// Whether slicing failed in the IPv6 header or its extension headers
/// (before the upper layer was found), rather than in TCP, UDP or ICMPv6.
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

#[cfg(test)]
mod tests;
