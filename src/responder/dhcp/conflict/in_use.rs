//! The record of pool addresses seen in use and by whom, bounded and
//! allocated once.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::{IN_USE_SECS, MAX_IN_USE};
use crate::mac::MacAddr;

/// Address → (MAC seen using it, when), bounded and allocated once.
#[derive(Debug)]
pub(in crate::responder) struct InUse {
    pub(super) seen: HashMap<Ipv4Addr, (MacAddr, Instant)>,
}

pub(super) fn fresh(seen: Instant, now: Instant) -> bool {
    now.saturating_duration_since(seen) < Duration::from_secs(IN_USE_SECS)
}

impl InUse {
    pub(super) fn new() -> InUse {
        // Twice the bound, so removals plus inserts never grow the table
        // (and allocate) on the per-frame path.
        InUse {
            seen: HashMap::with_capacity(2 * MAX_IN_USE),
        }
    }

    /// `mac` was seen using `ip` at `now`.
    pub(super) fn saw(&mut self, ip: Ipv4Addr, mac: MacAddr, now: Instant) {
        if let Some(e) = self.seen.get_mut(&ip) {
            *e = (mac, now);
            return;
        }
        if self.seen.len() >= MAX_IN_USE {
            self.seen.retain(|_, (_, t)| fresh(*t, now));
        }
        if self.seen.len() >= MAX_IN_USE
            && let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(ip, (mac, now));
    }

    /// The MAC seen using `ip` lately, unless it is one of `own`.
    pub(super) fn other_than(
        &self,
        ip: Ipv4Addr,
        own: &[MacAddr],
        now: Instant,
    ) -> Option<MacAddr> {
        self.seen
            .get(&ip)
            .filter(|(mac, t)| fresh(*t, now) && !own.contains(mac))
            .map(|(mac, _)| *mac)
    }

    /// Addresses remembered (expired ones included).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }
}
