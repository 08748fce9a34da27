//! One hub with 1000 spokes, in memory on a virtual clock, for a simulated
//! hour: every spoke calls in and comes up, every session is rekeyed about
//! every two minutes, and frames sent both ways between the hub and random
//! spokes arrive exactly once, intact, from the right peer.
//!
//! Only the public tunnel API is used, the way the data path uses it: one
//! [`Tunnel`] per site, datagrams handed over after a 5 ms one-way delay,
//! `handle_timeout` called only when `poll_timeout` is due. The simulator
//! is event driven (a heap of datagrams in flight and a heap of the sites'
//! deadlines), so its own cost does not grow with the number of sites per
//! step; a site's deadline is asked for once per instant at which it did
//! something, as the data path asks once per batch.
//!
//! It prints (not asserts) the wall time, the handshake, datagram and frame
//! counts and the memory used: the process's resident set (`VmRSS`,
//! `VmHWM`) and the live heap as counted by this file's allocator, before
//! and after building the tunnels, after the hour, and of the hub alone.
//! Run it with `cargo test --release --test tunnel_scale -- --ignored
//! --nocapture` to see them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::{Duration, Instant, SystemTime};

use tapbridge::tunnel::{
    Counters, Entropy, Event, Incoming, PeerId, PeerParams, PeerState, PresharedKey, SendOutcome,
    Transmit, Tunnel, TunnelParams,
};

/// Counts live heap bytes, to say how much of the memory is the hub's.
struct LiveBytes;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only keeps a byte count.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), AtomicOrdering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), AtomicOrdering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), AtomicOrdering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), AtomicOrdering::Relaxed);
            LIVE.fetch_add(new, AtomicOrdering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: LiveBytes = LiveBytes;

const SPOKES: usize = 1000;
const ONE_WAY: Duration = Duration::from_millis(5);
const HOUR: Duration = Duration::from_secs(3600);
/// A frame every 20 ms: 3000 a minute, between the hub and random spokes.
const FRAME_EVERY: Duration = Duration::from_millis(20);
const WALL_SECS: u64 = 1_800_000_000;
/// Room for any datagram the tunnel writes (`wan_mtu` is 1500).
const DGRAM_BUF: usize = 2048;
const HUB: usize = 0;

/// Deterministic entropy (xorshift64*); fine for a simulation, not for keys.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

impl Entropy for XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = (self.next() >> 56) as u8;
        }
    }
}

fn seeded(node: usize) -> Box<XorShift> {
    Box::new(XorShift(
        0x9e37_79b9_7f4a_7c15 ^ ((node as u64 + 1) * 0x1000_0000_01b3),
    ))
}

fn hub_addr() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 1], 51820))
}

fn spoke_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 19, (i / 250) as u8, (i % 250 + 1) as u8], 51820))
}

fn spoke_name(i: usize) -> String {
    format!("spoke-{i}")
}

/// Spoke `i`'s own key, which the hub holds for it.
fn spoke_key(i: usize) -> PresharedKey {
    let mut k = [0x5a; 32];
    k[..4].copy_from_slice(&(i as u32).to_le_bytes());
    PresharedKey::new(k)
}

fn link(local: String, peers: Vec<PeerParams>) -> TunnelParams {
    TunnelParams {
        local_name: local,
        peers,
        keepalive: Duration::from_secs(10),
        rekey_after: Duration::from_secs(120),
        rekey_after_packets: 1 << 30,
        wan_mtu: 1500,
        auto_mtu: false,
        transport: tapbridge::tunnel::TransportMode::Udp,
        max_frame: 1518,
    }
}

fn hub_params() -> TunnelParams {
    let peers = (0..SPOKES)
        .map(|i| PeerParams {
            name: spoke_name(i),
            keys: vec![spoke_key(i)],
            endpoints: Vec::new(),
        })
        .collect();
    link("hub".into(), peers)
}

fn spoke_params(i: usize) -> TunnelParams {
    let hub = PeerParams {
        name: "hub".into(),
        keys: vec![spoke_key(i)],
        endpoints: vec![hub_addr()],
    };
    link(spoke_name(i), vec![hub])
}

