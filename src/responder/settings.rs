//! What the responder is told: the `[arp]` and `[dhcp]` settings (the
//! configuration produces them), the MAC it answers from, and the error for
//! settings that cannot work.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::mac::MacAddr;

/// Errors of the responder layer: settings that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    /// The DHCP settings cannot work (the message says which value and why).
    #[error("invalid DHCP responder settings: {0}")]
    InvalidDhcp(String),
    /// The ARP settings cannot work (the message says which value and why).
    #[error("invalid ARP responder settings: {0}")]
    InvalidArp(String),
}

/// Settings of the ARP responder (`[arp]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpSettings {
    /// Addresses answered locally with `mac`.
    pub respond: Vec<Ipv4Addr>,
    /// The responder's own MAC (see [`derive_responder_mac`]).
    pub mac: MacAddr,
    /// Answer local requests for remote hosts from bindings learned through the tunnel.
    pub suppress: bool,
    /// How long a learned binding answers requests (ARP and ND).
    pub binding_timeout: Duration,
    /// The same for IPv6 neighbour solicitations (see [`nd`]).
    pub suppress_nd: bool,
}

/// Settings of the DHCP responder (`[dhcp]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpSettings {
    /// The address the server answers as (option 54, IP source of replies).
    pub server_address: Ipv4Addr,
    /// Ethernet source of replies; ARP for `server_address` is answered with it.
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
    /// before offering (see [`dhcp`]'s conflict check).
    pub conflict_check: bool,
}

/// The responder's MAC, derived from the TAP's own MAC the way tap_win32
/// derives its DHCP server's MAC: the TAP MAC with its third byte bumped,
/// forced unicast and locally administered. Always differs from `tap_mac`.
pub fn derive_responder_mac(tap_mac: MacAddr) -> MacAddr {
    let mut mac = tap_mac.0;
    mac[2] = mac[2].wrapping_add(1);
    mac[0] = (mac[0] | 0x02) & !0x01;
    MacAddr(mac)
}
