//! Two tunnel endpoints wired together in memory on a virtual clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::*;

/// Deterministic entropy for tests (xorshift64*; not for real keys).
pub(crate) struct TestEntropy(pub u64);

impl Entropy for TestEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    }
}

/// Collects datagrams.
#[derive(Default)]
pub(crate) struct Out {
    scratch: Vec<u8>,
    pub sent: Vec<(SocketAddr, Vec<u8>)>,
}

impl Transmit for Out {
    fn buffer(&mut self) -> &mut [u8] {
        self.scratch.resize(9000, 0);
        &mut self.scratch
    }
    fn commit(&mut self, len: usize, to: SocketAddr) {
        self.sent.push((to, self.scratch[..len].to_vec()));
    }
}

const PSK: [u8; 32] = [0x42; 32];

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn params(local: &str, peer: &str, endpoint: Option<SocketAddr>) -> TunnelParams {
    keyed_params(local, peer, endpoint, &[PSK])
}

/// Parameters for a link with one peer that uses `keys`.
fn keyed_params(
    local: &str,
    peer: &str,
    endpoint: Option<SocketAddr>,
    keys: &[[u8; 32]],
) -> TunnelParams {
    TunnelParams {
        local_name: local.into(),
        peers: vec![peer_params(peer, endpoint, keys)],
        keepalive: Duration::from_secs(10),
        rekey_after: Duration::from_secs(120),
        rekey_after_packets: 1 << 32,
        wan_mtu: 1500,
        auto_mtu: false,
        transport: crate::tunnel::TransportMode::Udp,
        max_frame: 1518,
    }
}

fn peer_params(name: &str, endpoint: Option<SocketAddr>, keys: &[[u8; 32]]) -> PeerParams {
    PeerParams {
        name: name.into(),
        keys: keys.iter().map(|k| PresharedKey::new(*k)).collect(),
        endpoints: endpoint.into_iter().collect(),
    }
}

/// A datagram in flight.
struct Flight {
    from: SocketAddr,
    to: SocketAddr,
    at: Instant,
    bytes: Vec<u8>,
}

/// Network impairment.
#[derive(Clone, Copy, Default)]
struct Impair {
    loss_pct: u64,
    dup_pct: u64,
    /// Extra random delay up to this many ms (reorders).
    jitter_ms: u64,
}

struct Pair {
    now: Instant,
    t: [Tunnel; 2],
    addr: [SocketAddr; 2],
    flights: Vec<Flight>,
    rng: TestEntropy,
    impair: Impair,
    delivered: [Vec<Vec<u8>>; 2],
    /// Every datagram ever sent, for replay attacks.
    log: Vec<(usize, Vec<u8>)>,
    delay: Duration,
    /// The WAN is down: everything is lost.
    cut: bool,
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a_addr = addr("198.18.0.1:51901");
        let b_addr = addr("198.18.0.2:51901");
        Pair {
            now,
            t: [
                Tunnel::new(
                    params("a", "b", Some(b_addr)),
                    Box::new(TestEntropy(1)),
                    now,
                    wall,
                ),
                Tunnel::new(
                    params("b", "a", Some(a_addr)),
                    Box::new(TestEntropy(2)),
                    now,
                    wall,
                ),
            ],
            addr: [a_addr, b_addr],
            flights: Vec::new(),
            rng: TestEntropy(99),
            impair: Impair::default(),
            delivered: [Vec::new(), Vec::new()],
            log: Vec::new(),
            delay: Duration::from_millis(5),
            cut: false,
        }
    }

    fn rand(&mut self, n: u64) -> u64 {
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        u64::from_le_bytes(b) % n.max(1)
    }

    fn launch(&mut self, side: usize, out: Out) {
        for (to, bytes) in out.sent {
            self.log.push((side, bytes.clone()));
            if self.cut || self.rand(100) < self.impair.loss_pct {
                continue;
            }
            let copies = if self.rand(100) < self.impair.dup_pct {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let jitter = Duration::from_millis(self.rand(self.impair.jitter_ms + 1));
                self.flights.push(Flight {
                    from: self.addr[side],
                    to,
                    at: self.now + self.delay + jitter,
                    bytes: bytes.clone(),
                });
            }
        }
    }

    fn send(&mut self, side: usize, frame: &[u8]) -> SendOutcome {
        let mut out = Out::default();
        let r = self.t[side].send_frame(PeerId::new(0), frame, self.now, &mut out);
        self.launch(side, out);
        r
    }

    /// Delivers everything due and runs due timers, then advances the clock
    /// to the next event but at most `max_step`.
    fn step(&mut self, max_step: Duration) {
        let now = self.now;
        let (mut due, later): (Vec<Flight>, Vec<Flight>) = std::mem::take(&mut self.flights)
            .into_iter()
            .partition(|f| f.at <= now);
        self.flights = later;
        due.sort_by_key(|f| f.at); // stable: equal times keep sending order
        for mut f in due {
            let Some(side) = self.addr.iter().position(|a| *a == f.to) else {
                continue; // sent to an address nobody holds any more
            };
            let mut out = Out::default();
            if let Incoming::Frame { frame, .. } =
                self.t[side].handle_datagram(f.from, &mut f.bytes, now, &mut out)
            {
                self.delivered[side].push(frame.to_vec());
            }
            self.launch(side, out);
        }
        for side in 0..2 {
            if self.t[side].poll_timeout().is_some_and(|t| t <= now) {
                let mut out = Out::default();
                self.t[side].handle_timeout(now, &mut out);
                self.launch(side, out);
            }
        }
        let next = self
            .flights
            .iter()
            .map(|f| f.at)
            .chain(self.t.iter().filter_map(|t| t.poll_timeout()))
            .min()
            .unwrap_or(now + max_step);
        self.now = next.clamp(now + Duration::from_micros(1), now + max_step);
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step(end - self.now);
        }
    }

    fn state(&self, side: usize) -> PeerState {
        self.t[side]
            .peer_status(PeerId::new(0))
            .expect("peer 0")
            .state
    }
}

fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(8)];
    f[..4].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(4) {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    f
}

fn seq_of(f: &[u8]) -> u32 {
    let seq = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
    assert_eq!(f, frame(seq, f.len()).as_slice(), "frame {seq} corrupted");
    seq
}

#[test]
fn handshake_brings_both_sides_up() {
    let mut p = Pair::new();
    assert_eq!(p.state(0), PeerState::Connecting);
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.state(0), PeerState::Up);
    assert_eq!(p.state(1), PeerState::Up);
    // Both initiated at once: each completed at least its own handshake.
    assert!(p.t[0].peer_stats(PeerId::new(0)).handshakes >= 1);
    assert!(p.t[1].peer_stats(PeerId::new(0)).handshakes >= 1);
    assert_eq!(p.send(0, &frame(1, 100)), SendOutcome::Sent);
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.delivered[1], vec![frame(1, 100)]);
    assert_eq!(p.t[0].peer_stats(PeerId::new(0)).tx_frames, 1);
    assert_eq!(p.t[1].peer_stats(PeerId::new(0)).rx_frames, 1);
    assert_eq!(p.t[1].peer_stats(PeerId::new(0)).rx_bytes, 100);
    assert_eq!(p.t[0].counters(), Counters::default());
    assert_eq!(p.t[1].counters(), Counters::default());
}

