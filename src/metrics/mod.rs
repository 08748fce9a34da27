//! The optional Prometheus endpoint (`[metrics] listen`).
//!
//! [`MetricsServer::start`] binds a TCP listener and serves it on a thread of
//! its own, one connection at a time, HTTP/1.0 style: read the request head
//! (at most [`HEAD_LIMIT`] bytes, within [`CONN_DEADLINE`]), answer, close.
//! `GET /metrics` (or `HEAD`) asks the worker for a fresh
//! [`Status`] through the same channel and eventfd the control socket uses,
//! so the worker stays the single owner of the link's state and the hot path
//! does no work for metrics between scrapes.
//!
//! The status is rendered by [`render`] in the OpenMetrics text format
//! with the `prometheus-client` crate; a client whose `Accept` header does
//! not ask for OpenMetrics (curl, `promtool check metrics`) gets the same
//! samples in the Prometheus text format 0.0.4 ([`to_prometheus_text`]).
//! Prometheus asks for OpenMetrics. Every series carries `link="NAME"`;
//! per-peer series add `peer="NAME"`; drop counters carry a `reason`:
//!
//! ```text
//! tapbridge_build_info{version}                       1
//! tapbridge_peer_{tx,rx}_frames_total, _{tx,rx}_bytes_total, _handshakes_total,
//!   _endpoint_changes_total{peer}
//! tapbridge_peer_state{peer,state="connecting"|"up"|"down"}  1 for the current state
//! tapbridge_peer_last_handshake_timestamp_seconds{peer}    absent before the first
//! tapbridge_peer_path_mtu_bytes{peer}
//! tapbridge_rx_dropped_total{reason}, tapbridge_tx_dropped_total{reason},
//!   tapbridge_dhcp_dropped_total{reason}
//! tapbridge_{fragmented,reassembled}_frames_total, _handshake_cookie_replies_total,
//!   _arp_replies_total, _arp_bindings_learned_total, _arp_bindings_refused_total,
//!   _nd_replies_total, _nd_bindings_learned_total, _nd_bindings_refused_total,
//!   _dhcp_replies_total, _dhcp_naks_total, _dhcp_conflicts_total, _dhcp_probes_total
//! tapbridge_reloads_total{result="applied"|"refused"}
//! tapbridge_dhcp_leases, _dhcp_pool_addresses, _dhcp_pool_addresses_in_use
//! tapbridge_rekey_after_seconds, tapbridge_start_timestamp_seconds
//! ```
//!
//! README.md's metrics section is the operator's list (with the reasons).
//!
//! Promises: no request bytes can make it panic; other paths get 404, other
//! methods 405, a malformed head 400, an oversized one 431, and 503 when the
//! worker does not answer. Dropping (or [`MetricsServer::stop`]ping) the
//! server closes the listener and ends its thread.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::eventfd::EventFd;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::control::server::Command;
use crate::control::{CounterStatus, PeerStatus, Request, Status};

/// The largest request head read; a longer one gets 431.
pub const HEAD_LIMIT: usize = 8192;
/// How long a client has to send its request head, and we to write the answer.
pub const CONN_DEADLINE: Duration = Duration::from_secs(5);
/// How long a scrape waits for the worker's status.
const WORKER_WAIT: Duration = Duration::from_secs(2);
/// What a scrape that asks for OpenMetrics gets (as `prometheus-client` encodes).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// What any other scrape gets ([`to_prometheus_text`]).
const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The peer states of SPEC §6; each gets a `tapbridge_peer_state` series.
const PEER_STATES: [&str; 3] = ["connecting", "up", "down"];

/// Errors starting the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        /// `metrics.listen`.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
    /// The thread or its listener handle could not be set up.
    #[error("cannot start the metrics thread: {0}")]
    Spawn(io::Error),
}

