#![no_main]
//! Fuzz target: datagrams from the wire into a hub-and-spokes link.
//!
//! Six `Tunnel`s with deterministic entropy on one virtual clock: a hub and
//! four spokes, each spoke with its own name and key as the hub's peer:
//!
//! ```text
//! node 0  "hub"  198.18.0.2:51901  peers b [K_B] (endpoint known), c [K_C],
//!                                  d [K_S], e [K_S]  (d and e share a key)
//! node 1  "b"    198.18.0.1:51901  peer hub [K_B]
//! node 2  "c"    198.18.0.3:51901  peer hub [K_C]
//! node 3  "d"    198.18.0.4:51901  peer hub [K_S]
//! node 4  "e"    198.18.0.5:51901  peer hub [K_S]
//! node 5  "c"    198.18.0.66:51901 peer hub [K_C]: a thief with a copy of c's
//!                                  box; asleep (no timers) until an
//!                                  operation uses it
//! ```
//!
//! Every spoke completes a handshake in memory, then the fuzz input is read
//! as a little program of operations: raw datagrams, mutated or exact copies
//! of captured datagrams, deliveries of datagrams in flight (in order, out of
//! order, to the wrong node, from a spoofed source, mutated on the way),
//! frames to send, virtual time passing (rekeys, keepalives, dead peers,
//! reassembly timeouts, cookie secret rotation), key changes
//! (`set_peer_keys`: rotations with two keys, shared keys, revocation, a
//! key nobody else has), restarts, wall-clock jumps, and floods of fresh
//! initiations from the thief (spoofed sources), charged to the thief's own
//! handshake budget (it holds c's key, so the hub takes them for c's); with
//! other spokes' handshakes they may put the hub under load, so it answers
//! with cookie replies and spokes that handshake meanwhile retry with the
//! cookie (mac2).
//!
//! Invariants checked on every datagram:
//! - nothing panics;
//! - everything a tunnel writes in answer to a datagram goes back to its
//!   source;
//! - at most one drop counter moves per datagram;
//! - a datagram that is not one the tunnels emitted (an initiation is
//!   compared without its mac2, which is not authenticated by the key)
//!   produces no output, no frame, no event other than a refusal report and
//!   no change of any peer's status, and is counted in exactly one drop
//!   counter (garbage never gets an answer: every reply needs the PSK);
//! - a cookie reply answers an initiation (one datagram of 52 bytes, counted
//!   in `cookie_replies`, no drop counted), and only from a tunnel that
//!   answered at least 50 initiations in the last 3 s (under load);
//! - every delivered frame is intact, delivered at most once in the whole
//!   world, and came from the node it is attributed to: a frame delivered
//!   at node R as its peer P was sent by a node whose name is P's name, to
//!   a peer named like R (only the thief shares a name, with c).
//!
//! Run from the repository root (stable toolchain: `RUSTC_BOOTSTRAP=1` lets
//! cargo-fuzz pass its `-Z` flags). The first corpus directory receives new
//! inputs, so give a scratch one to keep the committed seeds small:
//!
//! ```text
//! cargo install cargo-fuzz
//! mkdir -p /tmp/tunnel_datagram
//! RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none \
//!     tunnel_datagram /tmp/tunnel_datagram tests/fuzz/corpus/tunnel_datagram \
//!     -- -max_total_time=60
//! ```
//!
//! `TAPBRIDGE_FUZZ_TRACE=1` prints each node's counters after every input
//! (to see what a seed reaches).
//!
//! Input format. Each operation starts with one byte `op`. With bit 7 clear
//! it is one of the original two-node operations, acting on the pair (hub,
//! focus spoke; the focus is b until changed): bits 0..2 pick the
//! operation, bit 3 the side (0 = the hub, 1 = the focus spoke), bits 4..6
//! the source address of an injected datagram (0 = the other side of the
//! pair, 1 = 198.18.0.1:40000, 2 = 198.18.9.9:1234, 3 = [2001:2::9]:51901,
//! 4..7 = the other spokes, thief included). Seeds written for the
//! two-node version keep their meaning between b and the hub.
//!
//! ```text
//! 0 raw      len:u16le (mod 2049), bytes
//! 1 mutate   capture:u8, n:u8 (1..=8 edits of pos:u16le val:u8;
//!            val 0 truncates at pos, else xors the byte at pos)
//! 2 replay   capture:u8 (byte-exact)
//! 3 time     ms:u16le (x8), then due timers on every node
//! 4 pump     deliver every datagram in flight (bounded)
//! 5 send     len:u16le (mod max_frame + 64); a frame from the side
//!            (the hub sends to the focus spoke)
//! 6 lose     drop everything in flight
//! 7 deliver  which:u8; one datagram in flight (reordering)
//! ```
//!
//! With bit 7 set, bits 0..3 pick an operation and bits 4..6 are its
//! argument `x`; "node" below is a node number mod 6, "spoof(k)" is node k's
//! address for k < 6, 198.18.9.9:1234 for 6 and [2001:2::9]:51901 for 7.
//!
//! ```text
//! 0 focus     the focus spoke becomes spoke x mod 5 (b, c, d, e, thief)
//! 1 flood     n:u8; the thief sends 16 + n mod 64 fresh initiations to the
//!             hub, from x&3: 0 distinct spoofed IPv4 sources, 1 its own
//!             address, 2 the focus spoke's address, 3 distinct IPv6 /64s;
//!             x&4: 20 ms pass before each. Answers to a node's address go
//!             in flight, the rest is lost. At most 4 floods an input.
//! 2 keys      node:u8 peer:u8 set:u8; set_peer_keys with keys from the
//!             pool [K_B, K_C, K_S, K_N (new), K_X (nobody else)]: set mod 5,
//!             then (bit 4) a second key (set >> 5) mod 5; 0xff: no key
//! 3 misroute  which:u8 to:u8; a datagram in flight goes to node `to`
//! 4 restart   node x: a new instance (same name and keys, state lost)
//! 5 spoof     which:u8; a datagram in flight arrives from spoof(x)
//! 6 wall      node x, secs:i16le; that node's wall clock jumps
//! 7 send      node x, peer:u8, len:u16le; a frame from any node
//! 8 tamper    which:u8 pos:u16le val:u8; a datagram in flight is
//!             changed like `mutate` (one edit), then delivered
//! 9 inject    capture:u8 node:u8; capture to node, from spoof(node >> 3)
//! ```
//!
//! Captures 0..6 are always: initiation (b), response (hub), keepalive (b),
//! 1400-byte data (b), the two fragments of a 1518-byte frame (b), 100-byte
//! data (hub); the last four were never delivered. The handshakes of c, d
//! and e at setup are not captured (so those indices stay as they were);
//! later datagrams of every node are, up to 256, and of a flood only its
//! first initiation, response and cookie reply.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use tapbridge::peer_id::PeerId;
use tapbridge::tunnel::{
    Counters, Entropy, Event, Incoming, PeerParams, PeerState, PeerStats, PresharedKey, Transmit,
    TransportMode, Tunnel, TunnelParams,
};
use tapbridge::wire::tunnel::{MessageType, field};

