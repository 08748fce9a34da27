//! Site identity on a virtual clock: a key per peer, both ends bound into
//! the handshake, key rotation, cookies under load, old protocol versions.
//!
//! `Mesh` wires any number of tunnels together by address; datagrams to an
//! address nobody holds are lost, and tests may inject or capture datagrams.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::exchange::UNDER_LOAD_PER_SEC;
use super::tests::{Out, TestEntropy};
use super::*;

const WALL: u64 = 1_800_000_000;

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

pub(super) fn key(b: u8) -> PresharedKey {
    PresharedKey::new([b; 32])
}

pub(super) fn peer(name: &str, endpoint: Option<&str>, keys: &[u8]) -> PeerParams {
    PeerParams {
        name: name.into(),
        keys: keys.iter().map(|&k| key(k)).collect(),
        endpoints: endpoint.map(addr).into_iter().collect(),
    }
}

pub(super) fn link(local: &str, peers: Vec<PeerParams>) -> TunnelParams {
    TunnelParams {
        local_name: local.into(),
        peers,
        keepalive: Duration::from_secs(10),
        rekey_after: Duration::from_secs(120),
        rekey_after_packets: 1 << 30,
        wan_mtu: 1500,
        auto_mtu: false,
        transport: crate::tunnel::TransportMode::Udp,
        max_frame: 1518,
    }
}

pub(super) struct Node {
    addr: SocketAddr,
    pub(super) t: Tunnel,
    /// Frames delivered, with the peer they came from.
    got: Vec<(PeerId, Vec<u8>)>,
}

struct Flight {
    from: SocketAddr,
    to: SocketAddr,
    at: Instant,
    bytes: Vec<u8>,
}

pub(super) struct Mesh {
    pub(super) now: Instant,
    pub(super) nodes: Vec<Node>,
    flights: Vec<Flight>,
    /// Every datagram sent: (from, to, bytes).
    log: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Outer IPv4 packets larger than this are lost (no ICMP).
    path_mtu: usize,
}

impl Mesh {
    pub(super) fn new() -> Mesh {
        Mesh {
            now: Instant::now(),
            nodes: Vec::new(),
            flights: Vec::new(),
            log: Vec::new(),
            path_mtu: usize::MAX,
        }
    }

    pub(super) fn add(&mut self, at: &str, params: TunnelParams) -> usize {
        let seed = self.nodes.len() as u64 * 7919 + 17;
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(WALL);
        self.nodes.push(Node {
            addr: addr(at),
            t: Tunnel::new(params, Box::new(TestEntropy(seed)), self.now, wall),
            got: Vec::new(),
        });
        self.nodes.len() - 1
    }

    fn launch(&mut self, from: SocketAddr, out: Out) {
        for (to, bytes) in out.sent {
            self.log.push((from, to, bytes.clone()));
            self.flights.push(Flight {
                from,
                to,
                at: self.now + Duration::from_millis(5),
                bytes,
            });
        }
    }

    /// Delivers `bytes` to node `n` as if from `from`, now.
    pub(super) fn inject(&mut self, n: usize, from: SocketAddr, bytes: &[u8]) -> Out {
        let mut out = Out::default();
        let mut b = bytes.to_vec();
        if let Incoming::Frame { peer, frame } = self.nodes[n]
            .t
            .handle_datagram(from, &mut b, self.now, &mut out)
        {
            let f = frame.to_vec();
            self.nodes[n].got.push((peer, f));
        }
        // As the shell does: the DH of deferred responses, then back.
        let mut jobs = Vec::new();
        self.nodes[n].t.take_handshake_jobs(&mut jobs);
        for mut job in jobs {
            job.run();
            self.nodes[n].t.finish_handshake(job, self.now, &mut out);
        }
        out
    }

    fn send(&mut self, n: usize, peer: PeerId, frame: &[u8]) -> SendOutcome {
        let mut out = Out::default();
        let r = self.nodes[n].t.send_frame(peer, frame, self.now, &mut out);
        let from = self.nodes[n].addr;
        self.launch(from, out);
        r
    }

    fn step(&mut self, max: Duration) {
        let now = self.now;
        let (mut due, later): (Vec<Flight>, Vec<Flight>) = std::mem::take(&mut self.flights)
            .into_iter()
            .partition(|f| f.at <= now);
        self.flights = later;
        due.sort_by_key(|f| f.at);
        for f in due {
            if f.bytes.len() + IPV4_UDP_OVERHEAD > self.path_mtu {
                continue;
            }
            let Some(n) = self.nodes.iter().position(|x| x.addr == f.to) else {
                continue;
            };
            let out = self.inject(n, f.from, &f.bytes);
            let from = self.nodes[n].addr;
            self.launch(from, out);
        }
        for n in 0..self.nodes.len() {
            if self.nodes[n].t.poll_timeout().is_some_and(|t| t <= now) {
                let mut out = Out::default();
                self.nodes[n].t.handle_timeout(now, &mut out);
                let from = self.nodes[n].addr;
                self.launch(from, out);
            }
        }
        let next = self
            .flights
            .iter()
            .map(|f| f.at)
            .chain(self.nodes.iter().filter_map(|x| x.t.poll_timeout()))
            .min()
            .unwrap_or(now + max);
        self.now = next.clamp(now + Duration::from_micros(1), now + max);
    }

    pub(super) fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step(end - self.now);
        }
    }

    pub(super) fn state(&self, n: usize, peer: PeerId) -> PeerState {
        self.nodes[n].t.peer_status(peer).expect("peer").state
    }

    fn endpoint(&self, n: usize, peer: PeerId) -> Option<SocketAddr> {
        self.nodes[n].t.peer_status(peer).expect("peer").endpoint
    }
}

