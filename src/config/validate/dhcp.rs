//! `[dhcp]`: the local DHCP responder. The subnet, pool and server address are
//! checked against each other and against the interface's own addresses, then
//! the options handed out, `[[dhcp.reservation]]` and `[[dhcp.option]]`.

use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use super::{Cx, Result};
use crate::config::raw::{RawDhcp, RawDhcpOption, Str};
use crate::config::value;
use crate::config::{DhcpConfig, InterfaceConfig, Problem};
use crate::mac::MacAddr;

impl Cx<'_> {
    pub(super) fn dhcp(
        &self,
        link: &str,
        iface: &InterfaceConfig,
        raw: &RawDhcp,
        span: &Range<usize>,
    ) -> Result<Option<DhcpConfig>> {
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        let subnet_v = self.required(&raw.subnet, span, "dhcp.subnet")?;
        let subnet = self.conv(subnet_v, "dhcp.subnet", value::ipv4_net)?;
        if subnet.prefix_len > 30 {
            return Err(self.err(
                &subnet_v.span(),
                "dhcp.subnet",
                format!("{subnet} is too small for a DHCP pool; use a prefix of /30 or shorter"),
            ));
        }
        let inside = |ip: Ipv4Addr, v: &Str, key: &str| -> Result<()> {
            if !subnet.contains(ip) {
                return Err(self.err(&v.span(), key, format!("{ip} is outside subnet {subnet}")));
            }
            if subnet.is_reserved(ip) {
                return Err(self.err(
                    &v.span(),
                    key,
                    format!("{ip} is the network or broadcast address of subnet {subnet}"),
                ));
            }
            Ok(())
        };

        let pool_v = self.required(&raw.pool, span, "dhcp.pool")?;
        let (pool_start, pool_end) = self.conv(pool_v, "dhcp.pool", value::pool)?;
        inside(pool_start, pool_v, "dhcp.pool")?;
        inside(pool_end, pool_v, "dhcp.pool")?;
        let in_pool = |ip: Ipv4Addr| pool_start <= ip && ip <= pool_end;

        let server_v = self.required(&raw.server_address, span, "dhcp.server_address")?;
        let server_address = self.conv(server_v, "dhcp.server_address", value::ipv4)?;
        inside(server_address, server_v, "dhcp.server_address")?;
        if in_pool(server_address) {
            return Err(self.err(
                &server_v.span(),
                "dhcp.server_address",
                format!("{server_address} is inside the pool {pool_start}-{pool_end}"),
            ));
        }
        // Addresses already in use on this segment: never hand them out.
        let own: Vec<Ipv4Addr> = iface
            .addresses
            .iter()
            .filter_map(|c| match c.addr {
                std::net::IpAddr::V4(a) => Some(a),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        if let Some(a) = own.iter().find(|a| in_pool(**a)) {
            return Err(self.err(
                &pool_v.span(),
                "dhcp.pool",
                format!(
                    "the pool {pool_start}-{pool_end} contains {a}, an address of interface {}",
                    iface.name
                ),
            ));
        }
        if own.contains(&server_address) {
            return Err(self.err(
                &server_v.span(),
                "dhcp.server_address",
                format!(
                    "{server_address} is an address of interface {}; the responder needs an address of its own",
                    iface.name
                ),
            ));
        }

        let router = self.opt(&raw.router, "dhcp.router", value::ipv4)?;
        if let (Some(r), Some(v)) = (router, &raw.router) {
            // Clients only use a router they can reach on the link.
            inside(r, v, "dhcp.router")?;
            if in_pool(r) {
                return Err(self.err(
                    &v.span(),
                    "dhcp.router",
                    format!("{r} is inside the pool {pool_start}-{pool_end}"),
                ));
            }
        }
        let dns = raw
            .dns
            .iter()
            .map(|d| self.conv(d, "dhcp.dns", value::ipv4))
            .collect::<Result<Vec<_>>>()?;
        let domain = match &raw.domain {
            Some(d) => {
                self.conv(d, "dhcp.domain", value::domain)?;
                Some(d.get_ref().clone())
            }
            None => None,
        };
        let lease_time = self.duration(
            &raw.lease_time,
            "dhcp.lease_time",
            Duration::from_secs(12 * 3600),
        )?;
        // The responder's minimum (durations stop at 365 days, well inside
        // option 51's 32 bits of seconds).
        if let (Some(v), true) = (&raw.lease_time, lease_time < Duration::from_secs(10)) {
            return Err(self.err(&v.span(), "dhcp.lease_time", "must be at least 10s"));
        }
        let routes = raw
            .routes
            .iter()
            .map(|r| self.conv(r, "dhcp.routes", value::ipv4_route))
            .collect::<Result<Vec<_>>>()?;
        let mtu = match &raw.mtu {
            Some(v) => {
                let m = self.mtu(&raw.mtu, "dhcp.mtu", 1500)?;
                if m > iface.mtu {
                    return Err(self.err(
                        &v.span(),
                        "dhcp.mtu",
                        format!("{m} is larger than interface.mtu {}", iface.mtu),
                    ));
                }
                Some(u16::try_from(m).unwrap_or(u16::MAX))
            }
            None => None,
        };
        let lease_file = match &raw.lease_file {
            Some(f) => self.path(f, "dhcp.lease_file")?,
            None => PathBuf::from(format!("/var/lib/tapbridge/{link}.leases")),
        };

        let mut reservations: Vec<(MacAddr, Ipv4Addr)> = Vec::with_capacity(raw.reservation.len());
        for r in &raw.reservation {
            let mac_v = self.required(&r.get_ref().mac, &r.span(), "dhcp.reservation.mac")?;
            let mac = self.conv(mac_v, "dhcp.reservation.mac", value::unicast_mac)?;
            let ip_v = self.required(&r.get_ref().ip, &r.span(), "dhcp.reservation.ip")?;
            let ip = self.conv(ip_v, "dhcp.reservation.ip", value::ipv4)?;
            inside(ip, ip_v, "dhcp.reservation.ip")?;
            if ip == server_address {
                return Err(self.err(
                    &ip_v.span(),
                    "dhcp.reservation.ip",
                    format!("{ip} is the server address"),
                ));
            }
            if own.contains(&ip) || router == Some(ip) {
                return Err(self.err(
                    &ip_v.span(),
                    "dhcp.reservation.ip",
                    format!("{ip} is already used by the interface or the router"),
                ));
            }
            if reservations.iter().any(|(m, _)| *m == mac) {
                return Err(self.err(
                    &mac_v.span(),
                    "dhcp.reservation.mac",
                    format!("{mac} is reserved twice"),
                ));
            }
            if reservations.iter().any(|(_, i)| *i == ip) {
                return Err(self.err(
                    &ip_v.span(),
                    "dhcp.reservation.ip",
                    format!("{ip} is reserved twice"),
                ));
            }
            reservations.push((mac, ip));
        }

        let search = raw
            .search
            .iter()
            .map(|d| {
                self.conv(d, "dhcp.search", value::domain)?;
                Ok(d.get_ref().trim_end_matches('.').to_owned())
            })
            .collect::<Result<Vec<_>>>()?;
        let ntp = raw
            .ntp
            .iter()
            .map(|d| self.conv(d, "dhcp.ntp", value::ipv4))
            .collect::<Result<Vec<_>>>()?;
        let mut options: Vec<(u8, Vec<u8>)> = Vec::with_capacity(raw.option.len());
        for o in &raw.option {
            let (code, data) = self.dhcp_option(o.get_ref(), &o.span())?;
            if options.iter().any(|(c, _)| *c == code) {
                return Err(self.err(
                    &o.span(),
                    "dhcp.option.code",
                    format!("option {code} is given twice"),
                ));
            }
            options.push((code, data));
        }

        Ok(Some(DhcpConfig {
            server_address,
            pool_start,
            pool_end,
            subnet,
            router,
            dns,
            domain,
            lease_time,
            routes,
            mtu,
            lease_file,
            reservations,
            search,
            ntp,
            options,
            conflict_check: raw.conflict_check.as_ref().is_none_or(|v| *v.get_ref()),
        }))
    }

    /// One `[[dhcp.option]]`: a code the responder does not set itself,
    /// and its data from exactly one of `hex` and `text`.
    fn dhcp_option(&self, raw: &RawDhcpOption, span: &Range<usize>) -> Result<(u8, Vec<u8>)> {
        let code_v = raw
            .code
            .as_ref()
            .ok_or_else(|| self.err(span, "dhcp.option.code", "is required"))?;
        let code = *code_v.get_ref();
        let bad_code = |m: String| self.err(&code_v.span(), "dhcp.option.code", Problem::Rule(m));
        let code = u8::try_from(code)
            .ok()
            .filter(|c| (1..=254).contains(c))
            .ok_or_else(|| bad_code(format!("{code} is not an option code (1..=254)")))?;
        if let Some(key) = value::dhcp_option_key(code) {
            return Err(bad_code(format!(
                "option {code} is set by the responder itself ({key})"
            )));
        }
        let data = match (&raw.hex, &raw.text) {
            (Some(h), None) => self.conv(h, "dhcp.option.hex", value::hex_bytes)?,
            (None, Some(t)) => t.get_ref().as_bytes().to_vec(),
            _ => {
                return Err(self.err(span, "dhcp.option", "give exactly one of `hex` and `text`"));
            }
        };
        if data.is_empty() || data.len() > 255 {
            let (v, key) = match (&raw.hex, &raw.text) {
                (Some(h), _) => (h, "dhcp.option.hex"),
                (_, Some(t)) => (t, "dhcp.option.text"),
                _ => unreachable!("one of them is set"),
            };
            return Err(self.err(
                &v.span(),
                key,
                format!("{} bytes; an option holds 1 to 255", data.len()),
            ));
        }
        Ok((code, data))
    }
}
