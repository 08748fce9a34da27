//! The optional Prometheus endpoint (`[metrics] listen`).
//!
//! [`MetricsServer::start`] binds a TCP listener and serves it on a thread of
//! its own, one connection at a time, HTTP/1.0 style: read the request head
//! (at most [`HEAD_LIMIT`] bytes, within [`CONN_DEADLINE`]), answer, close.
//! `GET /metrics` (or `HEAD`) asks the worker for a fresh
//! [`Status`](crate::control::Status) through the same channel and eventfd
//! the control socket uses, so the worker stays the single owner of the
//! link's state and the hot path does no work for metrics between scrapes.
//!
//! The status is rendered by [`render`] in the OpenMetrics text format
//! with the `prometheus-client` crate; a client whose `Accept` header does
//! not ask for OpenMetrics (curl, `promtool check metrics`) gets the same
//! samples in the Prometheus text format 0.0.4 ([`to_prometheus_text`]).
//! Prometheus asks for OpenMetrics. Every series carries `link="NAME"`;
//! per-peer series add `peer="NAME"`:
//!
//! ```text
//! tapbridge_build_info{version}                       1
//! tapbridge_peer_{tx,rx}_frames_total, _{tx,rx}_bytes_total, _handshakes_total,
//!   _endpoint_changes_total{peer}
//! tapbridge_peer_state{peer,state="connecting"|"up"|"down"}  1 for the current state
//! tapbridge_peer_last_handshake_timestamp_seconds{peer}    absent before the first
//! tapbridge_peer_path_mtu_bytes{peer}
//! tapbridge_peer_macs{peer}                           source MACs it owns now
//! tapbridge_dhcp_leases, _dhcp_pool_addresses, _dhcp_pool_addresses_in_use
//! tapbridge_rekey_after_seconds, tapbridge_start_timestamp_seconds
//! ```
//!
//! and the link-wide counters as the counter table
//! ([`crate::control::counters`]) names them: shared families such as
//! `tapbridge_rx_dropped_total{reason}` and `tapbridge_reloads_total{result}`,
//! and counters of their own such as `tapbridge_arp_replies_total`.
//!
//! docs/operations.md, "Monitoring", is the operator's list (with the reasons).
//!
//! Promises: no request bytes can make it panic; other paths get 404, other
//! methods 405, a malformed head 400, an oversized one 431, and 503 when the
//! worker does not answer. Dropping (or [`MetricsServer::stop`]ping) the
//! server closes the listener and ends its thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::eventfd::EventFd;

use crate::control::Request;
use crate::control::server::Command;

mod render;

pub use render::{render, to_prometheus_text};

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

/// Errors starting the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error("cannot serve metrics on {addr}")]
    Bind {
        /// `metrics.listen`.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
    /// The thread or its listener handle could not be set up.
    #[error("cannot start the metrics thread")]
    Spawn(#[source] io::Error),
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
            Err(why) => {
                let body = format!("{why}\n");
                reply(&mut conn, 503, "text/plain", body.as_bytes(), head_only)
            }
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

/// Why a scrape is answered 503; its `Display` is the response body.
#[derive(Debug, thiserror::Error)]
enum ScrapeError {
    #[error("the link is shutting down")]
    ShuttingDown,
    #[error("the daemon did not answer in time")]
    NoAnswer,
    #[error("the metrics could not be encoded")]
    Encode(#[source] std::fmt::Error),
}

/// Asks the worker for its status and renders it.
fn scrape(to_worker: &Sender<Command>, waker: &EventFd) -> Result<String, ScrapeError> {
    let (reply, answer) = mpsc::channel();
    to_worker
        .send(Command {
            request: Request::Status,
            reply,
        })
        .map_err(|_| ScrapeError::ShuttingDown)?;
    let _ = waker.write(1);
    let status = answer
        .recv_timeout(WORKER_WAIT)
        .ok()
        .and_then(|r| r.status)
        .ok_or(ScrapeError::NoAnswer)?;
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    render(&status, now_unix).map_err(ScrapeError::Encode)
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

#[cfg(test)]
mod tests;