/// A hub with spokes "b" and "c", each with its own key (2 and 3).
fn hub_and_two_spokes() -> Mesh {
    let mut m = Mesh::new();
    m.add(
        "198.18.0.1:51901",
        link("hub", vec![peer("b", None, &[2]), peer("c", None, &[3])]),
    );
    m.add(
        "198.18.0.2:51901",
        link("b", vec![peer("hub", Some("198.18.0.1:51901"), &[2])]),
    );
    m.add(
        "198.18.0.3:51901",
        link("c", vec![peer("hub", Some("198.18.0.1:51901"), &[3])]),
    );
    m
}

#[test]
fn spokes_with_their_own_keys_come_up_and_are_told_apart() {
    let mut m = hub_and_two_spokes();
    m.run_for(Duration::from_secs(1));
    assert_eq!(m.state(0, PeerId::new(0)), PeerState::Up);
    assert_eq!(m.state(0, PeerId::new(1)), PeerState::Up);
    assert_eq!(
        m.endpoint(0, PeerId::new(0)),
        Some(addr("198.18.0.2:51901"))
    );
    assert_eq!(
        m.endpoint(0, PeerId::new(1)),
        Some(addr("198.18.0.3:51901"))
    );
    m.send(1, PeerId::new(0), b"from b, 0123456789");
    m.send(2, PeerId::new(0), b"from c, 0123456789");
    m.run_for(Duration::from_millis(50));
    let got = &m.nodes[0].got;
    assert!(got.contains(&(PeerId::new(0), b"from b, 0123456789".to_vec())));
    assert!(got.contains(&(PeerId::new(1), b"from c, 0123456789".to_vec())));
}

/// Site C holds only its own key (valid with the hub) and calls itself "b":
/// the hub refuses it, never moves b's endpoint, never takes C's frames as
/// b's, and counts the refusals.
#[test]
fn a_site_cannot_pass_as_another_with_its_own_key() {
    let mut m = hub_and_two_spokes();
    m.run_for(Duration::from_secs(1));
    let b_addr = m.endpoint(0, PeerId::new(0));
    // C reconfigured to call itself "b", keeping its own key.
    m.nodes[2].t = Tunnel::new(
        link("b", vec![peer("hub", Some("198.18.0.1:51901"), &[3])]),
        Box::new(TestEntropy(99)),
        m.now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(WALL + 10),
    );
    let before = m.nodes[0].t.counters().rx_unknown_peer;
    m.run_for(Duration::from_secs(20));
    assert!(m.nodes[0].t.counters().rx_unknown_peer > before);
    assert_ne!(
        m.state(2, PeerId::new(0)),
        PeerState::Up,
        "C got no session"
    );
    assert_eq!(
        m.endpoint(0, PeerId::new(0)),
        b_addr,
        "b's endpoint untouched"
    );
    // Nothing from C's address was ever delivered as anyone's frame.
    m.send(2, PeerId::new(0), b"c pretending");
    m.run_for(Duration::from_millis(50));
    assert!(!m.nodes[0].got.iter().any(|(_, f)| f == b"c pretending"));
    // The refusal was reported for the log, naming the key's real owner.
    let refused: Vec<Event> = std::iter::from_fn(|| m.nodes[0].t.poll_event())
        .filter(|e| matches!(e, Event::HandshakeRefused { .. }))
        .collect();
    assert!(refused.contains(&Event::HandshakeRefused {
        from: addr("198.18.0.3:51901"),
        peer: Some(PeerId::new(1)),
        reason: HandshakeRefusal::UnknownPeer {
            name: ClaimedName::new(b"b")
        },
    }));
}

/// C replays B's initiation from C's own address: the hub may answer (to
/// C, who cannot use the answer), but b's endpoint never moves to C and no
/// frame from C is taken as b's.
#[test]
fn a_replayed_initiation_from_another_address_moves_nothing() {
    let mut m = hub_and_two_spokes();
    m.run_for(Duration::from_secs(1));
    let b_addr = m.endpoint(0, PeerId::new(0));
    // Capture b's next initiation (a rekey), undelivered.
    let mut out = Out::default();
    m.nodes[1].t.peers[0].timers.rekey = Some(m.now);
    let now = m.now;
    m.nodes[1].t.handle_timeout(now, &mut out);
    let init = out.sent[0].1.clone();
    let c = addr("198.18.0.3:51901");
    let answer = m.inject(0, c, &init);
    assert!(answer.sent.iter().all(|(to, _)| *to == c));
    // And again: now it is a replay.
    let before = m.nodes[0].t.counters().rx_replayed;
    assert!(m.inject(0, c, &init).sent.is_empty());
    assert_eq!(m.nodes[0].t.counters().rx_replayed, before + 1);
    m.run_for(Duration::from_secs(1));
    assert_eq!(m.endpoint(0, PeerId::new(0)), b_addr);
}

/// The hub's initiation for B, delivered to C, is refused by C, whether C
/// has its own key or (a shared-key link) the very same key as B.
#[test]
fn a_misdirected_initiation_is_refused() {
    for c_key in [3u8, 2] {
        let mut m = Mesh::new();
        m.add(
            "198.18.0.1:51901",
            link(
                "hub",
                vec![
                    peer("b", Some("198.18.0.2:51901"), &[2]),
                    peer("c", Some("198.18.0.3:51901"), &[c_key]),
                ],
            ),
        );
        m.add(
            "198.18.0.3:51901",
            link("c", vec![peer("hub", None, &[c_key])]),
        );
        let mut out = Out::default();
        let now = m.now;
        m.nodes[0].t.handle_timeout(now, &mut out);
        let for_b = out
            .sent
            .iter()
            .find(|(to, _)| *to == addr("198.18.0.2:51901"))
            .expect("an initiation for b")
            .1
            .clone();
        let before = m.nodes[1].t.counters().rx_auth_failed;
        let reply = m.inject(1, addr("198.18.0.1:51901"), &for_b);
        assert!(reply.sent.is_empty(), "key {c_key}: C answered");
        assert_eq!(m.nodes[1].t.counters().rx_auth_failed, before + 1);
    }
}

