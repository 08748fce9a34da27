//! Loop detection's state (the probing schedule, each peer's loop) and how a
//! probe or a BPDU is recognised.

use std::time::{Duration, Instant};

use crate::peer_id::PeerId;

use super::threat;
use super::{LOOP_HOLD, PROBE_DST, PROBE_ETHERTYPE, PROBE_MAGIC};

/// Link-wide probing schedule.
#[derive(Debug)]
pub(super) struct Probing {
    /// Until when probes are sent because a MAC moved.
    pub(super) suspect_until: Option<Instant>,
    /// When the next probe may go out (one per interval).
    pub(super) next_probe: Instant,
}

/// Loop state towards one peer.
#[derive(Debug, Clone, Copy)]
pub(super) struct PeerLoop {
    /// Since when a loop through this peer is present, if one is.
    pub(super) since: Option<Instant>,
    /// When a probe of ours sent to this peer last came back.
    pub(super) last_seen: Option<Instant>,
    /// The current hold-down.
    pub(super) hold: Duration,
    /// When the last loop through this peer ended.
    pub(super) ended: Option<Instant>,
    /// When this peer's LAN was last reported bridged in twice.
    pub(super) twice_reported: Option<Instant>,
}

/// A loop between two peers' LANs, behind us (a hub).
#[derive(Debug, Clone, Copy)]
pub(super) struct PairLoop {
    /// The peer our probe was sent to.
    pub(super) a: PeerId,
    /// The peer it came back from.
    pub(super) b: PeerId,
    pub(super) since: Instant,
    /// When a probe last came back this way.
    pub(super) last_seen: Instant,
    pub(super) hold: Duration,
}

impl PeerLoop {
    pub(super) const IDLE: PeerLoop = PeerLoop {
        since: None,
        last_seen: None,
        hold: LOOP_HOLD,
        ended: None,
        twice_reported: None,
    };
}

/// Whether `frame` is a loop probe (any site's), untagged.
pub fn is_probe(frame: &[u8]) -> bool {
    frame.len() >= 38
        && frame[..6] == PROBE_DST
        && frame[12..14] == PROBE_ETHERTYPE.to_be_bytes()
        && frame[14..30] == PROBE_MAGIC[..]
}

/// Whether `frame` is a spanning-tree BPDU (by destination).
pub fn is_bpdu(frame: &[u8]) -> bool {
    frame
        .get(..6)
        .is_some_and(|d| d == threat::STP_DST || d == threat::PVST_DST)
}
