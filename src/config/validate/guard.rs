//! `[guard]`: what protects both LANs from the bridge. The storm limit, loop
//! detection, the DHCP and RA guards and the BPDU policy, each overriding a
//! default (the two guards are on by default only when DHCP is enabled).

use super::{Cx, Result};
use crate::config::raw::RawGuard;
use crate::config::{BpduPolicy, GuardConfig};

impl Cx<'_> {
    pub(super) fn guard(&self, raw: Option<&RawGuard>, dhcp_enabled: bool) -> Result<GuardConfig> {
        let mut g = GuardConfig::defaults(dhcp_enabled);
        let Some(raw) = raw else { return Ok(g) };
        if let Some(v) = &raw.storm_pps {
            let n = *v.get_ref();
            g.storm_pps = u32::try_from(n)
                .ok()
                .filter(|n| *n <= 10_000_000)
                .ok_or_else(|| {
                    self.err(
                        &v.span(),
                        "guard.storm_pps",
                        format!("{n} is outside the allowed range 0..=10000000"),
                    )
                })?;
        }
        g.loop_detect = raw.loop_detect.unwrap_or(g.loop_detect);
        g.dhcp_guard = raw.dhcp_guard.unwrap_or(g.dhcp_guard);
        g.ra_guard = raw.ra_guard.unwrap_or(g.ra_guard);
        if let Some(b) = &raw.bpdu {
            g.bpdu = match b.get_ref().as_str() {
                "forward" => BpduPolicy::Forward,
                "drop" => BpduPolicy::Drop,
                other => {
                    return Err(self.err(
                        &b.span(),
                        "guard.bpdu",
                        format!("{other:?} is neither \"forward\" nor \"drop\""),
                    ));
                }
            };
        }
        Ok(g)
    }
}