/// The whole rotation, with a frame every 10 ms each way and rekeys every
/// few seconds: old key on both ends; the new key added first on A, then on
/// B; the old key dropped on A, then on B. No frame is lost.
#[test]
fn key_rotation_loses_no_frame() {
    let mut m = Mesh::new();
    let mut a = link("a", vec![peer("b", Some("198.18.0.2:51901"), &[1])]);
    let mut b = link("b", vec![peer("a", Some("198.18.0.1:51901"), &[1])]);
    a.rekey_after = Duration::from_secs(5);
    b.rekey_after = Duration::from_secs(5);
    m.add("198.18.0.1:51901", a);
    m.add("198.18.0.2:51901", b);
    m.run_for(Duration::from_secs(1));
    let steps: [(usize, &[u8]); 4] = [(0, &[9, 1]), (1, &[9, 1]), (0, &[9]), (1, &[9])];
    let mut seq = 0u32;
    // Two seconds of traffic between changes, longer than a rekey.
    let traffic = |m: &mut Mesh, seq: &mut u32| {
        for _ in 0..2000 {
            m.send(0, PeerId::new(0), &seq.to_le_bytes());
            m.send(1, PeerId::new(0), &seq.to_le_bytes());
            *seq += 1;
            m.run_for(Duration::from_millis(10));
        }
    };
    let handshakes = |m: &Mesh| {
        m.nodes[0].t.peer_stats(PeerId::new(0)).handshakes
            + m.nodes[1].t.peer_stats(PeerId::new(0)).handshakes
    };
    for (node, keys) in steps {
        let before = handshakes(&m);
        traffic(&mut m, &mut seq);
        assert!(handshakes(&m) > before, "sessions renewed in every phase");
        let now = m.now;
        m.nodes[node]
            .t
            .set_peer_keys(PeerId::new(0), keys.iter().map(|&k| key(k)).collect(), now);
    }
    let before = handshakes(&m);
    traffic(&mut m, &mut seq);
    assert!(
        handshakes(&m) > before,
        "sessions renewed under the new key alone"
    );
    m.run_for(Duration::from_millis(100));
    for node in &m.nodes {
        let got: Vec<u32> = node
            .got
            .iter()
            .map(|(_, f)| u32::from_le_bytes(f[..4].try_into().expect("4 bytes")))
            .collect();
        assert_eq!(
            got,
            (0..seq).collect::<Vec<_>>(),
            "{} lost frames",
            node.addr
        );
    }
    assert_eq!(m.nodes[0].t.counters().tx_dropped, 0);
    // Afterwards only the new key works: a tunnel with the old one is refused.
    let mut old = Mesh::new();
    old.nodes.push(Node {
        addr: m.nodes[1].addr,
        t: Tunnel::new(
            link("b", vec![peer("a", Some("198.18.0.1:51901"), &[1])]),
            Box::new(TestEntropy(5)),
            m.now,
            SystemTime::UNIX_EPOCH + Duration::from_secs(WALL + 3600),
        ),
        got: Vec::new(),
    });
    let mut out = Out::default();
    let now = m.now;
    old.nodes[0].t.handle_timeout(now, &mut out);
    let from = m.nodes[1].addr;
    assert!(m.inject(0, from, &out.sent[0].1).sent.is_empty());
}

/// After a rotation's new key has worked between two sites, the old one is
/// retired for that peer: someone holding only the old key (it leaked, or a
/// box that missed the rotation) can no longer be answered, nor be
/// initiated to, though both sites still list it second.
#[test]
fn the_old_key_is_retired_once_the_new_one_has_worked() {
    let mut m = Mesh::new();
    let mut a = link("a", vec![peer("b", Some("198.18.0.2:51901"), &[9, 1])]);
    a.rekey_after = Duration::from_secs(5);
    m.add("198.18.0.1:51901", a);
    m.add(
        "198.18.0.2:51901",
        link("b", vec![peer("a", Some("198.18.0.1:51901"), &[9, 1])]),
    );
    m.run_for(Duration::from_secs(1));
    assert_eq!(m.state(0, PeerId::new(0)), PeerState::Up);
    // b's box is replaced by one that holds only the old key.
    let now = m.now;
    m.nodes[1] = Node {
        addr: addr("198.18.0.2:51901"),
        t: Tunnel::new(
            link("b", vec![peer("a", Some("198.18.0.1:51901"), &[1])]),
            Box::new(TestEntropy(99)),
            now,
            SystemTime::UNIX_EPOCH + Duration::from_secs(WALL + 60),
        ),
        got: Vec::new(),
    };
    let refused = m.nodes[0].t.counters().rx_auth_failed;
    // A minute of a's rekeys and retries (alternating keys, before), and
    // of the old-key box's initiations.
    for _ in 0..600 {
        m.send(0, PeerId::new(0), b"x");
        m.run_for(Duration::from_millis(100));
        assert_ne!(
            m.state(1, PeerId::new(0)),
            PeerState::Up,
            "the old key got a session"
        );
    }
    assert!(m.nodes[0].t.counters().rx_auth_failed > refused);
    // A reload that sets the keys again starts over: both are tried.
    let now = m.now;
    m.nodes[0]
        .t
        .set_peer_keys(PeerId::new(0), vec![key(9), key(1)], now);
    m.run_for(Duration::from_secs(30));
    assert_eq!(m.state(1, PeerId::new(0)), PeerState::Up);
}

