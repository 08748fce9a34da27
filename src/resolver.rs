//! Host-name endpoints (`endpoint = "hq.example.net:51901"`, SPEC §4).
//!
//! A name is resolved with the system resolver (`getaddrinfo`, so
//! `/etc/hosts` and nsswitch apply) at `link up`, where [`resolve_peers`]
//! gives up after [`RESOLVE_TIMEOUT`] and a failure stops the link before
//! anything is created; and again while the peer is not up, or after a
//! reload named a new host, by a [`Resolver`] thread, so the worker never
//! waits for DNS. The worker asks with a non-blocking send (at most every
//! [`RE_RESOLVE_EVERY`] per peer, decided by [`Schedule`], which is pure) and
//! the thread answers on a channel and wakes the worker through the eventfd
//! the control socket uses.
//!
//! Of the answers, the first the tunnel's socket can send to is used
//! ([`pick`]): an IPv4 socket reaches IPv4 addresses only, an IPv6 socket
//! bound to a specific address IPv6 only, and the dual-stack `[::]` socket
//! both (IPv4 through mapped addresses), in the resolver's order of
//! preference (RFC 6724).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use nix::sys::eventfd::EventFd;

use crate::config::{Config, PeerEndpoint};
use crate::tunnel::PeerState;

/// How long `link up` waits for a name to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a peer that is not up has its name resolved again.
pub const RE_RESOLVE_EVERY: Duration = Duration::from_secs(30);
/// How often the worker looks for peers due for resolution.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Questions the resolver thread holds before the worker's sends fail
/// (they are asked again later).
const QUEUE: usize = 64;

/// The address among `answers` that a socket bound to `listen` can send
/// to, keeping the resolver's order; `None` if there is none.
pub fn pick(answers: &[SocketAddr], listen: SocketAddr) -> Option<SocketAddr> {
    let canonical = |a: &SocketAddr| match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => *a,
        },
        SocketAddr::V4(_) => *a,
    };
    let usable = |a: &SocketAddr| match listen {
        SocketAddr::V4(_) => a.is_ipv4(),
        SocketAddr::V6(l) if l.ip().is_unspecified() => true,
        SocketAddr::V6(_) => a.is_ipv6(),
    };
    answers
        .iter()
        .map(canonical)
        .filter(|a| !a.ip().is_unspecified() && !a.ip().is_multicast())
        .find(usable)
}

/// Why a name gave no address to use. The message completes
/// "cannot resolve …: ".
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The system resolver failed (its message as it is).
    #[error(transparent)]
    Lookup(io::Error),
    /// The resolver answered with no address.
    #[error("no address found")]
    NoAddress,
    /// None of the addresses found can be reached from the tunnel socket.
    #[error(
        "it has no {} address that the tunnel socket {listen} can reach (found {})",
        if listen.is_ipv4() { "IPv4" } else { "IPv6" },
        list(found)
    )]
    Unreachable {
        /// The tunnel socket's address.
        listen: SocketAddr,
        /// The addresses found, in the resolver's order.
        found: Vec<IpAddr>,
    },
    /// No thread could be started to ask.
    #[error("cannot start a resolver thread")]
    Spawn(#[source] io::Error),
    /// The resolver did not answer in time.
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
}

/// A peer's endpoint name could not be resolved at `link up`.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve peer {peer}'s endpoint {host}")]
pub struct EndpointError {
    /// The peer.
    pub peer: String,
    /// The host name.
    pub host: String,
    /// Why.
    #[source]
    pub cause: ResolveError,
}

fn list(addresses: &[IpAddr]) -> String {
    let shown: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    shown.join(", ")
}

