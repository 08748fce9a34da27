//! The guards' view of a frame ([`Threat`]): [`crate::wire::ethernet::classify`] (the
//! classifier the responder and the switch share) reduced to what the
//! guards act on. Tagged or not, every VLAN is guarded alike.
//!
//! Pure and allocation-free; never panics on any input.

use crate::wire::ethernet::{self, Kind as Wire};

pub use crate::wire::ethernet::{PVST_DST, STP_DST};

/// What the guards may act on in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threat {
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

impl Threat {
    /// What the guards make of `frame` (Ethernet, no virtio-net header),
    /// read by the shared classifier.
    pub fn in_frame(frame: &[u8]) -> Threat {
        Threat::of(&ethernet::classify(frame))
    }

    /// What the guards make of a frame the shared classifier has read.
    pub fn of(c: &ethernet::Class) -> Threat {
        match c.kind {
            Wire::Bpdu => Threat::Bpdu,
            Wire::Ipv6Undecodable => Threat::Ipv6Undecodable,
            _ if c.is_dhcpv4_server() => Threat::Dhcpv4Server,
            _ if c.is_dhcpv6_server() => Threat::Dhcpv6Server,
            _ if c.is_router_advertisement() => Threat::RouterAdvertisement,
            _ => Threat::Other,
        }
    }
}
