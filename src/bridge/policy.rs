//! Hub policy (SPEC §5 "Hub policy"): what one peer may do at layer 2,
//! from its `[[peer]]` keys `isolate`, `max_macs`, `macs` and `vlans`.
//!
//! A [`PeerPolicy`] is built by the configuration (which checks every
//! value) and handed to the bridge whole, at start-up and on each reload
//! ([`crate::bridge::Bridge::set_policies`]). It is plain data: the checks
//! against a frame ([`PeerPolicy::admits`]) are a few comparisons, with no
//! allocation.
//!
//! Which rules apply where:
//! - `macs` and `vlans` (pins) apply to every frame from the peer, hub or
//!   not: a frame from a source MAC outside the prefixes, or in a VLAN not
//!   listed, is dropped before anything learns from it.
//! - `max_macs`, the move rule ([`MOVE_HOLD`]), `isolate` and the
//!   per-source storm bucket apply on a hub (`tunnel.hub = true`), where one
//!   peer's frames reach the others; on a two-site link the peer is the
//!   only remote source, so they would protect nothing but could cut off a
//!   large site.

use std::time::Duration;

use crate::mac::MacAddr;
use crate::wire::ethernet::Vlan;

/// `max_macs` when the key is absent.
pub const DEFAULT_MAX_MACS: u32 = 1024;

/// How long a source MAC must have been silent at the port that owns it
/// (a peer, or the hub's own LAN) before a frame from another peer may
/// take it over. Shorter lets a host that moved between sites be reached
/// sooner at its new site; longer protects hosts that talk less often.
/// A host talking at least every few seconds cannot be taken over by a
/// spoke forging its address; one that moved sites loses the frames
/// addressed to it (and its own frames are refused) for at most this long
/// after its last frame at the old site.
pub const MOVE_HOLD: Duration = Duration::from_secs(5);

/// A source MAC prefix a peer may use (`"02:00:00:00:0b:00/40"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacPrefix {
    addr: u64,
    len: u8,
}

impl MacPrefix {
    /// The prefix of the first `len` bits of `mac` (`len` 1..=48); `None`
    /// if `len` is out of range or `mac` has bits set beyond the prefix.
    pub fn new(mac: MacAddr, len: u8) -> Option<MacPrefix> {
        if !(1..=48).contains(&len) {
            return None;
        }
        let addr = mac_bits(mac);
        (addr & !mask(len) == 0).then_some(MacPrefix { addr, len })
    }

    /// Whether `mac` lies in this prefix.
    pub fn contains(&self, mac: MacAddr) -> bool {
        mac_bits(mac) & mask(self.len) == self.addr
    }

    /// The prefix length in bits.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Never: a prefix is at least one bit long (for clippy's
    /// `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl std::fmt::Display for MacPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.addr.to_be_bytes();
        let mac = MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]]);
        write!(f, "{mac}/{}", self.len)
    }
}

fn mac_bits(mac: MacAddr) -> u64 {
    let o = mac.octets();
    u64::from_be_bytes([0, 0, o[0], o[1], o[2], o[3], o[4], o[5]])
}

/// The mask of the first `len` (1..=48) of 48 bits.
fn mask(len: u8) -> u64 {
    let len = u32::from(len.clamp(1, 48));
    ((1u64 << 48) - 1) & !((1u64 << (48 - len)) - 1)
}

/// A set of VLAN ids 0..=4094 (0: untagged), as a bitmap.
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet {
    bits: Box<[u64; 64]>,
}

impl std::fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries((0..4095u16).filter(|v| self.has(*v)))
            .finish()
    }
}

impl VlanSet {
    /// The set of `ids`; `None` if one is above 4094.
    pub fn new(ids: impl IntoIterator<Item = u16>) -> Option<VlanSet> {
        let mut bits = Box::new([0u64; 64]);
        for id in ids {
            if id > 4094 {
                return None;
            }
            bits[usize::from(id / 64)] |= 1 << (id % 64);
        }
        Some(VlanSet { bits })
    }

    fn has(&self, id: u16) -> bool {
        id <= 4094 && self.bits[usize::from(id / 64)] & (1 << (id % 64)) != 0
    }

    /// Whether a frame in `vlan` is in the set: untagged and priority-tagged
    /// (VLAN id 0) frames are VLAN 0; a cut-short tag is in no set.
    pub fn contains(&self, vlan: Vlan) -> bool {
        match vlan {
            Vlan::Untagged => self.has(0),
            Vlan::Tagged(id) => self.has(id),
        }
    }
}

