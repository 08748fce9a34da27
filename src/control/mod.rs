//! The control socket: typed requests and responses shared by the daemon and
//! `bridge-ctl`, one JSON object per line over a Unix stream socket.
//!
//! ```text
//! -> {"cmd":"status"}            <- {"ok":true,"status":{...}}
//! -> {"cmd":"leases"}            <- {"ok":true,"leases":[...]}
//! -> {"cmd":"down"}              <- {"ok":true}    (after the link is down)
//! -> {"cmd":"reload"}            <- {"ok":true,"changes":["peer b: keys changed (2 keys...)"]}
//! -> {"cmd":"role","role":"active"}  <- {"ok":true,"role":"active","previous_role":"standby"}
//! anything refused               <- {"ok":false,"error":"..."}
//! ```
//!
//! The status object is SPEC §6; its field names are part of the contract.
//! [`status`] builds it from the worker's state; its `counters` are defined,
//! once each, in [`counters`].
//!
//! Compatibility: the CLI may talk to a daemon one version older or newer
//! (an upgrade restarts links one by one). Every type the CLI reads is
//! `#[serde(default)]` (a key an older daemon does not send reads as zero,
//! empty or absent) and none denies unknown fields (a newer daemon's extra
//! keys are ignored).

pub mod counters;
pub mod diag;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod human;
pub mod server;
pub mod status;
mod sys;

use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;
use crate::role::Role;

pub use counters::CounterStatus;

/// A request to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The status object.
    Status,
    /// The DHCP lease table.
    Leases,
    /// Take the link down; answered once it is down.
    Down,
    /// Re-read the config and key files and apply what changed.
    Reload,
    /// Become the active or the standby box of a high-availability pair.
    Role {
        /// The role to take.
        role: Role,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// For `leases`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leases: Option<Vec<LeaseEntry>>,
    /// For `reload`: one line per change (empty: no change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<String>>,
    /// For `role`: the role now ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// ... and the role before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_role: Option<Role>,
    /// The refusal is about the configuration (exit status 2), not a failure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub config_error: bool,
}

impl Response {
    /// A refusal.
    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            ..Response::default()
        }
    }
}

/// SPEC §6 status object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The daemon's version (`bridge-ctl version` of the running binary).
    pub version: String,
    /// Link name.
    pub name: String,
    /// Daemon process id.
    pub pid: u32,
    /// Seconds since the link came up.
    pub uptime_secs: u64,
    /// The TAP.
    pub interface: InterfaceStatus,
    /// Local UDP address.
    pub listen: String,
    /// One entry per configured peer.
    pub peers: Vec<PeerStatus>,
    /// Link-wide counters.
    pub counters: CounterStatus,
    /// DHCP leases.
    pub leases: Vec<LeaseEntry>,
    /// `tunnel.rekey_after` in seconds: a handshake older than a few of
    /// these means rekeying fails (what the alert rules compare against).
    pub rekey_after_secs: u64,
    /// The DHCP pool (absent without a DHCP responder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<DhcpPoolStatus>,
    /// This box's role: `"active"`, or `"standby"` in a high-availability
    /// pair (always `"active"` without `[ha]`).
    pub role: Role,
    /// The other box of the pair; `null` without `[ha]`.
    pub partner: Option<PartnerStatus>,
}

/// The other box of a high-availability pair, as the status shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartnerStatus {
    /// `ha.partner` (`null` when not configured).
    pub endpoint: Option<String>,
    /// `"off"`: no partner channel configured; `"down"`: nothing heard
    /// from the partner lately; `"up"`: it answers.
    pub state: String,
    /// Leases the partner confirmed holding as this box has them (the
    /// standby's count is of leases it received and keeps).
    pub leases_synced: u64,
}

/// The DHCP pool part of the status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DhcpPoolStatus {
    /// Addresses the pool can hand out (range minus server, excluded and
    /// reserved addresses).
    pub pool_size: u64,
    /// Of those, leased, offered or quarantined right now.
    pub pool_in_use: u64,
}