/// A holder of one spoke's key floods fresh initiations from a thousand
/// spoofed sources. Once over the load mark the hub stops doing DH for
/// initiations without a valid cookie, and the other spoke still gets in.
#[test]
fn under_load_the_responder_asks_for_cookies() {
    let mut m = hub_and_two_spokes();
    m.run_for(Duration::from_secs(1));
    // The attacker: a tunnel holding c's key, calling itself c.
    let mut attacker = Tunnel::new(
        link("c", vec![peer("hub", Some("198.18.0.1:51901"), &[3])]),
        Box::new(TestEntropy(4242)),
        m.now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(WALL + 100),
    );
    // b restarts, so it must handshake during the flood.
    m.nodes[1].t = Tunnel::new(
        link("b", vec![peer("hub", Some("198.18.0.1:51901"), &[2])]),
        Box::new(TestEntropy(77)),
        m.now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(WALL + 5),
    );
    let mut responses = 0usize;
    let mut cookies = 0usize;
    for i in 0..3000u32 {
        let mut out = Out::default();
        let now = m.now;
        attacker.start_handshake(PeerId::new(0), now, &mut out);
        let from = SocketAddr::from(([198, 19, (i >> 8) as u8, i as u8], 40000));
        let answer = m.inject(0, from, &out.sent[0].1);
        for (_, d) in &answer.sent {
            match d[0] {
                2 => responses += 1,
                3 => cookies += 1,
                _ => {}
            }
        }
        m.run_for(Duration::from_millis(1));
    }
    // 3000 initiations over 3 s: DH for at most the load mark per second.
    assert!(
        responses <= 4 * UNDER_LOAD_PER_SEC as usize,
        "{responses} responses"
    );
    // Every other one got a cookie reply instead, or (before the load
    // mark) was refused by c's own handshake budget: none by a source's.
    let limited = m.nodes[0].t.counters().handshake_rate_limited as usize;
    assert!(cookies > 1000, "{cookies} cookie replies");
    assert!(
        responses + cookies + limited >= 3000,
        "{responses} + {cookies} + {limited}"
    );
    assert_eq!(m.nodes[0].t.counters().cookie_replies as usize, cookies);
    m.run_for(Duration::from_secs(5));
    assert_eq!(
        m.state(1, PeerId::new(0)),
        PeerState::Up,
        "b got in with a cookie"
    );
    assert_eq!(m.state(0, PeerId::new(0)), PeerState::Up);
}

#[test]
fn an_old_protocol_version_is_refused_and_reported() {
    let mut m = hub_and_two_spokes();
    let mut v1 = vec![0u8; 124];
    v1[0] = 1;
    let from = addr("198.18.0.9:51901");
    assert!(m.inject(0, from, &v1).sent.is_empty());
    assert_eq!(m.nodes[0].t.counters().rx_old_version, 1);
    assert_eq!(
        m.nodes[0].t.poll_event(),
        Some(Event::HandshakeRefused {
            from,
            peer: None,
            reason: HandshakeRefusal::OldVersion,
        })
    );
    // A version-2 initiation (140 bytes, no key hint) likewise.
    let mut v2 = vec![0u8; 140];
    v2[..2].copy_from_slice(&[1, 2]);
    assert!(m.inject(0, from, &v2).sent.is_empty());
    assert_eq!(m.nodes[0].t.counters().rx_old_version, 2);
    assert_eq!(m.nodes[0].t.counters().rx_malformed, 0);
}

/// Refusals are counted one by one but reported a few per second.
#[test]
fn refusal_reports_are_rate_limited() {
    let mut m = hub_and_two_spokes();
    let mut junk = vec![0u8; crate::wire::tunnel::field::INIT_LEN];
    junk[..4].copy_from_slice(&crate::wire::tunnel::MessageType::Initiation.head());
    // From 10,000 addresses (one address is reported once a minute anyway).
    let from = |i: u32| SocketAddr::from(([198, 18, (i >> 8) as u8, i as u8], 1));
    for i in 0..10_000 {
        m.inject(0, from(i), &junk);
    }
    m.now += Duration::from_secs(3);
    for i in 0..10_000 {
        m.inject(0, from(i), &junk);
    }
    assert_eq!(m.nodes[0].t.counters().rx_auth_failed, 20_000);
    let reported = std::iter::from_fn(|| m.nodes[0].t.poll_event()).count();
    assert!((5..=10).contains(&reported), "{reported} reports");
}

/// One address refused again and again for one reason (a site with the
/// wrong key retrying) is reported once a minute; another reason, or
/// another address, is reported at once.
#[test]
fn one_sources_refusals_are_reported_once_a_minute() {
    let mut m = hub_and_two_spokes();
    let mut junk = vec![0u8; crate::wire::tunnel::field::INIT_LEN];
    junk[..4].copy_from_slice(&crate::wire::tunnel::MessageType::Initiation.head());
    let mut reported = 0;
    for _ in 0..180 {
        m.inject(0, addr("198.18.0.9:1"), &junk);
        reported += std::iter::from_fn(|| m.nodes[0].t.poll_event()).count();
        m.now += Duration::from_secs(1);
    }
    assert_eq!(reported, 3, "one every 60 s in 180 s");
    m.inject(0, addr("198.18.0.10:1"), &junk);
    let mut old = junk.clone();
    old.truncate(140);
    old[1] = 2;
    m.inject(0, addr("198.18.0.9:1"), &old);
    let evs: Vec<Event> = std::iter::from_fn(|| m.nodes[0].t.poll_event()).collect();
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert_eq!(m.nodes[0].t.counters().rx_auth_failed, 181);
}

