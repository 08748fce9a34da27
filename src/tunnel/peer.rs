//! Per-peer state and session logic: a peer's sessions (current, next,
//! older), its pending handshake, timers, frame queue and reassembly, and the
//! [`Tunnel`] methods that act on one peer: installing a session, sealing
//! frames, keepalives and probes, moving the endpoint. Starting a handshake
//! is in [`super::exchange`].
//!
//! The endpoint-wide dispatch (which peer and session a datagram belongs to)
//! is in [`super::dispatch`].

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::crypto::MAC_LEN;
use super::exchange::{DH_BURST, DH_PER_SEC};
use super::fragment::{self, FragHeader, Reassembler};
use super::handshake::{PendingInitiation, SessionKeys};
use super::keys::{KeySlot, PresharedKey};
use super::paths::Uplinks;
use super::pmtu::PathMtu;
use super::ratelimit::TokenBucket;
use super::replay::ReplayWindow;
use super::timers::Unanswered;
use super::transport::{Dest, PeerTransport, TransportMode};
use super::tunnel::{Event, HandshakeRefusal, PeerId, Transmit, Tunnel};
use crate::wire::tunnel::{MessageType, TAG_LEN, emit_data_header, field, probe};

/// Bytes a data message adds to a frame: 16-byte header + 16-byte tag.
pub const DATA_OVERHEAD: usize = field::DATA_HEADER_LEN + TAG_LEN;
/// Outer IPv4 + UDP header bytes.
pub const IPV4_UDP_OVERHEAD: usize = 28;
/// Outer IPv6 + UDP header bytes.
pub const IPV6_UDP_OVERHEAD: usize = 48;

/// A rekey is due after this many packets under one key, whatever
/// `rekey_after_packets` asks for.
pub(super) const REKEY_AFTER_MESSAGES: u64 = 1 << 30;
/// A session neither sends nor accepts a packet with a counter this high.
/// The counter is the AES-GCM nonce, so it never repeats; the cap keeps the
/// number of messages under one key far below the 2^32 that AES-GCM's
/// usage limits (NIST SP 800-38D) are written around, whatever the peer or
/// the configuration does. At a million packets per second the gap between
/// the rekey and this cap is 18 minutes.
pub(super) const REJECT_AFTER_MESSAGES: u64 = 1 << 31;
/// Extra life of a session after it should have been replaced, so frames in
/// flight under the previous key are still accepted.
const REJECT_GRACE: Duration = Duration::from_secs(60);
/// The responder of a session waits this much longer than the initiator
/// before starting a rekey itself, so both ends rarely start at once.
pub(super) const RESPONDER_REKEY_DELAY: Duration = Duration::from_secs(15);
/// Handshake retransmission: 1 s, doubling, capped.
pub(super) const RETRY_BASE: Duration = Duration::from_secs(1);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(16);
/// Replaced sessions kept for receiving per peer.
const OLDER_SESSIONS: usize = 3;
/// Frames held per peer while its first session is being set up.
const QUEUE_FRAMES: usize = 32;
/// Reassembly: slots per peer and time limit.
const REASSEMBLY_SLOTS: usize = 16;
const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Where [`Tunnel::send_probe`] sends, and from which local address.
#[derive(Debug, Clone, Copy)]
pub(super) enum ProbeDest {
    /// The endpoint in use, from the peer's local address.
    Endpoint,
    /// Another address of the peer, from the peer's local address.
    To(SocketAddr),
    /// An answer to the datagram being handled: back to its source, from
    /// the address it arrived at.
    Reply(SocketAddr),
}

/// What the tunnel needs to know about a peer.
#[derive(Debug, Clone)]
pub struct PeerParams {
    /// The peer's name: the other site's link name (at most 31 bytes). It
    /// is bound into every handshake, so it must be exactly what that site
    /// calls itself.
    pub name: String,
    /// The peer's pre-shared keys: one, or two during a rotation (the first
    /// initiates, either is accepted).
    pub keys: Vec<PresharedKey>,
    /// Where to reach it: its site's uplinks in order of preference (the
    /// first is used first); empty waits to be contacted.
    pub endpoints: Vec<SocketAddr>,
}

/// State of a peer as reported in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// No session was ever established.
    Connecting,
    /// A session is established and the peer was heard from recently.
    Up,
    /// Silent for three keepalive intervals; re-handshaking.
    Down,
}

impl PeerState {
    /// The status JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Connecting => "connecting",
            PeerState::Up => "up",
            PeerState::Down => "down",
        }
    }
}

