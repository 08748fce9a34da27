//! Which transport carries a peer's messages: UDP datagrams, or the same
//! messages as records on a TCP connection ([`crate::wire::tcp`]).
//!
//! The protocol is the same on both: handshake, sessions, replay window and
//! keys do not know how their bytes travel. What differs is addressing. A
//! UDP peer is reached at its endpoint; a TCP peer over a connection, named
//! by the connection's remote address: the peer's endpoint when we
//! connected, or the address its own connection came from (the shell keeps
//! the connections and finds one by that address). Authentic TCP traffic
//! never moves the UDP endpoint, so a return to UDP finds it intact. TCP
//! peers are not fragmented (a record carries up to 64 KiB), and neither
//! path MTU nor uplink probing applies to them.
//!
//! **`auto`.** A peer starts on UDP. Handshakes that go unanswered for
//! [`SWITCH_AFTER`] while the peer has no session make the next attempts
//! use the other transport, and so on back and forth until one completes:
//! a site whose UDP is blocked comes up over TCP within about that time, and
//! a site that lost both keeps trying both. While up on TCP, one handshake
//! every [`UDP_RETRY`] is tried over UDP: when its response arrives, the
//! session it makes runs over UDP. Each side follows the transport of the
//! authentic packets it receives, so the other site moves too.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::tunnel::Transmit;

/// How long handshakes over one transport go unanswered before `auto`
/// tries the other.
pub const SWITCH_AFTER: Duration = Duration::from_secs(5);
/// While `auto` runs over TCP, how often a handshake is tried over UDP.
pub const UDP_RETRY: Duration = Duration::from_secs(20);

/// `tunnel.transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportMode {
    /// UDP only.
    #[default]
    Udp,
    /// TCP only.
    Tcp,
    /// UDP, falling back to TCP while UDP handshakes fail.
    Auto,
}

impl TransportMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportMode::Udp => "udp",
            TransportMode::Tcp => "tcp",
            TransportMode::Auto => "auto",
        }
    }

    /// Whether the site accepts TCP connections.
    pub fn listens_on_tcp(self) -> bool {
        self != TransportMode::Udp
    }
}

/// Where one message goes: a datagram to `to` (from local address `src`
/// when known), or a record on the TCP connection named `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dest {
    pub(super) to: SocketAddr,
    pub(super) src: Option<IpAddr>,
    pub(super) stream: bool,
}

impl Dest {
    /// The buffer to write the message into.
    pub(super) fn buffer<'t, T: Transmit + ?Sized>(&self, tx: &'t mut T) -> &'t mut [u8] {
        if self.stream {
            tx.stream_buffer()
        } else {
            tx.buffer()
        }
    }

    /// The first `len` bytes of the last buffer are the message.
    pub(super) fn commit<T: Transmit + ?Sized>(&self, tx: &mut T, len: usize) {
        if self.stream {
            tx.commit_stream(len, self.to);
        } else {
            tx.commit_from(len, self.to, self.src);
        }
    }
}

/// One peer's transport state.
#[derive(Debug, Clone)]
pub(super) struct PeerTransport {
    mode: TransportMode,
    /// What the peer's messages use now (the transport of its last
    /// authentic message).
    tcp: bool,
    /// What handshakes use while the peer has no session (`auto`).
    try_tcp: bool,
    /// The TCP connection the peer was last authentic on.
    stream: Option<SocketAddr>,
    /// Start of the current run of unanswered handshakes (`auto`).
    unanswered_since: Option<Instant>,
    /// The next UDP trial handshake while up on TCP (`auto`).
    next_trial: Option<Instant>,
    /// The next initiation is a UDP trial.
    trial: bool,
    /// The pending initiation is a UDP trial: not retried (over TCP that
    /// would only be a needless rekey).
    trial_in_flight: bool,
}

impl PeerTransport {
    pub(super) fn new(mode: TransportMode) -> Self {
        PeerTransport {
            mode,
            tcp: mode == TransportMode::Tcp,
            try_tcp: mode == TransportMode::Tcp,
            stream: None,
            unanswered_since: None,
            next_trial: None,
            trial: false,
            trial_in_flight: false,
        }
    }

    /// Whether the peer's messages go over TCP.
    pub(super) fn tcp(&self) -> bool {
        self.tcp
    }

    /// The TCP connection the peer was last authentic on.
    pub(super) fn stream(&self) -> Option<SocketAddr> {
        self.stream
    }

    /// A new `tunnel.transport` (a reload); `true` if the peer's transport
    /// changed (its session must be renewed over the new one).
    pub(super) fn set_mode(&mut self, mode: TransportMode) -> bool {
        if mode == self.mode {
            return false;
        }
        let was = self.tcp;
        let tcp = match mode {
            TransportMode::Udp => false,
            TransportMode::Tcp => true,
            TransportMode::Auto => was,
        };
        *self = PeerTransport {
            stream: self.stream,
            tcp,
            try_tcp: tcp,
            ..PeerTransport::new(mode)
        };
        self.tcp != was
    }

    /// Where a message to the peer goes, given its UDP `endpoint` and the
    /// local address it reaches us at.
    pub(super) fn dest(&self, endpoint: Option<SocketAddr>, local: Option<IpAddr>) -> Option<Dest> {
        if self.tcp {
            let to = self.stream.or(endpoint)?;
            Some(Dest {
                to,
                src: None,
                stream: true,
            })
        } else {
            Some(Dest {
                to: endpoint?,
                src: local,
                stream: false,
            })
        }
    }

