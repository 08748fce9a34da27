//! Configuration: TOML → validated types (SPEC §4).
//!
//! [`Config::parse`] turns the text of `/etc/tapbridge/NAME.toml` into a
//! [`Config`] whose values have all been checked (ranges, address families,
//! pool inside subnet, unique names, …) and whose optional keys carry the
//! defaults of SPEC §4, so the rest of the program never re-validates.
//! Parsing is pure: it reads no files besides the one [`Config::load`] is
//! given, and never touches the system. The PSK lives in its own file and is
//! read by [`Psk::load`], which refuses files that group or others may read.
//!
//! Every error is one sentence that names the file, line, column and key:
//! `/etc/tapbridge/a.toml:7:9: dhcp.pool: 198.19.1.10 is outside subnet 198.19.0.0/24`.
//!
//! Relative paths in the file (`psk_file`, `lease_file`, `socket`, hooks) are
//! taken relative to the directory holding the config file.

mod dropin;
mod error;
mod locate;
mod net;
mod plain;
mod preflight;
mod psk;
mod raw;
mod settings;
mod span;
mod validate;
mod value;
mod written;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use dropin::{DropIn, dir as dropin_dir};
pub use error::{ConfigError, Problem};
pub use locate::position as setting_position;
pub use net::{IpCidr, Ipv4Net, Route};
pub use psk::{Psk, PskProblem};
pub use value::{HostNameError, ValueError};
pub use written::Written;

pub use crate::bridge::policy::{MacPrefix, PeerPolicy, VlanSet};
pub use crate::guard::{BpduPolicy, GuardConfig};
use crate::mac::MacAddr;
use crate::responder::DhcpPlan;
pub use crate::role::Role;

/// `tunnel.transport`, as the operator wrote it (the data path maps it to the
/// tunnel's `TransportMode`, so neither module imports the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// UDP only.
    #[default]
    Udp,
    /// TCP only.
    Tcp,
    /// UDP, falling back to TCP while UDP handshakes fail.
    Auto,
}

impl Transport {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Auto => "auto",
        }
    }

    /// Whether the site accepts TCP connections.
    pub fn listens_on_tcp(self) -> bool {
        self != Transport::Udp
    }
}

/// Where `NAME` alone looks for its config file.
pub const CONFIG_DIR: &str = "/etc/tapbridge";

/// A validated link configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The link NAME (the config file's stem).
    pub name: String,
    /// The config file this was read from.
    pub path: PathBuf,
    /// `[interface]`: the TAP device.
    pub interface: InterfaceConfig,
    /// `[tunnel]`: the UDP tunnel.
    pub tunnel: TunnelConfig,
    /// `[[peer]]`: at least one, names unique.
    pub peers: Vec<PeerConfig>,
    /// `[dhcp]`: the local DHCP responder; `None` if absent or `enabled = false`.
    pub dhcp: Option<DhcpConfig>,
    /// `[arp]`: the local ARP responder; `None` if absent.
    pub arp: Option<ArpConfig>,
    /// `[hooks]`: scripts run after up and before down.
    pub hooks: HooksConfig,
    /// `[control]`: the control socket.
    pub control: ControlConfig,
    /// `[metrics]`: the Prometheus endpoint; `None` if absent.
    pub metrics: Option<MetricsConfig>,
    /// `[guard]`: what protects both LANs from the bridge (defaults if absent).
    pub guard: GuardConfig,
    /// `[ha]`: this box is one of a high-availability pair; `None` if absent
    /// (the box is always active).
    pub ha: Option<HaConfig>,
    /// Every setting as the file writes it, for `reload` to say what changed.
    pub written: Written,
}

/// `[interface]`: the TAP device and what the daemon programs on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// Device name, at most 15 bytes (default `"tb-" + NAME`).
    pub name: String,
    /// TAP MTU, 576..=9000.
    pub mtu: u32,
    /// Fixed unicast MAC for the TAP, if configured.
    pub mac: Option<MacAddr>,
    /// Addresses added on up and removed on down (no duplicates).
    pub addresses: Vec<IpCidr>,
    /// Routes added on up and removed on down.
    pub routes: Vec<Route>,
    /// Existing Linux bridge to enslave the TAP to.
    pub bridge: Option<String>,
}

impl InterfaceConfig {
    /// `interface.addresses` as written in hook environments and the TAP
    /// MAC's seed: each `address/prefix`, in configuration order.
    pub fn address_texts(&self) -> Vec<String> {
        self.addresses.iter().map(|a| a.to_string()).collect()
    }
}

