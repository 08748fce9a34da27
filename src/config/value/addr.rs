//! Parsers for the values that are network addresses: IPv4 addresses, CIDR
//! prefixes and networks, routes, DHCP pools, the socket addresses the daemon
//! binds to, and peer endpoints, whose host may be a DNS name (checked here,
//! never resolved).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{HostNameError, ValueError};
use crate::config::{IpCidr, Ipv4Net, PeerEndpoint, Route};

/// Parses an IPv4 address literal.
pub(in crate::config) fn ipv4(text: &str) -> Result<Ipv4Addr, ValueError> {
    text.trim().parse().map_err(|_| ValueError::NotIpv4 {
        text: text.to_owned(),
    })
}

/// Parses `addr/prefix` without constraints on the host bits.
fn addr_prefix(text: &str) -> Result<(IpAddr, u8), ValueError> {
    let bad = || ValueError::NotAPrefix {
        text: text.to_owned(),
    };
    let (addr, prefix) = text.trim().split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(ValueError::PrefixTooLong {
            text: text.to_owned(),
            prefix,
            max,
        });
    }
    Ok((addr, prefix))
}

/// Parses a host address with prefix, e.g. `198.19.0.1/24`.
pub(in crate::config) fn host_cidr(text: &str) -> Result<IpCidr, ValueError> {
    let (addr, prefix_len) = addr_prefix(text)?;
    if addr.is_unspecified() || addr.is_multicast() {
        return Err(ValueError::NotAssignable { addr });
    }
    Ok(IpCidr { addr, prefix_len })
}

/// Parses a network prefix whose host bits are zero, e.g. `198.19.64.0/18`.
pub(super) fn network(text: &str) -> Result<IpCidr, ValueError> {
    let (addr, prefix_len) = addr_prefix(text)?;
    let net = IpCidr { addr, prefix_len };
    let base = net.network();
    if base != addr {
        return Err(ValueError::HostBits {
            text: text.to_owned(),
            base,
            prefix_len,
        });
    }
    Ok(net)
}

/// Parses an IPv4 network prefix whose host bits are zero.
pub(in crate::config) fn ipv4_net(text: &str) -> Result<Ipv4Net, ValueError> {
    let net = network(text)?;
    match net.addr {
        IpAddr::V4(addr) => Ok(Ipv4Net {
            addr,
            prefix_len: net.prefix_len,
        }),
        IpAddr::V6(_) => Err(ValueError::NotIpv4Network {
            text: text.to_owned(),
        }),
    }
}

/// Parses `"198.19.64.0/18"` or `"198.19.128.0/18 via 198.19.0.254"`.
pub(in crate::config) fn route(text: &str) -> Result<Route, ValueError> {
    let bad = || ValueError::NotARoute {
        text: text.to_owned(),
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let (dest, via) = match words.as_slice() {
        [dest] => (*dest, None),
        [dest, "via", gw] => (*dest, Some(*gw)),
        _ => return Err(bad()),
    };
    let dest = network(dest)?;
    let via = match via {
        None => None,
        Some(gw) => {
            let gw: IpAddr = gw
                .parse()
                .map_err(|_| ValueError::GatewayNotIp { gw: gw.to_owned() })?;
            if gw.is_ipv4() != dest.addr.is_ipv4() {
                return Err(ValueError::GatewayFamily { gw, dest });
            }
            if gw.is_unspecified() || gw.is_multicast() {
                return Err(ValueError::NotAGateway { gw });
            }
            Some(gw)
        }
    };
    Ok(Route { dest, via })
}

/// Parses an IPv4 route that must have a gateway (DHCP option 121).
pub(in crate::config) fn ipv4_route(text: &str) -> Result<(Ipv4Net, Ipv4Addr), ValueError> {
    let r = route(text)?;
    match (r.dest.addr, r.via) {
        (IpAddr::V4(addr), Some(IpAddr::V4(gw))) => Ok((
            Ipv4Net {
                addr,
                prefix_len: r.dest.prefix_len,
            },
            gw,
        )),
        (IpAddr::V4(_), None) => Err(ValueError::RouteNeedsGateway {
            text: text.to_owned(),
        }),
        _ => Err(ValueError::NotIpv4Route {
            text: text.to_owned(),
        }),
    }
}

/// Parses `"198.19.0.100-198.19.0.199"`.
pub(in crate::config) fn pool(text: &str) -> Result<(Ipv4Addr, Ipv4Addr), ValueError> {
    let bad = || ValueError::NotARange {
        text: text.to_owned(),
    };
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let start: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
    let end: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
    if start > end {
        return Err(ValueError::PoolReversed { start, end });
    }
    Ok((start, end))
}

/// Parses a socket address we bind to: an IP literal and a port.
pub(in crate::config) fn listen_addr(text: &str) -> Result<SocketAddr, ValueError> {
    text.trim()
        .parse()
        .map_err(|_| ValueError::NotAListenAddress {
            text: text.to_owned(),
        })
}

/// Longest DNS host name (RFC 1035, without the trailing dot).
pub(super) const MAX_HOST_NAME: usize = 253;
/// Longest label of a DNS host name.
pub(super) const MAX_LABEL: usize = 63;

/// Parses a remote endpoint: an IP literal (used as it is, no DNS) or a
/// host name, and a non-zero port.
pub(in crate::config) fn endpoint(text: &str) -> Result<PeerEndpoint, ValueError> {
    let t = text.trim();
    let port_zero = || ValueError::PortZero { text: t.to_owned() };
    if let Ok(addr) = t.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(port_zero());
        }
        if addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(ValueError::NotAPeerAddress { ip: addr.ip() });
        }
        return Ok(PeerEndpoint::Addr(addr));
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(ValueError::NoPort {
            text: text.to_owned(),
        });
    };
    if !host.starts_with('[')
        && let Ok(ip) = host.parse::<std::net::Ipv6Addr>()
        && port.parse::<u16>().is_ok()
    {
        // "2001:db8::1:51901": an IPv6 address needs brackets before a port.
        return Err(ValueError::Ipv6Unbracketed {
            text: t.to_owned(),
            with: format!("[{ip}]:{port}"),
        });
    }
    if host.starts_with('[') || host.contains(':') {
        return Err(ValueError::NotIpv6 {
            text: text.to_owned(),
        });
    }
    let port: u16 = port.parse().map_err(|_| ValueError::NotAPort {
        port: port.to_owned(),
        text: text.to_owned(),
    })?;
    if port == 0 {
        return Err(port_zero());
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    host_name(host).map_err(|why| ValueError::HostName {
        host: host.to_owned(),
        why,
    })?;
    // The resolver would read "198.18.0" or "0x7f.1" as an IPv4 address
    // (inet_aton forms); a name's last label is never a number.
    let last = host.rsplit('.').next().unwrap_or(host);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex || last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError::NumericHost {
            host: host.to_owned(),
        });
    }
    Ok(PeerEndpoint::Name {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// Checks a DNS host name (RFC 1123): dot-separated labels of letters,
/// digits and hyphens, no label empty, longer than 63 bytes or starting or
/// ending with a hyphen, at most 253 bytes in all.
fn host_name(host: &str) -> Result<(), HostNameError> {
    if host.is_empty() {
        return Err(HostNameError::Empty);
    }
    if host.len() > MAX_HOST_NAME {
        return Err(HostNameError::TooLong);
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(HostNameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL {
            return Err(HostNameError::LabelTooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(HostNameError::Char(c));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostNameError::Hyphen {
                label: label.to_owned(),
            });
        }
    }
    Ok(())
}