#[test]
fn frames_sent_before_the_handshake_are_queued_not_lost() {
    let mut p = Pair::new();
    for s in 0..10 {
        assert_eq!(p.send(0, &frame(s, 200)), SendOutcome::Queued);
    }
    p.run_for(Duration::from_secs(1));
    let got: Vec<u32> = p.delivered[1].iter().map(|f| seq_of(f)).collect();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

/// A simulated hour with traffic both ways, many rekeys, no loss.
#[test]
fn an_hour_of_rekeys_loses_and_duplicates_nothing() {
    let mut p = Pair::new();
    let mut seq = 0u32;
    let end = p.now + Duration::from_secs(3600);
    while p.now < end {
        p.send(0, &frame(seq, 300));
        p.send(1, &frame(seq, 1400));
        seq += 1;
        p.run_for(Duration::from_millis(250));
    }
    p.run_for(Duration::from_secs(1));
    for side in 0..2 {
        let got: Vec<u32> = p.delivered[side].iter().map(|f| seq_of(f)).collect();
        let missing: Vec<u32> = (0..seq).filter(|s| !got.contains(s)).collect();
        assert!(missing.is_empty(), "side {side} lost {missing:?}");
        assert_eq!(got, (0..seq).collect::<Vec<_>>(), "side {side}");
        assert_eq!(p.t[side].counters(), Counters::default(), "side {side}");
    }
    let hs =
        p.t[0].peer_stats(PeerId::new(0)).handshakes + p.t[1].peer_stats(PeerId::new(0)).handshakes;
    assert!(
        hs >= 2 * 29,
        "about one rekey per 2 min on each side, got {hs}"
    );
    let st = p.t[0].peer_status(PeerId::new(0)).expect("peer");
    assert_eq!(st.state, PeerState::Up);
    assert!(
        p.now.duration_since(st.last_handshake.expect("handshaken")) < Duration::from_secs(136)
    );
}

#[test]
fn loss_duplication_and_reordering() {
    let mut p = Pair::new();
    p.impair = Impair {
        loss_pct: 10,
        dup_pct: 10,
        jitter_ms: 30,
    };
    let mut seq = 0u32;
    let end = p.now + Duration::from_secs(900);
    while p.now < end {
        for _ in 0..5 {
            // Every third frame needs fragmenting.
            let len = if seq % 3 == 0 { 1518 } else { 500 };
            p.send(0, &frame(seq, len));
            p.send(1, &frame(seq, len));
            seq += 1;
        }
        p.run_for(Duration::from_millis(100));
    }
    p.run_for(Duration::from_secs(3));
    for side in 0..2 {
        let mut got: Vec<u32> = p.delivered[side].iter().map(|f| seq_of(f)).collect();
        let n = got.len();
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), n, "side {side}: a frame was delivered twice");
        // ~10% loss per datagram (~19% for two-fragment frames).
        assert!(
            n as f64 > f64::from(seq) * 0.7,
            "side {side}: only {n} of {seq}"
        );
        let c = p.t[side].counters();
        assert!(c.rx_replayed > 0, "duplicates were seen and counted");
        assert_eq!(c.rx_auth_failed, 0);
        assert!(c.reassembled > 0);
    }
    assert_eq!(p.state(0), PeerState::Up);
}

#[test]
fn full_size_frame_crosses_1500_byte_wan_in_fragments() {
    let mut p = Pair::new();
    p.run_for(Duration::from_secs(1));
    let mut out = Out::default();
    p.t[0].send_frame(PeerId::new(0), &frame(7, 1518), p.now, &mut out);
    assert_eq!(out.sent.len(), 2);
    for (_, d) in &out.sent {
        assert!(d.len() + IPV4_UDP_OVERHEAD <= 1500, "datagram {}", d.len());
    }
    // The largest unfragmented frame: 1500 - 28 - 32.
    let mut out2 = Out::default();
    p.t[0].send_frame(PeerId::new(0), &frame(8, 1440), p.now, &mut out2);
    assert_eq!(out2.sent.len(), 1);
    assert_eq!(out2.sent[0].1.len() + IPV4_UDP_OVERHEAD, 1500);
    p.launch(0, out);
    p.launch(0, out2);
    p.run_for(Duration::from_millis(50));
    assert_eq!(p.delivered[1], vec![frame(7, 1518), frame(8, 1440)]);
    assert_eq!(p.t[0].counters().fragmented, 1);
    assert_eq!(p.t[1].counters().reassembled, 1);
    // Too large for the interface MTU: refused.
    assert_eq!(p.send(0, &frame(9, 1519)), SendOutcome::Dropped);
}

#[test]
fn rekey_by_packet_count() {
    let mut p = Pair::new();
    for t in &mut p.t {
        t.params.rekey_after_packets = 1000;
    }
    p.run_for(Duration::from_secs(1));
    let before = p.t[0].peer_stats(PeerId::new(0)).handshakes;
    for s in 0..5000 {
        p.send(0, &frame(s, 64));
        if s % 50 == 0 {
            p.run_for(Duration::from_millis(20));
        }
    }
    p.run_for(Duration::from_secs(1));
    assert!(p.t[0].peer_stats(PeerId::new(0)).handshakes >= before + 4);
    let got: Vec<u32> = p.delivered[1].iter().map(|f| seq_of(f)).collect();
    assert_eq!(got, (0..5000).collect::<Vec<_>>());
}