/// `[tunnel]`: the encrypted UDP tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// This site's name in handshakes (`tunnel.name`, default the link
    /// NAME; at most 31 bytes): what the other sites list as its
    /// `[[peer]] name`. Kept apart from the link NAME so that the file can
    /// be renamed or copied without changing the site's identity.
    pub name: String,
    /// UDP address to bind (default `0.0.0.0:51901`).
    pub listen: SocketAddr,
    /// The link's key file, used by every peer without its own; optional
    /// when every peer has one.
    pub psk_file: Option<KeyFile>,
    /// Largest outer IP packet: discovered per peer (`"auto"`, the
    /// default) or pinned (576..=9000).
    pub wan_mtu: WanMtu,
    /// Keepalive interval when idle; non-zero.
    pub keepalive: Duration,
    /// Rekey at least this often; non-zero.
    pub rekey_after: Duration,
    /// Forward frames between peers (hub of hub-and-spoke).
    pub hub: bool,
    /// UDP, TCP (on the same port number), or UDP falling back to TCP.
    pub transport: Transport,
    /// Worker threads moving frames (1..=[`MAX_WORKERS`], default 1): each
    /// owns a TAP queue and a UDP socket on the listen port.
    pub workers: usize,
}

/// The most worker threads a link may have.
pub const MAX_WORKERS: usize = 16;

/// `tunnel.wan_mtu`: how large the tunnel's outer packets may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WanMtu {
    /// Discovered per peer by probing, between 1280 and the WAN side's MTU.
    Auto,
    /// Pinned to this many bytes (576..=9000).
    Fixed(u32),
}

impl fmt::Display for WanMtu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WanMtu::Auto => f.write_str("auto"),
            WanMtu::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// `[[peer]]`: a remote gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Unique name, used in logs and status output.
    pub name: String,
    /// Where to reach the peer: its site's uplinks in order of preference
    /// (at most [`MAX_ENDPOINTS`], no duplicates); empty waits to be
    /// contacted.
    pub endpoints: Vec<PeerEndpoint>,
    /// This peer's own key file (overrides `tunnel.psk_file`).
    pub psk_file: Option<KeyFile>,
    /// The file that defines it: the main file or a drop-in.
    pub file: PathBuf,
    /// What the peer may do at layer 2 (`isolate`, `max_macs`, `macs`,
    /// `vlans`; SPEC §5 "Hub policy").
    pub policy: PeerPolicy,
}

/// The most uplinks a peer's `endpoint` array may list.
pub const MAX_ENDPOINTS: usize = 8;

/// A peer's configured endpoint: an address literal, used as it is, or a
/// host name, resolved by the daemon at `link up` and again while the peer
/// is down (parsing never resolves anything).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerEndpoint {
    /// `"198.18.0.1:51901"`, `"[2001:2::1]:51901"`.
    Addr(SocketAddr),
    /// `"hq.example.net:51901"`: a valid DNS host name and a non-zero port.
    Name {
        /// The host name (lower case, no trailing dot).
        host: String,
        /// The UDP port.
        port: u16,
    },
}

impl PeerEndpoint {
    /// The address literal, if this is one.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            PeerEndpoint::Addr(a) => Some(*a),
            PeerEndpoint::Name { .. } => None,
        }
    }
}

impl fmt::Display for PeerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerEndpoint::Addr(a) => write!(f, "{a}"),
            PeerEndpoint::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A key file named in the config, with where it is named (for errors about
/// the file, which are reported at the key that names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// The file (absolute).
    pub path: PathBuf,
    /// The config file that names it (the main file or a peer drop-in).
    pub named_in: PathBuf,
    /// 1-based line of the value in the config file.
    pub line: usize,
    /// 1-based column of the value.
    pub column: usize,
    /// `tunnel.psk_file` or `peer.psk_file`.
    pub key: &'static str,
}

impl KeyFile {
    /// Loads the key(s) in the file ([`Psk::load_keys`]); an error names
    /// the config file, line, column and key that point at it.
    pub fn load(&self) -> Result<Vec<Psk>, ConfigError> {
        Psk::load_keys(&self.path).map_err(|e| ConfigError::Invalid {
            file: self.named_in.clone(),
            line: self.line,
            column: self.column,
            key: self.key.to_owned(),
            problem: Box::new(Problem::KeyFile(Box::new(e))),
        })
    }
}

