//! A high-availability pair on a virtual clock: site A is two boxes with
//! the same name and key (box 1 active, box 2 standby), site B knows A by
//! both addresses (`endpoint = [box1, box2]`). A standby says nothing to
//! anyone; when box 2 takes over, its handshake moves B to it.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::tests::TestEntropy;
use super::*;

const PSK: [u8; 32] = [0x5a; 32];
const BOX1: &str = "198.18.0.1:51901";
const BOX2: &str = "198.18.0.2:51901";
const SITE_B: &str = "198.18.1.1:51901";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn link(local: &str, peer: &str, endpoints: &[&str]) -> TunnelParams {
    TunnelParams {
        local_name: local.into(),
        peers: vec![PeerParams {
            name: peer.into(),
            keys: vec![PresharedKey::new(PSK)],
            endpoints: endpoints.iter().map(|e| addr(e)).collect(),
        }],
        keepalive: Duration::from_secs(10),
        rekey_after: Duration::from_secs(120),
        rekey_after_packets: 1 << 32,
        wan_mtu: 1500,
        auto_mtu: false,
        transport: TransportMode::Udp,
        max_frame: 1518,
    }
}

#[derive(Default)]
struct Out {
    scratch: Vec<u8>,
    sent: Vec<(SocketAddr, Vec<u8>)>,
}

impl Transmit for Out {
    fn buffer(&mut self) -> &mut [u8] {
        self.scratch.resize(2048, 0);
        &mut self.scratch
    }
    fn commit(&mut self, len: usize, to: SocketAddr) {
        self.sent.push((to, self.scratch[..len].to_vec()));
    }
}

/// Three tunnels and the datagrams between them (delivered at once, in
/// order).
struct Pair {
    now: Instant,
    box1: Tunnel,
    box2: Tunnel,
    b: Tunnel,
    /// Box 1 is dead: what is sent to it is lost.
    box1_dead: bool,
    /// Datagrams each box sent (box 1, box 2).
    sent_by: [usize; 2],
    /// Frames delivered to (box 1, box 2, B).
    frames: [Vec<Vec<u8>>; 3],
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t = |p, seed| Tunnel::new(p, Box::new(TestEntropy(seed)), now, wall);
        let mut pair = Pair {
            now,
            box1: t(link("a", "b", &[SITE_B]), 1),
            box2: t(link("a", "b", &[SITE_B]), 2),
            b: t(link("b", "a", &[BOX1, BOX2]), 3),
            box1_dead: false,
            sent_by: [0; 2],
            frames: Default::default(),
        };
        pair.box2.set_standby(true, now);
        pair
    }

    /// Delivers `queue` (from, to, bytes) and everything it causes.
    fn pump(&mut self, mut queue: Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
        let mut steps = 0;
        while let Some((from, to, mut bytes)) = (!queue.is_empty()).then(|| queue.remove(0)) {
            steps += 1;
            assert!(steps < 1000, "the exchange does not settle");
            let (me, slot) = match to {
                _ if to == addr(BOX1) => (addr(BOX1), 0),
                _ if to == addr(BOX2) => (addr(BOX2), 1),
                _ => (addr(SITE_B), 2),
            };
            if slot == 0 && self.box1_dead {
                continue;
            }
            let t = match slot {
                0 => &mut self.box1,
                1 => &mut self.box2,
                _ => &mut self.b,
            };
            let mut out = Out::default();
            if let Incoming::Frame { frame, .. } =
                t.handle_datagram(from, &mut bytes, self.now, &mut out)
            {
                self.frames[slot].push(frame.to_vec());
            }
            if slot < 2 {
                self.sent_by[slot] += out.sent.len();
            }
            queue.extend(out.sent.into_iter().map(|(to, b)| (me, to, b)));
        }
    }

    /// Runs every tunnel's due timers and delivers what they send.
    fn tick(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        let mut queue = Vec::new();
        for (me, t) in [
            (addr(BOX1), &mut self.box1),
            (addr(BOX2), &mut self.box2),
            (addr(SITE_B), &mut self.b),
        ] {
            let mut out = Out::default();
            if t.poll_timeout().is_some_and(|d| d <= now) {
                t.handle_timeout(now, &mut out);
            }
            queue.extend(out.sent.into_iter().map(|(to, b)| (me, to, b)));
        }
        if self.box1_dead {
            queue.retain(|(from, _, _)| *from != addr(BOX1));
        }
        self.pump(queue);
    }

    /// B sends a frame to A and says where it went.
    fn frame_from_b(&mut self, frame: &[u8]) -> SendOutcome {
        let mut out = Out::default();
        let r = self.b.send_frame(PeerId::new(0), frame, self.now, &mut out);
        let q = out
            .sent
            .into_iter()
            .map(|(to, b)| (addr(SITE_B), to, b))
            .collect();
        self.pump(q);
        r
    }

    fn b_endpoint(&self) -> Option<SocketAddr> {
        self.b.peer_status(PeerId::new(0)).and_then(|s| s.endpoint)
    }

    fn b_state(&self) -> PeerState {
        self.b.peer_state(PeerId::new(0)).expect("peer a")
    }
}