    /// The transport of a handshake initiation sent at `now` (`up`: the
    /// peer has a live session). Under `auto`, a run of unanswered
    /// handshakes longer than [`SWITCH_AFTER`] switches transports.
    pub(super) fn for_initiation(&mut self, up: bool, now: Instant) -> bool {
        if self.mode != TransportMode::Auto {
            return self.tcp;
        }
        if up {
            self.trial_in_flight = std::mem::take(&mut self.trial) && self.tcp;
            return self.tcp && !self.trial_in_flight;
        }
        self.trial_in_flight = false;
        let since = *self.unanswered_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= SWITCH_AFTER {
            self.try_tcp = !self.try_tcp;
            self.unanswered_since = Some(now);
        }
        self.try_tcp
    }

    /// An authentic message arrived, over TCP (on the connection `from`)
    /// or UDP. `true` if the peer's transport changed.
    pub(super) fn on_authentic(&mut self, tcp: bool, from: SocketAddr, now: Instant) -> bool {
        if tcp {
            self.stream = Some(from);
        }
        if self.mode != TransportMode::Auto || self.tcp == tcp {
            return false;
        }
        self.tcp = tcp;
        self.next_trial = tcp.then_some(now + UDP_RETRY);
        true
    }

    /// A session was set up.
    pub(super) fn on_session(&mut self, now: Instant) {
        self.unanswered_since = None;
        self.try_tcp = self.tcp;
        if self.mode == TransportMode::Auto && self.tcp {
            self.next_trial.get_or_insert(now + UDP_RETRY);
        }
    }

    /// The connection `conn` closed.
    pub(super) fn forget_stream(&mut self, conn: SocketAddr) {
        if self.stream == Some(conn) {
            self.stream = None;
        }
    }

    /// The peer went silent: its connection is presumed gone.
    pub(super) fn on_down(&mut self) {
        self.stream = None;
        self.unanswered_since = None;
        self.next_trial = None;
        self.trial = false;
        self.trial_in_flight = false;
    }

    /// When a UDP trial handshake is due (`auto`, up on TCP).
    pub(super) fn deadline(&self, up: bool) -> Option<Instant> {
        self.next_trial.filter(|_| up && self.tcp)
    }

    /// Whether the pending initiation was a UDP trial (and forgets it): its
    /// retransmission is due, so UDP still does not work.
    pub(super) fn take_trial_in_flight(&mut self) -> bool {
        std::mem::take(&mut self.trial_in_flight)
    }

    /// The trial deadline passed: the next initiation goes over UDP.
    pub(super) fn on_timeout(&mut self, now: Instant) {
        self.trial = true;
        self.next_trial = Some(now + UDP_RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn auto_switches_after_a_run_of_unanswered_handshakes_and_back() {
        let t0 = Instant::now();
        let mut t = PeerTransport::new(TransportMode::Auto);
        assert!(!t.for_initiation(false, t0));
        assert!(!t.for_initiation(false, t0 + Duration::from_secs(3)));
        assert!(
            t.for_initiation(false, t0 + SWITCH_AFTER),
            "UDP failed: TCP"
        );
        assert!(t.for_initiation(false, t0 + SWITCH_AFTER + Duration::from_secs(1)));
        assert!(
            !t.for_initiation(false, t0 + SWITCH_AFTER * 2),
            "TCP failed too: UDP again"
        );
    }

    #[test]
    fn auto_follows_authentic_traffic_and_tries_udp_while_on_tcp() {
        let t0 = Instant::now();
        let conn = addr("198.18.0.2:40000");
        let mut t = PeerTransport::new(TransportMode::Auto);
        assert!(t.on_authentic(true, conn, t0));
        t.on_session(t0);
        assert!(t.tcp());
        assert_eq!(
            t.dest(Some(addr("198.18.0.2:51901")), None),
            Some(Dest {
                to: conn,
                src: None,
                stream: true
            }),
            "answers go on the connection the peer used"
        );
        assert_eq!(t.deadline(true), Some(t0 + UDP_RETRY));
        assert!(
            t.for_initiation(true, t0 + Duration::from_secs(1)),
            "a rekey stays on TCP"
        );
        t.on_timeout(t0 + UDP_RETRY);
        assert!(
            !t.for_initiation(true, t0 + UDP_RETRY),
            "the trial goes over UDP"
        );
        assert!(t.for_initiation(true, t0 + UDP_RETRY), "only one");
        assert!(t.on_authentic(false, addr("198.18.0.2:51901"), t0 + UDP_RETRY));
        assert!(!t.tcp());
        assert_eq!(t.deadline(true), None);
    }

    #[test]
    fn fixed_modes_never_switch() {
        let t0 = Instant::now();
        let mut udp = PeerTransport::new(TransportMode::Udp);
        let mut tcp = PeerTransport::new(TransportMode::Tcp);
        for s in [0, 10, 100] {
            let at = t0 + Duration::from_secs(s);
            assert!(!udp.for_initiation(false, at));
            assert!(tcp.for_initiation(false, at));
        }
        assert!(!udp.on_authentic(true, addr("198.18.0.2:1"), t0));
        assert!(!tcp.on_authentic(false, addr("198.18.0.2:2"), t0));
        assert!(!tcp.on_authentic(true, addr("198.18.0.2:1"), t0));
        assert!(tcp.tcp() && !udp.tcp());
        assert_eq!(
            tcp.dest(None, None).map(|d| d.to),
            Some(addr("198.18.0.2:1"))
        );
        tcp.on_down();
        assert_eq!(
            tcp.dest(None, None),
            None,
            "a silent peer's connection is gone"
        );
    }
}
