//! A `[[peer]]`'s policy keys (SPEC §4; SPEC §5 "Hub policy"): `isolate`,
//! `max_macs` (1..=8192, default 1024), `macs` (MAC prefixes like
//! `"02:00:00:00:0b:00/40"`, host bits zero; a plain MAC is a /48) and
//! `vlans` (ids 0..=4094, 0 = untagged). An empty `macs` or `vlans` list
//! would refuse every frame, so it is an error: leave the key out to allow
//! any.

use super::{Cx, Result};
use crate::config::raw::RawPeer;
use crate::config::{MacPrefix, PeerPolicy, VlanSet};
use crate::mac::MacAddr;
use crate::switch::MAX_ENTRIES;

impl Cx<'_> {
    pub(super) fn peer_policy(&self, raw: &RawPeer) -> Result<PeerPolicy> {
        let mut policy = PeerPolicy {
            isolate: raw.isolate.unwrap_or(false),
            ..PeerPolicy::default()
        };
        if let Some(v) = &raw.max_macs {
            let n = *v.get_ref();
            policy.max_macs = u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_ENTRIES as u32).contains(n))
                .ok_or_else(|| {
                    self.err(
                        &v.span(),
                        "peer.max_macs",
                        format!("{n} is outside the allowed range 1..={MAX_ENTRIES}"),
                    )
                })?;
        }
        if let Some(list) = &raw.macs {
            const KEY: &str = "peer.macs";
            if list.get_ref().is_empty() {
                return Err(self.err(
                    &list.span(),
                    KEY,
                    "an empty list would refuse every frame; leave the key out to allow any MAC",
                ));
            }
            for (i, v) in list.get_ref().iter().enumerate() {
                let p = mac_prefix(v.get_ref())
                    .map_err(|m| self.err(&v.span(), KEY, format!("element {}: {m}", i + 1)))?;
                if policy.macs.contains(&p) {
                    return Err(self.err(
                        &v.span(),
                        KEY,
                        format!("element {}: {p} is listed twice", i + 1),
                    ));
                }
                policy.macs.push(p);
            }
        }
        if let Some(list) = &raw.vlans {
            const KEY: &str = "peer.vlans";
            if list.get_ref().is_empty() {
                return Err(self.err(
                    &list.span(),
                    KEY,
                    "an empty list would refuse every frame; leave the key out to allow any VLAN",
                ));
            }
            let mut ids: Vec<u16> = Vec::with_capacity(list.get_ref().len());
            for (i, v) in list.get_ref().iter().enumerate() {
                let n = *v.get_ref();
                let id = u16::try_from(n)
                    .ok()
                    .filter(|id| *id <= 4094)
                    .ok_or_else(|| {
                        self.err(
                            &v.span(),
                            KEY,
                            format!(
                                "element {}: {n} is not a VLAN id in 0..=4094 (0: untagged)",
                                i + 1
                            ),
                        )
                    })?;
                if ids.contains(&id) {
                    return Err(self.err(
                        &v.span(),
                        KEY,
                        format!("element {}: VLAN {id} is listed twice", i + 1),
                    ));
                }
                ids.push(id);
            }
            policy.vlans = VlanSet::new(ids);
        }
        Ok(policy)
    }
}

/// `"02:00:00:00:0b:00/40"` or a plain MAC (a /48).
fn mac_prefix(text: &str) -> std::result::Result<MacPrefix, String> {
    let (mac, len) = match text.split_once('/') {
        Some((mac, len)) => {
            let len = len
                .parse::<u8>()
                .ok()
                .filter(|l| (1..=48).contains(l))
                .ok_or_else(|| format!("{text:?}: the prefix length must be 1 to 48 bits"))?;
            (mac, len)
        }
        None => (text, 48),
    };
    let mac: MacAddr = mac
        .parse()
        .map_err(|_| format!("{text:?} is not a MAC prefix like \"02:00:00:00:0b:00/40\""))?;
    MacPrefix::new(mac, len)
        .ok_or_else(|| format!("{text:?} has bits set beyond its /{len} prefix"))
}