/// The TAP part of the status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InterfaceStatus {
    /// Device name.
    pub name: String,
    /// MTU.
    pub mtu: u32,
    /// MAC address, `02:..`.
    pub mac: MacAddr,
    /// Addresses added by the link, CIDR notation.
    pub addresses: Vec<String>,
    /// Bridge the TAP is enslaved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

/// One peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerStatus {
    /// Configured name.
    pub name: String,
    /// Current endpoint, if known.
    pub endpoint: Option<String>,
    /// The configured endpoints in order of preference (the site's
    /// uplinks), as addresses; a host name not resolved yet is left out.
    pub endpoints: Vec<String>,
    /// `connecting`, `up` or `down`.
    pub state: String,
    /// The outer MTU in use towards the peer (today the configured
    /// `tunnel.wan_mtu`).
    pub path_mtu: u32,
    /// The transport carrying the tunnel: `udp`.
    pub transport: String,
    /// Seconds since the last completed handshake (rekeys included).
    pub last_handshake_secs: Option<u64>,
    /// Completed handshakes.
    pub handshakes: u64,
    /// Frames sent to the peer.
    pub tx_frames: u64,
    /// Frames received from the peer.
    pub rx_frames: u64,
    /// Frame bytes sent.
    pub tx_bytes: u64,
    /// Frame bytes received.
    pub rx_bytes: u64,
    /// Source MACs learned behind the peer that are live in the MAC table
    /// (what it owns under its `max_macs`).
    pub macs: u64,
    /// Times the peer's endpoint moved: an authenticated packet came from a
    /// new address (roaming, NAT rebinding; not the first contact), or the
    /// tunnel failed over between the peer's configured uplinks.
    pub endpoint_changes: u64,
    /// Seconds since this link last sent the peer a handshake initiation
    /// (`null`: never, e.g. a peer without endpoint that waits to be
    /// contacted).
    pub last_attempt_secs: Option<u64>,
    /// Seconds since anything authentic last came from the peer (a
    /// handshake message, data, a keepalive); `null`: never.
    pub last_answer_secs: Option<u64>,
    /// Initiations sent since the peer was last heard from (0 while it
    /// answers).
    pub unanswered_handshakes: u64,
    /// Seconds since the first of those was sent (`null` when there are
    /// none).
    pub unanswered_secs: Option<u64>,
    /// Handshake messages refused that concerned the peer: its key with a
    /// name that is not its own, replays, spent budgets.
    pub refused_handshakes: u64,
    /// The last of those (`null`: none).
    pub last_refusal: Option<RefusalStatus>,
    /// The link's last datagram the kernel refused to send, if it was for
    /// this peer (`null` otherwise).
    pub last_send_error: Option<SendErrorStatus>,
}

/// A datagram for a peer the kernel refused to send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SendErrorStatus {
    /// The kernel's reason, e.g. `Network is unreachable (os error 101)`.
    pub error: String,
    /// The address it was for.
    pub to: String,
    /// Seconds ago.
    pub secs: u64,
}

/// The last refused handshake message of a peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefusalStatus {
    /// Why: `unknown_peer` (the peer's key, another name), `replayed`,
    /// `rate_limited`, ...
    pub reason: String,
    /// Where it came from.
    pub from: String,
    /// Seconds ago.
    pub secs: u64,
    /// For `unknown_peer`: the name the sender gave (escaped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One DHCP lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseEntry {
    /// Client MAC.
    pub mac: MacAddr,
    /// Leased address.
    pub ip: String,
    /// Seconds left.
    pub expires_in_secs: u64,
    /// The client identifier the lease is keyed by (colon-separated hex),
    /// `null` for a client keyed by its MAC.
    pub client_id: Option<String>,
}

/// What `bridge-ctl leases --json` prints (SPEC §3): `{"leases": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseList {
    /// The unexpired leases, by address.
    pub leases: Vec<LeaseEntry>,
}