/// Byte `i` of frame `seq` (bytes 0..4 are `seq` itself).
fn frame_byte(seq: u32, i: usize) -> u8 {
    (seq.wrapping_mul(31) as usize).wrapping_add(i) as u8 ^ (i >> 8) as u8
}

fn write_frame(buf: &mut Vec<u8>, seq: u32, len: usize) {
    buf.clear();
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend((4..len).map(|i| frame_byte(seq, i)));
}

/// A datagram in flight. Ordered for a min-heap: earliest arrival first,
/// then sending order, so equal times are delivered deterministically.
struct Flight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl Ord for Flight {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Flight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Flight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Flight {}

/// Datagram counts by message type (byte 0), index 0 for anything else.
#[derive(Default)]
struct Datagrams {
    by_type: [u64; 6],
}

/// The network: datagrams in flight and a pool of their buffers.
struct Net {
    now: Instant,
    flights: BinaryHeap<Flight>,
    pool: Vec<Vec<u8>>,
    /// The buffer the tunnel is writing into, between `buffer` and `commit`.
    writing: Vec<u8>,
    sent: u64,
    datagrams: Datagrams,
}

/// One site's view of the network, as a [`Transmit`].
struct Tx<'a> {
    net: &'a mut Net,
    from: SocketAddr,
}

impl Transmit for Tx<'_> {
    fn buffer(&mut self) -> &mut [u8] {
        let net = &mut *self.net;
        if net.writing.len() < DGRAM_BUF {
            let mut b = net.pool.pop().unwrap_or_default();
            b.resize(DGRAM_BUF, 0);
            net.writing = b;
        }
        &mut net.writing
    }

    fn commit(&mut self, len: usize, to: SocketAddr) {
        let net = &mut *self.net;
        let mut bytes = std::mem::take(&mut net.writing);
        bytes.truncate(len);
        let ty = usize::from(bytes[0]);
        net.datagrams.by_type[if ty < 6 { ty } else { 0 }] += 1;
        net.sent += 1;
        net.flights.push(Flight {
            at: net.now + ONE_WAY,
            seq: net.sent,
            from: self.from,
            to,
            bytes,
        });
    }
}

/// What a frame sent should become: delivered once at `to`, from `peer`.
struct Expect {
    to: u32,
    peer: u32,
    len: u16,
    delivered: u8,
}

/// Frames sent, and the checks on their delivery.
#[derive(Default)]
struct Ledger {
    expect: Vec<Expect>,
    queued: u64,
    fragmented: u64,
}

impl Ledger {
    fn delivered(&mut self, at: usize, peer: PeerId, frame: &[u8]) {
        assert!(
            frame.len() >= 4,
            "a {}-byte frame at node {at}",
            frame.len()
        );
        let seq = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let e = self
            .expect
            .get_mut(seq as usize)
            .unwrap_or_else(|| panic!("node {at} got frame {seq}, never sent"));
        assert_eq!(e.to as usize, at, "frame {seq} went to the wrong site");
        assert_eq!(
            e.peer as usize,
            peer.index(),
            "frame {seq}: wrong sender at {at}"
        );
        assert_eq!(usize::from(e.len), frame.len(), "frame {seq}: length");
        assert!(
            frame
                .iter()
                .enumerate()
                .skip(4)
                .all(|(i, &b)| b == frame_byte(seq, i)),
            "frame {seq} corrupted"
        );
        assert_eq!(e.delivered, 0, "frame {seq} delivered twice");
        e.delivered += 1;
    }
}

/// Frames between the hub and random spokes, one every `FRAME_EVERY`.
struct Traffic {
    next: Instant,
    until: Instant,
    rng: XorShift,
    frame: Vec<u8>,
}

/// What the tunnels reported through their events.
#[derive(Default)]
struct Tally {
    /// Per spoke, whether it completed a handshake (spoke `i` is node 1 + i).
    spoke_up: Vec<bool>,
    /// Per peer of the hub, whether the hub completed a handshake with it.
    hub_up: Vec<bool>,
    up_spokes: usize,
    up_at_hub: usize,
    handshakes: u64,
    peer_down: u64,
    refused: u64,
    moved: u64,
}

