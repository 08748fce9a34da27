//! What the responder is told: the `[arp]` settings (the configuration
//! produces them; `[dhcp]`'s are [`super::dhcp::DhcpSettings`]), the MAC it
//! answers from, and the error for settings that cannot work.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::mac::MacAddr;

/// Errors of the responder layer: settings that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
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
    /// The same for IPv6 neighbour solicitations (see [`nd`](super::nd)).
    pub suppress_nd: bool,
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
