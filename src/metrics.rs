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
//! (which Prometheus scrapes natively) with the `prometheus-client` crate.
//! Every series carries `link="NAME"`; per-peer series add `peer="NAME"`:
//!
//! ```text
//! tapbridge_peer_tx_frames_total{link="a",peer="b"}   frames sent to the peer
//! tapbridge_peer_rx_frames_total, _tx_bytes_total, _rx_bytes_total, _handshakes_total
//! tapbridge_peer_state{link,peer,state="connecting"|"up"|"down"}   1 for the current state, else 0
//! tapbridge_peer_last_handshake_age_seconds   absent before the first handshake
//! tapbridge_rx_auth_failed_total{link="a"}    and every other link counter of `status`
//! tapbridge_leases{link="a"}                  DHCP leases held
//! tapbridge_uptime_seconds{link="a"}
//! ```
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
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::control::server::Command;
use crate::control::{CounterStatus, PeerStatus, Request, Status};

/// The largest request head read; a longer one gets 431.
pub const HEAD_LIMIT: usize = 8192;
/// How long a client has to send its request head, and we to write the answer.
pub const CONN_DEADLINE: Duration = Duration::from_secs(5);
/// How long a scrape waits for the worker's status.
const WORKER_WAIT: Duration = Duration::from_secs(2);
/// What a scrape answers with (OpenMetrics text, as `prometheus-client` encodes).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
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
    let route = match read_head(&mut conn, deadline) {
        Ok(head) => route(&head),
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
            Ok(body) => reply(&mut conn, 200, CONTENT_TYPE, body.as_bytes(), head_only),
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
    render(&status).map_err(|_| "the metrics could not be encoded\n".to_string())
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

type PeerField = fn(&PeerStatus) -> u64;
type LinkField = fn(&CounterStatus) -> u64;

/// Per-peer counters: name (before the unit and `_total`), help, unit, value.
const PEER_COUNTERS: [(&str, &str, Option<Unit>, PeerField); 5] = [
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
];

/// Link-wide counters: name (before `_total`), help, value.
const LINK_COUNTERS: [(&str, &str, LinkField); 20] = [
    (
        "rx_auth_failed",
        "Datagrams that did not authenticate",
        |c| c.rx_auth_failed,
    ),
    ("rx_replayed", "Replayed datagrams dropped", |c| {
        c.rx_replayed
    }),
    (
        "rx_malformed",
        "Datagrams that are not tunnel messages",
        |c| c.rx_malformed,
    ),
    ("arp_replies", "ARP requests answered locally", |c| {
        c.arp_replies
    }),
    ("dhcp_replies", "DHCP messages answered locally", |c| {
        c.dhcp_replies
    }),
    ("fragmented", "Frames sent in fragments", |c| c.fragmented),
    ("reassembled", "Frames reassembled from fragments", |c| {
        c.reassembled
    }),
    (
        "handshake_rate_limited",
        "Handshake messages dropped by the rate limit",
        |c| c.handshake_rate_limited,
    ),
    (
        "reassembly_dropped",
        "Incomplete fragmented frames dropped",
        |c| c.reassembly_dropped,
    ),
    (
        "tx_dropped",
        "Frames dropped for want of a session or endpoint",
        |c| c.tx_dropped,
    ),
    (
        "rx_unknown_peer",
        "Initiations under a known key whose name is not that key's peer",
        |c| c.rx_unknown_peer,
    ),
    (
        "rx_old_version",
        "Initiations of tapbridge protocol version 1",
        |c| c.rx_old_version,
    ),
    (
        "cookie_replies",
        "Cookie replies sent while under handshake load",
        |c| c.cookie_replies,
    ),
    (
        "rx_unknown_session",
        "Data or responses for a session this link does not have",
        |c| c.rx_unknown_session,
    ),
    (
        "tap_write_errors",
        "Frames that could not be written to the TAP",
        |c| c.tap_write_errors,
    ),
    (
        "udp_send_errors",
        "Datagrams the kernel refused to send",
        |c| c.udp_send_errors,
    ),
    (
        "storm_dropped",
        "Flooded frames refused by storm control",
        |c| c.storm_dropped,
    ),
    (
        "guard_dropped",
        "Frames refused by the DHCP, RA and BPDU guards",
        |c| c.guard_dropped,
    ),
    ("loops_detected", "Forwarding loops detected", |c| {
        c.loops_detected
    }),
    (
        "loop_dropped",
        "Frames not carried because a loop was present",
        |c| c.loop_dropped,
    ),
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

/// Renders a status snapshot as an OpenMetrics text exposition (ending in
/// `# EOF`). Called once per scrape; allocation here is fine.
pub fn render(status: &Status) -> Result<String, std::fmt::Error> {
    let link = (Cow::Borrowed("link"), Cow::Owned(status.name.clone()));
    let mut reg = Registry::with_prefix_and_labels("tapbridge", std::iter::once(link));
    let peer = |p: &PeerStatus| PeerLabels {
        peer: p.name.clone(),
    };

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
    let age = Family::<PeerLabels, Gauge>::default();
    for p in &status.peers {
        if let Some(secs) = p.last_handshake_secs {
            age.get_or_create(&peer(p)).set(gauge_value(secs));
        }
    }
    register(
        &mut reg,
        "peer_last_handshake_age",
        "Time since the last completed handshake with the peer (absent before the first)",
        Some(Unit::Seconds),
        age,
    );

    for (name, help, get) in LINK_COUNTERS {
        let c = Counter::<u64>::default();
        c.inc_by(get(&status.counters));
        reg.register(name, help, c);
    }
    let leases = Gauge::<i64>::default();
    leases.set(gauge_value(status.leases.len() as u64));
    reg.register("leases", "DHCP leases held", leases);
    let uptime = Gauge::<i64>::default();
    uptime.set(gauge_value(status.uptime_secs));
    reg.register_with_unit(
        "uptime",
        "Time since the link came up",
        Unit::Seconds,
        uptime,
    );

    let mut out = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

#[cfg(test)]
mod tests;
