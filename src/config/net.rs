//! The address types the configuration hands out: an address with its
//! prefix ([`IpCidr`]), an IPv4 network with the arithmetic the DHCP and
//! ARP settings need ([`Ipv4Net`]), and a route ([`Route`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::responder::dhcp::alloc::prefix_mask;

/// An address with a prefix length, e.g. `198.19.0.1/24` or `2001:2::1/64`.
///
/// Invariant when produced by parsing: `prefix_len` is at most 32 (IPv4) or
/// 128 (IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix_len: u8,
}

impl IpCidr {
    /// The network address: `addr` with the host bits cleared.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & prefix_mask(self.prefix_len)))
            }
            IpAddr::V6(a) => {
                let p = u32::from(self.prefix_len.min(128));
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }

    /// Whether `ip` lies in this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let other = IpCidr {
            addr: ip,
            prefix_len: self.prefix_len,
        };
        self.addr.is_ipv4() == ip.is_ipv4() && other.network() == self.network()
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// An IPv4 network: address with host bits zero, and prefix length ≤ 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length.
    pub prefix_len: u8,
}

impl Ipv4Net {
    /// The netmask, e.g. `255.255.255.0` for `/24` (DHCP option 1).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix_len))
    }

    /// The directed broadcast address (DHCP option 28).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !prefix_mask(self.prefix_len))
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.prefix_len);
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }

    /// Whether `ip` is this network's own or broadcast address, which no
    /// host may use (only meaningful for prefixes shorter than /31).
    pub fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        self.prefix_len < 31 && (ip == self.addr || ip == self.broadcast())
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// A route: destination network and optional gateway of the same family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination network (host bits zero).
    pub dest: IpCidr,
    /// Gateway; `None` for an on-link route via the TAP.
    pub via: Option<IpAddr>,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.via {
            Some(gw) => write!(f, "{} via {gw}", self.dest),
            None => write!(f, "{}", self.dest),
        }
    }
}