/// `[dhcp]`: the local DHCP responder, present only when enabled: the
/// responder's own settings, checked ([`DhcpPlan`]), and where its leases
/// are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// What the DHCP server is built from (its MAC is set when the TAP
    /// exists: see [`Config::responder_settings`]).
    pub plan: DhcpPlan,
    /// The lease database (default `/var/lib/tapbridge/NAME.leases`).
    pub lease_file: PathBuf,
}

/// `[arp]`: the local ARP responder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpConfig {
    /// Addresses answered locally with the responder's MAC (unique).
    pub respond: Vec<Ipv4Addr>,
    /// The responder's own unicast MAC; `None`: derive it from the TAP's MAC.
    pub mac: Option<MacAddr>,
    /// Answer for remote hosts from bindings learned through the tunnel.
    pub suppress: bool,
    /// How long a learned binding answers; non-zero.
    pub binding_timeout: Duration,
    /// The same for IPv6 neighbour solicitations (RFC 9161 proxy ND).
    pub suppress_nd: bool,
}

/// `[hooks]`: programs run directly (no shell) after up and before down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HooksConfig {
    /// Run after the link is up; a failure fails `link up`.
    pub up: Vec<PathBuf>,
    /// Run before the link goes down.
    pub down: Vec<PathBuf>,
    /// Run when a peer's session comes up (first handshake after being
    /// down), with `TAPBRIDGE_PEER` and `TAPBRIDGE_PEER_ENDPOINT` added.
    pub peer_up: Vec<PathBuf>,
    /// Run when a peer's session goes down.
    pub peer_down: Vec<PathBuf>,
}

/// `[control]`: the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Socket path (default `/run/tapbridge/NAME.sock`).
    pub socket: PathBuf,
    /// Group whose members may read (status, leases); the socket's group
    /// (mode 0660). `None`: no read-only users.
    pub group: Option<String>,
    /// Group whose members may also change the link (down, reload), like
    /// root. The socket's group when `group` is not set.
    pub admin_group: Option<String>,
}

impl ControlConfig {
    /// The group that owns the socket file (mode 0660), if any.
    pub fn socket_group(&self) -> Option<&str> {
        self.group.as_deref().or(self.admin_group.as_deref())
    }
}

/// `[metrics]`: the Prometheus text endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// TCP address to serve on (default `127.0.0.1:9477`).
    pub listen: SocketAddr,
}

/// `[ha]`: one of two boxes serving one site (SPEC §5 "High
/// availability").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// The role at `link up` (default standby: keepalived promotes).
    pub start_as: Role,
    /// The other box's partner channel (UDP, an address literal); `None`:
    /// no state is replicated.
    pub partner: Option<SocketAddr>,
    /// The partner channel's key file; required with `partner`.
    pub partner_psk_file: Option<KeyFile>,
    /// On becoming active, announce the remote MACs and the responder's
    /// addresses to the LAN (default true).
    pub announce: bool,
}

impl Config {
    /// The role the link starts in: `ha.start_as`, active without `[ha]`.
    pub fn start_role(&self) -> Role {
        self.ha.as_ref().map_or(Role::Active, |h| h.start_as)
    }

    /// Reads and validates the config file at `path` and its peer drop-ins
    /// (`NAME.d/*.toml` beside it); the link NAME is the file stem. Call
    /// once at start-up (and for `bridge-ctl check`, and each reload).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = stem(path)?;
        // Absolute, so paths relative to the file stay right whatever the
        // working directory (hooks are run by path, never looked up in PATH).
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let dropins = dropin::read_all(&dropin::dir(path, &name))?;
        Config::parse_with(&name, path, &text, &dropins)
    }

    /// Like [`Config::load`], but a link with no peer at all is accepted
    /// (its `peers` is empty): what `bridge-ctl invite` reads to add a
    /// hub's first branch. Nothing else may run such a configuration.
    pub fn load_without_peers(path: &Path) -> Result<Config, ConfigError> {
        let name = stem(path)?;
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let dropins = dropin::read_all(&dropin::dir(path, &name))?;
        validate::parse(&name, path, &text, &dropins, false)
    }

    /// Validates config `text` for link `name`; `path` is used only in error
    /// messages and to resolve relative paths. Pure: touches no files.
    pub fn parse(name: &str, path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_with(name, path, text, &[])
    }

    /// [`Config::parse`] with the peer drop-ins `dropins` (in the order
    /// they are merged). Relative paths in a drop-in are relative to its
    /// own directory. Pure: touches no files.
    pub fn parse_with(
        name: &str,
        path: &Path,
        text: &str,
        dropins: &[DropIn],
    ) -> Result<Config, ConfigError> {
        value::link_name(name).map_err(|reason| ConfigError::Name {
            name: name.to_owned(),
            reason: Box::new(reason),
            stem_of: None,
        })?;
        validate::parse(name, path, text, dropins, true)
    }
}

