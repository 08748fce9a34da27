//! Message builders and readers for [`super::Netlink`]: arguments in,
//! rtnetlink messages out (with the checks the kernel would otherwise make
//! with a less helpful errno), and dumped messages back into [`LinkInfo`] and
//! [`RouteEntry`]. Pure: no socket here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope,
};
use rtnetlink::{AddressMessageBuilder, RouteMessageBuilder};

use super::{LinkInfo, NetlinkError, RouteEntry};
use crate::mac::MacAddr;

pub(super) fn prefix_ok(addr: IpAddr, prefix_len: u8) -> Result<(), NetlinkError> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(NetlinkError::InvalidPrefix { addr, prefix_len });
    }
    Ok(())
}

pub(super) fn link_info(msg: LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        mtu: 0,
        mac: None,
        kind: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        controller: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => info.name = n,
            LinkAttribute::Mtu(m) => info.mtu = m,
            LinkAttribute::Address(a) => info.mac = MacAddr::try_from(a.as_slice()).ok(),
            LinkAttribute::Controller(c) => info.controller = Some(c),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(k) = i {
                        info.kind = Some(match k {
                            InfoKind::Tun => "tun".to_owned(),
                            InfoKind::Bridge => "bridge".to_owned(),
                            other => other.to_string(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    info
}

pub(super) fn address_message(index: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    match addr {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(a, prefix_len)
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(a, prefix_len)
            .build(),
    }
}

pub(super) fn route_message(
    dest: IpAddr,
    prefix_len: u8,
    via: Option<IpAddr>,
    oif: u32,
) -> Result<RouteMessage, NetlinkError> {
    prefix_ok(dest, prefix_len)?;
    let host_bits = match dest {
        IpAddr::V4(a) => u128::from(u32::from(a)) & (u128::from(u32::MAX) >> prefix_len),
        IpAddr::V6(a) => u128::from(a)
            .checked_shl(u32::from(prefix_len))
            .unwrap_or(0),
    };
    if host_bits != 0 {
        return Err(NetlinkError::NotANetwork {
            addr: dest,
            prefix_len,
        });
    }
    // prefix_ok ruled out the builder's only failure (length/family).
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dest, prefix_len)
        .map_err(|_| NetlinkError::InvalidPrefix {
            addr: dest,
            prefix_len,
        })?
        .output_interface(oif);
    match via {
        // An IPv4 route via an IPv6 gateway is valid (RTA_VIA); the reverse is not.
        Some(gw) => {
            b = b.gateway(gw).map_err(|_| NetlinkError::GatewayFamily {
                dest,
                prefix_len,
                via: gw,
            })?;
        }
        // What `ip route add PREFIX dev X` does: a directly connected route.
        None if dest.is_ipv4() => b = b.scope(RouteScope::Link),
        None => {}
    }
    Ok(b.build())
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

pub(super) fn route_entry(m: &RouteMessage) -> Option<RouteEntry> {
    if m.header.table != RouteHeader::RT_TABLE_MAIN {
        return None;
    }
    let mut dest = None;
    let mut via = None;
    let mut oif = None;
    let mut table_ok = true;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dest = route_addr(d),
            RouteAttribute::Gateway(g) => via = route_addr(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Table(t) => table_ok = *t == u32::from(RouteHeader::RT_TABLE_MAIN),
            _ => {}
        }
    }
    if !table_ok {
        return None;
    }
    let dest = dest.unwrap_or(match m.header.address_family {
        rtnetlink::packet_route::AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    Some(RouteEntry {
        dest,
        prefix_len: m.header.destination_prefix_length,
        via,
        oif,
    })
}

/// Displays a route as `dest/len via gw` in messages.
pub(super) struct RouteFmt(pub(super) IpAddr, pub(super) u8, pub(super) Option<IpAddr>);

impl fmt::Display for RouteFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0, self.1)?;
        if let Some(gw) = self.2 {
            write!(f, " via {gw}")?;
        }
        Ok(())
    }
}