/// Looks `host` up and picks an address for `listen` (blocking, as long as
/// the system resolver takes).
pub fn lookup(host: &str, port: u16, listen: SocketAddr) -> Result<SocketAddr, ResolveError> {
    let answers: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(ResolveError::Lookup)?
        .collect();
    if answers.is_empty() {
        return Err(ResolveError::NoAddress);
    }
    pick(&answers, listen).ok_or_else(|| ResolveError::Unreachable {
        listen,
        found: answers.iter().map(SocketAddr::ip).collect(),
    })
}

/// [`lookup`] on a helper thread, giving up after `timeout` (the thread is
/// left to finish on its own; its answer is dropped).
pub fn resolve(
    host: &str,
    port: u16,
    listen: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, ResolveError> {
    let (tx, rx) = mpsc::sync_channel(1);
    let h = host.to_owned();
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let _ = tx.send(lookup(&h, port, listen));
        })
        .map_err(ResolveError::Spawn)?;
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => Err(ResolveError::Timeout(timeout)),
    }
}

/// Every peer's addresses at `link up`, in `cfg.peers` order, each in the
/// configured order of preference: literals as they are, names resolved
/// (bounded by [`RESOLVE_TIMEOUT`] each). The error names the peer and the
/// host.
pub fn resolve_peers(cfg: &Config) -> Result<Vec<Vec<SocketAddr>>, EndpointError> {
    cfg.peers
        .iter()
        .map(|p| {
            p.endpoints
                .iter()
                .map(|e| match e {
                    PeerEndpoint::Addr(a) => Ok(*a),
                    PeerEndpoint::Name { host, port } => {
                        resolve(host, *port, cfg.tunnel.listen, RESOLVE_TIMEOUT).map_err(|cause| {
                            EndpointError {
                                peer: p.name.clone(),
                                host: host.clone(),
                                cause,
                            }
                        })
                    }
                })
                .collect()
        })
        .collect()
}

/// A question for the resolver thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The peer whose endpoint this is.
    pub peer: String,
    /// Its host name.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Use the answer even if the peer is up (a reload named this host).
    pub forced: bool,
}

/// The resolver thread's answer.
#[derive(Debug)]
pub struct Answer {
    /// What was asked.
    pub query: Query,
    /// The address picked, or why there is none.
    pub result: Result<SocketAddr, ResolveError>,
}

/// When to ask again: per peer, at most every [`RE_RESOLVE_EVERY`] while it
/// is not up, counted from `link up` (which just resolved it) or the last
/// question. Pure: the worker hands in the clock and the peers' states.
#[derive(Debug)]
pub struct Schedule {
    started: Instant,
    next_check: Instant,
    /// Per peer and host (a peer may list several names).
    last_asked: HashMap<(String, String, u16), Instant>,
}

impl Schedule {
    /// A schedule for a link that resolved its names at `now`.
    pub fn new(now: Instant) -> Self {
        Schedule {
            started: now,
            next_check: now + CHECK_EVERY,
            last_asked: HashMap::new(),
        }
    }

    /// Whether any peer may be due at `now` (one comparison; call
    /// [`Schedule::due`] only then).
    pub fn check_due(&self, now: Instant) -> bool {
        now >= self.next_check
    }

    /// The questions due at `now` among `peers` (name, endpoint, state; a
    /// peer with several endpoints comes once per endpoint): names of peers
    /// that are connecting or down and were last asked about
    /// [`RE_RESOLVE_EVERY`] ago or longer.
    pub fn due<'a>(
        &mut self,
        now: Instant,
        peers: impl Iterator<Item = (&'a str, &'a PeerEndpoint, PeerState)>,
    ) -> Vec<Query> {
        self.next_check = now + CHECK_EVERY;
        let mut out = Vec::new();
        for (name, endpoint, state) in peers {
            let PeerEndpoint::Name { host, port } = endpoint else {
                continue;
            };
            if state == PeerState::Up {
                continue;
            }
            let query = Query {
                peer: name.to_owned(),
                host: host.clone(),
                port: *port,
                forced: false,
            };
            let last = self
                .last_asked
                .get(&Self::key(&query))
                .copied()
                .unwrap_or(self.started);
            if now.saturating_duration_since(last) >= RE_RESOLVE_EVERY {
                self.asked(&query, now);
                out.push(query);
            }
        }
        out
    }

    /// Records `query` as asked at `now`.
    pub fn asked(&mut self, query: &Query, now: Instant) {
        self.last_asked.insert(Self::key(query), now);
    }

    fn key(q: &Query) -> (String, String, u16) {
        (q.peer.clone(), q.host.clone(), q.port)
    }
}