#[test]
fn keepalives_and_dead_peer_detection() {
    let mut p = Pair::new();
    p.run_for(Duration::from_secs(1));
    let sent_before = p.log.len();
    p.run_for(Duration::from_secs(60));
    // Idle: keepalives keep both sides up.
    assert!(p.log.len() > sent_before + 8);
    assert_eq!(p.state(0), PeerState::Up);
    assert_eq!(
        p.t[1].peer_stats(PeerId::new(0)).rx_frames,
        0,
        "keepalives are not frames"
    );
    // The WAN fails: A marks B down within 3 keepalives (+1 interval).
    p.cut = true;
    p.run_for(Duration::from_secs(41));
    assert_eq!(p.state(0), PeerState::Down);
    assert!(std::iter::from_fn(|| p.t[0].poll_event()).any(|e| e
        == Event::PeerDown {
            peer: PeerId::new(0)
        }));
    // Retries back off: over 60 s far fewer than 60 initiations.
    let log_before = p.log.iter().filter(|(s, _)| *s == 0).count();
    p.run_for(Duration::from_secs(60));
    let inits = p.log.iter().filter(|(s, b)| *s == 0 && b[0] == 1).count();
    let a_sent = p.log.iter().filter(|(s, _)| *s == 0).count() - log_before;
    assert!(a_sent < 15, "backoff: {a_sent} datagrams in 60 s");
    assert!(inits >= 4);
    // The WAN comes back: A is up again.
    p.cut = false;
    p.run_for(Duration::from_secs(20));
    assert_eq!(p.state(0), PeerState::Up);
}

#[test]
fn peer_restart_gets_a_new_session_and_old_traffic_is_rejected() {
    let mut p = Pair::new();
    p.run_for(Duration::from_secs(1));
    for s in 0..20 {
        p.send(1, &frame(s, 100));
        p.send(0, &frame(s, 100));
    }
    p.run_for(Duration::from_secs(1));
    let old: Vec<(usize, Vec<u8>)> = p.log.clone();
    // B restarts: a fresh instance, a few seconds later on the wall clock.
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_005);
    p.t[1] = Tunnel::new(
        params("b", "a", Some(p.addr[0])),
        Box::new(TestEntropy(77)),
        p.now,
        wall,
    );
    p.delivered = [Vec::new(), Vec::new()];
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.state(1), PeerState::Up);
    p.send(1, &frame(100, 100));
    p.send(0, &frame(101, 100));
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.delivered[0], vec![frame(100, 100)]);
    assert_eq!(p.delivered[1], vec![frame(101, 100)]);
    // Everything from before the restart, replayed at both: nothing gets
    // through, nothing is answered.
    let (a_before, b_before) = (p.t[0].counters(), p.t[1].counters());
    let old_data_from_a = old
        .iter()
        .filter(|(side, d)| *side == 0 && matches!(d[0], 2 | 4 | 5))
        .count() as u64;
    assert!(old_data_from_a >= 20);
    for (side, bytes) in old {
        let target = 1 - side;
        let mut out = Out::default();
        let mut b = bytes.clone();
        let r = p.t[target].handle_datagram(p.addr[side], &mut b, p.now, &mut out);
        assert_eq!(r, Incoming::Nothing);
        assert!(out.sent.is_empty(), "a replay was answered");
    }
    let (a, b) = (p.t[0].counters(), p.t[1].counters());
    let dropped = |c: Counters| c.rx_replayed + c.rx_auth_failed + c.rx_unknown_session;
    assert!(dropped(a) > dropped(a_before));
    assert!(dropped(b) > dropped(b_before));
    // Every old data packet and response from A names a session (or
    // handshake) the new B never had.
    assert_eq!(
        b.rx_unknown_session - b_before.rx_unknown_session,
        old_data_from_a
    );
}

#[test]
fn endpoint_roams_to_the_new_source_address() {
    let mut p = Pair::new();
    p.run_for(Duration::from_secs(1));
    while p.t[0].poll_event().is_some() {}
    // B's WAN address changes; it keeps sending to A.
    p.addr[1] = addr("198.18.0.66:40000");
    p.send(1, &frame(1, 100));
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.delivered[0], vec![frame(1, 100)]);
    let st = p.t[0].peer_status(PeerId::new(0)).expect("peer");
    assert_eq!(st.endpoint, Some(addr("198.18.0.66:40000")));
    assert_eq!(st.stats.endpoint_changes, 1, "one move counted");
    assert!(std::iter::from_fn(|| p.t[0].poll_event()).any(|e| e
        == Event::EndpointMoved {
            peer: PeerId::new(0),
            from: Some(addr("198.18.0.2:51901")),
            to: addr("198.18.0.66:40000"),
        }));
    // A's answers now reach B at its new address.
    p.send(0, &frame(2, 100));
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.delivered[1], vec![frame(2, 100)]);
}

#[test]
fn replayed_initiation_is_refused_silently() {
    let mut p = Pair::new();
    p.run_for(Duration::from_secs(1));
    let init = p
        .log
        .iter()
        .find(|(s, b)| *s == 0 && b[0] == 1)
        .expect("A sent an initiation")
        .1
        .clone();
    let before = p.t[1].counters().rx_replayed;
    let mut out = Out::default();
    let mut b = init;
    p.t[1].handle_datagram(p.addr[0], &mut b, p.now, &mut out);
    assert!(out.sent.is_empty());
    assert_eq!(p.t[1].counters().rx_replayed, before + 1);
}

