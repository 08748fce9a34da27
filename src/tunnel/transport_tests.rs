//! The tunnel over TCP records and the `auto` fallback, on a virtual clock:
//! two tunnels whose messages are carried by hand, each tagged with the
//! transport it was sent on.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::tests::TestEntropy;
use super::*;

/// One message sent: over TCP (`stream`) or UDP, to `to`.
#[derive(Debug, Clone)]
struct Sent {
    stream: bool,
    to: SocketAddr,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Wire {
    udp: Vec<u8>,
    tcp: Vec<u8>,
    sent: Vec<Sent>,
}

impl Transmit for Wire {
    fn buffer(&mut self) -> &mut [u8] {
        self.udp.resize(1500, 0);
        &mut self.udp
    }
    fn commit(&mut self, len: usize, to: SocketAddr) {
        let bytes = self.udp[..len].to_vec();
        self.sent.push(Sent {
            stream: false,
            to,
            bytes,
        });
    }
    fn stream_buffer(&mut self) -> &mut [u8] {
        self.tcp.resize(crate::wire::tcp::MAX_MESSAGE, 0);
        &mut self.tcp
    }
    fn commit_stream(&mut self, len: usize, to: SocketAddr) {
        let bytes = self.tcp[..len].to_vec();
        self.sent.push(Sent {
            stream: true,
            to,
            bytes,
        });
    }
}

const PSK: [u8; 32] = [0x24; 32];

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// A's UDP address and the address B sees A's TCP connection come from.
const A: &str = "198.18.0.1:51901";
const A_CONN: &str = "198.18.0.1:40000";
const B: &str = "198.18.0.2:51901";

fn tunnel(local: &str, peer: &str, endpoint: &str, mode: TransportMode, seed: u64) -> Tunnel {
    tunnel_to(local, &[(peer, endpoint)], mode, seed)
}

fn tunnel_to(local: &str, peers: &[(&str, &str)], mode: TransportMode, seed: u64) -> Tunnel {
    let params = TunnelParams {
        local_name: local.into(),
        peers: peers
            .iter()
            .map(|(name, endpoint)| PeerParams {
                name: (*name).into(),
                keys: vec![PresharedKey::new(PSK)],
                endpoints: vec![addr(endpoint)],
            })
            .collect(),
        keepalive: Duration::from_secs(10),
        rekey_after: Duration::from_secs(120),
        rekey_after_packets: 1 << 32,
        wan_mtu: 1500,
        auto_mtu: false,
        transport: mode,
        max_frame: 9018,
    };
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    Tunnel::new(params, Box::new(TestEntropy(seed)), Instant::now(), wall)
}

/// Delivers everything in `sent` from `from` to `to` (A's TCP messages
/// arrive from `A_CONN`, B's on A's connection to B); UDP is dropped when
/// `udp_blocked`. Returns the frames delivered.
fn deliver(
    sent: Vec<Sent>,
    to: &mut Tunnel,
    from_a: bool,
    udp_blocked: bool,
    now: Instant,
    back: &mut Wire,
) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for mut m in sent {
        let incoming = if m.stream {
            let conn = if from_a { addr(A_CONN) } else { addr(B) };
            to.handle_record(conn, None, &mut m.bytes, now, back)
        } else if udp_blocked {
            continue;
        } else {
            let src = if from_a { addr(A) } else { addr(B) };
            to.handle_datagram(src, &mut m.bytes, now, back)
        };
        if let Incoming::Frame { frame, .. } = incoming {
            frames.push(frame.to_vec());
        }
    }
    frames
}

