//! `[interface]`: the TAP device. Its name (by default `tb-` and the link
//! name), MTU and MAC, the addresses and routes the daemon puts on it, and
//! the bridge it may join.

use std::ops::Range;

use super::{Cx, Result};
use crate::config::raw::RawInterface;
use crate::config::value;
use crate::config::{InterfaceConfig, IpCidr, Problem, Route};

impl Cx<'_> {
    pub(super) fn interface(
        &self,
        link: &str,
        raw: &RawInterface,
        span: &Range<usize>,
    ) -> Result<InterfaceConfig> {
        let name = match &raw.name {
            Some(n) => {
                self.conv(n, "interface.name", value::ifname)?;
                n.get_ref().clone()
            }
            None => {
                let name = format!("tb-{link}");
                value::ifname(&name).map_err(|reason| {
                    self.err(
                        span,
                        "interface.name",
                        Problem::DefaultIfname {
                            name: name.clone(),
                            reason,
                        },
                    )
                })?;
                name
            }
        };
        let mtu = self.mtu(&raw.mtu, "interface.mtu", 1500)?;
        let mac = self.opt(&raw.mac, "interface.mac", value::unicast_mac)?;
        let mut addresses = Vec::with_capacity(raw.addresses.len());
        for a in &raw.addresses {
            let cidr = self.conv(a, "interface.addresses", value::host_cidr)?;
            if addresses.iter().any(|c: &IpCidr| c.addr == cidr.addr) {
                return Err(self.err(
                    &a.span(),
                    "interface.addresses",
                    format!("{} is listed twice", cidr.addr),
                ));
            }
            addresses.push(cidr);
        }
        let mut routes = Vec::with_capacity(raw.routes.len());
        for r in &raw.routes {
            let route = self.conv(r, "interface.routes", value::route)?;
            if routes.iter().any(|x: &Route| x.dest == route.dest) {
                return Err(self.err(
                    &r.span(),
                    "interface.routes",
                    format!("a route to {} is listed twice", route.dest),
                ));
            }
            routes.push(route);
        }
        let bridge = match &raw.bridge {
            Some(b) => {
                self.conv(b, "interface.bridge", value::ifname)?;
                if *b.get_ref() == name {
                    return Err(self.err(
                        &b.span(),
                        "interface.bridge",
                        "the TAP cannot be its own bridge",
                    ));
                }
                Some(b.get_ref().clone())
            }
            None => None,
        };
        Ok(InterfaceConfig {
            name,
            mtu,
            mac,
            addresses,
            routes,
            bridge,
        })
    }
}
