//! Storm control (`guard.storm_pps`): token buckets that refill at the
//! rate, hold a quarter of a second's worth (at least 16 frames), and never
//! overflow however long they sat idle. One bucket for the link's floods
//! from the TAP, and at a hub one per source peer for the floods it relays
//! between peers ([`Storm`]).

use std::time::Instant;

use crate::peer_id::PeerId;

/// The link's buckets: floods from the TAP into the tunnel, and floods a
/// hub relays, one bucket per peer they came from (so one spoke's storm
/// reaches the others at `storm_pps` at most, and does not eat into what
/// the other spokes or the hub's LAN may flood).
#[derive(Debug)]
pub(super) struct Storm {
    pps: u32,
    link: Option<Bucket>,
    /// Indexed by source peer; grown on demand (a full bucket each).
    relay: Vec<Bucket>,
}

impl Storm {
    pub(super) fn new(pps: u32, now: Instant) -> Storm {
        Storm {
            pps,
            link: (pps > 0).then(|| Bucket::new(pps, now)),
            relay: Vec::new(),
        }
    }

    /// A new rate (a reload): every bucket starts full.
    pub(super) fn set_rate(&mut self, pps: u32, now: Instant) {
        if pps != self.pps {
            *self = Storm::new(pps, now);
        }
    }

    /// May a flood from the TAP go into the tunnel?
    pub(super) fn allow_flood(&mut self, now: Instant) -> bool {
        self.link.as_mut().is_none_or(|b| b.take(now))
    }

    /// May a hub relay a flood from peer `from` to the other peers?
    pub(super) fn allow_relay(&mut self, from: PeerId, now: Instant) -> bool {
        if self.pps == 0 {
            return true;
        }
        // Peer numbers are bounded by the link's peers (at most 65,535).
        let i = from.index().min(usize::from(u16::MAX));
        if self.relay.len() <= i {
            let pps = self.pps;
            self.relay.resize_with(i + 1, || Bucket::new(pps, now));
        }
        self.relay[i].take(now)
    }

    /// `peer` was removed: a peer added in its place starts with a full
    /// bucket.
    pub(super) fn forget_peer(&mut self, peer: PeerId, now: Instant) {
        if let Some(b) = self.relay.get_mut(peer.index()) {
            *b = Bucket::new(self.pps, now);
        }
    }
}

/// Token bucket in nanosecond-scaled units: one frame costs `1e9`, and
/// each nanosecond adds `rate`.
#[derive(Debug)]
pub(super) struct Bucket {
    rate: u64,
    cap: u64,
    level: u64,
    last: Instant,
}

const UNIT: u64 = 1_000_000_000;

impl Bucket {
    pub(super) fn new(pps: u32, now: Instant) -> Bucket {
        let rate = u64::from(pps);
        let burst = (rate / 4).max(16);
        Bucket {
            rate,
            cap: burst * UNIT,
            level: burst * UNIT,
            last: now,
        }
    }

    pub(super) fn take(&mut self, now: Instant) -> bool {
        // At most 10 s of refill at once keeps the product far from u64::MAX
        // (rate ≤ 10^7 by config validation).
        let ns = now
            .saturating_duration_since(self.last)
            .as_nanos()
            .min(10 * u128::from(UNIT));
        self.last = self.last.max(now);
        let ns = u64::try_from(ns).unwrap_or(10 * UNIT);
        self.level = self
            .level
            .saturating_add(ns.saturating_mul(self.rate))
            .min(self.cap);
        if self.level >= UNIT {
            self.level -= UNIT;
            true
        } else {
            false
        }
    }
}