/// Per-peer traffic counters (frames, not keepalives or handshakes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Frames sent to the peer.
    pub tx_frames: u64,
    /// Frames received from the peer.
    pub rx_frames: u64,
    /// Frame bytes sent.
    pub tx_bytes: u64,
    /// Frame bytes received.
    pub rx_bytes: u64,
    /// Completed handshakes (rekeys included).
    pub handshakes: u64,
    /// Endpoint moves: an authenticated packet from a new address replaced
    /// a known endpoint, or a failover between the peer's configured
    /// addresses (a first contact is not counted).
    pub endpoint_changes: u64,
}

/// A snapshot of one peer's state, for status reports.
#[derive(Debug, Clone)]
pub struct PeerSnapshot {
    /// Configured name.
    pub name: String,
    /// Current endpoint: the address in use.
    pub endpoint: Option<SocketAddr>,
    /// The configured endpoints in order of preference (`None`: a host
    /// name not resolved yet).
    pub endpoints: Vec<Option<SocketAddr>>,
    /// Connection state.
    pub state: PeerState,
    /// When the last handshake completed.
    pub last_handshake: Option<Instant>,
    /// Traffic counters.
    pub stats: PeerStats,
    /// The outer packet size in use (discovered or pinned `wan_mtu`; the
    /// largest record's message over TCP).
    pub path_mtu: usize,
    /// Its messages travel over TCP.
    pub tcp: bool,
    /// When we last sent it a handshake initiation.
    pub last_attempt: Option<Instant>,
    /// When it was last heard from: anything authentic (a response, an
    /// initiation accepted, data, keepalives).
    pub last_heard: Option<Instant>,
    /// Initiations sent since it was last heard from.
    pub unanswered: u32,
    /// When the first of those was sent.
    pub unanswered_since: Option<Instant>,
    /// Handshake messages refused that concerned this peer (its key with
    /// a name that is not its own, replays, budgets).
    pub refused: u64,
    /// The last of those: when, from where, why.
    pub last_refusal: Option<(Instant, SocketAddr, HandshakeRefusal)>,
}

pub(super) struct Session {
    pub(super) local_index: u32,
    pub(super) remote_index: u32,
    pub(super) keys: SessionKeys,
    pub(super) send_counter: u64,
    pub(super) replay: ReplayWindow,
    pub(super) created: Instant,
}

#[derive(Default)]
pub(super) struct Timers {
    pub(super) retransmit: Option<Instant>,
    pub(super) rekey: Option<Instant>,
    pub(super) keepalive: Option<Instant>,
    pub(super) dead: Option<Instant>,
}

pub(super) struct FrameQueue {
    pub(super) bufs: Vec<Vec<u8>>,
    pub(super) lens: VecDeque<(usize, usize)>, // (buffer, length)
}

impl FrameQueue {
    pub(super) fn push(&mut self, frame: &[u8]) -> bool {
        if self.lens.len() >= QUEUE_FRAMES {
            return false;
        }
        let slot = (0..QUEUE_FRAMES)
            .find(|i| !self.lens.iter().any(|(b, _)| b == i))
            .expect("fewer than QUEUE_FRAMES in use");
        while self.bufs.len() <= slot {
            self.bufs.push(Vec::new());
        }
        let b = &mut self.bufs[slot];
        b.clear();
        b.extend_from_slice(frame);
        self.lens.push_back((slot, frame.len()));
        true
    }
}