#[test]
fn wrong_psk_gets_no_answer() {
    let now = Instant::now();
    let mut a = Tunnel::new(
        keyed_params("a", "b", Some(addr("198.18.0.2:1")), &[[1; 32]]),
        Box::new(TestEntropy(5)),
        now,
        SystemTime::UNIX_EPOCH,
    );
    let mut b = Tunnel::new(
        keyed_params("b", "a", None, &[[2; 32]]),
        Box::new(TestEntropy(6)),
        now,
        SystemTime::UNIX_EPOCH,
    );
    let mut out = Out::default();
    a.handle_timeout(now, &mut out);
    assert_eq!(out.sent.len(), 1);
    let mut reply = Out::default();
    let mut d = out.sent[0].1.clone();
    b.handle_datagram(addr("198.18.0.1:1"), &mut d, now, &mut reply);
    assert!(reply.sent.is_empty());
    assert_eq!(b.counters().rx_auth_failed, 1);
    assert_eq!(
        b.peer_status(PeerId::new(0)).expect("peer").state,
        PeerState::Connecting
    );
}

/// Truncated, tampered and random datagrams: never a panic, never an
/// answer, always a counted reason.
#[test]
fn garbage_is_classified_and_never_answered() {
    let mut p = Pair::new();
    p.run_for(Duration::from_secs(1));
    p.send(0, &frame(1, 600));
    let samples: Vec<Vec<u8>> = p.log.iter().map(|(_, b)| b.clone()).collect();
    let mut rng = TestEntropy(1234);
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for s in &samples {
        for cut in 0..s.len().min(120) {
            cases.push(s[..cut].to_vec());
        }
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 1 << (i % 8);
            cases.push(t);
        }
    }
    for n in 0..2000 {
        let mut b = vec![0u8; n % 200];
        rng.fill(&mut b);
        if n % 4 == 0 && !b.is_empty() {
            b[0] = [1, 2, 4, 5][n % 3];
            if b.len() > 3 {
                b[1..4].fill(0);
            }
        }
        cases.push(b);
    }
    let total = cases.len() as u64;
    let before = p.t[1].counters();
    for mut c in cases {
        let mut out = Out::default();
        let r = p.t[1].handle_datagram(p.addr[0], &mut c, p.now, &mut out);
        assert_eq!(r, Incoming::Nothing);
        assert!(out.sent.is_empty());
    }
    let c = p.t[1].counters();
    let counted = (c.rx_auth_failed - before.rx_auth_failed)
        + (c.rx_malformed - before.rx_malformed)
        + (c.rx_replayed - before.rx_replayed)
        + (c.rx_unknown_peer - before.rx_unknown_peer)
        + (c.rx_unknown_session - before.rx_unknown_session)
        + (c.rx_old_version - before.rx_old_version)
        + (c.handshake_rate_limited - before.handshake_rate_limited);
    assert_eq!(counted, total, "every bad datagram has a counted reason");
    assert_eq!(c.cookie_replies, before.cookie_replies);
}

#[test]
fn three_peers_are_told_apart_by_name() {
    let now = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let hub_params = TunnelParams {
        peers: vec![
            peer_params("b", None, &[PSK]),
            peer_params("c", None, &[PSK]),
        ],
        ..params("hub", "x", None)
    };
    let mut hub = Tunnel::new(hub_params, Box::new(TestEntropy(3)), now, wall);
    let hub_addr = addr("198.18.0.1:51901");
    // "c" calls first, from an address the hub has never seen.
    for (name, from, want) in [("c", "198.18.0.3:5", 1usize), ("b", "198.18.0.2:5", 0)] {
        let mut spoke = Tunnel::new(
            params(name, "hub", Some(hub_addr)),
            Box::new(TestEntropy(10 + want as u64)),
            now,
            wall,
        );
        let mut out = Out::default();
        spoke.handle_timeout(now, &mut out);
        let mut reply = Out::default();
        let mut d = out.sent[0].1.clone();
        hub.handle_datagram(addr(from), &mut d, now, &mut reply);
        assert_eq!(reply.sent.len(), 1);
        // The spoke completes the handshake and confirms it with a
        // keepalive: that first data packet gives the hub its endpoint.
        let mut confirm = Out::default();
        let mut r = reply.sent[0].1.clone();
        spoke.handle_datagram(hub_addr, &mut r, now, &mut confirm);
        assert_eq!(confirm.sent.len(), 1);
        let mut k = confirm.sent[0].1.clone();
        hub.handle_datagram(addr(from), &mut k, now, &mut Out::default());
        assert_eq!(
            hub.peer_status(PeerId::new(want)).expect("peer").endpoint,
            Some(addr(from))
        );
    }
}