const MAX_FRAME: usize = 1518;
const MAX_CAPTURES: usize = 256;
const MAX_FLIGHTS: usize = 256;
/// Floods per input (each costs up to 79 handshakes; more add nothing but
/// time).
const MAX_FLOODS: u32 = 4;
/// The responder's load mark (`UNDER_LOAD_PER_SEC` in src/tunnel/exchange.rs).
const UNDER_LOAD_PER_SEC: usize = 50;
const WALL: u64 = 1_800_000_000;

const HUB: usize = 0;
const THIEF: usize = 5;
const NODES: usize = 6;
/// The nodes the focus can be on.
const SPOKES: [usize; 5] = [1, 2, 3, 4, 5];

/// Key pool: b's, c's, the key d and e share, a rotation's new key, and one
/// that no other node has.
const KEY_BYTES: [u8; 5] = [0xb0, 0xc0, 0x5e, 0x4e, 0x99];
const K_B: usize = 0;
const K_C: usize = 1;
const K_S: usize = 2;

fn key(k: usize) -> PresharedKey {
    PresharedKey::new([KEY_BYTES[k]; 32])
}

/// Deterministic xorshift64* (reproducible runs; never for real keys).
struct FuzzEntropy(u64);

impl Entropy for FuzzEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    }
}

/// Collects every datagram written.
struct Out {
    scratch: [u8; 2048],
    sent: Vec<(SocketAddr, Vec<u8>)>,
}

