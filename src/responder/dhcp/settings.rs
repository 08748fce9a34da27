//! `[dhcp]` as the server takes it, and the one place its rules are kept:
//! [`DhcpSettings::check`] turns settings into a [`DhcpPlan`] (the only
//! thing [`DhcpServer::new`](super::DhcpServer::new) accepts) or names the
//! key that is wrong. The configuration parses each value (an address, a
//! duration, a DNS name) and checks `[dhcp]` against the other sections (the
//! interface's addresses and MTU); how the values of `[dhcp]` must fit each
//! other, and into a reply, is checked here, once, when the configuration is
//! loaded.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::alloc::{Pool, prefix_mask};
use super::message::{BOOTP_FIXED_LEN, DYNAMIC_OPTIONS_LEN, MAX_DHCP_LEN};
use super::reply::config_options;
use crate::mac::MacAddr;

/// Largest pool we scan for a free address.
pub const MAX_POOL_SIZE: u32 = 65_536;

/// Settings of the DHCP server (`[dhcp]`), before [`DhcpSettings::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpSettings {
    /// The address the server answers as (option 54, IP source of replies).
    pub server_address: Ipv4Addr,
    /// Ethernet source of replies; ARP for `server_address` is answered
    /// with it. The responder's own MAC, known once the TAP exists: the
    /// configuration leaves it zero and [`DhcpPlan::set_server_mac`] sets
    /// it (a derived MAC is unicast by construction, `arp.mac` is checked
    /// as it is parsed). Not part of [`DhcpSettings::check`].
    pub server_mac: MacAddr,
    /// First dynamic address (inclusive).
    pub pool_start: Ipv4Addr,
    /// Last dynamic address (inclusive).
    pub pool_end: Ipv4Addr,
    /// The subnet's network address (host bits are ignored).
    pub subnet_addr: Ipv4Addr,
    /// The subnet's prefix length, 0..=30 (option 1).
    pub prefix_len: u8,
    /// Default gateway (option 3).
    pub router: Option<Ipv4Addr>,
    /// DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Domain name (option 15).
    pub domain: Option<String>,
    /// Lease duration (option 51; T1 = 50 %, T2 = 87.5 %).
    pub lease_time: Duration,
    /// The longest first lease, until the client renews (`dhcp.first_lease`,
    /// default [`SHORT_LEASE_SECS`](super::alloc::SHORT_LEASE_SECS)); zero: no cap, the first lease is
    /// `lease_time` too.
    pub first_lease: Duration,
    /// Classless static routes (option 121): (network, prefix length, gateway).
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    /// Interface MTU (option 26).
    pub mtu: Option<u16>,
    /// Fixed MAC → address bindings.
    pub reservations: Vec<(MacAddr, Ipv4Addr)>,
    /// Domain search list (option 119).
    pub search: Vec<String>,
    /// NTP servers (option 42).
    pub ntp: Vec<Ipv4Addr>,
    /// Further options sent as they are: (code, data).
    pub extra_options: Vec<(u8, Vec<u8>)>,
    /// Never offer an address seen in use by another MAC; probe (ARP)
    /// before offering (see [`super::conflict`]).
    pub conflict_check: bool,
}

/// A setting that cannot work: the `[dhcp]` key it is about (as the
/// configuration spells it), for a list the entry, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DhcpSettingsError {
    /// The key, e.g. `dhcp.pool` or `dhcp.reservation.ip`.
    pub key: &'static str,
    /// Which entry of a list (`dhcp.reservation`, `dhcp.routes`,
    /// `dhcp.search`, `dhcp.option`), from 0.
    pub index: Option<usize>,
    /// Why, in one sentence.
    pub message: String,
}

/// Settings that passed [`DhcpSettings::check`], with what the server
/// derives from them once: the pool, the encoded configuration options and
/// the lease times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpPlan {
    pub(super) settings: DhcpSettings,
    pub(super) pool: Pool,
    /// Options 1, 3, 6, 15, 26, 42, 119, 121 and the passed-through ones,
    /// as (code, data).
    pub(super) config_options: Vec<(u8, Vec<u8>)>,
    pub(super) lease_secs: u32,
    /// First leases: `min(lease_secs, first_lease)` (`lease_secs` when
    /// `first_lease` is zero).
    pub(super) short_secs: u32,
}

impl DhcpPlan {
    /// The settings, the subnet address normalized (host bits cleared).
    pub fn settings(&self) -> &DhcpSettings {
        &self.settings
    }

    /// The MAC the server answers from (see [`DhcpSettings::server_mac`]).
    pub fn set_server_mac(&mut self, mac: MacAddr) {
        self.settings.server_mac = mac;
    }
}

fn problem(key: &'static str, index: Option<usize>, message: String) -> DhcpSettingsError {
    DhcpSettingsError {
        key,
        index,
        message,
    }
}

