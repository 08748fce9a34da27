//! Building the answers to `status` and `leases` (SPEC §6) from the worker's
//! state: the tunnel's peers and counters, the responder's counters and
//! leases, the link's fixed facts and the worker's own I/O error counts.
//!
//! The worker owns that state and calls [`status`] or [`leases`] when a
//! request comes in; this module only reads it and turns it into the
//! serializable types of [`crate::control`]. No I/O, no clock: the caller
//! passes `now` and `wall`.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use super::counters::Sources;
use super::{
    CounterStatus, DhcpPoolStatus, InterfaceStatus, LeaseEntry, PeerStatus, RefusalStatus,
    SendErrorStatus, Status,
};
use crate::peer_id::PeerId;
use crate::responder::Responder;
use crate::tunnel::{HandshakeRefusal, Tunnel};

fn secs_since(now: Instant, t: Instant) -> u64 {
    now.saturating_duration_since(t).as_secs()
}

/// What the status reports about the link itself: facts fixed from the
/// moment the link is up until it goes down.
#[derive(Debug, Clone)]
pub struct StaticLinkInfo {
    /// Link name.
    pub name: String,
    /// The TAP.
    pub interface: InterfaceStatus,
    /// Local UDP address.
    pub listen: SocketAddr,
    /// When the link came up.
    pub started: Instant,
}

/// What the bridge reports: the guards' counters and the source MACs each
/// peer owns, in peer order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer2 {
    /// Storm, DHCP/RA/BPDU, loop and policy drops.
    pub guard: crate::guard::GuardCounters,
    /// Live MAC table entries behind each peer.
    pub peer_macs: Vec<u64>,
}

/// The worker's own error counts (the I/O the core does not see).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Frames that could not be written to the TAP.
    pub tap_write_errors: u64,
    /// Datagrams the kernel refused to send.
    pub udp_send_errors: u64,
    /// Authenticated frames whose virtio-net header was refused (counted
    /// as `rx_malformed`).
    pub rx_bad_vnet_hdr: u64,
    /// Reloads applied.
    pub reloads: u64,
    /// Reloads refused.
    pub reloads_refused: u64,
    /// TCP connections accepted.
    pub tcp_accepted: u64,
    /// TCP connections closed unanswered (not authentic, not records, or
    /// silent too long).
    pub tcp_refused: u64,
    /// Messages for a TCP peer dropped (its connection's queue full, or
    /// no connection could be opened).
    pub tcp_dropped: u64,
    /// The last datagram the kernel refused to send: where to, why, when.
    pub last_send_error: Option<SendFailure>,
}

/// A datagram the kernel refused to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendFailure {
    /// Where it was going.
    pub to: SocketAddr,
    /// The `errno` of the refusal (0 if unknown).
    pub errno: i32,
    /// When.
    pub at: Instant,
}

impl IoCounters {
    /// Adds `other`'s counts to these (another worker's).
    pub fn add(&mut self, other: &IoCounters) {
        let IoCounters {
            tap_write_errors,
            udp_send_errors,
            rx_bad_vnet_hdr,
            reloads,
            reloads_refused,
            tcp_accepted,
            tcp_refused,
            tcp_dropped,
            last_send_error,
        } = *other;
        self.tap_write_errors += tap_write_errors;
        self.udp_send_errors += udp_send_errors;
        self.rx_bad_vnet_hdr += rx_bad_vnet_hdr;
        self.reloads += reloads;
        self.reloads_refused += reloads_refused;
        self.tcp_accepted += tcp_accepted;
        self.tcp_refused += tcp_refused;
        self.tcp_dropped += tcp_dropped;
        if let Some(f) = last_send_error
            && self.last_send_error.is_none_or(|mine| mine.at < f.at)
        {
            self.last_send_error = Some(f);
        }
    }

    /// Counts `dropped` datagrams the kernel refused to send, the last of
    /// them to `failed` (`(where, errno)`), at `now`.
    pub fn count_send_errors(
        &mut self,
        dropped: usize,
        failed: Option<(SocketAddr, i32)>,
        now: Instant,
    ) {
        self.udp_send_errors += dropped as u64;
        note_send_failure(&mut self.last_send_error, failed, now);
    }

    /// Counts a reload answer: applied when `ok`, else refused.
    pub fn count_reload(&mut self, ok: bool) {
        if ok {
            self.reloads += 1;
        } else {
            self.reloads_refused += 1;
        }
    }
}

