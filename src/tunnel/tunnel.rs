//! The tunnel endpoint of one link: the [`Tunnel`] type, its settings and
//! counters (its events are in [`super::event`]), the two traits it reaches the outside through
//! ([`Transmit`], [`Entropy`]), construction, status queries, and the
//! helpers for randomness, session indices and handshake timestamps.
//!
//! [`Tunnel`] is driven entirely by its caller: frames to send
//! ([`Tunnel::send_frame`]), datagrams and TCP records received
//! ([`Tunnel::handle_datagram`], [`Tunnel::handle_record`]), and the
//! passage of time ([`Tunnel::poll_timeout`] / [`Tunnel::handle_timeout`]).
//! It writes messages through a [`Transmit`] and reports session events
//! through [`Tunnel::poll_event`]. It never reads the clock, never sleeps and
//! owns no socket. Its other methods live next door, by what they do:
//! [`super::dispatch`] (frames out, messages in), [`super::exchange`] (the
//! handshake), [`super::timers`] (deadlines and the timer loop),
//! [`super::reconfigure`] (reloads and what the shell reports) and
//! [`super::peer`] (per-peer state and session logic).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

pub use super::event::{ClaimedName, Event, HandshakeRefusal};
use super::exchange::{CookieJar, DH_BURST, DH_PER_SEC, UNAUTH_PER_BLOCK, UNAUTH_PER_LINK};
use super::keys::IncomingKeys;
use super::peer::{Peer, PeerParams, PeerSnapshot, PeerState, PeerStats};
use super::pmtu::PathMtu;
use super::ratelimit::{Prefix, RateLimiter, TokenBucket};
use super::refusals::RefusalBudget;
use super::timers::Deadlines;
use super::transport::TransportMode;

/// Index of a peer, in configuration order.
pub use crate::peer_id::PeerId;

/// Where the tunnel writes datagrams. Implemented by the UDP shell (a batch
/// of preallocated buffers for `sendmmsg`) and by tests.
pub trait Transmit {
    /// A buffer to write the next datagram into (at least `wan_mtu` bytes;
    /// shorter buffers make the tunnel drop what does not fit).
    fn buffer(&mut self) -> &mut [u8];
    /// The first `len` bytes of the last [`buffer`](Self::buffer) are a
    /// datagram for `to`.
    fn commit(&mut self, len: usize, to: SocketAddr);
    /// Like [`commit`](Self::commit), sent from the local address `from`
    /// when there is one (the address the peer reached us at: a
    /// multihomed site answers from the address that was used). A shell
    /// that cannot choose the source ignores it.
    fn commit_from(&mut self, len: usize, to: SocketAddr, from: Option<IpAddr>) {
        let _ = from;
        self.commit(len, to);
    }
    /// A buffer for the next message to a TCP peer: room for the largest
    /// record's message ([`crate::wire::tcp::MAX_MESSAGE`]) when the shell
    /// carries TCP; by default the datagram buffer.
    fn stream_buffer(&mut self) -> &mut [u8] {
        self.buffer()
    }
    /// The first `len` bytes of the last
    /// [`stream_buffer`](Self::stream_buffer) are a message for the TCP
    /// connection named `to` (its remote address; the shell connects to
    /// `to` if it has no such connection). By default a datagram.
    fn commit_stream(&mut self, len: usize, to: SocketAddr) {
        self.commit(len, to);
    }
}

/// Source of randomness for ephemeral keys, session indices and jitter.
pub trait Entropy: Send {
    /// Fills `buf` with cryptographically secure random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// The operating system's random source.
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        // Without randomness there are no safe keys; there is nothing
        // sensible to continue with.
        getrandom::fill(buf).expect("the operating system's random source must work");
    }
}