/// Reload adds a peer: it comes up, and the running sessions are untouched
/// (no new handshake with anyone else).
#[test]
fn a_peer_added_live_comes_up_and_the_others_keep_their_sessions() {
    let mut m = hub_and_two_spokes();
    // The hub starts without c.
    m.nodes[0].t = Tunnel::new(
        link("hub", vec![peer("b", None, &[2])]),
        Box::new(TestEntropy(5)),
        m.now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(WALL),
    );
    m.run_for(Duration::from_secs(2));
    assert_eq!(m.state(0, PeerId::new(0)), PeerState::Up);
    assert_ne!(
        m.state(2, PeerId::new(0)),
        PeerState::Up,
        "the hub does not know c yet"
    );
    let b_handshakes = m.nodes[0].t.peer_stats(PeerId::new(0)).handshakes;
    let now = m.now;
    let c = m.nodes[0].t.add_peer(peer("c", None, &[3]), now);
    assert_eq!(c, PeerId::new(1));
    assert_eq!(m.nodes[0].t.peer_id("c"), Some(PeerId::new(1)));
    // c retries with backoff (at most 16 s apart).
    m.run_for(Duration::from_secs(20));
    assert_eq!(m.state(0, PeerId::new(1)), PeerState::Up);
    assert_eq!(
        m.nodes[0].t.peer_stats(PeerId::new(0)).handshakes,
        b_handshakes,
        "b untouched"
    );
    m.send(2, PeerId::new(0), b"from c after the reload");
    m.run_for(Duration::from_millis(50));
    assert!(
        m.nodes[0]
            .got
            .contains(&(PeerId::new(1), b"from c after the reload".to_vec()))
    );
}

/// Reload removes a peer: its session ends at once, its frames and its
/// handshakes are refused from then on, it leaves the status, and the
/// other peers carry on; a peer added later reuses the slot.
#[test]
fn a_removed_peer_is_refused_at_once_and_its_slot_reused() {
    let mut m = hub_and_two_spokes();
    m.run_for(Duration::from_secs(1));
    assert_eq!(m.state(0, PeerId::new(1)), PeerState::Up);
    let now = m.now;
    m.nodes[0].t.remove_peer(PeerId::new(1), now);
    assert!(m.nodes[0].t.peer_status(PeerId::new(1)).is_none());
    assert_eq!(m.nodes[0].t.peer_id("c"), None);
    let before = m.nodes[0].t.counters();
    m.send(2, PeerId::new(0), b"c after removal");
    m.run_for(Duration::from_millis(50));
    assert!(!m.nodes[0].got.iter().any(|(_, f)| f == b"c after removal"));
    assert!(m.nodes[0].t.counters().rx_unknown_session > before.rx_unknown_session);
    // c's new handshakes (once it notices) authenticate under no key.
    m.run_for(Duration::from_secs(60));
    assert!(m.nodes[0].t.counters().rx_auth_failed > before.rx_auth_failed);
    assert_ne!(m.state(2, PeerId::new(0)), PeerState::Up);
    // Frames flooded to the removed slot go nowhere and count nothing.
    let mut out = Out::default();
    let r = m.nodes[0]
        .t
        .send_frame(PeerId::new(1), b"to nobody", m.now, &mut out);
    assert_eq!(r, SendOutcome::Dropped);
    assert!(out.sent.is_empty());
    // b still works.
    m.send(1, PeerId::new(0), b"b still here");
    m.run_for(Duration::from_millis(50));
    assert!(
        m.nodes[0]
            .got
            .contains(&(PeerId::new(0), b"b still here".to_vec()))
    );
    // A new peer takes the free slot and can come up (c's key, c's name).
    let now = m.now;
    assert_eq!(
        m.nodes[0].t.add_peer(peer("c", None, &[3]), now),
        PeerId::new(1)
    );
    m.run_for(Duration::from_secs(20));
    assert_eq!(m.state(0, PeerId::new(1)), PeerState::Up);
}

/// Reload changes a peer's endpoint (the hub moved): the site handshakes
/// at the new address, and frames sent meanwhile still arrive.
#[test]
fn an_endpoint_changed_by_reload_is_used_at_once() {
    let mut m = hub_and_two_spokes();
    m.run_for(Duration::from_secs(1));
    let moved = addr("198.18.0.9:51901");
    m.nodes[0].addr = moved;
    let now = m.now;
    m.nodes[1]
        .t
        .set_peer_endpoint(PeerId::new(0), Some(moved), now);
    assert_eq!(m.endpoint(1, PeerId::new(0)), Some(moved));
    let handshakes = m.nodes[1].t.peer_stats(PeerId::new(0)).handshakes;
    for i in 0..20u8 {
        m.send(1, PeerId::new(0), &[b'x', i]);
        m.run_for(Duration::from_millis(10));
    }
    m.run_for(Duration::from_millis(100));
    for i in 0..20u8 {
        assert!(
            m.nodes[0].got.contains(&(PeerId::new(0), vec![b'x', i])),
            "frame {i}"
        );
    }
    assert!(m.nodes[1].t.peer_stats(PeerId::new(0)).handshakes > handshakes);
    assert_eq!(m.state(1, PeerId::new(0)), PeerState::Up);
}

