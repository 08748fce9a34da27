//! `[dhcp]`: the local DHCP responder. Each value is parsed here and the
//! section checked against the interface's addresses and MTU; how its values
//! fit each other is the responder's rule ([`DhcpSettings::check`]), run
//! once, here, and its complaint placed at the key it names.

use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use super::{Cx, Result};
use crate::config::raw::{RawDhcp, RawDhcpOption, Str};
use crate::config::value;
use crate::config::{ArpConfig, DhcpConfig, InterfaceConfig, Problem};
use crate::mac::MacAddr;
use crate::responder::dhcp::alloc::SHORT_LEASE_SECS;
use crate::responder::{DhcpSettings, DhcpSettingsError};

impl Cx<'_> {
    /// `[dhcp]`: each value parsed, the section checked against the
    /// interface (its addresses and MTU), then against itself by the
    /// responder's own rules ([`DhcpSettings::check`], with the `[arp]`
    /// addresses, which are never handed out), whose complaint is placed at
    /// the key it names.
    pub(super) fn dhcp(
        &self,
        link: &str,
        iface: &InterfaceConfig,
        arp: Option<&ArpConfig>,
        raw: &RawDhcp,
        span: &Range<usize>,
    ) -> Result<Option<DhcpConfig>> {
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        let subnet_v = self.required(&raw.subnet, span, "dhcp.subnet")?;
        let subnet = self.conv(subnet_v, "dhcp.subnet", value::ipv4_net)?;
        let pool_v = self.required(&raw.pool, span, "dhcp.pool")?;
        let (pool_start, pool_end) = self.conv(pool_v, "dhcp.pool", value::pool)?;
        let in_pool = |ip: Ipv4Addr| pool_start <= ip && ip <= pool_end;
        let server_v = self.required(&raw.server_address, span, "dhcp.server_address")?;
        let server_address = self.conv(server_v, "dhcp.server_address", value::ipv4)?;
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
        // "0s" turns the cap off, so zero is a value here.
        let first_lease = match &raw.first_lease {
            Some(v) => self.conv(v, "dhcp.first_lease", value::duration)?,
            None => Duration::from_secs(SHORT_LEASE_SECS),
        };
        let routes = raw
            .routes
            .iter()
            .map(|r| {
                let (net, via) = self.conv(r, "dhcp.routes", value::ipv4_route)?;
                Ok((net.addr, net.prefix_len, via))
            })
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
            if own.contains(&ip) {
                return Err(self.err(
                    &ip_v.span(),
                    "dhcp.reservation.ip",
                    format!("{ip} is an address of interface {}", iface.name),
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
        let extra_options = raw
            .option
            .iter()
            .map(|o| self.dhcp_option(o.get_ref(), &o.span()))
            .collect::<Result<Vec<_>>>()?;
        let settings = DhcpSettings {
            server_address,
            // Set when the TAP exists (DhcpPlan::set_server_mac).
            server_mac: MacAddr::ZERO,
            pool_start,
            pool_end,
            subnet_addr: subnet.addr,
            prefix_len: subnet.prefix_len,
            router,
            dns,
            domain,
            lease_time,
            first_lease,
            routes,
            mtu,
            reservations,
            search,
            ntp,
            extra_options,
            conflict_check: raw.conflict_check.as_ref().is_none_or(|v| *v.get_ref()),
        };
        let excluded = arp.map(|a| a.respond.as_slice()).unwrap_or_default();
        let plan = settings
            .check(excluded)
            .map_err(|e| self.err(&dhcp_span(raw, &e, span), e.key, e.message))?;
        Ok(Some(DhcpConfig { plan, lease_file }))
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

/// Where in `[dhcp]` the value a [`DhcpSettingsError`] names is written
/// (the section itself when the file does not say it).
fn dhcp_span(raw: &RawDhcp, e: &DhcpSettingsError, section: &Range<usize>) -> Range<usize> {
    let nth = |list: &[Str]| e.index.and_then(|i| list.get(i)).map(Str::span);
    let value = match e.key {
        "dhcp.subnet" => raw.subnet.as_ref().map(Str::span),
        "dhcp.pool" => raw.pool.as_ref().map(Str::span),
        "dhcp.server_address" => raw.server_address.as_ref().map(Str::span),
        "dhcp.router" => raw.router.as_ref().map(Str::span),
        "dhcp.domain" => raw.domain.as_ref().map(Str::span),
        "dhcp.lease_time" => raw.lease_time.as_ref().map(Str::span),
        "dhcp.first_lease" => raw.first_lease.as_ref().map(Str::span),
        "dhcp.mtu" => raw.mtu.as_ref().map(|m| m.span()),
        "dhcp.routes" => nth(&raw.routes),
        "dhcp.search" => nth(&raw.search),
        "dhcp.reservation.ip" | "dhcp.reservation.mac" => {
            let r = e.index.and_then(|i| raw.reservation.get(i));
            let field = r.and_then(|r| match e.key {
                "dhcp.reservation.ip" => r.get_ref().ip.as_ref(),
                _ => r.get_ref().mac.as_ref(),
            });
            field.map(Str::span).or(r.map(|r| r.span()))
        }
        "dhcp.option" => e.index.and_then(|i| raw.option.get(i)).map(|o| o.span()),
        _ => None,
    };
    value.unwrap_or_else(|| section.clone())
}
