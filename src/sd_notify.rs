//! The systemd notification protocol (`sd_notify(3)`): readiness, status
//! lines, stop and reload announcements, and the service watchdog.
//!
//! Under a `Type=notify` unit systemd passes `$NOTIFY_SOCKET`, a Unix datagram
//! socket (a path, or an abstract address written with a leading `@`), and,
//! with `WatchdogSec=`, `$WATCHDOG_USEC` (and `$WATCHDOG_PID`). Each
//! notification is one datagram of `KEY=value` lines. Without `$NOTIFY_SOCKET`
//! every call here does nothing, so the daemon behaves the same outside
//! systemd.
//!
//! Promises: nothing here panics or fails the daemon (a notification that
//! cannot be sent is logged once at debug level and otherwise ignored, as
//! systemd's own `sd_notify` does); nothing allocates except [`SdNotify::status`],
//! which callers use on peer events, never per frame. The watchdog is fed only
//! from [`SdNotify::watchdog_tick`], which the worker calls once per wake-up of
//! its loop: a worker that stops looping stops feeding it, and systemd
//! restarts the service.

use std::os::fd::{AsRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

/// Why `$NOTIFY_SOCKET` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The variable is set but empty.
    #[error("it is empty")]
    Empty,
    /// Neither `/path` nor `@abstract`.
    #[error("it is neither an absolute path nor an @abstract name")]
    NotAnAddress,
    /// Not a Unix socket address (e.g. too long); the system's reason.
    #[error(transparent)]
    Address(nix::Error),
    /// No socket to send from.
    #[error("cannot create a datagram socket")]
    Socket(#[source] nix::Error),
}

/// Where notifications go and how often the watchdog wants to hear from us.
pub struct SdNotify {
    target: Option<(OwnedFd, UnixAddr)>,
    /// Half of `$WATCHDOG_USEC`: the interval between two `WATCHDOG=1`.
    watchdog: Option<Duration>,
    next_feed: Option<Instant>,
    warned: bool,
}

impl SdNotify {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`. Call once,
    /// in the daemon process (the pid check is against this process).
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        let target = socket.and_then(|s| match open(s.as_encoded_bytes()) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(
                    "NOTIFY_SOCKET is set but unusable, so systemd will not be told: {}",
                    crate::error::Chain(&e)
                );
                None
            }
        });
        SdNotify {
            watchdog: target.as_ref().and(watchdog),
            target,
            next_feed: None,
            warned: false,
        }
    }

    /// A notifier that sends nothing (tests, or outside systemd).
    pub fn disabled() -> Self {
        SdNotify {
            target: None,
            watchdog: None,
            next_feed: None,
            warned: false,
        }
    }

    /// Whether `$NOTIFY_SOCKET` was given and usable.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification (`KEY=value` lines).
    pub fn send(&mut self, message: &str) {
        let Some((fd, addr)) = &self.target else {
            return;
        };
        let r = socket::sendto(
            fd.as_raw_fd(),
            message.as_bytes(),
            addr,
            MsgFlags::MSG_NOSIGNAL,
        );
        if let Err(e) = r {
            if !self.warned {
                self.warned = true;
                tracing::debug!("cannot notify systemd: {e}");
            }
        }
    }

    /// The link is up as `link up` defines it: `READY=1` with a status line.
    pub fn ready(&mut self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A new `STATUS=` line (on peer changes; never per frame).
    pub fn status(&mut self, status: &str) {
        if self.enabled() {
            self.send(&format!("STATUS={}", one_line(status)));
        }
    }

    /// The daemon is taking the link down.
    pub fn stopping(&mut self) {
        self.send("STOPPING=1\nSTATUS=taking the link down");
    }

    /// A reload begins (`RELOADING=1` with the monotonic time systemd ≥ 253
    /// asks for); follow it with [`SdNotify::reloaded`].
    pub fn reloading(&mut self) {
        if !self.enabled() {
            return;
        }
        let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
            .unwrap_or(0);
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    /// The reload is over (applied or refused): ready again.
    pub fn reloaded(&mut self) {
        self.send("READY=1");
    }

    /// Feeds the watchdog if it is due at `now`. Returns how long the caller
    /// may sleep before the next feed is due (`None`: no watchdog).
    pub fn watchdog_tick(&mut self, now: Instant) -> Option<Duration> {
        let interval = self.watchdog?;
        let due = *self.next_feed.get_or_insert(now);
        if now >= due {
            self.send("WATCHDOG=1");
            self.next_feed = Some(now + interval);
            return Some(interval);
        }
        Some(due - now)
    }
}

/// The feeding interval: half the timeout systemd gave, when it is meant for
/// this process (`$WATCHDOG_PID` absent or equal to `pid`).
fn watchdog_interval(usec: Option<&str>, for_pid: Option<&str>, pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(p) = for_pid {
        if p.trim().parse::<u32>().ok() != Some(pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// The address `$NOTIFY_SOCKET` names: a path, or an abstract name after `@`.
fn address(value: &[u8]) -> Result<UnixAddr, NotifyError> {
    match value {
        [] => Err(NotifyError::Empty),
        [b'@', name @ ..] => UnixAddr::new_abstract(name).map_err(NotifyError::Address),
        [b'/', ..] => UnixAddr::new(value).map_err(NotifyError::Address),
        _ => Err(NotifyError::NotAnAddress),
    }
}

fn open(value: &[u8]) -> Result<(OwnedFd, UnixAddr), NotifyError> {
    let addr = address(value)?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(NotifyError::Socket)?;
    Ok((fd, addr))
}

/// A status text as one line (a newline would start a new `KEY=` line).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn receiver() -> (UnixDatagram, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "tb-sdnotify-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind a datagram socket");
        sock.set_nonblocking(true).expect("nonblocking");
        (sock, path)
    }

    fn to(path: &std::path::Path, watchdog: Option<Duration>) -> SdNotify {
        SdNotify {
            target: Some(open(path.as_os_str().as_encoded_bytes()).expect("open")),
            watchdog,
            next_feed: None,
            warned: false,
        }
    }

    fn messages(sock: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn parses_paths_and_abstract_names_and_refuses_the_rest() {
        assert!(address(b"/run/systemd/notify").is_ok());
        let abs = address(b"@tb/notify").expect("abstract");
        assert_eq!(abs.as_abstract(), Some(&b"tb/notify"[..]));
        assert!(address(b"").is_err());
        assert!(address(b"relative/path").is_err());
        let long = [b'/'; 200];
        assert!(address(&long).is_err(), "longer than sun_path");
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_and_only_for_this_pid() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn sends_ready_status_stopping_and_reload_as_datagrams() {
        let (sock, path) = receiver();
        let mut n = to(&path, None);
        n.ready("link a up:\n1 peer");
        n.status("link up, 1 peer, 1 up");
        n.reloading();
        n.reloaded();
        n.stopping();
        let m = messages(&sock);
        assert_eq!(m[0], "READY=1\nSTATUS=link a up: 1 peer");
        assert_eq!(m[1], "STATUS=link up, 1 peer, 1 up");
        assert!(m[2].starts_with("RELOADING=1\nMONOTONIC_USEC="), "{}", m[2]);
        assert_eq!(m[3], "READY=1");
        assert!(m[4].starts_with("STOPPING=1"));
        assert_eq!(m.len(), 5);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn watchdog_is_fed_when_due_and_not_in_between() {
        let (sock, path) = receiver();
        let mut n = to(&path, Some(Duration::from_secs(10)));
        let t0 = Instant::now();
        assert_eq!(n.watchdog_tick(t0), Some(Duration::from_secs(10)));
        assert_eq!(
            n.watchdog_tick(t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(messages(&sock), ["WATCHDOG=1"]);
        n.watchdog_tick(t0 + Duration::from_secs(10));
        n.watchdog_tick(t0 + Duration::from_secs(11));
        assert_eq!(messages(&sock), ["WATCHDOG=1"]);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_there_is_no_watchdog() {
        let mut n = SdNotify::disabled();
        n.ready("x");
        n.stopping();
        assert_eq!(n.watchdog_tick(Instant::now()), None);
        assert!(!n.enabled());
    }

    #[test]
    fn a_vanished_receiver_is_not_an_error() {
        let (sock, path) = receiver();
        let mut n = to(&path, None);
        drop(sock);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
        n.ready("x");
        n.ready("y");
        assert!(n.warned);
    }
}
