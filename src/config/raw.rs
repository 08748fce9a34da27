//! The config file as TOML says it: every field optional and spanned, so that
//! validation can apply defaults and point at the exact text it rejects.
//!
//! `deny_unknown_fields` everywhere turns typos into errors (SPEC §4).

use serde::Deserialize;
use toml::Spanned;

/// A spanned string value.
pub(super) type Str = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub interface: Option<Spanned<RawInterface>>,
    pub tunnel: Option<Spanned<RawTunnel>>,
    pub peer: Option<Spanned<Vec<Spanned<RawPeer>>>>,
    pub dhcp: Option<Spanned<RawDhcp>>,
    pub arp: Option<Spanned<RawArp>>,
    pub hooks: Option<Spanned<RawHooks>>,
    pub control: Option<Spanned<RawControl>>,
    pub metrics: Option<Spanned<RawMetrics>>,
    pub guard: Option<Spanned<RawGuard>>,
    pub ha: Option<Spanned<RawHa>>,
}

/// A peer drop-in (`NAME.d/*.toml`): `[[peer]]` tables and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDropIn {
    pub peer: Option<Spanned<Vec<Spanned<RawPeer>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub name: Option<Str>,
    pub mtu: Option<Spanned<i64>>,
    pub mac: Option<Str>,
    #[serde(default)]
    pub addresses: Vec<Str>,
    #[serde(default)]
    pub routes: Vec<Str>,
    pub bridge: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnel {
    pub name: Option<Str>,
    pub listen: Option<Str>,
    pub psk_file: Option<Str>,
    pub wan_mtu: Option<Spanned<RawMtu>>,
    pub keepalive: Option<Str>,
    pub rekey_after: Option<Str>,
    pub hub: Option<bool>,
    pub transport: Option<Str>,
    pub workers: Option<Spanned<i64>>,
}

/// `wan_mtu`: a number or a word (`"auto"`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawMtu {
    Number(i64),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeer {
    pub name: Option<Str>,
    /// A string or an array of strings: checked in validation, so a wrong
    /// element gets a sentence rather than serde's untagged-enum error.
    pub endpoint: Option<Spanned<toml::Value>>,
    pub psk_file: Option<Str>,
    pub isolate: Option<bool>,
    pub max_macs: Option<Spanned<i64>>,
    pub macs: Option<Spanned<Vec<Str>>>,
    pub vlans: Option<Spanned<Vec<Spanned<i64>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDhcp {
    pub enabled: Option<bool>,
    pub server_address: Option<Str>,
    pub pool: Option<Str>,
    pub subnet: Option<Str>,
    pub router: Option<Str>,
    #[serde(default)]
    pub dns: Vec<Str>,
    pub domain: Option<Str>,
    pub lease_time: Option<Str>,
    pub first_lease: Option<Str>,
    #[serde(default)]
    pub routes: Vec<Str>,
    pub mtu: Option<Spanned<i64>>,
    pub lease_file: Option<Str>,
    pub conflict_check: Option<Spanned<bool>>,
    #[serde(default)]
    pub search: Vec<Str>,
    #[serde(default)]
    pub ntp: Vec<Str>,
    #[serde(default)]
    pub reservation: Vec<Spanned<RawReservation>>,
    #[serde(default)]
    pub option: Vec<Spanned<RawDhcpOption>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDhcpOption {
    pub code: Option<Spanned<i64>>,
    pub hex: Option<Str>,
    pub text: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReservation {
    pub mac: Option<Str>,
    pub ip: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArp {
    #[serde(default)]
    pub respond: Vec<Str>,
    pub mac: Option<Str>,
    pub suppress: Option<bool>,
    pub binding_timeout: Option<Str>,
    pub suppress_nd: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    #[serde(default)]
    pub up: Vec<Str>,
    #[serde(default)]
    pub down: Vec<Str>,
    #[serde(default)]
    pub peer_up: Vec<Str>,
    #[serde(default)]
    pub peer_down: Vec<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub socket: Option<Str>,
    pub group: Option<Str>,
    pub admin_group: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuard {
    pub storm_pps: Option<Spanned<i64>>,
    pub loop_detect: Option<bool>,
    pub dhcp_guard: Option<bool>,
    pub ra_guard: Option<bool>,
    pub bpdu: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHa {
    pub start_as: Option<Str>,
    pub partner: Option<Str>,
    pub partner_psk_file: Option<Str>,
    pub announce: Option<bool>,
}
