//! The table of address→MAC bindings learned from peers, shared by ARP
//! suppression ([`super::arp`], IPv4) and ND suppression ([`super::nd`],
//! IPv6): each binding remembers the peer it came from and when it was last
//! seen; the table is bounded ([`MAX_BINDINGS`]) and allocated once, so
//! learning, looking up and dropping never allocate on the hot path.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::mac::MacAddr;
use crate::peer_id::PeerId;

/// Most bindings kept; when full, expired ones go first, then the oldest.
pub const MAX_BINDINGS: usize = 4096;

/// One learned binding.
#[derive(Debug, Clone, Copy)]
pub(super) struct Binding {
    pub mac: MacAddr,
    pub seen: Instant,
    pub peer: PeerId,
    /// IPv6 only: the host said it is a router (an NA's R flag).
    pub router: bool,
}

/// Address → binding, with a count of bindings per MAC.
#[derive(Debug)]
pub(super) struct Bindings<K> {
    pub timeout: Duration,
    bindings: HashMap<K, Binding>,
    /// How many bindings name each MAC (expired ones included), so a local
    /// frame's source is checked with one lookup.
    macs: HashMap<MacAddr, u32>,
}

impl<K: Copy + Eq + Hash> Bindings<K> {
    /// An empty table; `timeout` must be non-zero (checked by the caller).
    pub fn new(timeout: Duration) -> Bindings<K> {
        // Twice the maximum, so deletions plus inserts never make the
        // tables grow (and reallocate) on the hot path.
        Bindings {
            timeout,
            bindings: HashMap::with_capacity(2 * MAX_BINDINGS),
            macs: HashMap::with_capacity(2 * MAX_BINDINGS),
        }
    }

    fn count_mac(&mut self, mac: MacAddr) {
        *self.macs.entry(mac).or_insert(0) += 1;
    }

    fn uncount_mac(macs: &mut HashMap<MacAddr, u32>, mac: MacAddr) {
        if let Some(n) = macs.get_mut(&mac) {
            *n -= 1;
            if *n == 0 {
                macs.remove(&mac);
            }
        }
    }

    /// Whether no binding exists (expired ones included).
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty()
    }

    /// The binding of `ip`, if it has not timed out at `now`.
    pub fn live(&self, ip: &K, now: Instant) -> Option<&Binding> {
        self.bindings
            .get(ip)
            .filter(|b| now.saturating_duration_since(b.seen) < self.timeout)
    }

    /// The binding of `ip`, expired or not.
    pub fn get(&self, ip: &K) -> Option<&Binding> {
        self.bindings.get(ip)
    }

    pub fn remove_ip(&mut self, ip: K) {
        if let Some(b) = self.bindings.remove(&ip) {
            Self::uncount_mac(&mut self.macs, b.mac);
        }
    }

    pub fn remove_mac(&mut self, mac: MacAddr) {
        if self.macs.remove(&mac).is_some() {
            self.bindings.retain(|_, b| b.mac != mac);
        }
    }

    /// Keep only the bindings `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&Binding) -> bool) {
        let macs = &mut self.macs;
        self.bindings.retain(|_, b| {
            let k = keep(b);
            if !k {
                Self::uncount_mac(macs, b.mac);
            }
            k
        });
    }

    /// Learn or refresh `ip` → `binding`; when the table is full, expired
    /// bindings go first, then the oldest. Never allocates.
    pub fn insert(&mut self, ip: K, binding: Binding, now: Instant) {
        if let Some(b) = self.bindings.get_mut(&ip) {
            let old = std::mem::replace(b, binding);
            if old.mac != binding.mac {
                Self::uncount_mac(&mut self.macs, old.mac);
                self.count_mac(binding.mac);
            }
            return;
        }
        if self.bindings.len() >= MAX_BINDINGS {
            let timeout = self.timeout;
            self.retain(|b| now.saturating_duration_since(b.seen) < timeout);
            if self.bindings.len() >= MAX_BINDINGS
                && let Some(oldest) = self
                    .bindings
                    .iter()
                    .min_by_key(|(_, b)| b.seen)
                    .map(|(ip, _)| *ip)
            {
                self.remove_ip(oldest);
            }
        }
        self.bindings.insert(ip, binding);
        self.count_mac(binding.mac);
    }

    /// The unexpired bindings of hosts (not routers): (address, MAC, the
    /// peer that taught it). What the active box of a high-availability
    /// pair lists to its partner.
    pub fn live_hosts(&self, now: Instant) -> Vec<(K, MacAddr, PeerId)> {
        self.bindings
            .iter()
            .filter(|(_, b)| !b.router && now.saturating_duration_since(b.seen) < self.timeout)
            .map(|(ip, b)| (*ip, b.mac, b.peer))
            .collect()
    }

    /// Records a host's binding that the active partner of a pair listed,
    /// as if learned from `peer` just now.
    pub fn insert_host(&mut self, ip: K, mac: MacAddr, peer: PeerId, now: Instant) {
        let binding = Binding {
            mac,
            seen: now,
            peer,
            router: false,
        };
        self.insert(ip, binding, now);
    }

    /// Number of unexpired bindings.
    pub fn live_count(&self, now: Instant) -> usize {
        self.bindings
            .values()
            .filter(|b| now.saturating_duration_since(b.seen) < self.timeout)
            .count()
    }
}
