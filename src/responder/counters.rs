//! What the responder counts and reports: its counters (monotonic, for
//! status and metrics) and the rate-limited log of refused ARP and ND
//! bindings.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::arp::BindingRefusal;
use crate::mac::MacAddr;
use crate::peer_id::PeerId;

/// Responder counters (monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponderCounters {
    /// ARP replies written into the TAP.
    pub arp_replies: u64,
    /// DHCP replies (OFFER, ACK, NAK) written into the TAP.
    pub dhcp_replies: u64,
    /// Of `dhcp_replies`, how many were NAKs.
    pub dhcp_naks: u64,
    /// DISCOVERs left unanswered because the pool had no free address.
    pub dhcp_pool_exhausted: u64,
    /// Local DHCP frames that could not be parsed (bad IP/UDP/BOOTP).
    pub dhcp_malformed: u64,
    /// Local DHCP frames consumed without answer (not for us, RELEASE, ...).
    pub dhcp_ignored: u64,
    /// DHCP frames from the tunnel that were dropped.
    pub remote_dhcp_dropped: u64,
    /// ARP bindings learned or refreshed from the tunnel.
    pub arp_bindings_learned: u64,
    /// ARP bindings from the tunnel refused (see [`arp`](super::arp): they claimed a
    /// local or the responder's own address, or their sender MAC was not the
    /// Ethernet source).
    pub arp_bindings_refused: u64,
    /// Neighbour solicitations answered locally from ND bindings.
    pub nd_replies: u64,
    /// ND bindings learned or refreshed from the tunnel.
    pub nd_bindings_learned: u64,
    /// ND bindings from the tunnel refused (see [`nd`](super::nd)).
    pub nd_bindings_refused: u64,
    /// Addresses not offered, or REQUESTs NAKed, because another MAC was
    /// seen using the address (`conflict_check`).
    pub dhcp_conflicts: u64,
    /// ARP probes sent before offering (`conflict_check`).
    pub dhcp_probes: u64,
    /// OFFERs sent before their probe's hold ended, the held offers being
    /// at their bound (`conflict_check`).
    pub dhcp_offers_early: u64,
}

/// Refused ARP and ND bindings to log: at most one line per [`REFUSAL_LOG_INTERVAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalLog {
    /// Refused since the previous line.
    pub count: u64,
    /// Why the last one was refused.
    pub reason: &'static str,
    /// The address the last one claimed.
    pub ip: IpAddr,
    /// The MAC the last one claimed.
    pub mac: MacAddr,
    /// The peer the last one came from.
    pub peer: PeerId,
}

/// Least time between two [`RefusalLog`]s.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Refusals not logged yet.
#[derive(Debug, Default)]
pub(super) struct Refusals {
    pub(super) unlogged: u64,
    pub(super) last: Option<(BindingRefusal, IpAddr, MacAddr, PeerId)>,
    pub(super) logged_at: Option<Instant>,
}