impl Out {
    fn new() -> Out {
        Out {
            scratch: [0; 2048],
            sent: Vec::new(),
        }
    }
}

impl Transmit for Out {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.scratch
    }
    fn commit(&mut self, len: usize, to: SocketAddr) {
        self.sent.push((to, self.scratch[..len].to_vec()));
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("fixed test address")
}

fn peer(name: &str, key_index: usize, endpoint: Option<SocketAddr>) -> PeerParams {
    PeerParams {
        name: name.into(),
        keys: vec![key(key_index)],
        endpoints: endpoint.into_iter().collect(),
    }
}

fn link(local: &str, peers: Vec<PeerParams>) -> TunnelParams {
    TunnelParams {
        local_name: local.into(),
        peers,
        keepalive: Duration::from_secs(10),
        rekey_after: Duration::from_secs(120),
        rekey_after_packets: 1 << 32,
        wan_mtu: 1500,
        auto_mtu: false,
        max_frame: MAX_FRAME,
        transport: TransportMode::Udp,
    }
}

/// A frame that carries its own check: a sequence number, then bytes
/// derived from it, so a delivered frame can be verified intact.
fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    for (i, b) in f.iter_mut().enumerate() {
        *b = if i < 4 {
            seq.to_le_bytes()[i]
        } else {
            (seq as usize).wrapping_mul(31).wrapping_add(i) as u8
        };
    }
    f
}

/// Every counter a dropped datagram can land in.
fn drops(c: &Counters) -> u64 {
    c.rx_auth_failed
        + c.rx_replayed
        + c.rx_malformed
        + c.handshake_rate_limited
        + c.rx_unknown_peer
        + c.rx_unknown_session
        + c.rx_old_version
}

/// What identifies a datagram as genuine: its bytes, except an initiation's
/// mac2 (its last 16 bytes), which anyone may change without the key (the
/// responder ignores it when not under load, and answers with a cookie
/// reply when it is).
fn genuine_key(bytes: &[u8]) -> &[u8] {
    if is_initiation(bytes) {
        &bytes[..field::INIT_MAC2.start]
    } else {
        bytes
    }
}

/// Whether `bytes` has an initiation's head and length.
fn is_initiation(bytes: &[u8]) -> bool {
    bytes.len() == field::INIT_LEN && bytes[..4] == MessageType::Initiation.head()
}

/// What a non-authentic datagram must not change.
type PeerView = (Option<SocketAddr>, PeerState, Option<Instant>, PeerStats);