impl Config {
    /// How a command line names this link, for hints that name another
    /// command: `NAME` when its file is `/etc/tapbridge/NAME.toml`, else
    /// `--config FILE` (what the operator had to write).
    pub fn command_line_name(&self) -> String {
        if self.path == Path::new(CONFIG_DIR).join(format!("{}.toml", self.name)) {
            self.name.clone()
        } else {
            format!("--config {}", self.path.display())
        }
    }

    /// An error about the `index`-th value of `key` (or the section `key`),
    /// located in the config file as validation errors are. For checks made
    /// after validation, e.g. by `bridge-ctl check`; reads the file again to
    /// find the place (line 1, column 1 if it cannot).
    pub fn error_at(&self, key: &str, index: usize, problem: impl Into<Problem>) -> ConfigError {
        let (line, column) = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| span::position(&text, key, index))
            .unwrap_or((1, 1));
        ConfigError::Invalid {
            file: self.path.clone(),
            line,
            column,
            key: key.to_owned(),
            problem: Box::new(problem.into()),
        }
    }

    /// The file that holds peer `i`'s keys: its own, else the link's.
    pub fn key_file(&self, i: usize) -> Option<&KeyFile> {
        let p = self.peers.get(i)?;
        p.psk_file.as_ref().or(self.tunnel.psk_file.as_ref())
    }

    /// Loads every peer's keys (each file once), in peer order. Call at
    /// start-up and for `bridge-ctl check`.
    pub fn peer_keys(&self) -> Result<Vec<Vec<Psk>>, ConfigError> {
        let mut loaded: Vec<(&Path, Vec<Psk>)> = Vec::new();
        let mut out = Vec::with_capacity(self.peers.len());
        for i in 0..self.peers.len() {
            let file = self.key_file(i).ok_or_else(|| ConfigError::NoKeyFile {
                peer: self.peers[i].name.clone(),
            })?;
            let keys = match loaded.iter().find(|(p, _)| *p == file.path) {
                Some((_, k)) => k.clone(),
                None => {
                    let k = file.load()?;
                    loaded.push((&file.path, k.clone()));
                    k
                }
            };
            out.push(keys);
        }
        Ok(out)
    }
}

/// Resolves the CLI's `NAME` / `--config FILE` convention (SPEC §3) into the
/// link name and the config file path: `NAME` alone means
/// `/etc/tapbridge/NAME.toml`; with `--config FILE` the name is the file stem
/// (a `NAME` given as well must match it).
pub fn locate(name: Option<&str>, config: Option<&Path>) -> Result<(String, PathBuf), ConfigError> {
    match (name, config) {
        (None, None) => Err(ConfigError::NoLink),
        (Some(name), None) => {
            value::link_name(name).map_err(|reason| ConfigError::Name {
                name: name.to_owned(),
                reason: Box::new(reason),
                stem_of: None,
            })?;
            Ok((
                name.to_owned(),
                Path::new(CONFIG_DIR).join(format!("{name}.toml")),
            ))
        }
        (name, Some(path)) => {
            let found = stem(path)?;
            match name {
                Some(name) if name != found => Err(ConfigError::StemMismatch {
                    name: name.to_owned(),
                    stem: found,
                    path: path.to_owned(),
                }),
                _ => Ok((found, path.to_owned())),
            }
        }
    }
}

/// Checks a link NAME (1 to 21 letters, digits, `-`, `_`, starting with a
/// letter or digit): what `bridge-ctl invite` requires of a new peer's
/// name, which names its files.
pub fn check_link_name(name: &str) -> Result<(), ValueError> {
    value::link_name(name)
}

/// Checks a site name (`tunnel.name`, `peer.name`): 1 to 31 bytes, no
/// white space or control characters.
pub fn check_site_name(name: &str) -> Result<(), ValueError> {
    value::peer_name(name)
}

/// Parses one `peer.endpoint` value, `"198.18.0.1:51901"` or
/// `"hq.example.net:51901"` (nothing is resolved).
pub fn parse_endpoint(text: &str) -> Result<PeerEndpoint, ValueError> {
    value::endpoint(text)
}

/// The link name a config file path implies: its stem, validated.
fn stem(path: &Path) -> Result<String, ConfigError> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    value::link_name(&name).map_err(|reason| ConfigError::Name {
        name: name.clone(),
        reason: Box::new(reason),
        stem_of: Some(path.to_owned()),
    })?;
    Ok(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;