pub(super) struct Peer {
    /// The slot's peer was removed by a reload: it has no keys, no
    /// endpoint and no sessions, takes no frames and is not reported. The
    /// slot is reused by the next peer added, so [`PeerId`]s stay stable.
    pub(super) removed: bool,
    pub(super) name: String,
    /// The address in use.
    pub(super) endpoint: Option<SocketAddr>,
    /// Our local address the peer's last authenticated data packet arrived
    /// at (listening on a wildcard address): where we send from.
    pub(super) local: Option<IpAddr>,
    /// The configured addresses and the choice among them.
    pub(super) uplinks: Uplinks,
    pub(super) current: Option<Session>,
    /// Sessions replaced by a newer one, still accepted for receiving until
    /// they expire: a rekey keeps one here, a handshake collision two.
    pub(super) older: [Option<Session>; OLDER_SESSIONS],
    pub(super) next: Option<Session>,
    pub(super) pending: Option<PendingInitiation>,
    /// Which of `keys` the pending initiation used.
    pub(super) pending_slot: usize,
    /// The peer's keys: the first initiates, any is accepted until the
    /// first has worked with this peer (`first_key_worked`).
    pub(super) keys: Vec<KeySlot>,
    /// A handshake under the first key completed with this peer since the
    /// keys were set: the others (a rotation's old key) are retired for it,
    /// neither used nor accepted, so a holder of the old key cannot keep
    /// the two sites on it by dropping new-key initiations.
    pub(super) first_key_worked: bool,
    /// The last cookie the peer gave us (when it was under load), and when.
    pub(super) cookie: Option<([u8; MAC_LEN], Instant)>,
    /// The X25519 work this peer's handshakes may cost us when no cookie
    /// round trip proved their source (`exchange.rs`).
    pub(super) dh_budget: TokenBucket,
    pub(super) attempts: u32,
    pub(super) last_timestamp: Option<[u8; 12]>,
    pub(super) state: PeerState,
    pub(super) last_handshake: Option<Instant>,
    pub(super) stats: PeerStats,
    pub(super) timers: Timers,
    pub(super) reassembly: Reassembler,
    pub(super) queue: FrameQueue,
    pub(super) next_frag_id: u32,
    /// The outer packet size to this peer (discovered or pinned).
    pub(super) pmtu: PathMtu,
    /// UDP or TCP, and the TCP connection in use.
    pub(super) transport: PeerTransport,
    /// Our initiations it left unanswered (`timers.rs`).
    pub(super) unanswered: Unanswered,
    /// When anything authentic last came from it.
    pub(super) last_heard: Option<Instant>,
    /// Handshake messages refused that concerned it, and the last one.
    pub(super) refused: u64,
    pub(super) last_refusal: Option<(Instant, SocketAddr, HandshakeRefusal)>,
}

impl Peer {
    pub(super) fn new(
        p: &PeerParams,
        local_name: &str,
        max_frame: usize,
        pmtu: PathMtu,
        transport: TransportMode,
        now: Instant,
    ) -> Self {
        Peer {
            pmtu,
            transport: PeerTransport::new(transport),
            removed: false,
            keys: p
                .keys
                .iter()
                .map(|k| KeySlot::new(k, local_name, &p.name))
                .collect(),
            pending_slot: 0,
            first_key_worked: false,
            cookie: None,
            dh_budget: TokenBucket::new(DH_PER_SEC, DH_BURST),
            name: p.name.clone(),
            endpoint: p.endpoints.first().copied(),
            uplinks: Uplinks::new(&p.endpoints),
            local: None,
            current: None,
            older: Default::default(),
            next: None,
            pending: None,
            attempts: 0,
            last_timestamp: None,
            state: PeerState::Connecting,
            last_handshake: None,
            stats: PeerStats::default(),
            timers: Timers {
                rekey: p.endpoints.first().map(|_| now),
                ..Timers::default()
            },
            reassembly: Reassembler::new(REASSEMBLY_SLOTS, max_frame, REASSEMBLY_TIMEOUT, now),
            queue: FrameQueue {
                bufs: Vec::new(),
                lens: VecDeque::with_capacity(QUEUE_FRAMES),
            },
            next_frag_id: 0,
            unanswered: Unanswered::default(),
            last_heard: None,
            refused: 0,
            last_refusal: None,
        }
    }

    /// Where messages to the peer go now, if anywhere.
    pub(super) fn dest(&self) -> Option<Dest> {
        self.transport.dest(self.endpoint, self.local)
    }

    /// The session whose local index is `receiver`, if any (current, next
    /// or one of the older ones).
    pub(super) fn session_mut(&mut self, receiver: u32) -> Option<&mut Session> {
        std::iter::once(&mut self.current)
            .chain(std::iter::once(&mut self.next))
            .chain(self.older.iter_mut())
            .filter_map(Option::as_mut)
            .find(|s| s.local_index == receiver)
    }
}

impl Tunnel {
    pub(super) fn drop_session(index: &mut HashMap<u32, PeerId>, s: Option<Session>) {
        if let Some(s) = s {
            index.remove(&s.local_index);
        }
    }

    pub(super) fn reject_after(&self) -> Duration {
        self.params.rekey_after + RESPONDER_REKEY_DELAY + REJECT_GRACE
    }