/// A datagram on its way.
struct Flight {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

struct Node {
    addr: SocketAddr,
    params: TunnelParams,
    t: Tunnel,
    /// This node's wall clock minus the world's.
    wall_offset_ms: i64,
    restarts: u64,
    /// When this node sent responses (did the DH), for the last 3 s.
    responses: VecDeque<Instant>,
}

struct World {
    start: Instant,
    now: Instant,
    nodes: Vec<Node>,
    /// The thief runs its timers only once an operation used it.
    thief_awake: bool,
    /// Index into `SPOKES` of the node paired with the hub by the original
    /// operations.
    focus: usize,
    /// Datagrams emitted (replay/mutation sources), bounded.
    captures: Vec<Vec<u8>>,
    /// Every datagram emitted ([`genuine_key`]), unbounded.
    genuine: HashSet<Vec<u8>>,
    flights: Vec<Flight>,
    next_seq: u32,
    /// Frames sent: sequence number -> (sending node, the peer's name).
    sent: HashMap<u32, (usize, String)>,
    /// Frames delivered anywhere.
    delivered: HashSet<u32>,
    /// Whether emitted datagrams are captured (not during setup of c, d, e
    /// and not for most of a flood).
    capturing: bool,
    floods: u32,
}

impl World {
    fn new() -> World {
        let now = Instant::now();
        let hub_addr = addr("198.18.0.2:51901");
        let b_addr = addr("198.18.0.1:51901");
        let hub_peer = |k| vec![peer("hub", k, Some(hub_addr))];
        let setup: [(&str, TunnelParams, u64); NODES] = [
            (
                "198.18.0.2:51901",
                link(
                    "hub",
                    vec![
                        peer("b", K_B, Some(b_addr)),
                        peer("c", K_C, None),
                        peer("d", K_S, None),
                        peer("e", K_S, None),
                    ],
                ),
                2,
            ),
            ("198.18.0.1:51901", link("b", hub_peer(K_B)), 1),
            ("198.18.0.3:51901", link("c", hub_peer(K_C)), 3),
            ("198.18.0.4:51901", link("d", hub_peer(K_S)), 4),
            ("198.18.0.5:51901", link("e", hub_peer(K_S)), 5),
            ("198.18.0.66:51901", link("c", hub_peer(K_C)), 6),
        ];
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(WALL);
        let nodes = setup
            .into_iter()
            .map(|(a, params, seed)| Node {
                addr: addr(a),
                t: Tunnel::new(params.clone(), Box::new(FuzzEntropy(seed)), now, wall),
                params,
                wall_offset_ms: 0,
                restarts: 0,
                responses: VecDeque::new(),
            })
            .collect();
        let mut w = World {
            start: now,
            now,
            nodes,
            thief_awake: false,
            focus: 0,
            captures: Vec::new(),
            genuine: HashSet::new(),
            flights: Vec::new(),
            next_seq: 0,
            sent: HashMap::new(),
            delivered: HashSet::new(),
            capturing: true,
            floods: 0,
        };
        // b initiates, the hub answers, b confirms with a keepalive.
        w.timeout(1);
        w.pump();
        assert!(w.flights.is_empty(), "the handshake settles");
        assert_eq!(w.nodes[1].t.peer_stats(PeerId::new(0)).handshakes, 1);
        assert_eq!(w.nodes[HUB].t.peer_stats(PeerId::new(0)).handshakes, 1);
        // Real data for the fuzzer to replay and mutate, not yet delivered:
        // a whole frame and a fragmented one from b, a small one from the hub.
        w.send(1, 0, 1400);
        w.send(1, 0, MAX_FRAME);
        w.send(HUB, 0, 100);
        assert_eq!(w.captures.len(), 7, "the fixed captures of the format");
        w.flights.clear();
        // c, d and e come up too (hub peers 1, 2, 3).
        w.capturing = false;
        for spoke in 2..=4 {
            w.timeout(spoke);
            w.pump();
            assert!(w.flights.is_empty(), "the handshake settles");
            assert_eq!(w.nodes[spoke].t.peer_stats(PeerId::new(0)).handshakes, 1);
            assert_eq!(
                w.nodes[HUB].t.peer_stats(PeerId::new(spoke - 1)).handshakes,
                1
            );
        }
        w.capturing = true;
        w
    }

    fn wall(&self, node: usize) -> SystemTime {
        let base = SystemTime::UNIX_EPOCH
            + Duration::from_secs(WALL)
            + self.now.saturating_duration_since(self.start);
        let off = self.nodes[node].wall_offset_ms;
        if off >= 0 {
            base + Duration::from_millis(off.unsigned_abs())
        } else {
            base - Duration::from_millis(off.unsigned_abs())
        }
    }

    fn node_at(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == a)
    }

    fn name(&self, node: usize) -> &str {
        &self.nodes[node].params.local_name
    }

    fn wake(&mut self, node: usize) {
        if node == THIEF {
            self.thief_awake = true;
        }
    }

    /// Records what `node` emitted as genuine and puts it in flight.
    fn emit(&mut self, node: usize, out: Out) {
        let from = self.nodes[node].addr;
        for (to, bytes) in out.sent {
            if self.capturing && self.captures.len() < MAX_CAPTURES {
                self.captures.push(bytes.clone());
            }
            self.genuine.insert(genuine_key(&bytes).to_vec());
            if self.flights.len() < MAX_FLIGHTS && self.node_at(to).is_some() {
                self.flights.push(Flight { from, to, bytes });
            }
        }
    }