/// Tunnel settings.
#[derive(Debug, Clone)]
pub struct TunnelParams {
    /// This site's link name; sent (encrypted) in initiations so a responder
    /// with several peers can tell who is calling.
    pub local_name: String,
    /// The peers, in configuration order ([`PeerId`] is the position).
    pub peers: Vec<PeerParams>,
    /// Idle interval after which a keepalive is sent; 3 of them without
    /// hearing from a peer mark it down.
    pub keepalive: Duration,
    /// Session lifetime before a rekey.
    pub rekey_after: Duration,
    /// Packets sent under one key before a rekey.
    pub rekey_after_packets: u64,
    /// Largest outer IP packet: pinned, or with `auto_mtu` the ceiling of
    /// the search until the shell reports the WAN side's own limit
    /// ([`Tunnel::set_path_ceiling`]).
    pub wan_mtu: usize,
    /// Discover each peer's path MTU by probing (`wan_mtu = "auto"`).
    pub auto_mtu: bool,
    /// How messages travel (`tunnel.transport`).
    pub transport: TransportMode,
    /// Largest Ethernet frame carried (interface MTU + 18).
    pub max_frame: usize,
}

/// Tunnel-wide counters of things dropped or done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams that did not authenticate (bad MAC or tag, or an
    /// initiation whose key hint names no key of this link).
    pub rx_auth_failed: u64,
    /// Of `rx_auth_failed`, the initiations whose key hint names no key of
    /// this link: another key, an initiator that calls this site by
    /// another name, or garbage.
    pub rx_unknown_key: u64,
    /// Data or responses for a session (index) we do not have: late packets
    /// of a replaced or expired session, a peer that restarted, or forgeries.
    pub rx_unknown_session: u64,
    /// Authentic-looking datagrams refused as replays (data or initiation).
    pub rx_replayed: u64,
    /// Datagrams that are not a tunnel message at all.
    pub rx_malformed: u64,
    /// Frames sent in fragments.
    pub fragmented: u64,
    /// Frames put back together from fragments.
    pub reassembled: u64,
    /// Handshake messages dropped by the per-source rate limit.
    pub handshake_rate_limited: u64,
    /// Incomplete fragmented frames dropped (timeout or eviction).
    pub reassembly_dropped: u64,
    /// Frames dropped because no session could carry them.
    pub tx_dropped: u64,
    /// Initiations whose key is known but whose name is not a peer of that
    /// key (another site's name, or a name that does not match the config).
    pub rx_unknown_peer: u64,
    /// Initiations of an older protocol version, 1 or 2 (a peer that needs
    /// an upgrade).
    pub rx_old_version: u64,
    /// Messages for one peer that arrived on a TCP connection bound to
    /// another (its first authentic record proved that one).
    pub rx_other_stream: u64,
    /// Cookie replies sent because we were under load.
    pub cookie_replies: u64,
}

/// What [`Tunnel::handle_datagram`] produced for the local side.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A frame from `peer`, to be written to the TAP.
    Frame {
        /// The sender.
        peer: PeerId,
        /// The Ethernet frame.
        frame: &'a [u8],
    },
    /// Nothing for the local side (handshake, keepalive, fragment, drop).
    Nothing,
}

/// What became of a frame given to [`Tunnel::send_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Written as one or more datagrams.
    Sent,
    /// Held until the session is up.
    Queued,
    /// Dropped (no endpoint, queue full, too large); counted.
    Dropped,
}