    /// Seals `frame` on the current session of `id`; the caller checked that
    /// the session and endpoint exist.
    pub(super) fn transmit_frame<T: Transmit + ?Sized>(
        &mut self,
        id: PeerId,
        frame: &[u8],
        now: Instant,
        tx: &mut T,
    ) -> bool {
        let Some(dest) = self.peers[id].dest() else {
            return false;
        };
        let budget = self.frame_budget(id, dest.to);
        let rekey_packets = self.params.rekey_after_packets.min(REKEY_AFTER_MESSAGES);
        let keepalive = self.params.keepalive;
        let p = &mut self.peers[id];
        let Some(s) = p.current.as_mut() else {
            return false;
        };
        if frame.len() <= budget {
            if !seal_one(s, MessageType::Data, None, frame, dest, tx) {
                return false;
            }
        } else {
            let Some((count, size)) = fragment::plan(frame.len(), budget) else {
                return false;
            };
            let id_frag = p.next_frag_id;
            p.next_frag_id = p.next_frag_id.wrapping_add(1);
            for (i, chunk) in frame.chunks(usize::from(size)).enumerate() {
                let hdr = FragHeader {
                    id: id_frag,
                    index: i as u8,
                    count,
                    size,
                };
                if !seal_one(s, MessageType::Fragment, Some(hdr), chunk, dest, tx) {
                    return false;
                }
            }
            self.counters.fragmented += 1;
        }
        if s.send_counter >= rekey_packets && p.pending.is_none() {
            p.timers.rekey = Some(now);
        }
        super::dispatch::count_carried(
            &mut p.stats.tx_frames,
            &mut p.stats.tx_bytes,
            frame,
            self.offload_header,
        );
        p.timers.keepalive = Some(now + keepalive);
        if !dest.stream {
            p.uplinks.on_sent(now);
        }
        true
    }

    pub(super) fn send_keepalive<T: Transmit + ?Sized>(
        &mut self,
        id: PeerId,
        now: Instant,
        tx: &mut T,
    ) {
        let keepalive = self.params.keepalive;
        let p = &mut self.peers[id];
        let (Some(dest), Some(s)) = (p.transport.dest(p.endpoint, p.local), p.current.as_mut())
        else {
            return;
        };
        if s.send_counter < REJECT_AFTER_MESSAGES {
            seal_one(s, MessageType::Data, None, &[], dest, tx);
        }
        p.timers.keepalive = Some(now + keepalive);
    }

    /// Sends a probe (`kind` request, padded to `size` outer bytes) or an
    /// acknowledgement (`kind` ack, unpadded) on the current session of
    /// `id`. `false` if there is no session or it did not fit.
    pub(super) fn send_probe<T: Transmit + ?Sized>(
        &mut self,
        id: PeerId,
        kind: u8,
        probe_id: u32,
        size: usize,
        dest: ProbeDest,
        tx: &mut T,
    ) -> bool {
        let p = &mut self.peers[id];
        let (to, src, stream) = match dest {
            ProbeDest::Endpoint => (p.endpoint, p.local, false),
            ProbeDest::To(to) => (Some(to), p.local, false),
            // Probes of UDP paths come over UDP; answered the way they came.
            ProbeDest::Reply(to) => (Some(to), self.rx_local, self.rx_tcp),
        };
        let (Some(to), Some(s)) = (to, p.current.as_mut()) else {
            return false;
        };
        let dest = Dest { to, src, stream };
        let ip = if to.is_ipv4() {
            IPV4_UDP_OVERHEAD
        } else {
            IPV6_UDP_OVERHEAD
        };
        let body_len = if kind == probe::REQUEST {
            size.saturating_sub(ip + DATA_OVERHEAD).max(probe::LEN)
        } else {
            probe::LEN
        };
        let total = DATA_OVERHEAD + body_len;
        if s.send_counter >= REJECT_AFTER_MESSAGES || dest.buffer(tx).len() < total {
            return false;
        }
        let size_field = u16::try_from(size).unwrap_or(u16::MAX);
        let counter = s.send_counter;
        s.send_counter += 1;
        let buf = dest.buffer(tx);
        emit_data_header(buf, MessageType::Probe, s.remote_index, counter);
        let (hdr, rest) = buf.split_at_mut(field::DATA_HEADER_LEN);
        let (body, tail) = rest.split_at_mut(body_len);
        probe::emit(body, kind, probe_id, size_field);
        let tag = s.keys.send.seal(counter, hdr, body);
        tail[..TAG_LEN].copy_from_slice(&tag);
        dest.commit(tx, total);
        true
    }