/// The worker's side of the resolver thread.
pub struct Resolver {
    queries: SyncSender<Query>,
    answers: Receiver<Answer>,
    /// When to ask.
    pub schedule: Schedule,
}

impl Resolver {
    /// Starts the thread for a socket bound to `listen`; answers wake
    /// `waker`. The thread ends when the `Resolver` is dropped.
    pub fn spawn(listen: SocketAddr, waker: Arc<EventFd>, now: Instant) -> io::Result<Self> {
        let (queries, rx) = mpsc::sync_channel::<Query>(QUEUE);
        let (tx, answers) = mpsc::channel();
        std::thread::Builder::new()
            .name("resolver".into())
            .spawn(move || {
                while let Ok(query) = rx.recv() {
                    let result = lookup(&query.host, query.port, listen);
                    if tx.send(Answer { query, result }).is_err() {
                        return;
                    }
                    let _ = waker.write(1);
                }
            })?;
        Ok(Resolver {
            queries,
            answers,
            schedule: Schedule::new(now),
        })
    }

    /// Queues `query` without blocking; a full queue drops it (the
    /// schedule asks again later).
    pub fn ask(&mut self, query: Query, now: Instant) {
        self.schedule.asked(&query, now);
        if let Err(TrySendError::Full(q)) = self.queries.try_send(query) {
            tracing::warn!(peer = %q.peer, host = %q.host, "resolver busy; will ask again later");
        }
    }

    /// The next answer, if one has arrived.
    pub fn try_answer(&self) -> Option<Answer> {
        self.answers.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::eventfd::EfdFlags;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn picks_what_the_socket_can_reach() {
        let answers = [a("[2001:2::1]:9"), a("198.18.0.1:9"), a("[2001:2::2]:9")];
        assert_eq!(pick(&answers, a("0.0.0.0:1")), Some(a("198.18.0.1:9")));
        assert_eq!(pick(&answers, a("[::]:1")), Some(a("[2001:2::1]:9")));
        assert_eq!(pick(&answers, a("[2001:2::9]:1")), Some(a("[2001:2::1]:9")));
        assert_eq!(pick(&answers[1..2], a("[2001:2::9]:1")), None);
        assert_eq!(pick(&answers[..1], a("198.18.0.9:1")), None);
        // Mapped answers are IPv4; unusable addresses are skipped.
        assert_eq!(
            pick(
                &[a("0.0.0.0:9"), a("[::ffff:198.18.0.3]:9")],
                a("0.0.0.0:1")
            ),
            Some(a("198.18.0.3:9"))
        );
        assert_eq!(pick(&[], a("[::]:1")), None);
    }

    #[test]
    fn asks_again_only_for_named_peers_that_are_not_up() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        let name = PeerEndpoint::Name {
            host: "hq.tapbridge.test".into(),
            port: 51901,
        };
        let addr = PeerEndpoint::Addr(a("198.18.0.1:51901"));
        let peers = |down: PeerState| {
            vec![
                ("hq", &name, down),
                ("b", &addr, PeerState::Down),
                ("c", &name, PeerState::Up),
            ]
        };
        assert!(!s.check_due(t0));
        assert!(s.check_due(t0 + CHECK_EVERY));
        // Resolved at up: not again before RE_RESOLVE_EVERY.
        let early = t0 + RE_RESOLVE_EVERY - Duration::from_secs(1);
        assert!(s.due(early, peers(PeerState::Down).into_iter()).is_empty());
        let t1 = t0 + RE_RESOLVE_EVERY;
        let q = s.due(t1, peers(PeerState::Connecting).into_iter());
        assert_eq!(
            q,
            vec![Query {
                peer: "hq".into(),
                host: "hq.tapbridge.test".into(),
                port: 51901,
                forced: false
            }]
        );
        assert!(!s.check_due(t1));
        // Asked at t1: the next question waits another interval.
        let later = t1 + RE_RESOLVE_EVERY - Duration::from_secs(1);
        assert!(s.due(later, peers(PeerState::Down).into_iter()).is_empty());
        assert_eq!(
            s.due(t1 + RE_RESOLVE_EVERY, peers(PeerState::Down).into_iter())
                .len(),
            1
        );
        // An up peer is never asked about.
        let far = t1 + RE_RESOLVE_EVERY * 10;
        assert!(s.due(far, peers(PeerState::Up).into_iter()).is_empty());
    }