/// The tunnel endpoint of one link: all its peers and sessions.
pub struct Tunnel {
    pub(super) params: TunnelParams,
    /// Every distinct key of the link, to find an initiation's.
    pub(super) incoming: IncomingKeys,
    pub(super) cookies: CookieJar,
    pub(super) refusals: RefusalBudget,
    pub(super) peers: Vec<Peer>,
    pub(super) index: HashMap<u32, PeerId>,
    /// X25519 work for initiations whose source a cookie proved, per
    /// source (IPv4 address, IPv6 /64).
    pub(super) limiter: RateLimiter,
    /// Unauthenticated work on initiations (key lookups that found a key,
    /// MAC and cookie checks): per source block (IPv4 /24, IPv6 /56), past
    /// which a source must prove its address; and for the whole link.
    pub(super) unauth_block: RateLimiter,
    pub(super) unauth_total: TokenBucket,
    /// First-MAC checks done on initiations (how much work garbage costs;
    /// read by tests and benchmarks through [`Tunnel::mac1_checks`]).
    pub(super) mac1_checks: u64,
    /// Responses whose DH is left to the shell, and whether to leave them
    /// (`deferred.rs`).
    pub(super) jobs: Vec<super::deferred::HandshakeJob>,
    pub(super) defer_dh: bool,
    pub(super) entropy: Box<dyn Entropy>,
    pub(super) clock_anchor: (Instant, Duration),
    /// The last handshake timestamp we wrote: ours never go backwards, even
    /// when the wall clock is set back.
    pub(super) last_stamp: Duration,
    /// Random id put in our initiations: one that comes back is a reflection.
    pub(super) instance: [u8; 8],
    pub(super) counters: Counters,
    pub(super) events: VecDeque<Event>,
    /// The local address the datagram being handled arrived at, if the
    /// shell knows it ([`Tunnel::handle_datagram_at`]).
    pub(super) rx_local: Option<IpAddr>,
    /// The message being handled came over TCP ([`Tunnel::handle_record`]).
    pub(super) rx_tcp: bool,
    /// The peer the TCP connection of the message at hand is bound to.
    pub(super) rx_bound: Option<PeerId>,
    /// The peer the message being handled proved to come from, if it did.
    pub(super) rx_authentic: Option<PeerId>,
    /// Frames start with a virtio-net header ([`Tunnel::set_offload_header`]).
    pub(super) offload_header: bool,
    /// The standby box of a pair: silent (`standby.rs`).
    pub(super) standby: bool,
    /// Each peer's next timer, kept for [`Tunnel::poll_timeout`].
    pub(super) deadlines: std::cell::RefCell<Deadlines>,
}

impl Tunnel {
    /// A tunnel for `params` (each peer with its keys). `now` and `wall`
    /// anchor the wall clock used for handshake timestamps (wall time =
    /// `wall` + (later instant − `now`); see
    /// [`set_wall_clock`](Self::set_wall_clock)). Peers with an endpoint are
    /// contacted at the first [`handle_timeout`](Self::handle_timeout).
    pub fn new(
        params: TunnelParams,
        entropy: Box<dyn Entropy>,
        now: Instant,
        wall: SystemTime,
    ) -> Self {
        let peers = params
            .peers
            .iter()
            .map(|p| {
                let pmtu = new_pmtu(&params);
                let mode = params.transport;
                Peer::new(p, &params.local_name, params.max_frame, pmtu, mode, now)
            })
            .collect();
        let incoming = IncomingKeys::new(&params.local_name, &params.peers);
        let mut entropy = entropy;
        let mut instance = [0u8; 8];
        entropy.fill(&mut instance);
        let mut limiter_key = [0u8; 16];
        entropy.fill(&mut limiter_key);
        let mut cookie_secret = [0u8; 32];
        entropy.fill(&mut cookie_secret);
        let cookies = CookieJar::new(cookie_secret, now);
        zeroize::Zeroize::zeroize(&mut cookie_secret);
        Tunnel {
            instance,
            incoming,
            cookies,
            refusals: RefusalBudget::new(),
            peers,
            index: HashMap::new(),
            limiter: RateLimiter::new(DH_PER_SEC, DH_BURST, limiter_key),
            unauth_block: RateLimiter::per(
                Prefix::Block,
                UNAUTH_PER_BLOCK,
                2 * UNAUTH_PER_BLOCK,
                limiter_key,
            ),
            unauth_total: TokenBucket::new(UNAUTH_PER_LINK, UNAUTH_PER_LINK),
            mac1_checks: 0,
            jobs: Vec::with_capacity(super::deferred::MAX_JOBS),
            defer_dh: false,
            entropy,
            clock_anchor: (
                now,
                wall.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default(),
            ),
            last_stamp: Duration::ZERO,
            counters: Counters::default(),
            events: VecDeque::new(),
            rx_local: None,
            rx_tcp: false,
            rx_bound: None,
            rx_authentic: None,
            offload_header: false,
            deadlines: std::cell::RefCell::new(Deadlines::all_stale()),
            standby: false,
            params,
        }
    }

    /// The largest outer IP packet the tunnel sends.
    pub fn wan_mtu(&self) -> usize {
        self.params.wan_mtu
    }

    /// Session lifetime before a rekey (`tunnel.rekey_after`).
    pub fn rekey_after(&self) -> Duration {
        self.params.rekey_after
    }