/// Both ends hold the same PSK, so an attacker could send an endpoint's own
/// initiation back to it from the peer's address. It must not be answered
/// (answering would end in a session with itself). Its first MAC is keyed
/// to the name of the site it was meant for, so it fails at once (the
/// instance id would catch it next).
#[test]
fn reflected_initiation_is_refused() {
    let mut p = Pair::new();
    p.run_for(Duration::from_secs(1));
    // A starts a rekey; the attacker swallows it and reflects it to A.
    let mut out = Out::default();
    p.t[0].handle_timeout(p.now + Duration::from_secs(121), &mut out);
    let init = out
        .sent
        .iter()
        .find(|(_, d)| d[0] == 1)
        .expect("a rekey initiation")
        .1
        .clone();
    let before = p.t[0].counters().rx_auth_failed;
    let mut reply = Out::default();
    let mut d = init;
    let r = p.t[0].handle_datagram(
        p.addr[1],
        &mut d,
        p.now + Duration::from_secs(121),
        &mut reply,
    );
    assert_eq!(r, Incoming::Nothing);
    assert!(reply.sent.is_empty(), "A answered its own initiation");
    assert_eq!(p.t[0].counters().rx_auth_failed, before + 1);
}

// --- Hardening from the review of the tunnel against WireGuard (issue 9). ---

/// Delivers one datagram by hand; returns the frame it produced, if any.
fn deliver(p: &mut Pair, to: usize, from: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Out::default();
    let mut b = bytes.to_vec();
    let got = match p.t[to].handle_datagram(from, &mut b, p.now, &mut out) {
        Incoming::Frame { frame, .. } => Some(frame.to_vec()),
        Incoming::Nothing => None,
    };
    p.launch(to, out);
    got
}

/// Fragment ids restart at 0 in each sender instance. A frame left half
/// reassembled by a peer that then restarted must not be completed with the
/// restarted peer's first fragmented frame.
#[test]
fn fragments_of_a_restarted_peer_never_join_old_leftovers() {
    let mut p = Pair::new();
    p.run_for(Duration::from_secs(1));
    let old_frame = frame(1, 1518);
    let mut out = Out::default();
    p.t[0].send_frame(PeerId::new(0), &old_frame, p.now, &mut out);
    assert_eq!(out.sent.len(), 2, "two fragments");
    let a = p.addr[0];
    assert_eq!(deliver(&mut p, 1, a, &out.sent[0].1), None);
    // A restarts (fresh instance, later wall clock) and handshakes again.
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_005);
    p.t[0] = Tunnel::new(
        params("a", "b", Some(p.addr[1])),
        Box::new(TestEntropy(55)),
        p.now,
        wall,
    );
    p.run_for(Duration::from_millis(500));
    assert_eq!(p.state(0), PeerState::Up);
    // Its first fragmented frame has id 0 again, the same count and size;
    // only its second half arrives.
    let mut out = Out::default();
    p.t[0].send_frame(PeerId::new(0), &frame(2, 1518), p.now, &mut out);
    assert_eq!(out.sent.len(), 2);
    assert_eq!(deliver(&mut p, 1, a, &out.sent[1].1), None, "spliced frame");
    assert!(p.delivered[1].is_empty());
}

/// A session refuses counters at the cap before its replay window sees them.
#[test]
fn received_counters_at_the_cap_are_refused() {
    use crate::wire::tunnel::{MessageType, emit_data_header};
    let mut p = Pair::new();
    p.run_for(Duration::from_secs(1));
    // What a sender that ignored the cap would send, under A's real key.
    let seal_at = |p: &Pair, counter: u64, seq: u32| -> Vec<u8> {
        let s = p.t[0].peers[0].current.as_ref().expect("session");
        let mut pkt = vec![0u8; DATA_OVERHEAD + 100];
        emit_data_header(&mut pkt, MessageType::Data, s.remote_index, counter);
        let (hdr, rest) = pkt.split_at_mut(16);
        rest[..100].copy_from_slice(&frame(seq, 100));
        let tag = s.keys.send.seal(counter, hdr, &mut rest[..100]);
        rest[100..].copy_from_slice(&tag);
        pkt
    };
    let cap = super::peer::REJECT_AFTER_MESSAGES;
    let a = p.addr[0];
    let before = p.t[1].counters().rx_replayed;
    let pkt = seal_at(&p, cap, 7);
    assert_eq!(deliver(&mut p, 1, a, &pkt), None);
    assert_eq!(p.t[1].counters().rx_replayed, before + 1);
    // Just below the cap is an ordinary packet.
    let pkt = seal_at(&p, cap - 1, 8);
    assert_eq!(deliver(&mut p, 1, a, &pkt), Some(frame(8, 100)));
}

