//! The control socket: typed requests and responses shared by the daemon and
//! `bridge-ctl`, one JSON object per line over a Unix stream socket.
//!
//! ```text
//! -> {"cmd":"status"}            <- {"ok":true,"status":{...}}
//! -> {"cmd":"leases"}            <- {"ok":true,"leases":[...]}
//! -> {"cmd":"down"}              <- {"ok":true}    (after the link is down)
//! -> {"cmd":"reload"}            <- {"ok":true,"changes":["peer b: keys changed (2 keys...)"]}
//! anything refused               <- {"ok":false,"error":"..."}
//! ```
//!
//! The status object is SPEC §6; its field names are part of the contract.
//! [`status`] builds it from the worker's state.

pub mod server;
pub mod status;

use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;

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
}

/// The daemon's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's version (`bridge-ctl version` of the running binary).
    #[serde(default)]
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
}

/// The TAP part of the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

/// One peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Configured name.
    pub name: String,
    /// Current endpoint, if known.
    pub endpoint: Option<String>,
    /// `connecting`, `up` or `down`.
    pub state: String,
    /// The outer MTU in use towards the peer (today the configured
    /// `tunnel.wan_mtu`).
    #[serde(default)]
    pub path_mtu: u32,
    /// The transport carrying the tunnel: `udp`.
    #[serde(default)]
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
}

/// Link-wide counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterStatus {
    /// Datagrams that did not authenticate.
    pub rx_auth_failed: u64,
    /// Replayed datagrams dropped.
    pub rx_replayed: u64,
    /// Datagrams that are not tunnel messages.
    pub rx_malformed: u64,
    /// ARP requests answered locally.
    pub arp_replies: u64,
    /// DHCP messages answered locally.
    pub dhcp_replies: u64,
    /// Frames sent in fragments.
    pub fragmented: u64,
    /// Frames reassembled from fragments.
    pub reassembled: u64,
    /// Handshake messages dropped by the rate limit.
    pub handshake_rate_limited: u64,
    /// Incomplete fragmented frames dropped.
    pub reassembly_dropped: u64,
    /// Frames dropped for want of a session or endpoint.
    pub tx_dropped: u64,
    /// Initiations under a known key whose name is not that key's peer.
    pub rx_unknown_peer: u64,
    /// Initiations of tapbridge protocol version 1 (a peer to upgrade).
    #[serde(default)]
    pub rx_old_version: u64,
    /// Cookie replies sent while under handshake load.
    #[serde(default)]
    pub cookie_replies: u64,
    /// Data or responses for a session this link does not have.
    pub rx_unknown_session: u64,
    /// Frames that could not be written to the TAP.
    pub tap_write_errors: u64,
    /// Datagrams the kernel refused to send.
    pub udp_send_errors: u64,
    /// Flooded frames refused by storm control (`guard.storm_pps`).
    #[serde(default)]
    pub storm_dropped: u64,
    /// Frames from peers refused by the DHCP and RA guards, and BPDUs
    /// refused by `guard.bpdu = "drop"`.
    #[serde(default)]
    pub guard_dropped: u64,
    /// Forwarding loops detected (events).
    #[serde(default)]
    pub loops_detected: u64,
    /// Frames not carried because a loop was present.
    #[serde(default)]
    pub loop_dropped: u64,
}

/// One DHCP lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEntry {
    /// Client MAC.
    pub mac: MacAddr,
    /// Leased address.
    pub ip: String,
    /// Seconds left.
    pub expires_in_secs: u64,
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
    #[error("control socket {path}: {source}")]
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
    #[error("control socket {path}: malformed response: {source}")]
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

    #[test]
    fn error_response_omits_empty_fields() {
        assert_eq!(
            serde_json::to_string(&Response::error("nope")).expect("json"),
            r#"{"ok":false,"error":"nope"}"#
        );
    }
}