/// Errors talking to a daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket file: the link is not up.
    #[error("link is not up (no control socket at {0})")]
    NotRunning(String),
    /// A socket file nobody listens on: the daemon died.
    #[error("link is not up (stale control socket at {0})")]
    Stale(String),
    /// Talking failed.
    #[error("control socket {path}")]
    Io {
        /// Socket path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The daemon refused a configuration (a reload): exit status 2.
    #[error("{0}")]
    ConfigRefused(String),
    /// The daemon refused.
    #[error("{0}")]
    Refused(String),
    /// The answer was not understood.
    #[error("control socket {path}: malformed response")]
    Malformed {
        /// Socket path.
        path: String,
        /// Cause.
        source: serde_json::Error,
    },
}

/// Sends one request to the daemon behind `socket` and waits up to
/// `timeout` for its answer.
pub fn request(socket: &Path, req: Request, timeout: Duration) -> Result<Response, ClientError> {
    let path = socket.display().to_string();
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ClientError::NotRunning(path));
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(ClientError::Stale(path));
        }
        Err(source) => return Err(ClientError::Io { path, source }),
    };
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(&req).expect("requests always serialize");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .take(16 << 20)
        .read_line(&mut answer)
        .map_err(io)?;
    let resp: Response =
        serde_json::from_str(&answer).map_err(|source| ClientError::Malformed {
            path: path.clone(),
            source,
        })?;
    if !resp.ok {
        let why = resp.error.unwrap_or_else(|| "request refused".into());
        return Err(if resp.config_error {
            ClientError::ConfigRefused(why)
        } else {
            ClientError::Refused(why)
        });
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_form() {
        assert_eq!(
            serde_json::to_string(&Request::Status).expect("json"),
            r#"{"cmd":"status"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"down"}"#).expect("json"),
            Request::Down
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }

    /// What a daemon from before `version`, `path_mtu`, the newer counters
    /// and the pool fields sent: the CLI reads it, missing keys as zero.
    const OLD_STATUS: &str = r#"{"ok":true,"status":{
        "name":"site-a","pid":7,"uptime_secs":5,
        "interface":{"name":"tb0","mtu":1500,"mac":"02:00:00:00:00:01","addresses":[]},
        "listen":"0.0.0.0:51901",
        "peers":[{"name":"b","endpoint":null,"state":"up","last_handshake_secs":3,
                  "handshakes":1,"tx_frames":2,"rx_frames":3,"tx_bytes":4,"rx_bytes":5}],
        "counters":{"rx_auth_failed":9,"rx_replayed":0,"rx_malformed":0},
        "leases":[{"mac":"02:00:00:00:aa:01","ip":"198.19.0.100"}]}}"#;

    /// What a newer daemon might send: keys this build has never heard of,
    /// at every level.
    const NEW_STATUS: &str = r#"{"ok":true,"warnings":["x"],"status":{
        "version":"9.9.9","name":"site-a","pid":7,"uptime_secs":5,"hostname":"gw1",
        "interface":{"name":"tb0","mtu":1500,"mac":"02:00:00:00:00:01","addresses":[],
                     "queues":4},
        "listen":"0.0.0.0:51901",
        "peers":[{"name":"b","endpoint":"198.18.0.2:51901","state":"up","path_mtu":1420,
                  "transport":"udp","last_handshake_secs":null,"handshakes":1,"tx_frames":2,
                  "rx_frames":3,"tx_bytes":4,"rx_bytes":5,"endpoint_changes":1,
                  "rtt_ms":12,"uplink":{"index":0}}],
        "counters":{"rx_auth_failed":9,"storm_dropped":4,"future_counter":1},
        "leases":[{"mac":"02:00:00:00:aa:01","ip":"198.19.0.100","expires_in_secs":60,
                   "hostname":"pc1"}],
        "dhcp":{"pool_size":100,"pool_in_use":1,"pool_v6":0},
        "guard":{"loop":false}}}"#;

    fn parse(json: &str) -> Status {
        let r: Response = serde_json::from_str(json).expect("the CLI reads it");
        assert!(r.ok);
        r.status.expect("a status")
    }

    #[test]
    fn an_older_daemons_status_parses_with_defaults() {
        let s = parse(OLD_STATUS);
        assert_eq!(s.version, "");
        assert_eq!(s.peers[0].path_mtu, 0);
        assert_eq!(s.peers[0].transport, "");
        assert_eq!(s.peers[0].endpoint_changes, 0);
        assert!(s.peers[0].endpoints.is_empty());
        assert_eq!(s.peers[0].tx_bytes, 4);
        assert_eq!(s.counters.rx_auth_failed, 9);
        assert_eq!(s.counters.rx_unknown_session, 0);
        assert_eq!(s.counters.reloads, 0);
        assert_eq!(s.interface.bridge, None);
        assert_eq!(s.leases[0].expires_in_secs, 0);
        assert_eq!(s.dhcp, None);
        assert_eq!(s.rekey_after_secs, 0);
        // Even an empty object is a (blank) status rather than an error.
        assert_eq!(
            serde_json::from_str::<Status>("{}").expect("empty"),
            Status::default()
        );
    }

    #[test]
    fn a_newer_daemons_status_parses_ignoring_unknown_keys() {
        let s = parse(NEW_STATUS);
        assert_eq!(s.version, "9.9.9");
        assert_eq!(s.peers[0].path_mtu, 1420);
        assert_eq!(s.peers[0].endpoint_changes, 1);
        assert_eq!(s.peers[0].last_handshake_secs, None);
        assert_eq!(s.counters.rx_auth_failed, 9);
        assert_eq!(s.leases[0].expires_in_secs, 60);
        assert_eq!(
            s.dhcp,
            Some(DhcpPoolStatus {
                pool_size: 100,
                pool_in_use: 1
            })
        );
        let leases: Response = serde_json::from_str(
            r#"{"ok":true,"leases":[{"mac":"02:00:00:00:aa:01","ip":"198.19.0.9","lease_id":3}]}"#,
        )
        .expect("leases from a newer daemon");
        assert_eq!(leases.leases.expect("leases")[0].ip, "198.19.0.9");
    }

    #[test]
    fn lease_list_is_the_leases_json_shape() {
        let list = LeaseList {
            leases: vec![LeaseEntry {
                mac: MacAddr([2, 0, 0, 0, 0xaa, 1]),
                ip: "198.19.0.100".into(),
                expires_in_secs: 60,
                client_id: None,
            }],
        };
        let json = serde_json::to_string(&list).expect("json");
        assert_eq!(
            json,
            r#"{"leases":[{"mac":"02:00:00:00:aa:01","ip":"198.19.0.100","expires_in_secs":60,"client_id":null}]}"#
        );
        assert_eq!(
            serde_json::from_str::<LeaseList>(&json).expect("round trip"),
            list
        );
    }

    #[test]
    fn role_requests_and_the_status_role_keys() {
        let req = Request::Role {
            role: Role::Standby,
        };
        let json = serde_json::to_string(&req).expect("json");
        assert_eq!(json, r#"{"cmd":"role","role":"standby"}"#);
        assert_eq!(serde_json::from_str::<Request>(&json).expect("json"), req);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"role","role":"master"}"#).is_err());
        // Without [ha]: "role" is "active" and "partner" null, never absent.
        let v = serde_json::to_value(Status::default()).expect("json");
        assert_eq!(v["role"], "active");
        assert!(v.get("partner").is_some_and(serde_json::Value::is_null));
        // An older daemon sent neither: the CLI reads an active box.
        assert_eq!(parse(OLD_STATUS).role, Role::Active);
    }

    #[test]
    fn error_response_omits_empty_fields() {
        assert_eq!(
            serde_json::to_string(&Response::error("nope")).expect("json"),
            r#"{"ok":false,"error":"nope"}"#
        );
    }
}