/// Keeps `failed` (`(where, errno)`, at `now`) as the last send failure.
pub fn note_send_failure(
    last: &mut Option<SendFailure>,
    failed: Option<(SocketAddr, i32)>,
    now: Instant,
) {
    if let Some((to, errno)) = failed {
        *last = Some(SendFailure { to, errno, at: now });
    }
}

/// The `leases` answer: the responder's unexpired leases (empty without a
/// DHCP responder).
pub fn leases(responder: Option<&Responder>, wall: SystemTime) -> Vec<LeaseEntry> {
    responder
        .map(|r| {
            r.leases(wall)
                .into_iter()
                .map(|l| LeaseEntry {
                    mac: l.mac,
                    ip: l.ip.to_string(),
                    expires_in_secs: l.expires_in_secs,
                    client_id: l.client_id,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `status` answer (SPEC §6) at `now` (peers' handshake ages, uptime)
/// and `wall` (lease expiry).
pub fn status(
    link: &StaticLinkInfo,
    tunnel: &Tunnel,
    responder: Option<&Responder>,
    io: IoCounters,
    layer2: Layer2,
    now: Instant,
    wall: SystemTime,
) -> Status {
    let peers = PeerId::all(tunnel.peer_count())
        .filter_map(|i| {
            Some((
                tunnel.peer_status(i)?,
                layer2.peer_macs.get(i.index()).copied(),
            ))
        })
        .map(|(p, macs)| PeerStatus {
            macs: macs.unwrap_or(0),
            name: p.name,
            endpoint: p.endpoint.map(|e| e.to_string()),
            endpoints: p
                .endpoints
                .iter()
                .flatten()
                .map(ToString::to_string)
                .collect(),
            state: p.state.as_str().into(),
            path_mtu: u32::try_from(p.path_mtu).unwrap_or(u32::MAX),
            transport: if p.tcp { "tcp" } else { "udp" }.into(),
            last_handshake_secs: p
                .last_handshake
                .map(|t| now.saturating_duration_since(t).as_secs()),
            handshakes: p.stats.handshakes,
            tx_frames: p.stats.tx_frames,
            rx_frames: p.stats.rx_frames,
            tx_bytes: p.stats.tx_bytes,
            rx_bytes: p.stats.rx_bytes,
            endpoint_changes: p.stats.endpoint_changes,
            last_attempt_secs: p.last_attempt.map(|t| secs_since(now, t)),
            last_answer_secs: p.last_heard.map(|t| secs_since(now, t)),
            unanswered_handshakes: u64::from(p.unanswered),
            unanswered_secs: p.unanswered_since.map(|t| secs_since(now, t)),
            last_send_error: io
                .last_send_error
                .filter(|f| p.endpoint == Some(f.to) || p.endpoints.contains(&Some(f.to)))
                .map(|f| SendErrorStatus {
                    error: std::io::Error::from_raw_os_error(f.errno).to_string(),
                    to: f.to.to_string(),
                    secs: secs_since(now, f.at),
                }),
            refused_handshakes: p.refused,
            last_refusal: p.last_refusal.map(|(at, from, reason)| RefusalStatus {
                reason: reason.key().into(),
                from: from.to_string(),
                secs: secs_since(now, at),
                name: match reason {
                    HandshakeRefusal::UnknownPeer { name } => Some(name.to_string()),
                    _ => None,
                },
            }),
        })
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        name: link.name.clone(),
        pid: std::process::id(),
        uptime_secs: now.saturating_duration_since(link.started).as_secs(),
        interface: link.interface.clone(),
        listen: link.listen.to_string(),
        peers,
        counters: CounterStatus::collect(&Sources {
            tunnel: tunnel.counters(),
            responder: responder.map(|r| r.counters()).unwrap_or_default(),
            guard: layer2.guard,
            io,
        }),
        leases: leases(responder, wall),
        rekey_after_secs: tunnel.rekey_after().as_secs(),
        dhcp: responder
            .and_then(|r| r.pool_usage(wall))
            .map(|u| DhcpPoolStatus {
                pool_size: u.size,
                pool_in_use: u.in_use,
            }),
        // The tunnel stands by exactly when the box does.
        role: if tunnel.standby() {
            crate::role::Role::Standby
        } else {
            crate::role::Role::Active
        },
        // The shell's to fill in: the partner channel is its.
        partner: None,
    }
}