#[test]
fn tcp_carries_the_same_protocol_on_the_connection_it_came_on() {
    let mut a = tunnel("a", "b", B, TransportMode::Tcp, 1);
    let mut b = tunnel("b", "a", A, TransportMode::Tcp, 2);
    let mut now = Instant::now();
    let (mut wa, mut wb) = (Wire::default(), Wire::default());
    a.handle_timeout(now, &mut wa);
    let init = std::mem::take(&mut wa.sent);
    assert_eq!(init.len(), 1);
    assert!(init[0].stream, "tcp: the initiation is a record");
    assert_eq!(init[0].to, addr(B), "on a connection to B's endpoint");

    now += Duration::from_millis(5);
    deliver(init, &mut b, true, true, now, &mut wb);
    assert_eq!(b.authenticated_sender(), Some(PeerId::new(0)));
    let resp = std::mem::take(&mut wb.sent);
    assert_eq!(resp.len(), 1);
    assert!(resp[0].stream);
    assert_eq!(
        resp[0].to,
        addr(A_CONN),
        "back on the connection it came on"
    );

    deliver(resp, &mut a, false, true, now, &mut wa);
    assert_eq!(a.authenticated_sender(), Some(PeerId::new(0)));
    assert_eq!(a.peer_state(PeerId::new(0)), Some(PeerState::Up));
    // A frame far above the 1500-byte WAN MTU: one record, not fragments.
    let frame = vec![0xabu8; 9000];
    assert_eq!(
        a.send_frame(PeerId::new(0), &frame, now, &mut wa),
        SendOutcome::Sent
    );
    let out = std::mem::take(&mut wa.sent);
    assert!(out.iter().all(|m| m.stream && m.to == addr(B)));
    let got = deliver(out, &mut b, true, true, now, &mut wb);
    assert_eq!(got, vec![frame]);
    assert_eq!(a.counters().fragmented, 0);
    let st = b.peer_status(PeerId::new(0)).expect("peer a");
    assert!(st.tcp);
    assert_eq!(st.state, PeerState::Up);
    assert_eq!(
        st.endpoint,
        Some(addr(A_CONN)),
        "reached over its connection"
    );
    assert_eq!(
        st.endpoints,
        vec![Some(addr(A))],
        "its UDP endpoint is kept"
    );
    // B's frames go back on A's connection.
    assert_eq!(
        b.send_frame(PeerId::new(0), &[1u8; 60], now, &mut wb),
        SendOutcome::Sent
    );
    assert!(wb.sent.iter().all(|m| m.stream && m.to == addr(A_CONN)));
    // That connection closed: B reaches A at its endpoint again.
    b.stream_closed(addr(A_CONN));
    wb.sent.clear();
    b.send_frame(PeerId::new(0), &[1u8; 60], now, &mut wb);
    assert!(wb.sent.iter().all(|m| m.stream && m.to == addr(A)));
}

#[test]
fn a_record_that_proves_nothing_gets_no_answer() {
    let mut a = tunnel("a", "b", B, TransportMode::Tcp, 1);
    let mut b = tunnel("b", "a", A, TransportMode::Tcp, 2);
    let now = Instant::now();
    let (mut wa, mut wb) = (Wire::default(), Wire::default());
    a.handle_timeout(now, &mut wa);
    let init = std::mem::take(&mut wa.sent);
    let mut garbage = init[0].bytes.clone();
    garbage[50] ^= 1;
    for mut bytes in [garbage, vec![0u8; 140], vec![4, 2, 0, 0, 1, 2, 3, 4]] {
        let _ = b.handle_record(addr(A_CONN), None, &mut bytes, now, &mut wb);
        assert_eq!(b.authenticated_sender(), None);
    }
    deliver(init.clone(), &mut b, true, true, now, &mut wb);
    assert_eq!(b.authenticated_sender(), Some(PeerId::new(0)));
    wb.sent.clear();
    // The same initiation again (a replay on a new connection).
    deliver(init, &mut b, true, true, now, &mut wb);
    assert_eq!(b.authenticated_sender(), None);
    assert!(wb.sent.is_empty(), "silence: {:?}", wb.sent);
}