    /// Frames handed to [`send_frame`](Self::send_frame) and returned as
    /// [`Incoming::Frame`] start with a virtio-net header (the TAP's
    /// offloads): per-peer `tx_frames`/`rx_frames` then count the frames a
    /// segmentation batch carries, and the bytes leave the header out. The
    /// frames themselves are carried as they are either way.
    pub fn set_offload_header(&mut self, on: bool) {
        self.offload_header = on;
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Status of one peer.
    pub fn peer_status(&self, id: PeerId) -> Option<PeerSnapshot> {
        self.peers
            .get(id.index())
            .filter(|p| !p.removed)
            .map(|p| PeerSnapshot {
                name: p.name.clone(),
                endpoint: p.dest().map(|d| d.to).or(p.endpoint),
                endpoints: p.uplinks.configured().to_vec(),
                state: p.state,
                last_handshake: p.last_handshake,
                stats: p.stats,
                path_mtu: if p.transport.tcp() {
                    crate::wire::tcp::MAX_MESSAGE
                } else {
                    p.pmtu.current()
                },
                tcp: p.transport.tcp(),
                last_attempt: p.unanswered.last_attempt,
                last_heard: p.last_heard,
                unanswered: p.unanswered.count,
                unanswered_since: p.unanswered.since,
                refused: p.refused,
                last_refusal: p.last_refusal,
            })
    }

    /// Traffic counters of one peer (cheap, for the hot path's bookkeeping).
    pub fn peer_stats(&self, id: PeerId) -> PeerStats {
        self.peers
            .get(id.index())
            .map(|p| p.stats)
            .unwrap_or_default()
    }

    /// Tunnel-wide counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// How many first-MAC checks initiations have cost this tunnel so far:
    /// the unauthenticated work they made it do (at most one per initiation
    /// that carries a known key hint, whatever the number of peers).
    pub fn mac1_checks(&self) -> u64 {
        self.mac1_checks
    }

    /// Tells the tunnel the wall-clock time at `now`. Call it whenever the
    /// shell reads the clock (once per batch is plenty): handshake timestamps
    /// follow the wall clock, so a box that booted before its clock was set
    /// catches up as soon as NTP does (a responder refuses initiations older
    /// than the last it accepted). Timestamps never go backwards.
    pub fn set_wall_clock(&mut self, now: Instant, wall: SystemTime) {
        self.clock_anchor = (
            now,
            wall.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
    }

    /// The peer called `name`, if it is configured.
    pub fn peer_id(&self, name: &str) -> Option<PeerId> {
        self.peers
            .iter()
            .position(|p| !p.removed && p.name == name)
            .map(PeerId::new)
    }

    /// The connection state of peer `id` (cheaper than a status snapshot).
    pub fn peer_state(&self, id: PeerId) -> Option<PeerState> {
        self.peers
            .get(id.index())
            .filter(|p| !p.removed)
            .map(|p| p.state)
    }

    /// Next session event, if any. Call after each batch of work.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether [`poll_event`](Self::poll_event) has something.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    pub(super) fn random_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.entropy.fill(&mut b);
        u32::from_le_bytes(b)
    }

    pub(super) fn new_index(&mut self, peer: PeerId) -> u32 {
        loop {
            let i = self.random_u32();
            if i != 0 && !self.index.contains_key(&i) {
                self.index.insert(i, peer);
                return i;
            }
        }
    }

    pub(super) fn wall_timestamp(&mut self, now: Instant) -> [u8; 12] {
        let t = self.clock_anchor.1 + now.saturating_duration_since(self.clock_anchor.0);
        let t = t.max(self.last_stamp + Duration::from_nanos(1));
        self.last_stamp = t;
        let mut out = [0u8; 12];
        // TAI64N label: 2^62 + seconds, then nanoseconds; big-endian so that
        // byte order is time order.
        out[..8].copy_from_slice(&((1u64 << 62) + t.as_secs()).to_be_bytes());
        out[8..].copy_from_slice(&t.subsec_nanos().to_be_bytes());
        out
    }
}

/// A peer's path MTU state for `params`.
pub(super) fn new_pmtu(params: &TunnelParams) -> PathMtu {
    if params.auto_mtu {
        PathMtu::auto(params.wan_mtu)
    } else {
        PathMtu::fixed(params.wan_mtu)
    }
}