    /// Events are only looked at for non-authentic datagrams (in
    /// `deliver`); elsewhere they are drained so they do not pile up.
    fn drain_events(&mut self, node: usize) {
        while self.nodes[node].t.poll_event().is_some() {}
    }

    fn timeout(&mut self, node: usize) {
        let mut out = Out::new();
        let now = self.now;
        self.nodes[node].t.handle_timeout(now, &mut out);
        self.emit(node, out);
        self.drain_events(node);
    }

    fn send(&mut self, node: usize, peer: usize, len: usize) {
        self.wake(node);
        let seq = self.next_seq;
        self.next_seq += 1;
        let Some(peer_name) = self.nodes[node]
            .params
            .peers
            .get(peer)
            .map(|p| p.name.clone())
        else {
            return;
        };
        self.sent.insert(seq, (node, peer_name));
        let f = frame(seq, len);
        let mut out = Out::new();
        let now = self.now;
        self.nodes[node]
            .t
            .send_frame(PeerId::new(peer), &f, now, &mut out);
        self.emit(node, out);
        self.drain_events(node);
    }

    fn peer_views(&self, node: usize) -> Vec<PeerView> {
        let t = &self.nodes[node].t;
        (0..t.peer_count())
            .map(|id| {
                let s = t.peer_status(PeerId::new(id)).expect("peer in range");
                (s.endpoint, s.state, s.last_handshake, s.stats)
            })
            .collect()
    }