    /// Something authentic came from peer `id`: it is the sender of the
    /// message being handled, and its silence (if reported) is over.
    pub(super) fn heard_from(&mut self, id: PeerId, now: Instant) {
        self.rx_authentic = Some(id);
        let p = &mut self.peers[id];
        p.last_heard = Some(now);
        if let Some(after) = p.unanswered.on_heard() {
            self.events.push_back(Event::Answered { peer: id, after });
        }
    }

    pub(super) fn move_endpoint(&mut self, id: PeerId, from: SocketAddr, now: Instant) {
        let p = &mut self.peers[id];
        if p.endpoint != Some(from) {
            if p.endpoint.is_some() {
                p.stats.endpoint_changes += 1;
            }
            self.events.push_back(Event::EndpointMoved {
                peer: id,
                from: p.endpoint,
                to: from,
            });
            p.endpoint = Some(from);
            p.uplinks.moved(Some(from), now);
            // Another path: its MTU is found again.
            if let Some(mtu) = p.pmtu.reset(now) {
                self.events.push_back(Event::PathMtuChanged {
                    peer: id,
                    mtu,
                    lost: false,
                });
            }
        }
    }

    /// Makes `session` the current one of `id` (the old current is kept for
    /// receiving until it expires).
    pub(super) fn install_session(
        &mut self,
        id: PeerId,
        session: Session,
        initiator: bool,
        now: Instant,
    ) {
        let rekey = self.params.rekey_after
            + if initiator {
                Duration::ZERO
            } else {
                RESPONDER_REKEY_DELAY
            };
        let dead = self.params.keepalive * 3;
        let keepalive = self.params.keepalive;
        // Up to an eighth of `rekey_after` early: never later than asked, and
        // a hub's spokes that came up together spread their rekeys out.
        let spread = (self.params.rekey_after.as_millis() / 8).clamp(1, u128::from(u32::MAX));
        let jitter = Duration::from_millis(u64::from(self.random_u32()) % spread as u64);
        let p = &mut self.peers[id];
        let had_session = p.current.is_some();
        if let Some(old) = p.current.replace(session) {
            // Keep it for receiving; if every slot is taken, the oldest goes.
            let slot = p
                .older
                .iter()
                .position(Option::is_none)
                .or_else(|| {
                    (0..OLDER_SESSIONS).min_by_key(|&i| p.older[i].as_ref().map(|s| s.created))
                })
                .expect("OLDER_SESSIONS > 0");
            Self::drop_session(&mut self.index, p.older[slot].replace(old));
        }
        p.attempts = 0;
        p.uplinks.on_session();
        p.transport.on_session(now);
        p.pmtu.start(now);
        p.stats.handshakes += 1;
        p.last_handshake = Some(now);
        p.state = PeerState::Up;
        // Jitter also keeps two sides that both answered (a collision) from
        // colliding again at every rekey.
        p.timers.rekey = Some(now + rekey.saturating_sub(jitter));
        p.timers.dead = Some(now + dead);
        p.timers.keepalive.get_or_insert(now + keepalive);
        if let Some(endpoint) = p.dest().map(|d| d.to) {
            self.events.push_back(Event::HandshakeCompleted {
                peer: id,
                endpoint,
                rekey: had_session,
            });
        }
    }
}

/// Writes one data/fragment message sealed under `s` into the next buffer of
/// `tx`. `false` if the buffer is too small or the key is exhausted.
pub(super) fn seal_one<T: Transmit + ?Sized>(
    s: &mut Session,
    ty: MessageType,
    frag: Option<FragHeader>,
    data: &[u8],
    dest: Dest,
    tx: &mut T,
) -> bool {
    if s.send_counter >= REJECT_AFTER_MESSAGES {
        return false;
    }
    let frag_len = if frag.is_some() {
        fragment::HEADER_LEN
    } else {
        0
    };
    let body_len = frag_len + data.len();
    let total = DATA_OVERHEAD + body_len;
    let buf = dest.buffer(tx);
    if buf.len() < total {
        return false;
    }
    let counter = s.send_counter;
    s.send_counter += 1;
    emit_data_header(buf, ty, s.remote_index, counter);
    let (hdr, rest) = buf.split_at_mut(field::DATA_HEADER_LEN);
    if let Some(f) = frag {
        f.emit(&mut rest[..fragment::HEADER_LEN]);
    }
    rest[frag_len..body_len].copy_from_slice(data);
    let (body, tail) = rest.split_at_mut(body_len);
    let tag = s.keys.send.seal(counter, hdr, body);
    tail[..TAG_LEN].copy_from_slice(&tag);
    dest.commit(tx, total);
    true
}