struct Node {
    addr: SocketAddr,
    t: Tunnel,
    /// The instant last reported by `poll_timeout`, `None` while dirty.
    deadline: Option<Instant>,
    dirty: bool,
}

struct Sim {
    nodes: Vec<Node>,
    by_addr: HashMap<SocketAddr, usize>,
    net: Net,
    /// (deadline, node); entries that no longer match the node are skipped.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    dirty: Vec<usize>,
    ledger: Ledger,
    traffic: Option<Traffic>,
    tally: Tally,
    timeouts: u64,
    /// How often the hub was asked for its deadline: each call walks all its
    /// peers, as `handle_timeout` does.
    hub_polls: u64,
    hub_timeouts: u64,
}

impl Sim {
    fn new(now: Instant, nodes: Vec<Node>) -> Sim {
        let by_addr = nodes.iter().enumerate().map(|(i, n)| (n.addr, i)).collect();
        let count = nodes.len();
        let mut sim = Sim {
            nodes,
            by_addr,
            net: Net {
                now,
                flights: BinaryHeap::new(),
                pool: Vec::new(),
                writing: Vec::new(),
                sent: 0,
                datagrams: Datagrams::default(),
            },
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            ledger: Ledger::default(),
            traffic: None,
            tally: Tally {
                spoke_up: vec![false; SPOKES],
                hub_up: vec![false; SPOKES],
                ..Tally::default()
            },
            timeouts: 0,
            hub_polls: 0,
            hub_timeouts: 0,
        };
        for n in 0..count {
            sim.touch(n);
        }
        sim.refresh_deadlines();
        sim
    }

    fn now(&self) -> Instant {
        self.net.now
    }

    /// Node `n` did something: its events are read now, its deadline at the
    /// end of this instant.
    fn touch(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let tally = &mut self.tally;
        while let Some(e) = node.t.poll_event() {
            match e {
                Event::HandshakeCompleted { peer, .. } => {
                    tally.handshakes += 1;
                    let (seen, count) = if n == HUB {
                        (&mut tally.hub_up[peer], &mut tally.up_at_hub)
                    } else {
                        (&mut tally.spoke_up[n - 1], &mut tally.up_spokes)
                    };
                    if !*seen {
                        *seen = true;
                        *count += 1;
                    }
                }
                Event::PeerDown { .. } => tally.peer_down += 1,
                Event::HandshakeRefused { .. } => tally.refused += 1,
                Event::EndpointMoved { .. } => tally.moved += 1,
                Event::PathMtuChanged { .. }
                | Event::TransportChanged { .. }
                | Event::NoAnswer { .. }
                | Event::Answered { .. } => {}
            }
        }
        if !node.dirty {
            node.dirty = true;
            node.deadline = None;
            self.dirty.push(n);
        }
    }

    fn refresh_deadlines(&mut self) {
        for n in self.dirty.drain(..) {
            self.hub_polls += u64::from(n == HUB);
            let node = &mut self.nodes[n];
            node.dirty = false;
            node.deadline = node.t.poll_timeout();
            if let Some(d) = node.deadline {
                self.timers.push(Reverse((d, n)));
            }
        }
    }