    /// Hands `bytes` from `from` to `node` and checks the invariants.
    fn deliver(&mut self, node: usize, from: SocketAddr, mut bytes: Vec<u8>) {
        let genuine = self.genuine.contains(genuine_key(&bytes));
        let initiation = is_initiation(&bytes);
        let before = self.nodes[node].t.counters();
        let views = (!genuine).then(|| self.peer_views(node));
        self.drain_events(node);
        let mut out = Out::new();
        let now = self.now;
        let got = match self.nodes[node]
            .t
            .handle_datagram(from, &mut bytes, now, &mut out)
        {
            Incoming::Frame { peer, frame: f } => Some((peer, f.to_vec())),
            Incoming::Nothing => None,
        };
        let after = self.nodes[node].t.counters();
        let dropped = drops(&after) - drops(&before);
        assert!(
            dropped <= 1,
            "node {node}: one datagram counted {dropped} times"
        );
        for (to, _) in &out.sent {
            assert_eq!(*to, from, "node {node} answered somewhere else");
        }
        let cookie_replies = out.sent.iter().filter(|(_, d)| d[0] == 3).count() as u64;
        assert_eq!(
            after.cookie_replies - before.cookie_replies,
            cookie_replies,
            "node {node}: cookie replies counted as sent"
        );
        if cookie_replies > 0 {
            assert!(
                initiation,
                "node {node}: a cookie reply to a non-initiation"
            );
            assert_eq!(out.sent.len(), 1, "node {node}: a cookie reply and more");
            assert_eq!(out.sent[0].1.len(), 52, "cookie reply length");
            assert_eq!(dropped, 0, "node {node}: a cookie reply to a drop");
            let recent = &mut self.nodes[node].responses;
            while recent
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(3))
            {
                recent.pop_front();
            }
            assert!(
                recent.len() >= UNDER_LOAD_PER_SEC,
                "node {node} asked for a cookie after only {} answers in 3 s",
                recent.len()
            );
        }
        for (_, d) in &out.sent {
            if d[0] == 2 {
                self.nodes[node].responses.push_back(now);
            }
        }
        if !genuine {
            assert!(
                out.sent.is_empty(),
                "node {node} answered a datagram it was never sent: {:02x?}",
                out.sent
            );
            assert!(
                got.is_none(),
                "node {node} delivered a frame from a forgery"
            );
            assert_eq!(dropped, 1, "a forged datagram is counted exactly once");
            let views_after = self.peer_views(node);
            assert_eq!(
                views,
                Some(views_after),
                "a forgery changed a peer of node {node}"
            );
            while let Some(e) = self.nodes[node].t.poll_event() {
                assert!(
                    matches!(e, Event::HandshakeRefused { .. }),
                    "node {node}: a forgery caused {e:?}"
                );
            }
        }
        self.drain_events(node);
        if let Some((peer, f)) = got {
            assert!(
                f.len() >= 4 && f.len() <= MAX_FRAME,
                "frame length {}",
                f.len()
            );
            let seq = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
            assert_eq!(f, frame(seq, f.len()), "frame {seq} corrupted");
            let Some((sender, to_name)) = self.sent.get(&seq) else {
                panic!("node {node} delivered frame {seq}, which nobody sent");
            };
            let peer_name = &self.nodes[node].params.peers[peer].name;
            assert_eq!(
                self.name(*sender),
                peer_name,
                "node {node} took frame {seq} of node {sender} as its peer {peer_name}"
            );
            assert_eq!(
                to_name,
                self.name(node),
                "frame {seq} was sent to {to_name}, delivered at node {node}"
            );
            assert!(self.delivered.insert(seq), "frame {seq} delivered twice");
        }
        self.emit(node, out);
    }

    /// Delivers what is in flight (and what that provokes), bounded.
    fn pump(&mut self) {
        for _ in 0..64 {
            if self.flights.is_empty() {
                return;
            }
            self.deliver_flight(0);
        }
    }

    fn take_flight(&mut self, which: u8) -> Option<Flight> {
        if self.flights.is_empty() {
            return None;
        }
        let i = usize::from(which) % self.flights.len();
        Some(self.flights.remove(i))
    }

    fn deliver_flight(&mut self, which: u8) {
        let Some(f) = self.take_flight(which) else {
            return;
        };
        if let Some(node) = self.node_at(f.to) {
            self.deliver(node, f.from, f.bytes);
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        // b first, then the hub: the order of the two-node version.
        for node in [1, HUB, 2, 3, 4, THIEF] {
            if node != THIEF || self.thief_awake {
                self.timeout(node);
            }
        }
    }

    fn focus_node(&self) -> usize {
        SPOKES[self.focus]
    }

    /// The hub's peer for a spoke (by name: the thief is c).
    fn hub_peer(&self, spoke: usize) -> usize {
        let name = self.name(spoke);
        self.nodes[HUB]
            .params
            .peers
            .iter()
            .position(|p| p.name == name)
            .expect("every spoke is a hub peer")
    }

    /// The source of a datagram injected by an original operation.
    fn source(&self, node: usize, pick: u8) -> SocketAddr {
        match pick & 7 {
            0 if node == HUB => self.nodes[self.focus_node()].addr,
            0 => self.nodes[HUB].addr,
            1 => addr("198.18.0.1:40000"),
            2 => addr("198.18.9.9:1234"),
            3 => addr("[2001:2::9]:51901"),
            k => self.nodes[SPOKES[(self.focus + usize::from(k) - 3) % SPOKES.len()]].addr,
        }
    }

    fn spoof(&self, k: u8) -> SocketAddr {
        match k & 7 {
            6 => addr("198.18.9.9:1234"),
            7 => addr("[2001:2::9]:51901"),
            n => self.nodes[usize::from(n)].addr,
        }
    }

    fn keys_op(&mut self, node: usize, peer: u8, set: u8) {
        self.wake(node);
        let count = self.nodes[node].params.peers.len();
        let peer = usize::from(peer) % count;
        let keys: Vec<usize> = match set {
            0xff => vec![],
            s if s & 0x10 != 0 => vec![usize::from(s) % 5, usize::from(s >> 5) % 5],
            s => vec![usize::from(s) % 5],
        };
        let keys: Vec<PresharedKey> = keys.into_iter().map(key).collect();
        self.nodes[node].params.peers[peer].keys = keys.clone();
        let now = self.now;
        self.nodes[node]
            .t
            .set_peer_keys(PeerId::new(peer), keys, now);
    }

    /// A new instance of `node`: same configuration, state lost; its clock
    /// moved on a millisecond while it restarted.
    fn restart(&mut self, node: usize) {
        self.wake(node);
        let n = &mut self.nodes[node];
        n.restarts += 1;
        n.wall_offset_ms += 1;
        let seed = 1000 + node as u64 * 7919 + n.restarts;
        let wall = self.wall(node);
        let n = &mut self.nodes[node];
        n.t = Tunnel::new(
            n.params.clone(),
            Box::new(FuzzEntropy(seed)),
            self.now,
            wall,
        );
        n.responses.clear();
    }

    fn jump_wall(&mut self, node: usize, secs: i16) {
        self.nodes[node].wall_offset_ms += i64::from(secs) * 1000;
        let wall = self.wall(node);
        let now = self.now;
        self.nodes[node].t.set_wall_clock(now, wall);
    }

    /// The thief sends `count` fresh initiations to the hub.
    fn flood(&mut self, mode: u8, count: usize) {
        if self.floods == MAX_FLOODS {
            return;
        }
        self.thief_awake = true;
        self.floods += 1;
        for i in 0..count {
            if mode & 4 != 0 {
                self.now += Duration::from_millis(20);
            }
            let init = self.thief_initiation();
            let Some(init) = init else {
                return;
            };
            let from = match mode & 3 {
                0 => SocketAddr::from(([198, 19, (self.floods % 256) as u8, i as u8], 40000)),
                1 => self.nodes[THIEF].addr,
                2 => self.nodes[self.focus_node()].addr,
                _ => {
                    let f = self.floods as u16;
                    SocketAddr::from(([0x2001, 2, f, i as u16, 0, 0, 0, 1], 40000))
                }
            };
            self.capturing = i == 0;
            self.genuine.insert(genuine_key(&init).to_vec());
            if self.capturing && self.captures.len() < MAX_CAPTURES {
                self.captures.push(init.clone());
            }
            self.deliver(HUB, from, init);
            self.capturing = true;
        }
    }

    /// A fresh initiation from the thief: its pending handshake restarted
    /// (keys set again), or a restarted thief when it has none.
    fn thief_initiation(&mut self) -> Option<Vec<u8>> {
        for attempt in 0..2 {
            if attempt == 1 {
                self.restart(THIEF);
            }
            let keys = self.nodes[THIEF].params.peers[0].keys.clone();
            let now = self.now;
            self.nodes[THIEF].t.set_peer_keys(PeerId::new(0), keys, now);
            let mut out = Out::new();
            self.nodes[THIEF].t.handle_timeout(now, &mut out);
            self.drain_events(THIEF);
            let pos = out.sent.iter().position(|(_, d)| is_initiation(d));
            if let Some(pos) = pos {
                let (_, init) = out.sent.remove(pos);
                self.emit(THIEF, out);
                return Some(init);
            }
            self.emit(THIEF, out);
        }
        // No key, or no endpoint: nothing to flood with.
        None
    }
}