    #[test]
    fn each_name_of_a_peer_with_several_is_asked_about() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        let name = |h: &str| PeerEndpoint::Name {
            host: h.into(),
            port: 51901,
        };
        let (one, two) = (name("hq1.tapbridge.test"), name("hq2.tapbridge.test"));
        let peers = || vec![("hq", &one, PeerState::Down), ("hq", &two, PeerState::Down)];
        let q = s.due(t0 + RE_RESOLVE_EVERY, peers().into_iter());
        let hosts: Vec<&str> = q.iter().map(|q| q.host.as_str()).collect();
        assert_eq!(hosts, ["hq1.tapbridge.test", "hq2.tapbridge.test"]);
        // Each is remembered on its own: a forced question about one (a
        // reload) does not delay the other.
        s.asked(&q[0], t0 + RE_RESOLVE_EVERY * 2);
        let q = s.due(t0 + RE_RESOLVE_EVERY * 2, peers().into_iter());
        let hosts: Vec<&str> = q.iter().map(|q| q.host.as_str()).collect();
        assert_eq!(hosts, ["hq2.tapbridge.test"]);
    }

    #[test]
    fn the_thread_answers_and_wakes_the_worker() {
        let waker =
            Arc::new(EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).expect("eventfd"));
        let now = Instant::now();
        let mut r = Resolver::spawn(a("0.0.0.0:1"), waker.clone(), now).expect("thread");
        let query = Query {
            peer: "hq".into(),
            host: "localhost".into(),
            port: 51901,
            forced: true,
        };
        r.ask(query.clone(), now);
        // Blocks until the thread wrote the eventfd.
        assert!(waker.read().expect("woken") >= 1);
        let answer = r.try_answer().expect("an answer before the wake-up");
        assert_eq!(answer.query, query);
        let addr = answer.result.expect("localhost resolves");
        assert!(addr.ip().is_loopback() && addr.is_ipv4(), "{addr}");
        assert_eq!(addr.port(), 51901);
    }

    #[test]
    fn resolve_reports_an_unreachable_family() {
        let e = lookup("localhost", 1, a("[2001:2::9]:1"));
        // Depending on /etc/hosts, localhost may also have ::1.
        if let Err(e) = e {
            let e = e.to_string();
            assert!(e.contains("no IPv6 address"), "{e}");
        }
        assert_eq!(
            resolve("localhost", 7, a("0.0.0.0:1"), RESOLVE_TIMEOUT).expect("localhost"),
            a("127.0.0.1:7")
        );
        let e = EndpointError {
            peer: "hq".into(),
            host: "hq.example".into(),
            cause: ResolveError::Timeout(RESOLVE_TIMEOUT),
        };
        assert_eq!(
            crate::error::Chain(&e).to_string(),
            "cannot resolve peer hq's endpoint hq.example: no answer within 10 s"
        );
    }
}
