//! What the validated configuration hands the core modules that own their
//! settings types (today the responder's `ArpSettings` and `DhcpPlan`):
//! the config produces them here, so the shell (daemon, reload) asks the
//! config instead of translating sections itself.

use crate::mac::MacAddr;
use crate::responder::{ArpSettings, DhcpPlan, derive_responder_mac};

use super::Config;

impl Config {
    /// The responder's settings on a TAP with `tap_mac`, or `None` when the
    /// link has neither `[arp]` nor `[dhcp]`.
    pub fn responder_settings(
        &self,
        tap_mac: MacAddr,
    ) -> Option<(Option<ArpSettings>, Option<DhcpPlan>)> {
        if self.dhcp.is_none() && self.arp.is_none() {
            return None;
        }
        let own_mac = self
            .arp
            .as_ref()
            .and_then(|a| a.mac)
            .unwrap_or_else(|| derive_responder_mac(tap_mac));
        let arp = self.arp.as_ref().map(|a| ArpSettings {
            respond: a.respond.clone(),
            mac: own_mac,
            suppress: a.suppress,
            binding_timeout: a.binding_timeout,
            suppress_nd: a.suppress_nd,
        });
        let dhcp = self.dhcp.as_ref().map(|d| {
            let mut plan = d.plan.clone();
            plan.set_server_mac(own_mac);
            plan
        });
        Some((arp, dhcp))
    }
}