/// Reads the fuzz input front to back; running out ends the program.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// One edit of `mutate` and `tamper`: val 0 truncates at pos, else xors the
/// byte at pos (mod length).
fn edit(bytes: &mut Vec<u8>, pos: u16, val: u8) {
    let pos = usize::from(pos);
    match val {
        0 => bytes.truncate(pos),
        x if !bytes.is_empty() => {
            let i = pos % bytes.len();
            bytes[i] ^= x;
        }
        _ => {}
    }
}

/// The original operations, on the pair (hub, focus spoke).
fn pair_op(w: &mut World, r: &mut Reader, op: u8) -> Option<()> {
    let node = if op & 8 == 0 { HUB } else { w.focus_node() };
    let from = w.source(node, op >> 4);
    match op & 7 {
        0 => {
            let len = usize::from(r.u16()?) % 2049;
            let bytes = r.bytes(len).to_vec();
            w.deliver(node, from, bytes);
        }
        1 => {
            let mut bytes = w.captures[usize::from(r.u8()?) % w.captures.len()].clone();
            for _ in 0..(r.u8()? % 8) + 1 {
                let (pos, val) = (r.u16()?, r.u8()?);
                edit(&mut bytes, pos, val);
            }
            w.deliver(node, from, bytes);
        }
        2 => {
            let bytes = w.captures[usize::from(r.u8()?) % w.captures.len()].clone();
            w.deliver(node, from, bytes);
        }
        3 => {
            let ms = u64::from(r.u16()?) * 8;
            w.advance(Duration::from_millis(ms));
        }
        4 => w.pump(),
        5 => {
            let len = usize::from(r.u16()?) % (MAX_FRAME + 64);
            let peer = if node == HUB {
                w.hub_peer(w.focus_node())
            } else {
                0
            };
            w.send(node, peer, len.max(4));
        }
        6 => w.flights.clear(),
        _ => {
            let which = r.u8()?;
            w.deliver_flight(which);
        }
    }
    Some(())
}