/// Two sites with `wan_mtu = "auto"` over a path of 1400 bytes that drops
/// larger packets silently: they find it within seconds, big frames cross
/// (in fragments of the right size), probes are never frames; the path
/// shrinks to 1280: they fall back within seconds and frames cross again.
#[test]
fn path_mtu_is_discovered_without_icmp_and_follows_a_shrinking_path() {
    let mut m = Mesh::new();
    let mut a = link("a", vec![peer("b", Some("198.18.0.2:51901"), &[1])]);
    let mut b = link("b", vec![peer("a", Some("198.18.0.1:51901"), &[1])]);
    for p in [&mut a, &mut b] {
        p.auto_mtu = true;
        p.wan_mtu = 1500;
    }
    m.add("198.18.0.1:51901", a);
    m.add("198.18.0.2:51901", b);
    m.path_mtu = 1400;
    let mtu = |m: &Mesh, n: usize| {
        m.nodes[n]
            .t
            .peer_status(PeerId::new(0))
            .expect("peer")
            .path_mtu
    };
    assert_eq!(mtu(&m, 0), BASE_MTU, "traffic starts at the floor");
    let big = vec![0x5a; 1514];
    let mut sent = 0;
    let start = m.now;
    let mut found = None;
    while m.now < start + Duration::from_secs(20) {
        m.send(0, PeerId::new(0), &big);
        sent += 1;
        m.run_for(Duration::from_millis(100));
        if found.is_none() && mtu(&m, 0) > 1390 {
            found = Some(m.now - start);
        }
    }
    let found = found.expect("the path MTU was found");
    assert!(found <= Duration::from_secs(10), "found after {found:?}");
    assert!((1393..=1400).contains(&mtu(&m, 0)), "{}", mtu(&m, 0));
    let got = m.nodes[1].got.len();
    assert_eq!(got, sent, "every frame crossed, probes are not frames");
    assert_eq!(
        m.nodes[1].t.peer_stats(PeerId::new(0)).rx_frames,
        sent as u64
    );
    assert_eq!(m.nodes[1].t.counters().rx_replayed, 0);
    // The path shrinks: full-size packets vanish, small ones pass.
    m.path_mtu = 1280;
    let cut = m.now;
    let mut recovered = None;
    while m.now < cut + Duration::from_secs(20) {
        let before = m.nodes[1].got.len();
        m.send(0, PeerId::new(0), &big);
        m.run_for(Duration::from_millis(100));
        if m.nodes[1].got.len() > before {
            recovered.get_or_insert(m.now - cut);
        } else {
            recovered = None;
        }
    }
    let recovered = recovered.expect("frames cross again");
    assert!(
        recovered <= Duration::from_secs(10),
        "recovered after {recovered:?}"
    );
    assert!(mtu(&m, 0) <= 1280);
}