/// What one peer may do at layer 2 (its `[[peer]]` policy keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    /// Hub: never relay this peer's frames to other peers, nor theirs to it.
    pub isolate: bool,
    /// Hub: the most source MACs it may own in the MAC table (1..=8192).
    pub max_macs: u32,
    /// The only source MAC prefixes it may use; empty: any.
    pub macs: Vec<MacPrefix>,
    /// The only VLANs it may use; `None`: any.
    pub vlans: Option<VlanSet>,
}

impl Default for PeerPolicy {
    fn default() -> PeerPolicy {
        PeerPolicy {
            isolate: false,
            max_macs: DEFAULT_MAX_MACS,
            macs: Vec::new(),
            vlans: None,
        }
    }
}

impl PeerPolicy {
    /// Whether a frame from source `src` in `vlan` is within the pins
    /// (`macs`, `vlans`).
    pub fn admits(&self, vlan: Vlan, src: MacAddr) -> bool {
        self.vlans.as_ref().is_none_or(|v| v.contains(vlan))
            && (self.macs.is_empty() || self.macs.iter().any(|p| p.contains(src)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_their_bits_only() {
        let p = MacPrefix::new(MacAddr([2, 0, 0, 0, 0x0b, 0]), 40).unwrap();
        assert!(p.contains(MacAddr([2, 0, 0, 0, 0x0b, 0x00])));
        assert!(p.contains(MacAddr([2, 0, 0, 0, 0x0b, 0xff])));
        assert!(!p.contains(MacAddr([2, 0, 0, 0, 0x0c, 0x00])));
        assert!(!p.contains(MacAddr([3, 0, 0, 0, 0x0b, 0x00])));
        assert_eq!(p.to_string(), "02:00:00:00:0b:00/40");
        let host = MacPrefix::new(MacAddr([2, 0, 0, 0, 0, 1]), 48).unwrap();
        assert!(host.contains(MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(!host.contains(MacAddr([2, 0, 0, 0, 0, 2])));
        let one = MacPrefix::new(MacAddr([0x80, 0, 0, 0, 0, 0]), 1).unwrap();
        assert!(one.contains(MacAddr([0xff; 6])));
        assert!(!one.contains(MacAddr([0x7f, 0xff, 0, 0, 0, 0])));
        // Host bits set, or a length out of range: refused.
        assert_eq!(MacPrefix::new(MacAddr([2, 0, 0, 0, 0x0b, 1]), 40), None);
        assert_eq!(MacPrefix::new(MacAddr([0; 6]), 0), None);
        assert_eq!(MacPrefix::new(MacAddr([0; 6]), 49), None);
    }

    #[test]
    fn vlan_sets_treat_zero_as_untagged() {
        let s = VlanSet::new([0, 20, 4094]).unwrap();
        assert!(s.contains(Vlan::Untagged));
        assert!(s.contains(Vlan::Tagged(0)), "priority tag");
        assert!(s.contains(Vlan::Tagged(20)));
        assert!(s.contains(Vlan::Tagged(4094)));
        assert!(!s.contains(Vlan::Tagged(21)));
        assert!(!s.contains(Vlan::Tagged(crate::wire::ethernet::VID_UNREADABLE)));
        assert!(!VlanSet::new([20]).unwrap().contains(Vlan::Untagged));
        assert!(VlanSet::new([4095]).is_none());
        assert_eq!(format!("{s:?}"), "{0, 20, 4094}");
    }

    #[test]
    fn a_default_policy_admits_anything() {
        let p = PeerPolicy::default();
        assert!(p.admits(Vlan::Tagged(7), MacAddr([2, 9, 9, 9, 9, 9])));
        let pinned = PeerPolicy {
            macs: vec![MacPrefix::new(MacAddr([2, 0, 0, 0, 0x0b, 0]), 40).unwrap()],
            vlans: VlanSet::new([0]),
            ..PeerPolicy::default()
        };
        assert!(pinned.admits(Vlan::Untagged, MacAddr([2, 0, 0, 0, 0x0b, 5])));
        assert!(!pinned.admits(Vlan::Tagged(20), MacAddr([2, 0, 0, 0, 0x0b, 5])));
        assert!(!pinned.admits(Vlan::Untagged, MacAddr([2, 0, 0, 0, 0x0c, 5])));
    }
}