#[test]
fn auto_falls_back_to_tcp_when_udp_is_blocked_and_returns_when_it_works() {
    let mut a = tunnel("a", "b", B, TransportMode::Auto, 1);
    let mut b = tunnel("b", "a", A, TransportMode::Auto, 2);
    let mut now = Instant::now();
    let t0 = now;
    let (mut wa, mut wb) = (Wire::default(), Wire::default());
    // UDP blocked: handshakes over UDP go nowhere until A tries TCP.
    let mut first_tcp = None;
    for _ in 0..400 {
        a.handle_timeout(now, &mut wa);
        let sent = std::mem::take(&mut wa.sent);
        if sent.iter().any(|m| m.stream) && first_tcp.is_none() {
            first_tcp = Some(now);
        }
        deliver(sent, &mut b, true, true, now, &mut wb);
        deliver(
            std::mem::take(&mut wb.sent),
            &mut a,
            false,
            true,
            now,
            &mut wa,
        );
        if a.peer_state(PeerId::new(0)) == Some(PeerState::Up) {
            break;
        }
        now += Duration::from_millis(50);
    }
    let started = first_tcp.expect("A tried TCP");
    assert_eq!(
        a.peer_state(PeerId::new(0)),
        Some(PeerState::Up),
        "up over TCP"
    );
    assert!(a.peer_status(PeerId::new(0)).expect("b").tcp);
    // Data makes B follow.
    a.send_frame(PeerId::new(0), &[7u8; 100], now, &mut wa);
    let got = deliver(
        std::mem::take(&mut wa.sent),
        &mut b,
        true,
        true,
        now,
        &mut wb,
    );
    assert_eq!(got.len(), 1);
    assert!(b.peer_status(PeerId::new(0)).expect("a").tcp);
    // Virtual time: the first attempts (0, 1, 3 s) are UDP, the one after
    // SWITCH_AFTER is the first over TCP.
    let waited = started - t0;
    assert!(
        waited >= SWITCH_AFTER && waited < SWITCH_AFTER * 2,
        "{waited:?}"
    );

    // UDP works again: within UDP_RETRY a handshake is tried over UDP and
    // both sides move back.
    let until = now + UDP_RETRY + Duration::from_secs(2);
    let mut udp_tried = false;
    while now < until && a.peer_status(PeerId::new(0)).expect("b").tcp {
        now += Duration::from_millis(100);
        a.handle_timeout(now, &mut wa);
        b.handle_timeout(now, &mut wb);
        let sent = std::mem::take(&mut wa.sent);
        udp_tried |= sent.iter().any(|m| !m.stream && m.bytes[0] == 1);
        deliver(sent, &mut b, true, false, now, &mut wb);
        deliver(
            std::mem::take(&mut wb.sent),
            &mut a,
            false,
            false,
            now,
            &mut wa,
        );
    }
    assert!(udp_tried, "a UDP handshake was tried");
    assert!(
        !a.peer_status(PeerId::new(0)).expect("b").tcp,
        "A is back on UDP"
    );
    a.send_frame(PeerId::new(0), &[8u8; 100], now, &mut wa);
    let sent = std::mem::take(&mut wa.sent);
    assert!(sent.iter().all(|m| !m.stream));
    let got = deliver(sent, &mut b, true, false, now, &mut wb);
    assert_eq!(got.len(), 1);
    assert!(
        !b.peer_status(PeerId::new(0)).expect("a").tcp,
        "B follows to UDP"
    );
    let mut events = Vec::new();
    while let Some(e) = a.poll_event() {
        events.push(e);
    }
    assert!(events.contains(&Event::TransportChanged {
        peer: PeerId::new(0),
        tcp: true
    }));
    assert!(events.contains(&Event::TransportChanged {
        peer: PeerId::new(0),
        tcp: false
    }));
}

#[test]
fn an_unanswered_udp_trial_is_not_retried_and_the_session_lives_on() {
    let mut a = tunnel("a", "b", B, TransportMode::Auto, 1);
    let mut b = tunnel("b", "a", A, TransportMode::Auto, 2);
    let mut now = Instant::now();
    let (mut wa, mut wb) = (Wire::default(), Wire::default());
    // UDP blocked throughout: up over TCP first.
    let step = |a: &mut Tunnel, b: &mut Tunnel, wa: &mut Wire, wb: &mut Wire, now: Instant| {
        a.handle_timeout(now, wa);
        b.handle_timeout(now, wb);
        deliver(std::mem::take(&mut wa.sent), b, true, true, now, wb);
        deliver(std::mem::take(&mut wb.sent), a, false, true, now, wa)
    };
    for _ in 0..400 {
        step(&mut a, &mut b, &mut wa, &mut wb, now);
        if a.peer_state(PeerId::new(0)) == Some(PeerState::Up) {
            break;
        }
        now += Duration::from_millis(50);
    }
    assert!(a.peer_status(PeerId::new(0)).expect("b").tcp);
    // B's own first attempts (it knows A's endpoint too) settle meanwhile.
    let settled = now + Duration::from_secs(8);
    while now < settled {
        now += Duration::from_millis(100);
        step(&mut a, &mut b, &mut wa, &mut wb, now);
    }
    let handshakes = a.peer_status(PeerId::new(0)).expect("b").stats.handshakes;
    // Three UDP trials (one per UDP_RETRY) go unanswered; traffic flows.
    let until = now + UDP_RETRY * 3 + Duration::from_secs(2);
    let mut delivered = 0;
    while now < until {
        now += Duration::from_millis(100);
        a.send_frame(PeerId::new(0), &[9u8; 80], now, &mut wa);
        delivered += deliver(
            std::mem::take(&mut wa.sent),
            &mut b,
            true,
            true,
            now,
            &mut wb,
        )
        .len();
        delivered += step(&mut a, &mut b, &mut wa, &mut wb, now).len();
    }
    let st = a.peer_status(PeerId::new(0)).expect("b");
    assert!(st.tcp && st.state == PeerState::Up);
    assert_eq!(
        st.stats.handshakes, handshakes,
        "no rekey over TCP after each failed trial (rekey_after is 120 s)"
    );
    assert!(delivered > 600, "{delivered} frames");
}