/// A hub of `n` spokes ("spoke-0" ...), each with its own key.
fn hub_of(n: usize) -> Tunnel {
    let peers = (0..n)
        .map(|i| PeerParams {
            name: format!("spoke-{i}"),
            keys: vec![spoke_key(i)],
            endpoints: Vec::new(),
        })
        .collect();
    Tunnel::new(
        link("hub", peers),
        Box::new(TestEntropy(5)),
        Instant::now(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(WALL),
    )
}

fn spoke_key(i: usize) -> PresharedKey {
    let mut k = [0x5a; 32];
    k[..8].copy_from_slice(&(i as u64).to_le_bytes());
    PresharedKey::new(k)
}

/// An initiation spoke 0 makes for the hub.
fn spoke0_initiation(now: Instant) -> Vec<u8> {
    let mut spoke = Tunnel::new(
        link(
            "spoke-0",
            vec![PeerParams {
                name: "hub".into(),
                keys: vec![spoke_key(0)],
                endpoints: vec![addr("198.18.0.1:51901")],
            }],
        ),
        Box::new(TestEntropy(6)),
        now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(WALL),
    );
    let mut out = Out::default();
    spoke.start_handshake(PeerId::new(0), now, &mut out);
    out.sent.remove(0).1
}

/// The work an initiation that authenticates nothing costs the responder
/// does not grow with its number of peers: none at all for one whose key
/// hint names no key (random garbage), exactly one first-MAC check for one
/// that copies a real hint off the wire. (Counted, not timed: the tunnel's
/// count of first-MAC checks.) The old responder tried every key's MAC.
#[test]
fn garbage_initiations_cost_the_same_at_any_number_of_peers() {
    use crate::wire::tunnel::{MessageType, field};
    let from = addr("198.18.0.9:40000");
    let mut noise = TestEntropy(99);
    for n in [1usize, 10, 100, 1000] {
        let mut hub = hub_of(n);
        let now = Instant::now();
        // Random bytes shaped like an initiation.
        for _ in 0..100 {
            let mut junk = vec![0u8; field::INIT_LEN];
            noise.fill(&mut junk);
            junk[..4].copy_from_slice(&MessageType::Initiation.head());
            let mut out = Out::default();
            hub.handle_datagram(from, &mut junk, now, &mut out);
            assert!(out.sent.is_empty());
        }
        assert_eq!(hub.counters().rx_auth_failed, 100, "{n} peers");
        assert_eq!(hub.mac1_checks(), 0, "{n} peers: random garbage");
        // A real initiation of spoke 0's, its payload changed: the hint is
        // real, the rest garbage.
        let real = spoke0_initiation(now);
        for i in 0..100 {
            let mut junk = real.clone();
            junk[field::INIT_PAYLOAD.start + i % 60] ^= 1 + i as u8;
            let mut out = Out::default();
            hub.handle_datagram(from, &mut junk, now, &mut out);
            assert!(out.sent.is_empty());
        }
        assert_eq!(hub.counters().rx_auth_failed, 200, "{n} peers");
        assert_eq!(hub.mac1_checks(), 100, "{n} peers: one MAC each");
        // And the real one is found and answered at the same cost.
        let mut good = real.clone();
        let mut out = Out::default();
        hub.handle_datagram(from, &mut good, now, &mut out);
        assert_eq!(out.sent.len(), 1, "{n} peers: answered");
        assert_eq!(out.sent[0].1[0], MessageType::Response.code());
        assert_eq!(hub.mac1_checks(), 101, "{n} peers");
    }
}

/// During a rotation each of a peer's two keys has its own hint: an
/// initiation under either is found with one MAC check.
#[test]
fn both_keys_of_a_rotation_are_found_with_one_check_each() {
    let mut m = Mesh::new();
    m.add(
        "198.18.0.1:51901",
        link("hub", vec![peer("b", None, &[2, 4]), peer("c", None, &[3])]),
    );
    for (i, first) in [4u8, 2].into_iter().enumerate() {
        let now = m.now;
        let mut spoke = Tunnel::new(
            link("b", vec![peer("hub", Some("198.18.0.1:51901"), &[first])]),
            Box::new(TestEntropy(11 + i as u64)),
            now,
            SystemTime::UNIX_EPOCH + Duration::from_secs(WALL + 10 * i as u64),
        );
        let mut out = Out::default();
        spoke.start_handshake(PeerId::new(0), now, &mut out);
        let answer = m.inject(0, addr("198.18.0.2:51901"), &out.sent[0].1);
        assert_eq!(answer.sent.len(), 1, "key {first}: answered");
        assert_eq!(m.nodes[0].t.mac1_checks(), i as u64 + 1, "key {first}");
    }
}

/// An insider (a holder of spoke c's key) makes fresh initiations under
/// c's name with spoke b's source address, faster than a source's
/// handshake rate but below the load mark, for ten minutes. They are
/// c's handshakes and charged to c: b's own rekeys and responses still get
/// through, and b's session stays up with every frame delivered. (The old
/// responder charged them to b's address, whose bucket then refused b's
/// own handshakes until its session expired.)
#[test]
fn an_insider_spoofing_a_spokes_address_does_not_take_its_session_down() {
    let mut m = hub_and_two_spokes();
    m.run_for(Duration::from_secs(1));
    assert_eq!(m.state(0, PeerId::new(0)), PeerState::Up);
    let b_addr = m.nodes[1].addr;
    let hub_addr = m.nodes[0].addr;
    let mut insider = Tunnel::new(
        link("c", vec![peer("hub", Some("198.18.0.1:51901"), &[3])]),
        Box::new(TestEntropy(4243)),
        m.now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(WALL + 100),
    );
    let b_handshakes = m.nodes[1].t.peer_stats(PeerId::new(0)).handshakes;
    let end = m.now + Duration::from_secs(600);
    let mut sent = 0u32;
    let mut seq = 0u32;
    while m.now < end {
        // 40 a second: twice a source's rate, under the load mark.
        let mut out = Out::default();
        let now = m.now;
        insider.start_handshake(PeerId::new(0), now, &mut out);
        let answer = m.inject(0, b_addr, &out.sent[0].1);
        m.launch(hub_addr, answer);
        if sent % 4 == 0 {
            m.send(1, PeerId::new(0), &seq.to_be_bytes());
            seq += 1;
        }
        sent += 1;
        m.run_for(Duration::from_millis(25));
        assert_eq!(m.state(1, PeerId::new(0)), PeerState::Up, "b at {sent}");
        assert_eq!(m.state(0, PeerId::new(0)), PeerState::Up, "hub at {sent}");
    }
    m.run_for(Duration::from_millis(100));
    assert!(
        m.nodes[1].t.peer_stats(PeerId::new(0)).handshakes >= b_handshakes + 4,
        "b kept rekeying"
    );
    let got: Vec<u32> = m.nodes[0]
        .got
        .iter()
        .filter(|(p, _)| *p == PeerId::new(0))
        .filter_map(|(_, f)| Some(u32::from_be_bytes(f.as_slice().try_into().ok()?)))
        .collect();
    assert_eq!(
        got,
        (0..seq).collect::<Vec<_>>(),
        "every frame of b's arrived"
    );
    assert_eq!(m.endpoint(0, PeerId::new(0)), Some(b_addr));
    // The insider's initiations were refused as c's, past c's budget.
    assert!(m.nodes[0].t.counters().handshake_rate_limited > 10_000);
}

/// Garbage that copies a real key hint, from spoofed sources in a thousand
/// different /24s, far faster than the link's budget: the hub checks at
/// most its budget of first MACs (the rest is dropped unchecked and
/// counted), so such garbage costs bounded work.
#[test]
fn garbage_with_a_real_hint_costs_at_most_the_links_budget() {
    use super::exchange::UNAUTH_PER_LINK;
    use crate::wire::tunnel::field;
    let mut hub = hub_of(100);
    let start = Instant::now();
    let real = spoke0_initiation(start);
    let sent = 4 * UNAUTH_PER_LINK as usize;
    // Spread over 1 s of virtual time.
    for i in 0..sent {
        let mut junk = real.clone();
        junk[field::INIT_PAYLOAD.start] ^= 1;
        let from = SocketAddr::from(([198, 18, (i % 250) as u8, (i / 250 % 250) as u8], 40000));
        let now = start + Duration::from_micros(1_000_000 * i as u64 / sent as u64);
        let mut out = Out::default();
        hub.handle_datagram(from, &mut junk, now, &mut out);
        assert!(out.sent.is_empty());
    }
    let checks = hub.mac1_checks();
    assert!(
        checks <= 2 * u64::from(UNAUTH_PER_LINK),
        "{checks} MAC checks for {sent} datagrams"
    );
    let c = hub.counters();
    assert_eq!(c.rx_auth_failed + c.handshake_rate_limited, sent as u64);
    assert_eq!(c.rx_auth_failed, checks);
}

/// Someone floods a spoke's /24 with initiations that copy a real hint,
/// past the block's budget, while the spoke restarts: the hub asks the
/// block's sources for a cookie, and the spoke, which receives its cookie,
/// gets in.
#[test]
fn a_spoke_in_a_flooded_block_gets_in_with_a_cookie() {
    use super::exchange::UNAUTH_PER_BLOCK;
    use crate::wire::tunnel::field;
    let mut m = hub_and_two_spokes();
    m.run_for(Duration::from_secs(1));
    // An initiation of c's (a copy of c's tunnel makes it), spoiled: its
    // hint is real, its MAC is not.
    let mut c = Tunnel::new(
        link("c", vec![peer("hub", Some("198.18.0.1:51901"), &[3])]),
        Box::new(TestEntropy(4244)),
        m.now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(WALL),
    );
    let mut out = Out::default();
    let now = m.now;
    c.start_handshake(PeerId::new(0), now, &mut out);
    let mut junk = out.sent[0].1.clone();
    junk[field::INIT_PAYLOAD.start] ^= 1;
    // Three times the block's rate: its burst is spent after a second.
    let per_ms = 3 * UNAUTH_PER_BLOCK as usize / 1000;
    for ms in 0..6000 {
        if ms == 1500 {
            // b restarts: it must handshake now.
            m.nodes[1].t = Tunnel::new(
                link("b", vec![peer("hub", Some("198.18.0.1:51901"), &[2])]),
                Box::new(TestEntropy(78)),
                m.now,
                SystemTime::UNIX_EPOCH + Duration::from_secs(WALL + 5),
            );
        }
        for i in 0..per_ms {
            let from = SocketAddr::from(([198, 18, 0, 100 + (i % 100) as u8], 40000));
            m.inject(0, from, &junk);
        }
        m.run_for(Duration::from_millis(1));
        if ms > 1500 && m.state(1, PeerId::new(0)) == PeerState::Up {
            break;
        }
    }
    assert_eq!(m.state(1, PeerId::new(0)), PeerState::Up, "b got in");
    assert_eq!(m.state(0, PeerId::new(0)), PeerState::Up);
    assert!(m.nodes[0].t.counters().cookie_replies > 0, "with a cookie");
}

/// With the DH of responses left to the shell (run between two holds of
/// its lock), spokes come up, rekey and carry every frame as before.
#[test]
fn deferred_responses_bring_spokes_up_and_rekey() {
    let mut m = hub_and_two_spokes();
    for n in &mut m.nodes {
        n.t.set_deferred_handshakes(true);
    }
    m.run_for(Duration::from_secs(1));
    assert_eq!(m.state(0, PeerId::new(0)), PeerState::Up);
    assert_eq!(m.state(0, PeerId::new(1)), PeerState::Up);
    let before = m.nodes[0].t.peer_stats(PeerId::new(0)).handshakes;
    let mut seq = 0u32;
    for _ in 0..3000 {
        m.send(1, PeerId::new(0), &seq.to_be_bytes());
        seq += 1;
        m.run_for(Duration::from_millis(100));
    }
    m.run_for(Duration::from_millis(100));
    assert!(m.nodes[0].t.peer_stats(PeerId::new(0)).handshakes >= before + 2);
    let got: Vec<u32> = m.nodes[0]
        .got
        .iter()
        .filter(|(p, _)| *p == PeerId::new(0))
        .filter_map(|(_, f)| Some(u32::from_be_bytes(f.as_slice().try_into().ok()?)))
        .collect();
    assert_eq!(got, (0..seq).collect::<Vec<_>>());
}

/// A deferred response is queued once per fresh initiation (a copy in the
/// same batch is a replay), and is not sent if its peer was removed before
/// the shell brought it back; its reserved index is gone with the peer.
#[test]
fn a_deferred_response_checks_its_peer_is_still_there() {
    let mut m = hub_and_two_spokes();
    m.nodes[0].t.set_deferred_handshakes(true);
    let mut out = Out::default();
    let now = m.now;
    m.nodes[1].t.handle_timeout(now, &mut out);
    let init = out.sent[0].1.clone();
    let b_addr = m.nodes[1].addr;
    let hub = &mut m.nodes[0].t;
    let mut answer = Out::default();
    for _ in 0..2 {
        let mut d = init.clone();
        hub.handle_datagram(b_addr, &mut d, now, &mut answer);
    }
    assert!(answer.sent.is_empty(), "nothing sent before the DH");
    assert_eq!(hub.counters().rx_replayed, 1, "the copy is a replay");
    let mut jobs = Vec::new();
    hub.take_handshake_jobs(&mut jobs);
    assert_eq!(jobs.len(), 1);
    let indices = hub.index.len();
    assert!(indices >= 1);
    jobs[0].run();
    hub.remove_peer(PeerId::new(0), now);
    assert_eq!(hub.index.len(), 0, "the reserved index went with b");
    hub.finish_handshake(jobs.remove(0), now, &mut answer);
    assert!(answer.sent.is_empty(), "no response for a removed peer");
    assert!(hub.peer_status(PeerId::new(0)).is_none());
}