/// However many packets `rekey_after_packets` allows, a key is replaced
/// after 2^30 of them.
#[test]
fn rekey_by_packet_count_is_capped_for_aes_gcm() {
    let mut p = Pair::new();
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.t[0].params.rekey_after_packets, 1 << 32);
    let hs = p.t[0].peer_stats(PeerId::new(0)).handshakes;
    p.t[0].peers[0]
        .current
        .as_mut()
        .expect("session")
        .send_counter = 1 << 30;
    p.send(0, &frame(1, 100));
    p.run_for(Duration::from_millis(200));
    assert_eq!(
        p.t[0].peer_stats(PeerId::new(0)).handshakes,
        hs + 1,
        "rekeyed"
    );
    assert_eq!(p.delivered[1], vec![frame(1, 100)]);
}

/// A box that booted with its clock far behind (no NTP yet) writes old
/// timestamps; a responder that already saw newer ones from it refuses them.
/// Once the shell reports the corrected wall clock, the next initiation is
/// accepted.
#[test]
fn initiation_timestamps_follow_the_wall_clock() {
    let now = Instant::now();
    let synced = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let b_addr = addr("198.18.0.2:51901");
    let mut p = Pair::new();
    // B only answers (A is a roaming peer to it): only A's initiations count.
    p.t[1] = Tunnel::new(
        params("b", "a", None),
        Box::new(TestEntropy(2)),
        now,
        synced,
    );
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.state(1), PeerState::Up);
    let first_contact = p.t[1].peer_status(PeerId::new(0)).expect("peer");
    assert_eq!(first_contact.endpoint, Some(p.addr[0]));
    assert_eq!(
        first_contact.stats.endpoint_changes, 0,
        "learning a roaming peer's first address is not a move"
    );
    // A restarts before its clock is set: 2001.
    let early = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    p.t[0] = Tunnel::new(
        params("a", "b", Some(b_addr)),
        Box::new(TestEntropy(9)),
        p.now,
        early,
    );
    p.run_for(Duration::from_secs(5));
    assert_ne!(p.state(0), PeerState::Up, "stale initiations are refused");
    assert!(p.t[1].counters().rx_replayed > 0);
    // NTP sets the clock; the shell tells the tunnel.
    let now = p.now;
    p.t[0].set_wall_clock(now, synced + Duration::from_secs(60));
    p.run_for(Duration::from_secs(20));
    assert_eq!(p.state(0), PeerState::Up);
    assert_eq!(p.send(0, &frame(1, 100)), SendOutcome::Sent);
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.delivered[1], vec![frame(1, 100)]);
}

#[test]
fn handshake_timestamps_never_go_backwards() {
    let mut p = Pair::new();
    let now = p.now;
    let t1 = p.t[0].wall_timestamp(now);
    // The clock is stepped back an hour.
    let back = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 - 3600);
    p.t[0].set_wall_clock(now, back);
    let t2 = p.t[0].wall_timestamp(now + Duration::from_secs(1));
    assert!(t2 > t1);
}

/// An initiation relayed from another address (anyone on the path can do
/// that) does not move the peer's endpoint; the first data packet under the
/// new session does.
#[test]
fn endpoint_moves_on_authenticated_data_not_on_an_initiation() {
    let mut p = Pair::new();
    p.run_for(Duration::from_secs(1));
    // Capture A's next initiation (a rekey) instead of delivering it.
    let mut out = Out::default();
    p.t[0].peers[0].timers.rekey = Some(p.now);
    p.t[0].handle_timeout(p.now, &mut out);
    let init = out
        .sent
        .iter()
        .find(|(_, b)| b[0] == 1)
        .expect("an initiation")
        .1
        .clone();
    let elsewhere = addr("198.18.7.7:4000");
    while p.t[1].poll_event().is_some() {}
    let mut out = Out::default();
    let mut b = init;
    p.t[1].handle_datagram(elsewhere, &mut b, p.now, &mut out);
    assert_eq!(out.sent.len(), 1, "answered (to the relay's address)");
    assert_eq!(out.sent[0].0, elsewhere);
    let st = p.t[1].peer_status(PeerId::new(0)).expect("peer");
    assert_eq!(st.endpoint, Some(p.addr[0]), "endpoint not moved");
    assert_eq!(st.stats.endpoint_changes, 0);
    assert!(
        std::iter::from_fn(|| p.t[1].poll_event())
            .all(|e| !matches!(e, Event::EndpointMoved { .. }))
    );
}

