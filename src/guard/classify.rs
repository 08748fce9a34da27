//! The guards' view of a frame: [`crate::wire::ethernet::classify`] (the
//! classifier the responder and the switch share) reduced to what the
//! guards act on. Tagged or not, every VLAN is guarded alike.
//!
//! Pure and allocation-free; never panics on any input.

use crate::wire::ethernet::{self, Kind as Wire};

pub use crate::wire::ethernet::{PVST_DST, STP_DST};

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
    Kind::of(&ethernet::classify(frame))
}

impl Kind {
    /// What the guards make of a frame the shared classifier has read.
    pub fn of(c: &ethernet::Class) -> Kind {
        match c.kind {
            Wire::Bpdu => Kind::Bpdu,
            Wire::Ipv6Undecodable => Kind::Ipv6Undecodable,
            _ if c.is_dhcpv4_server() => Kind::Dhcpv4Server,
            _ if c.is_dhcpv6_server() => Kind::Dhcpv6Server,
            _ if c.is_router_advertisement() => Kind::RouterAdvertisement,
            _ => Kind::Other,
        }
    }
}