    /// The earliest pending event; drops stale timer entries on the way.
    fn next_event(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, n))) = self.timers.peek() {
            if self.nodes[n].deadline == Some(t) {
                break;
            }
            self.timers.pop();
        }
        [
            self.net.flights.peek().map(|f| f.at),
            self.timers.peek().map(|Reverse((t, _))| *t),
            self.traffic
                .as_ref()
                .filter(|tr| tr.next < tr.until)
                .map(|tr| tr.next),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs every event up to `end`, or until `stop` holds after an instant.
    fn run_until(&mut self, end: Instant, stop: impl Fn(&Sim) -> bool) {
        let mut rounds_now = 0;
        while let Some(next) = self.next_event().filter(|&t| t <= end) {
            if next > self.net.now {
                self.net.now = next;
                rounds_now = 0;
            }
            // A second round at one instant runs timers that a datagram made
            // due; more would mean `handle_timeout` left a timer due.
            rounds_now += 1;
            assert!(rounds_now < 100, "timers stay due at {:?}", self.net.now);
            self.run_instant();
            if stop(self) {
                return;
            }
        }
        self.net.now = self.net.now.max(end);
    }

    /// Everything due at `now`: datagrams, frames to send, then timers.
    fn run_instant(&mut self) {
        let now = self.net.now;
        while self.net.flights.peek().is_some_and(|f| f.at <= now) {
            let f = self.net.flights.pop().expect("peeked");
            self.deliver(f);
        }
        while self
            .traffic
            .as_ref()
            .is_some_and(|tr| tr.next <= now && tr.next < tr.until)
        {
            self.send_random_frame();
        }
        while let Some(&Reverse((t, n))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if self.nodes[n].deadline != Some(t) {
                continue; // stale, or the node is dirty and asked again below
            }
            let node = &mut self.nodes[n];
            let mut tx = Tx {
                net: &mut self.net,
                from: node.addr,
            };
            node.t.handle_timeout(now, &mut tx);
            self.timeouts += 1;
            self.hub_timeouts += u64::from(n == HUB);
            self.touch(n);
        }
        self.refresh_deadlines();
    }

    fn deliver(&mut self, f: Flight) {
        let Flight {
            from, to, bytes, ..
        } = f;
        let mut bytes = bytes;
        let n = *self
            .by_addr
            .get(&to)
            .unwrap_or_else(|| panic!("a datagram to {to}, where nobody is"));
        let now = self.net.now;
        let node = &mut self.nodes[n];
        let mut tx = Tx {
            net: &mut self.net,
            from: node.addr,
        };
        if let Incoming::Frame { peer, frame } =
            node.t.handle_datagram(from, &mut bytes, now, &mut tx)
        {
            self.ledger.delivered(n, peer, frame);
        }
        self.net.pool.push(bytes);
        self.touch(n);
    }

    fn send_random_frame(&mut self) {
        let now = self.net.now;
        let tr = self.traffic.as_mut().expect("traffic is on");
        tr.next += FRAME_EVERY;
        let spoke = tr.rng.below(SPOKES as u64) as usize;
        let to_hub = tr.rng.below(2) == 0;
        let len = 60 + tr.rng.below(1518 - 60 + 1) as usize;
        let seq = self.ledger.expect.len() as u32;
        write_frame(&mut tr.frame, seq, len);
        // Node 1 + i is spoke i; at the hub, spoke i is peer i.
        let (from, peer, to, their_peer) = if to_hub {
            (1 + spoke, 0, HUB, spoke)
        } else {
            (HUB, spoke, 1 + spoke, 0)
        };
        self.ledger.expect.push(Expect {
            to: to as u32,
            peer: their_peer as u32,
            len: len as u16,
            delivered: 0,
        });
        if len > 1500 - 28 - 32 {
            self.ledger.fragmented += 1;
        }
        let node = &mut self.nodes[from];
        let mut tx = Tx {
            net: &mut self.net,
            from: node.addr,
        };
        match node
            .t
            .send_frame(PeerId::new(peer), &tr.frame, now, &mut tx)
        {
            SendOutcome::Sent => {}
            SendOutcome::Queued => self.ledger.queued += 1,
            SendOutcome::Dropped => panic!("frame {seq} from node {from} dropped"),
        }
        self.touch(from);
    }
}

/// (VmRSS, VmHWM) in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn live_kib() -> u64 {
    (LIVE.load(AtomicOrdering::Relaxed) / 1024) as u64
}

fn report(what: &str) -> (u64, u64, u64) {
    let (rss, hwm) = rss_kib();
    let live = live_kib();
    eprintln!("memory {what:<34} VmRSS {rss:>8} KiB  VmHWM {hwm:>8} KiB  heap {live:>8} KiB");
    (rss, hwm, live)
}