impl DhcpSettings {
    /// Checks how the settings fit each other and into a reply; `excluded`
    /// are further addresses in use on the link (the ARP responder's own),
    /// never handed out nor reserved.
    pub fn check(mut self, excluded: &[Ipv4Addr]) -> Result<DhcpPlan, DhcpSettingsError> {
        let err = |key, index, message| Err(problem(key, index, message));
        if self.prefix_len > 30 {
            return err(
                "dhcp.subnet",
                None,
                format!(
                    "{}/{} is too small for a DHCP pool; use a prefix of /30 or shorter",
                    self.subnet_addr, self.prefix_len
                ),
            );
        }
        let mask = prefix_mask(self.prefix_len);
        self.subnet_addr = Ipv4Addr::from(u32::from(self.subnet_addr) & mask);
        let subnet = format!("{}/{}", self.subnet_addr, self.prefix_len);
        let pool = Pool {
            subnet: self.subnet_addr,
            prefix_len: self.prefix_len,
            start: self.pool_start,
            end: self.pool_end,
            server: self.server_address,
            reservations: self.reservations.clone(),
            excluded: self
                .router
                .iter()
                .chain(&self.dns)
                .chain(excluded)
                .copied()
                .collect(),
        };
        // A host address of the subnet, or why not.
        let host = |ip: Ipv4Addr| -> Result<(), String> {
            if !pool.contains(ip) {
                Err(format!("{ip} is outside subnet {subnet}"))
            } else if !pool.is_host_in_subnet(ip) {
                Err(format!(
                    "{ip} is the network or broadcast address of subnet {subnet}"
                ))
            } else {
                Ok(())
            }
        };
        let (start, end) = (self.pool_start, self.pool_end);
        if start > end {
            return err(
                "dhcp.pool",
                None,
                format!("the pool starts at {start}, after its end {end}"),
            );
        }
        for ip in [start, end] {
            host(ip).map_err(|m| problem("dhcp.pool", None, m))?;
        }
        if u32::from(end) - u32::from(start) >= MAX_POOL_SIZE {
            return err(
                "dhcp.pool",
                None,
                format!("{start}-{end} is larger than {MAX_POOL_SIZE} addresses"),
            );
        }
        let in_pool = |ip: Ipv4Addr| start <= ip && ip <= end;
        let server = self.server_address;
        host(server).map_err(|m| problem("dhcp.server_address", None, m))?;
        if in_pool(server) {
            return err(
                "dhcp.server_address",
                None,
                format!("{server} is inside the pool {start}-{end}"),
            );
        }
        if let Some(r) = self.router {
            // Clients only use a router they can reach on the link.
            host(r).map_err(|m| problem("dhcp.router", None, m))?;
            if in_pool(r) {
                return err(
                    "dhcp.router",
                    None,
                    format!("{r} is inside the pool {start}-{end}"),
                );
            }
        }
        for (i, &(mac, ip)) in self.reservations.iter().enumerate() {
            let at = Some(i);
            if !mac.is_unicast_host() {
                return err(
                    "dhcp.reservation.mac",
                    at,
                    format!("{mac} is not a unicast address"),
                );
            }
            host(ip).map_err(|m| problem("dhcp.reservation.ip", at, m))?;
            if ip == server {
                return err(
                    "dhcp.reservation.ip",
                    at,
                    format!("{ip} is the server address"),
                );
            }
            if self.router == Some(ip) || excluded.contains(&ip) {
                return err(
                    "dhcp.reservation.ip",
                    at,
                    format!("{ip} is already used by the router or the ARP responder"),
                );
            }
            let before = &self.reservations[..i];
            if before.iter().any(|(m, _)| *m == mac) {
                return err(
                    "dhcp.reservation.mac",
                    at,
                    format!("{mac} is reserved twice"),
                );
            }
            if before.iter().any(|(_, a)| *a == ip) {
                return err("dhcp.reservation.ip", at, format!("{ip} is reserved twice"));
            }
        }
        let lease = self.lease_time.as_secs();
        if !(10..u64::from(u32::MAX)).contains(&lease) {
            return err(
                "dhcp.lease_time",
                None,
                "must be at least 10s and less than 136 years".into(),
            );
        }
        let config_options = config_options(&self, mask)?;
        let config_len: usize = config_options.iter().map(|(_, d)| 2 + d.len()).sum();
        if BOOTP_FIXED_LEN + DYNAMIC_OPTIONS_LEN + config_len > MAX_DHCP_LEN {
            return err(
                "dhcp",
                None,
                format!(
                    "the configured options take {config_len} bytes; at most {} fit in a DHCP reply",
                    MAX_DHCP_LEN - BOOTP_FIXED_LEN - DYNAMIC_OPTIONS_LEN
                ),
            );
        }
        let first = self.first_lease.as_secs();
        if first != 0 && first < 10 {
            return err(
                "dhcp.first_lease",
                None,
                "must be \"0s\" (no cap) or at least 10s".into(),
            );
        }
        let short = if first == 0 { lease } else { lease.min(first) };
        Ok(DhcpPlan {
            pool,
            config_options,
            lease_secs: lease as u32,
            short_secs: short as u32,
            settings: self,
        })
    }
}