/// A running metrics endpoint; stops when dropped.
pub struct MetricsServer {
    local: SocketAddr,
    /// A second handle on the listening socket, to wake `accept` on stop.
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics` on a thread of its own. Status
    /// requests go to `to_worker`, which is woken through `waker` (the same
    /// pair the control socket uses). Call once the worker's channel exists.
    pub fn start(
        addr: SocketAddr,
        to_worker: Sender<Command>,
        waker: Arc<EventFd>,
    ) -> Result<MetricsServer, MetricsError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let waker_handle = listener.try_clone().map_err(MetricsError::Spawn)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || accept_loop(&listener, &stopping, &to_worker, &waker))
            .map_err(MetricsError::Spawn)?;
        Ok(MetricsServer {
            local,
            listener: waker_handle,
            stop,
            thread: Some(thread),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Closes the listener and waits for the thread (at most one connection's
    /// deadline). Same as dropping it.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // On Linux, shutting a listening socket down makes a blocked
        // `accept` return at once (EINVAL); the thread then sees the flag.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    to_worker: &Sender<Command>,
    waker: &EventFd,
) {
    loop {
        let conn = listener.accept();
        if stop.load(Ordering::Acquire) {
            return;
        }
        match conn {
            Ok((conn, _)) => serve(conn, to_worker, waker),
            // Out of descriptors and the like: don't spin.
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` (`head_only` for `HEAD`).
    Metrics { head_only: bool },
    /// A well-formed request for another path.
    NotFound { head_only: bool },
    /// A method other than GET or HEAD.
    MethodNotAllowed,
    /// Not an HTTP/1.x request line.
    BadRequest,
}

/// Where the head ends (just past the blank line), if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Routes a request by its request line; never panics.
fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Route::BadRequest;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') || method.is_empty() {
        return Route::BadRequest;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    let path = target.split('?').next().unwrap_or_default();
    if path == "/metrics" {
        Route::Metrics { head_only }
    } else {
        Route::NotFound { head_only }
    }
}