fn per_peer(kib: u64) -> f64 {
    kib as f64 / SPOKES as f64
}

#[test]
#[ignore = "minutes unoptimised; tests/run.sh runs it with --release"]
fn a_hub_with_1000_spokes_for_an_hour() {
    let started = Instant::now();
    let base = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(WALL_SECS);

    let (rss0, _, live0) = report("before the tunnels");
    let mut nodes = Vec::with_capacity(SPOKES + 1);
    nodes.push(Node {
        addr: hub_addr(),
        t: Tunnel::new(hub_params(), seeded(HUB), base, wall),
        deadline: None,
        dirty: false,
    });
    let (_, _, live_hub) = report("after the hub (1000 peers)");
    for i in 0..SPOKES {
        nodes.push(Node {
            addr: spoke_addr(i),
            t: Tunnel::new(spoke_params(i), seeded(1 + i), base, wall),
            deadline: None,
            dirty: false,
        });
    }
    let (rss_built, _, live_built) = report("after the 1000 spokes");
    let mut sim = Sim::new(base, nodes);

    // Every spoke calls in at once; the hub is soon under load and answers
    // with cookies first.
    sim.run_until(base + Duration::from_secs(60), |s| {
        s.tally.up_spokes == SPOKES && s.tally.up_at_hub == SPOKES
    });
    let up_after = sim.now() - base;
    for i in 0..SPOKES {
        let spoke = sim.nodes[1 + i]
            .t
            .peer_status(PeerId::new(0))
            .expect("the hub");
        assert_eq!(spoke.state, PeerState::Up, "spoke {i} after the handshakes");
        let hub = sim.nodes[HUB]
            .t
            .peer_status(PeerId::new(i))
            .expect("a spoke");
        assert_eq!(hub.state, PeerState::Up, "the hub's spoke {i}");
        assert_eq!(hub.endpoint, Some(spoke_addr(i)), "spoke {i}'s endpoint");
    }
    let cookie_replies_up = sim.nodes[HUB].t.counters().cookie_replies;
    report("all up");

    let end = base + HOUR;
    sim.traffic = Some(Traffic {
        next: sim.now(),
        until: end,
        rng: XorShift(0x5eed_f00d_dead_beef),
        frame: Vec::with_capacity(1518),
    });
    sim.run_until(end, |_| false);
    // Let the last frames land.
    sim.run_until(end + Duration::from_secs(1), |_| false);
    let simulated = sim.now() - base;
    let elapsed = started.elapsed();
    let (rss_end, hwm_end, live_end) = report("after the hour");

    let frames = sim.ledger.expect.len();
    let lost: Vec<usize> = (0..frames)
        .filter(|&s| sim.ledger.expect[s].delivered == 0)
        .collect();
    assert!(lost.is_empty(), "{} of {frames} lost: {lost:?}", lost.len());
    assert!(frames > 170_000, "{frames} frames");
    assert_eq!(sim.ledger.queued, 0, "frames queued: a session was missing");

    let mut hub_handshakes = Vec::with_capacity(SPOKES);
    let mut spoke_counters = Counters::default();
    for i in 0..SPOKES {
        let spoke = sim.nodes[1 + i]
            .t
            .peer_status(PeerId::new(0))
            .expect("the hub");
        assert_eq!(spoke.state, PeerState::Up, "spoke {i} at the end");
        let hub = sim.nodes[HUB]
            .t
            .peer_status(PeerId::new(i))
            .expect("a spoke");
        assert_eq!(hub.state, PeerState::Up, "the hub's spoke {i} at the end");
        hub_handshakes.push(hub.stats.handshakes);
        let c = sim.nodes[1 + i].t.counters();
        spoke_counters.rx_auth_failed += c.rx_auth_failed;
        spoke_counters.rx_replayed += c.rx_replayed;
        spoke_counters.rx_unknown_session += c.rx_unknown_session;
        spoke_counters.rx_malformed += c.rx_malformed;
        spoke_counters.tx_dropped += c.tx_dropped;
        spoke_counters.reassembled += c.reassembled;
        spoke_counters.reassembly_dropped += c.reassembly_dropped;
    }
    let (hs_min, hs_max) = (
        *hub_handshakes.iter().min().expect("peers"),
        *hub_handshakes.iter().max().expect("peers"),
    );
    let hs_total: u64 = hub_handshakes.iter().sum();
    assert!(
        hs_min >= 25,
        "a spoke rekeyed only {hs_min} times in an hour"
    );
    assert_eq!(sim.tally.peer_down, 0, "a peer went down");
    let hub = sim.nodes[HUB].t.counters();
    assert_eq!(hub.rx_auth_failed, 0, "{hub:?}");
    assert_eq!(hub.rx_replayed, 0, "{hub:?}");
    assert_eq!(hub.rx_unknown_peer, 0, "{hub:?}");
    assert_eq!(hub.rx_malformed, 0, "{hub:?}");
    assert_eq!(hub.tx_dropped, 0, "{hub:?}");
    assert_eq!(spoke_counters.rx_auth_failed, 0, "{spoke_counters:?}");
    assert_eq!(spoke_counters.rx_replayed, 0, "{spoke_counters:?}");

    // What one timer check of the hub costs: the data path asks for the
    // deadline at every wake-up.
    let hub_tunnel = &mut sim.nodes[HUB].t;
    let probe = Instant::now();
    for _ in 0..1000 {
        std::hint::black_box(hub_tunnel.poll_timeout());
    }
    let poll_cost = probe.elapsed() / 1000;

    let d = &sim.net.datagrams.by_type;
    eprintln!(
        "simulated {:.0} s in {:.1} s of wall time; all {SPOKES} spokes up after {:.3} s \
         ({cookie_replies_up} cookie replies then, {} more at later rekeys)",
        simulated.as_secs_f64(),
        elapsed.as_secs_f64(),
        up_after.as_secs_f64(),
        hub.cookie_replies - cookie_replies_up,
    );
    eprintln!(
        "hub timers: poll_timeout asked {} times ({:.1} us each at {SPOKES} peers), \
         handle_timeout run {} times",
        sim.hub_polls,
        poll_cost.as_secs_f64() * 1e6,
        sim.hub_timeouts,
    );
    eprintln!(
        "handshakes: {} completed (events, both ends); per hub peer min {hs_min}, max \
         {hs_max}, total {hs_total}",
        sim.tally.handshakes
    );
    eprintln!(
        "datagrams: {} ({} initiations, {} responses, {} cookie replies, {} data incl. \
         keepalives, {} fragments); {} timer wake-ups",
        sim.net.sent, d[1], d[2], d[3], d[4], d[5], sim.timeouts
    );
    eprintln!(
        "frames: {frames} sent and delivered once, intact ({} fragmented)",
        sim.ledger.fragmented
    );
    eprintln!("hub counters: {hub:?}");
    eprintln!("spoke counters (sum): {spoke_counters:?}");
    eprintln!(
        "events: {} endpoint moves, {} refusals reported",
        sim.tally.moved, sim.tally.refused
    );

    // The hub alone: drop the spokes and the simulator, keep the hub.
    let hub_node = sim.nodes.swap_remove(HUB);
    drop(sim);
    let live_hub_end = live_kib();
    drop(hub_node);
    eprintln!(
        "memory per peer: hub {:.1} KiB at rest (built), {:.1} KiB after the hour; one spoke \
         tunnel {:.1} KiB built; whole simulation {:.1} KiB of heap and {:.1} KiB of RSS per \
         spoke at the end (peak RSS {hwm_end} KiB)",
        per_peer(live_hub - live0),
        per_peer(live_hub_end.saturating_sub(live0)),
        per_peer(live_built - live_hub),
        per_peer(live_end - live0),
        per_peer(rss_end - rss0),
    );
    eprintln!(
        "RSS: {rss0} KiB before, {rss_built} KiB built, {rss_end} KiB at the end, peak \
         {hwm_end} KiB"
    );
}
