//! `[arp]`: the local ARP responder. The addresses it answers for itself, its
//! MAC, and whether, and for how long, it answers ARP and IPv6 neighbour
//! solicitations for remote hosts from bindings learned through the tunnel.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::{Cx, Result};
use crate::config::ArpConfig;
use crate::config::raw::RawArp;
use crate::config::value;

impl Cx<'_> {
    pub(super) fn arp(&self, raw: &RawArp) -> Result<ArpConfig> {
        let mut respond: Vec<Ipv4Addr> = Vec::with_capacity(raw.respond.len());
        for r in &raw.respond {
            let ip = self.conv(r, "arp.respond", value::ipv4)?;
            if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
                return Err(self.err(
                    &r.span(),
                    "arp.respond",
                    format!("{ip} is not a host address"),
                ));
            }
            if respond.contains(&ip) {
                return Err(self.err(&r.span(), "arp.respond", format!("{ip} is listed twice")));
            }
            respond.push(ip);
        }
        Ok(ArpConfig {
            respond,
            mac: self.opt(&raw.mac, "arp.mac", value::unicast_mac)?,
            suppress: raw.suppress.unwrap_or(true),
            binding_timeout: self.duration(
                &raw.binding_timeout,
                "arp.binding_timeout",
                Duration::from_secs(300),
            )?,
            suppress_nd: raw.suppress_nd.as_ref().is_some_and(|v| *v.get_ref()),
        })
    }
}