#[test]
fn a_connection_carries_only_the_peer_it_is_bound_to() {
    const C: &str = "198.18.0.3:51901";
    const C_CONN: &str = "198.18.0.3:40000";
    let mut hub = tunnel_to("b", &[("a", A), ("c", C)], TransportMode::Tcp, 2);
    let mut a = tunnel("a", "b", B, TransportMode::Tcp, 1);
    let mut c = tunnel("c", "b", B, TransportMode::Tcp, 3);
    let (pa, pc) = (PeerId::new(0), PeerId::new(1));
    let now = Instant::now();
    let mut w = Wire::default();
    // Both spokes come up, each on its own connection.
    for (spoke, conn, id) in [(&mut a, A_CONN, pa), (&mut c, C_CONN, pc)] {
        let mut ws = Wire::default();
        spoke.handle_timeout(now, &mut ws);
        for mut m in std::mem::take(&mut ws.sent) {
            let _ = hub.handle_record(addr(conn), None, &mut m.bytes, now, &mut w);
            assert_eq!(hub.authenticated_sender(), Some(id));
        }
        for mut m in std::mem::take(&mut w.sent) {
            let _ = spoke.handle_record(addr(B), None, &mut m.bytes, now, &mut ws);
        }
        assert_eq!(spoke.peer_state(PeerId::new(0)), Some(PeerState::Up));
    }
    // One of c's frames, delivered on a's connection (an on-path copy, or
    // a's own doing): dropped before it counts, and c stays where it is.
    let mut wc = Wire::default();
    assert_eq!(
        c.send_frame(PeerId::new(0), &[7u8; 60], now, &mut wc),
        SendOutcome::Sent
    );
    let mut frame = wc.sent.remove(0).bytes;
    let mut copy = frame.clone();
    let got = hub.handle_record(addr(A_CONN), Some(pa), &mut copy, now, &mut w);
    assert!(matches!(got, Incoming::Nothing));
    assert_eq!(hub.authenticated_sender(), None);
    assert_eq!(hub.counters().rx_other_stream, 1);
    let st = hub.peer_status(pc).expect("peer c");
    assert_ne!(st.endpoint, Some(addr(A_CONN)), "c's stream not re-pointed");
    // On its own connection the same message is taken (it was not spent).
    let got = hub.handle_record(addr(C_CONN), Some(pc), &mut frame, now, &mut w);
    assert!(matches!(got, Incoming::Frame { peer, .. } if peer == pc));
    let st = hub.peer_status(pc).expect("peer c");
    assert_eq!(st.endpoint, Some(addr(C_CONN)));
    // A fresh initiation of c's on a's connection: refused the same way.
    let mut c2 = tunnel("c", "b", B, TransportMode::Tcp, 4);
    let mut wc = Wire::default();
    c2.handle_timeout(Instant::now() + Duration::from_secs(1), &mut wc);
    assert_eq!(wc.sent.len(), 1);
    for mut m in std::mem::take(&mut wc.sent) {
        let _ = hub.handle_record(addr(A_CONN), Some(pa), &mut m.bytes, now, &mut w);
        assert_eq!(hub.authenticated_sender(), None);
    }
    assert_eq!(hub.counters().rx_other_stream, 2);
    assert!(
        w.sent.is_empty(),
        "no answer on a's connection: {:?}",
        w.sent
    );
}