/// Whether the request's `Accept` header lists OpenMetrics (without `q=0`).
/// Never panics.
fn wants_openmetrics(head: &[u8]) -> bool {
    let Ok(head) = std::str::from_utf8(head) else {
        return false;
    };
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .flat_map(|(_, value)| value.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
}

/// Why no complete head was read.
enum HeadError {
    /// More than [`HEAD_LIMIT`] bytes without a blank line.
    TooLarge,
    /// The client closed, stalled past the deadline, or the read failed.
    Incomplete,
}

/// Reads until the blank line that ends the head, within `deadline`.
fn read_head(conn: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if head_end(&buf).is_some() {
            return Ok(buf);
        }
        if buf.len() >= HEAD_LIMIT {
            return Err(HeadError::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            return Err(HeadError::Incomplete);
        }
        let want = (HEAD_LIMIT - buf.len()).min(chunk.len());
        match conn.read(&mut chunk[..want]) {
            Ok(0) => return Err(HeadError::Incomplete),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(HeadError::Incomplete),
        }
    }
}

/// One connection: read the head, answer, close.
fn serve(mut conn: TcpStream, to_worker: &Sender<Command>, waker: &EventFd) {
    let deadline = Instant::now() + CONN_DEADLINE;
    let _ = conn.set_write_timeout(Some(CONN_DEADLINE));
    let (route, openmetrics) = match read_head(&mut conn, deadline) {
        Ok(head) => (route(&head), wants_openmetrics(&head)),
        Err(HeadError::TooLarge) => {
            let _ = reply(
                &mut conn,
                431,
                "text/plain",
                b"request head too large\n",
                false,
            );
            return;
        }
        // Nothing sensible to answer (or no one to answer to).
        Err(HeadError::Incomplete) => return,
    };
    let _ = match route {
        Route::Metrics { head_only } => match scrape(to_worker, waker) {
            Ok(body) if openmetrics => {
                reply(&mut conn, 200, CONTENT_TYPE, body.as_bytes(), head_only)
            }
            Ok(body) => {
                let text = to_prometheus_text(&body);
                reply(
                    &mut conn,
                    200,
                    TEXT_CONTENT_TYPE,
                    text.as_bytes(),
                    head_only,
                )
            }
            Err(why) => reply(&mut conn, 503, "text/plain", why.as_bytes(), head_only),
        },
        Route::NotFound { head_only } => reply(
            &mut conn,
            404,
            "text/plain",
            b"not found; try /metrics\n",
            head_only,
        ),
        Route::MethodNotAllowed => reply(
            &mut conn,
            405,
            "text/plain",
            b"only GET and HEAD are served\n",
            false,
        ),
        Route::BadRequest => reply(&mut conn, 400, "text/plain", b"bad request\n", false),
    };
    let _ = conn.shutdown(Shutdown::Write);
}

/// Asks the worker for its status and renders it.
fn scrape(to_worker: &Sender<Command>, waker: &EventFd) -> Result<String, String> {
    let (reply, answer) = mpsc::channel();
    to_worker
        .send(Command {
            request: Request::Status,
            reply,
        })
        .map_err(|_| "the link is shutting down\n".to_string())?;
    let _ = waker.write(1);
    let status = answer
        .recv_timeout(WORKER_WAIT)
        .ok()
        .and_then(|r| r.status)
        .ok_or_else(|| "the daemon did not answer in time\n".to_string())?;
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    render(&status, now_unix).map_err(|_| "the metrics could not be encoded\n".to_string())
}

fn reply(
    conn: &mut TcpStream,
    code: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    if !head_only {
        conn.write_all(body)?;
    }
    conn.flush()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    peer: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

type PeerField = fn(&PeerStatus) -> u64;
type LinkField = fn(&CounterStatus) -> u64;

/// Per-peer counters: name (before the unit and `_total`), help, unit, value.
const PEER_COUNTERS: [(&str, &str, Option<Unit>, PeerField); 6] = [
    (
        "peer_tx_frames",
        "Ethernet frames sent to the peer",
        None,
        |p| p.tx_frames,
    ),
    (
        "peer_rx_frames",
        "Ethernet frames received from the peer",
        None,
        |p| p.rx_frames,
    ),
    (
        "peer_tx",
        "Ethernet frame bytes sent to the peer",
        Some(Unit::Bytes),
        |p| p.tx_bytes,
    ),
    (
        "peer_rx",
        "Ethernet frame bytes received from the peer",
        Some(Unit::Bytes),
        |p| p.rx_bytes,
    ),
    (
        "peer_handshakes",
        "Completed handshakes with the peer, rekeys included",
        None,
        |p| p.handshakes,
    ),
    (
        "peer_endpoint_changes",
        "Times an authenticated packet from a new address moved the peer's endpoint",
        None,
        |p| p.endpoint_changes,
    ),
];

/// Datagrams or frames from the tunnel side that were dropped, by reason
/// (`tapbridge_rx_dropped_total{reason}`).
const RX_DROPPED: [(&str, LinkField); 9] = [
    ("auth_failed", |c| c.rx_auth_failed),
    ("replayed", |c| c.rx_replayed),
    ("malformed", |c| c.rx_malformed),
    ("unknown_peer", |c| c.rx_unknown_peer),
    ("unknown_session", |c| c.rx_unknown_session),
    ("old_version", |c| c.rx_old_version),
    ("handshake_rate_limited", |c| c.handshake_rate_limited),
    ("reassembly_incomplete", |c| c.reassembly_dropped),
    ("tap_write_failed", |c| c.tap_write_errors),
];

/// Frames or datagrams towards the tunnel that were dropped, by reason.
const TX_DROPPED: [(&str, LinkField); 3] = [
    ("no_session", |c| c.tx_dropped),
    ("send_failed", |c| c.udp_send_errors),
    ("tcp_queue_full", |c| c.tcp_dropped),
];

/// DHCP messages the responder did not answer, by reason.
const DHCP_DROPPED: [(&str, LinkField); 4] = [
    ("pool_exhausted", |c| c.dhcp_pool_exhausted),
    ("malformed", |c| c.dhcp_malformed),
    ("ignored", |c| c.dhcp_ignored),
    ("from_tunnel", |c| c.remote_dhcp_dropped),
];

/// Frames the guards kept out, by reason (`tapbridge_guard_dropped_total`):
/// storm control, the DHCP/RA/BPDU guards, and a forwarding loop.
const GUARD_DROPPED: [(&str, LinkField); 3] = [
    ("storm", |c| c.storm_dropped),
    ("dhcp_ra_bpdu", |c| c.guard_dropped),
    ("loop", |c| c.loop_dropped),
];

/// Link-wide counters without labels: name (before `_total`), help, value.
const LINK_COUNTERS: [(&str, &str, LinkField); 14] = [
    (
        "fragmented_frames",
        "Frames sent to the tunnel in fragments",
        |c| c.fragmented,
    ),
    (
        "reassembled_frames",
        "Frames reassembled from fragments",
        |c| c.reassembled,
    ),
    (
        "handshake_cookie_replies",
        "Cookie replies sent while under handshake load",
        |c| c.cookie_replies,
    ),
    ("arp_replies", "ARP requests answered locally", |c| {
        c.arp_replies
    }),
    (
        "arp_bindings_learned",
        "ARP bindings learned or refreshed from the tunnel",
        |c| c.arp_bindings_learned,
    ),
    (
        "arp_bindings_refused",
        "ARP bindings from the tunnel refused (they contradict what is known here)",
        |c| c.arp_bindings_refused,
    ),
    (
        "nd_replies",
        "IPv6 neighbour solicitations answered locally (ND suppression)",
        |c| c.nd_replies,
    ),
    (
        "nd_bindings_learned",
        "IPv6 ND bindings learned or refreshed from the tunnel",
        |c| c.nd_bindings_learned,
    ),
    (
        "nd_bindings_refused",
        "IPv6 ND bindings from the tunnel refused (they contradict what is known here)",
        |c| c.nd_bindings_refused,
    ),
    (
        "dhcp_conflicts",
        "DHCP addresses not offered or confirmed because another MAC was seen using them",
        |c| c.dhcp_conflicts,
    ),
    (
        "dhcp_probes",
        "ARP probes sent before a DHCP offer (conflict_check)",
        |c| c.dhcp_probes,
    ),
    (
        "dhcp_replies",
        "DHCP replies (OFFER, ACK, NAK) sent to the local side",
        |c| c.dhcp_replies,
    ),
    (
        "dhcp_naks",
        "Of the DHCP replies, how many were NAKs",
        |c| c.dhcp_naks,
    ),
    ("loops_detected", "Forwarding loops detected", |c| {
        c.loops_detected
    }),
];

fn register(reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>, m: impl Metric) {
    match unit {
        Some(u) => reg.register_with_unit(name, help, u, m),
        None => reg.register(name, help, m),
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn gauge(v: u64) -> Gauge {
    let g = Gauge::<i64>::default();
    g.set(gauge_value(v));
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    c
}

/// One counter family with a `reason` label, one series per reason.
fn reasons(
    c: &CounterStatus,
    table: &[(&'static str, LinkField)],
) -> Family<ReasonLabels, Counter> {
    let family = Family::<ReasonLabels, Counter>::default();
    for (reason, get) in table {
        family
            .get_or_create(&ReasonLabels { reason })
            .inc_by(get(c));
    }
    family
}

/// Renders a status snapshot, taken at `now_unix` (wall clock, UNIX
/// seconds; timestamps are derived from the status' ages), as an
/// OpenMetrics text exposition (ending in `# EOF`). Called once per scrape;
/// allocation here is fine. README.md's metrics section lists every family.
pub fn render(status: &Status, now_unix: u64) -> Result<String, std::fmt::Error> {
    let link = (Cow::Borrowed("link"), Cow::Owned(status.name.clone()));
    let mut reg = Registry::with_prefix_and_labels("tapbridge", std::iter::once(link));
    let peer = |p: &PeerStatus| PeerLabels {
        peer: p.name.clone(),
    };

    reg.register(
        "build",
        "The daemon's version",
        Info::new(VersionLabels {
            version: status.version.clone(),
        }),
    );
    for (name, help, unit, get) in PEER_COUNTERS {
        let family = Family::<PeerLabels, Counter>::default();
        for p in &status.peers {
            family.get_or_create(&peer(p)).inc_by(get(p));
        }
        register(&mut reg, name, help, unit, family);
    }
    let states = Family::<StateLabels, Gauge>::default();
    for p in &status.peers {
        // One series per state; one more if the daemon reports a state this
        // build does not know, so it is never hidden.
        let known = PEER_STATES.contains(&p.state.as_str());
        let extra = (!known).then_some(p.state.as_str());
        for s in PEER_STATES.into_iter().chain(extra) {
            let labels = StateLabels {
                peer: p.name.clone(),
                state: s.to_string(),
            };
            states.get_or_create(&labels).set(i64::from(p.state == s));
        }
    }
    register(
        &mut reg,
        "peer_state",
        "The peer's tunnel state: 1 for the current one",
        None,
        states,
    );
    let last = Family::<PeerLabels, Gauge>::default();
    for p in &status.peers {
        if let Some(age) = p.last_handshake_secs {
            last.get_or_create(&peer(p))
                .set(gauge_value(now_unix.saturating_sub(age)));
        }
    }
    register(
        &mut reg,
        "peer_last_handshake_timestamp",
        "When the last handshake with the peer completed, UNIX time (absent before the first)",
        Some(Unit::Seconds),
        last,
    );
    let mtu = Family::<PeerLabels, Gauge>::default();
    for p in &status.peers {
        mtu.get_or_create(&peer(p)).set(i64::from(p.path_mtu));
    }
    register(
        &mut reg,
        "peer_path_mtu",
        "The largest outer IP packet sent to the peer",
        Some(Unit::Bytes),
        mtu,
    );

    let c = &status.counters;
    reg.register(
        "rx_dropped",
        "Tunnel-side datagrams or frames dropped, by reason",
        reasons(c, &RX_DROPPED),
    );
    reg.register(
        "tx_dropped",
        "Frames or datagrams towards the tunnel dropped, by reason",
        reasons(c, &TX_DROPPED),
    );
    reg.register(
        "dhcp_dropped",
        "DHCP messages the responder did not answer, by reason",
        reasons(c, &DHCP_DROPPED),
    );
    reg.register(
        "guard_dropped",
        "Frames the guards kept out of a LAN or the tunnel, by reason",
        reasons(c, &GUARD_DROPPED),
    );
    for (name, help, get) in LINK_COUNTERS {
        reg.register(name, help, counter(get(c)));
    }
    let reloads = Family::<ResultLabels, Counter>::default();
    for (result, n) in [("applied", c.reloads), ("refused", c.reloads_refused)] {
        reloads.get_or_create(&ResultLabels { result }).inc_by(n);
    }
    reg.register(
        "reloads",
        "Configuration reloads (SIGHUP or bridge-ctl reload), by result",
        reloads,
    );

    reg.register(
        "dhcp_leases",
        "Unexpired DHCP leases, reservations included",
        gauge(status.leases.len() as u64),
    );
    if let Some(pool) = status.dhcp {
        reg.register(
            "dhcp_pool_addresses",
            "Addresses the DHCP pool can hand out",
            gauge(pool.pool_size),
        );
        reg.register(
            "dhcp_pool_addresses_in_use",
            "Pool addresses leased, offered or quarantined",
            gauge(pool.pool_in_use),
        );
    }
    reg.register_with_unit(
        "rekey_after",
        "Session lifetime before a rekey (tunnel.rekey_after)",
        Unit::Seconds,
        gauge(status.rekey_after_secs),
    );
    reg.register_with_unit(
        "start_timestamp",
        "When the link came up, UNIX time",
        Unit::Seconds,
        gauge(now_unix.saturating_sub(status.uptime_secs)),
    );

    let mut out = String::with_capacity(8192);
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

/// Rewrites an OpenMetrics exposition from [`render`] into the Prometheus
/// text format 0.0.4, for clients that do not ask for OpenMetrics (curl,
/// `promtool check metrics`): counter families are named with their
/// `_total`, info families become gauges named `_info`, and the `# UNIT`
/// and `# EOF` lines go. Samples are the same in both formats.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    use std::collections::HashMap;
    let mut rename: HashMap<&str, (String, &str)> = HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            let to = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                other => (name.to_string(), other),
            };
            rename.insert(name, to);
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let (to, kind) = rename
                    .get(name)
                    .map(|(n, k)| (n.as_str(), *k))
                    .unwrap_or((name, text));
                let text = if prefix == "# TYPE " { kind } else { text };
                out.push_str(prefix);
                out.push_str(to);
                out.push(' ');
                out.push_str(text);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