/// Replaying a captured initiation with the peer's source address, far
/// faster than the rate limit, costs that peer nothing: stale initiations
/// are refused before the limiter is charged, and real rekeys go on.
#[test]
fn replayed_handshakes_do_not_starve_the_real_peer() {
    let mut p = Pair::new();
    p.run_for(Duration::from_secs(1));
    let captured: Vec<Vec<u8>> = p
        .log
        .iter()
        .filter(|(s, b)| *s == 0 && matches!(b[0], 1 | 2))
        .map(|(_, b)| b.clone())
        .collect();
    assert!(!captured.is_empty());
    let a = p.addr[0];
    let hs =
        p.t[1].peer_stats(PeerId::new(0)).handshakes + p.t[0].peer_stats(PeerId::new(0)).handshakes;
    // 500 per second for 10 minutes of virtual time, rekeys every 2 minutes.
    let end = p.now + Duration::from_secs(600);
    let mut seq = 0;
    while p.now < end {
        for _ in 0..5 {
            for c in &captured {
                deliver(&mut p, 1, a, c);
            }
        }
        p.send(0, &frame(seq, 100));
        seq += 1;
        p.run_for(Duration::from_millis(10));
    }
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.t[1].counters().handshake_rate_limited, 0);
    assert!(
        p.t[1].peer_stats(PeerId::new(0)).handshakes + p.t[0].peer_stats(PeerId::new(0)).handshakes
            >= hs + 8
    );
    assert_eq!(p.state(1), PeerState::Up);
    let got: Vec<u32> = p.delivered[1].iter().map(|f| seq_of(f)).collect();
    assert_eq!(got, (0..seq).collect::<Vec<_>>(), "no frame lost");
}

#[test]
fn a_segmentation_batch_counts_as_the_frames_it_carries() {
    // Frames behind a virtio-net header, as the daemon's TAP hands them.
    let mut p = Pair::new();
    let big = |local, peer, endpoint, seed| {
        let mut t = Tunnel::new(
            TunnelParams {
                max_frame: 65_535 + 18 + crate::wire::virtio::HDR_LEN,
                ..params(local, peer, Some(endpoint))
            },
            Box::new(TestEntropy(seed)),
            p.now,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        );
        t.set_offload_header(true);
        t
    };
    p.t = [big("a", "b", p.addr[1], 1), big("b", "a", p.addr[0], 2)];
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.state(0), PeerState::Up);

    // A TCP/IPv4 batch: 14 + 20 + 32 bytes of headers (TCP at 34, data
    // offset 8 words), ten 1448-byte segments of payload.
    let mut batch = vec![1u8, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0];
    let mut frame = vec![0u8; 66 + 14_480];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[34 + 12] = 8 << 4;
    batch.extend_from_slice(&frame);
    // A plain 60-byte frame (header all zero).
    let mut plain = vec![0u8; 10 + 60];
    plain[10 + 12..10 + 14].copy_from_slice(&[0x08, 0x06]);

    let before = p.t[0].peer_status(PeerId::new(0)).expect("peer").stats;
    assert_eq!(p.send(0, &batch), SendOutcome::Sent);
    assert_eq!(p.send(0, &plain), SendOutcome::Sent);
    p.run_for(Duration::from_millis(50));
    assert_eq!(p.delivered[1], vec![batch.clone(), plain.clone()]);
    let sent = p.t[0].peer_status(PeerId::new(0)).expect("peer").stats;
    let got = p.t[1].peer_status(PeerId::new(0)).expect("peer").stats;
    let wire_bytes = 14_480 + 10 * 66 + 60;
    assert_eq!(sent.tx_frames - before.tx_frames, 11);
    assert_eq!(sent.tx_bytes - before.tx_bytes, wire_bytes);
    assert_eq!((got.rx_frames, got.rx_bytes), (11, wire_bytes));
}