fn frame(tag: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0xa0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0xb0, 1]);
    f[14] = tag;
    f
}

/// Box 1 and B up, box 2 standing by, a frame through.
fn settled() -> Pair {
    let mut p = Pair::new();
    for _ in 0..10 {
        p.tick(Duration::from_millis(100));
    }
    assert_eq!(p.b_state(), PeerState::Up);
    assert_eq!(p.b_endpoint(), Some(addr(BOX1)));
    assert_eq!(p.frame_from_b(&frame(1)), SendOutcome::Sent);
    assert_eq!(p.frames[0].len(), 1);
    p
}

#[test]
fn a_standby_says_nothing_to_anyone() {
    let mut p = settled();
    assert_eq!(p.sent_by[1], 0);
    assert_eq!(p.box2.poll_timeout(), None);
    // A site that knows A only at box 2 initiates there: no answer.
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut c = Tunnel::new(
        link("b", "a", &[BOX2]),
        Box::new(TestEntropy(9)),
        p.now,
        wall,
    );
    for _ in 0..20 {
        p.now += Duration::from_millis(500);
        let mut out = Out::default();
        if c.poll_timeout().is_some_and(|d| d <= p.now) {
            c.handle_timeout(p.now, &mut out);
        }
        let q = out
            .sent
            .into_iter()
            .map(|(to, b)| (addr(SITE_B), to, b))
            .collect();
        p.pump(q);
    }
    assert_ne!(c.peer_state(PeerId::new(0)), Some(PeerState::Up));
    for _ in 0..50 {
        p.tick(Duration::from_millis(200));
    }
    assert_eq!(p.sent_by[1], 0, "the standby answered");
    assert!(p.frames[1].is_empty());
    let mut out = Out::default();
    assert_eq!(
        p.box2
            .send_frame(PeerId::new(0), &frame(3), p.now, &mut out),
        SendOutcome::Dropped
    );
    assert!(out.sent.is_empty());
}

#[test]
fn demotion_drops_every_session_at_once() {
    let mut p = settled();
    while p.box1.poll_event().is_some() {}
    p.box1.set_standby(true, p.now);
    assert!(p.box1.standby());
    assert!(matches!(p.box1.poll_event(), Some(Event::PeerDown { .. })));
    assert_eq!(p.box1.peer_state(PeerId::new(0)), Some(PeerState::Down));
    let before = p.sent_by[0];
    p.frame_from_b(&frame(4));
    for _ in 0..30 {
        p.tick(Duration::from_millis(500));
    }
    assert_eq!(p.sent_by[0], before, "a demoted box still talks");
    assert_eq!(p.frames[0].len(), 1, "a demoted box still delivers");
    // Setting it again changes nothing.
    p.box1.set_standby(true, p.now);
    assert!(p.box1.poll_event().is_none());
}

#[test]
fn promotion_moves_the_other_site_to_the_second_box() {
    let mut p = settled();
    p.box1_dead = true;
    p.tick(Duration::from_millis(300));
    p.box2.set_standby(false, p.now);
    assert!(
        p.box2.poll_timeout().is_some_and(|t| t <= p.now),
        "no handshake due"
    );
    p.tick(Duration::ZERO);
    assert_eq!(p.box2.peer_state(PeerId::new(0)), Some(PeerState::Up));
    // B was up with box 1 and box 2 is one of its configured addresses:
    // the handshake box 2 initiated moves it all the same.
    assert_eq!(p.b_endpoint(), Some(addr(BOX2)));
    assert_eq!(p.b_state(), PeerState::Up);
    assert_eq!(p.frame_from_b(&frame(5)), SendOutcome::Sent);
    assert_eq!(p.frames[1], vec![frame(5)]);
    // B keeps probing box 1 (more preferred), which is gone: no move back.
    for _ in 0..40 {
        p.tick(Duration::from_millis(500));
        p.frame_from_b(&frame(6));
    }
    assert_eq!(p.b_endpoint(), Some(addr(BOX2)));
    assert_eq!(p.frames[1].len(), 41);
}

#[test]
fn a_clean_switchover_moves_the_other_site_too() {
    let mut p = settled();
    // keepalived demotes box 1 and promotes box 2; box 1 stays reachable.
    p.box1.set_standby(true, p.now);
    p.box2.set_standby(false, p.now);
    p.tick(Duration::ZERO);
    assert_eq!(p.b_endpoint(), Some(addr(BOX2)));
    for _ in 0..40 {
        p.tick(Duration::from_millis(500));
        p.frame_from_b(&frame(7));
    }
    assert_eq!(
        p.b_endpoint(),
        Some(addr(BOX2)),
        "B went back to the standby"
    );
    assert_eq!(p.frames[1].len(), 40);
    assert_eq!(p.frames[0].len(), 1);
}