/// The operations of the multi-node world.
fn world_op(w: &mut World, r: &mut Reader, op: u8) -> Option<()> {
    let x = (op >> 4) & 7;
    let node = usize::from(x) % NODES;
    match op & 15 {
        0 => {
            w.focus = usize::from(x) % SPOKES.len();
            w.wake(w.focus_node());
        }
        1 => {
            let count = 16 + usize::from(r.u8()?) % 64;
            w.flood(x, count);
        }
        2 => {
            let (node, peer, set) = (r.u8()?, r.u8()?, r.u8()?);
            w.keys_op(usize::from(node) % NODES, peer, set);
        }
        3 => {
            let (which, to) = (r.u8()?, r.u8()?);
            if let Some(f) = w.take_flight(which) {
                w.deliver(usize::from(to) % NODES, f.from, f.bytes);
            }
        }
        4 => w.restart(node),
        5 => {
            let which = r.u8()?;
            let from = w.spoof(x);
            if let Some(f) = w.take_flight(which)
                && let Some(to) = w.node_at(f.to)
            {
                w.deliver(to, from, f.bytes);
            }
        }
        6 => {
            let secs = r.u16()? as i16;
            w.wake(node);
            w.jump_wall(node, secs);
        }
        7 => {
            let (peer, len) = (r.u8()?, r.u16()?);
            let count = w.nodes[node].params.peers.len();
            let len = usize::from(len) % (MAX_FRAME + 64);
            w.send(node, usize::from(peer) % count, len.max(4));
        }
        8 => {
            let (which, pos, val) = (r.u8()?, r.u16()?, r.u8()?);
            if let Some(mut f) = w.take_flight(which)
                && let Some(to) = w.node_at(f.to)
            {
                edit(&mut f.bytes, pos, val);
                w.deliver(to, f.from, f.bytes);
            }
        }
        9 => {
            let (capture, to) = (r.u8()?, r.u8()?);
            let bytes = w.captures[usize::from(capture) % w.captures.len()].clone();
            let from = w.spoof(to >> 3);
            w.deliver(usize::from(to) % NODES, from, bytes);
        }
        _ => {}
    }
    Some(())
}

fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("TAPBRIDGE_FUZZ_TRACE").is_some())
}

fn run(data: &[u8]) {
    let mut w = World::new();
    let mut r = Reader(data);
    while let Some(op) = r.u8() {
        let done = if op & 0x80 == 0 {
            pair_op(&mut w, &mut r, op)
        } else {
            world_op(&mut w, &mut r, op)
        };
        if done.is_none() {
            break;
        }
    }
    if trace() {
        for (i, n) in w.nodes.iter().enumerate() {
            let handshakes: Vec<u64> = (0..n.t.peer_count())
                .map(|p| n.t.peer_stats(PeerId::new(p)).handshakes)
                .collect();
            eprintln!(
                "node {i} {}: handshakes {handshakes:?} {:?}",
                n.params.local_name,
                n.t.counters()
            );
        }
        eprintln!(
            "frames sent {}, delivered {}, captures {}, in flight {}",
            w.sent.len(),
            w.delivered.len(),
            w.captures.len(),
            w.flights.len()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    run(data);
});
