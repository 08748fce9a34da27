//! Several uplinks per site on a virtual clock: site A knows site B by two
//! or three addresses (`endpoint = [..]`); paths are cut and restored, and
//! A must move within the failover bound, come back, and never flap.
//!
//! B is told which of its addresses each datagram arrived at and sends
//! from the source the tunnel asks for ([`Transmit::commit_from`], what
//! the shell does with `IP_PKTINFO`); a datagram without one leaves from
//! B's first address (the kernel's choice), unless a test pins B's source.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use super::paths::{DEAD_PATH_AFTER, PATH_PROBE_WAIT, RETURN_EVERY};
use super::tests::TestEntropy;
use super::*;

const PSK: [u8; 32] = [0x42; 32];
const A: &str = "198.18.0.1:51901";
const B1: &str = "198.18.1.2:51901";
const B2: &str = "198.18.2.2:51901";
const B3: &str = "198.18.3.2:51901";
/// The time between pings in the simulated `ping -i 0.05`.
const PING: Duration = Duration::from_millis(50);

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn link(local: &str, peer: &str, endpoints: &[SocketAddr]) -> TunnelParams {
    TunnelParams {
        local_name: local.into(),
        peers: vec![PeerParams {
            name: peer.into(),
            keys: vec![PresharedKey::new(PSK)],
            endpoints: endpoints.to_vec(),
        }],
        keepalive: Duration::from_secs(10),
        rekey_after: Duration::from_secs(120),
        rekey_after_packets: 1 << 32,
        wan_mtu: 1500,
        auto_mtu: false,
        transport: crate::tunnel::TransportMode::Udp,
        max_frame: 1518,
    }
}

/// Collects datagrams with the source address asked for.
#[derive(Default)]
struct Out {
    scratch: Vec<u8>,
    sent: Vec<(SocketAddr, Option<IpAddr>, Vec<u8>)>,
}

impl Transmit for Out {
    fn buffer(&mut self) -> &mut [u8] {
        self.scratch.resize(2048, 0);
        &mut self.scratch
    }
    fn commit(&mut self, len: usize, to: SocketAddr) {
        self.commit_from(len, to, None);
    }
    fn commit_from(&mut self, len: usize, to: SocketAddr, from: Option<IpAddr>) {
        self.sent.push((to, from, self.scratch[..len].to_vec()));
    }
}

struct Flight {
    from: SocketAddr,
    to: SocketAddr,
    at: Instant,
    bytes: Vec<u8>,
}

/// Site A (one address) and site B (several), with per-address cuts and
/// one-way delays.
struct Net {
    now: Instant,
    a: Tunnel,
    b: Tunnel,
    b_addrs: Vec<SocketAddr>,
    /// Per B address: everything to or from it is lost.
    cut: Vec<bool>,
    /// Per B address: one-way delay.
    delay: Vec<Duration>,
    /// B's source address, whatever the tunnel asks for.
    b_source: Option<SocketAddr>,
    /// Datagrams B sent without a source address (none should, once A's
    /// data reached it).
    b_unsourced: u64,
    flights: Vec<Flight>,
    /// Frames delivered to A (ping replies) and when.
    replies: Vec<Instant>,
}

impl Net {
    fn new(b_addrs: &[&str]) -> Net {
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let b_addrs: Vec<SocketAddr> = b_addrs.iter().map(|a| addr(a)).collect();
        Net {
            now,
            a: Tunnel::new(
                link("a", "b", &b_addrs),
                Box::new(TestEntropy(1)),
                now,
                wall,
            ),
            // B waits to be contacted (a hub with a wildcard listen).
            b: Tunnel::new(link("b", "a", &[]), Box::new(TestEntropy(2)), now, wall),
            cut: vec![false; b_addrs.len()],
            delay: vec![Duration::from_millis(10); b_addrs.len()],
            b_source: None,
            b_unsourced: 0,
            b_addrs,
            flights: Vec::new(),
            replies: Vec::new(),
        }
    }

    fn slot(&self, a: SocketAddr) -> Option<usize> {
        self.b_addrs.iter().position(|x| *x == a)
    }

    fn launch_from_a(&mut self, out: Out) {
        for (to, _, bytes) in out.sent {
            let Some(i) = self.slot(to) else { continue };
            if !self.cut[i] {
                self.flights.push(Flight {
                    from: addr(A),
                    to,
                    at: self.now + self.delay[i],
                    bytes,
                });
            }
        }
    }

    fn launch_from_b(&mut self, out: Out) {
        for (to, src, bytes) in out.sent {
            let port = self.b_addrs[0].port();
            if src.is_none() {
                self.b_unsourced += 1;
            }
            let asked = src.map(|ip| SocketAddr::new(ip, port));
            let from = self.b_source.or(asked).unwrap_or(self.b_addrs[0]);
            let Some(i) = self.slot(from) else { continue };
            if !self.cut[i] {
                self.flights.push(Flight {
                    from,
                    to,
                    at: self.now + self.delay[i],
                    bytes,
                });
            }
        }
    }

    fn ping(&mut self) {
        let mut out = Out::default();
        self.a
            .send_frame(PeerId::new(0), &[1u8; 100], self.now, &mut out);
        self.launch_from_a(out);
    }

    fn step(&mut self, max: Duration) {
        let now = self.now;
        let (mut due, later): (Vec<Flight>, Vec<Flight>) = std::mem::take(&mut self.flights)
            .into_iter()
            .partition(|f| f.at <= now);
        self.flights = later;
        due.sort_by_key(|f| f.at);
        for mut f in due {
            let mut out = Out::default();
            if f.to == addr(A) {
                if let Incoming::Frame { .. } =
                    self.a.handle_datagram(f.from, &mut f.bytes, now, &mut out)
                {
                    self.replies.push(now);
                }
                self.launch_from_a(out);
            } else {
                let local = Some(f.to.ip());
                let echo = matches!(
                    self.b
                        .handle_datagram_at(f.from, local, &mut f.bytes, now, &mut out),
                    Incoming::Frame { .. }
                );
                if echo {
                    self.b
                        .send_frame(PeerId::new(0), &[2u8; 100], now, &mut out);
                }
                self.launch_from_b(out);
            }
        }
        for side in 0..2 {
            let t = if side == 0 { &mut self.a } else { &mut self.b };
            if t.poll_timeout().is_some_and(|d| d <= now) {
                let mut out = Out::default();
                t.handle_timeout(now, &mut out);
                if side == 0 {
                    self.launch_from_a(out);
                } else {
                    self.launch_from_b(out);
                }
            }
        }
        let next = self
            .flights
            .iter()
            .map(|f| f.at)
            .chain(self.a.poll_timeout())
            .chain(self.b.poll_timeout())
            .min()
            .unwrap_or(now + max);
        self.now = next.clamp(now + Duration::from_micros(1), now + max);
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step(end - self.now);
        }
    }

    /// `ping -i 0.05` for `d`.
    fn pings(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.ping();
            let next = (self.now + PING).min(end);
            self.run(next - self.now);
        }
    }

    fn endpoint(&self) -> Option<SocketAddr> {
        self.a.peer_status(PeerId::new(0)).expect("peer").endpoint
    }

    fn moves(&self) -> u64 {
        self.a.peer_stats(PeerId::new(0)).endpoint_changes
    }

    /// The longest time between two replies since `since`.
    fn longest_gap(&self, since: Instant) -> Duration {
        let mut last = since;
        let mut gap = Duration::ZERO;
        for &t in self.replies.iter().filter(|t| **t >= since) {
            gap = gap.max(t - last);
            last = t;
        }
        gap
    }
}

fn up(n: &mut Net) {
    n.pings(Duration::from_secs(1));
    assert_eq!(
        n.a.peer_status(PeerId::new(0)).expect("peer").state,
        PeerState::Up
    );
    assert_eq!(n.endpoint(), Some(addr(B1)));
    while n.a.poll_event().is_some() {}
}

#[test]
fn a_dead_uplink_fails_over_within_3_s_and_comes_back() {
    let mut n = Net::new(&[B1, B2]);
    up(&mut n);
    let cut_at = n.now;
    n.cut[0] = true;
    n.pings(Duration::from_secs(4));
    assert_eq!(n.endpoint(), Some(addr(B2)));
    assert_eq!(n.moves(), 1);
    let gap = n.longest_gap(cut_at);
    assert!(gap <= Duration::from_secs(3), "replies stopped for {gap:?}");
    assert!(
        gap <= DEAD_PATH_AFTER + PATH_PROBE_WAIT + 4 * PING,
        "the failover took {gap:?}"
    );
    let events: Vec<Event> = std::iter::from_fn(|| n.a.poll_event()).collect();
    assert!(events.contains(&Event::EndpointMoved {
        peer: PeerId::new(0),
        from: Some(addr(B1)),
        to: addr(B2),
    }));
    // Still cut: it stays on B2 (the return probes are not answered).
    n.pings(Duration::from_secs(12));
    assert_eq!(n.endpoint(), Some(addr(B2)));
    assert_eq!(n.moves(), 1);
    // B1 is back: A returns within a return interval and a probe round.
    n.cut[0] = false;
    let restored = n.now;
    n.pings(RETURN_EVERY + PATH_PROBE_WAIT);
    assert_eq!(n.endpoint(), Some(addr(B1)));
    assert_eq!(n.moves(), 2);
    assert!(
        n.longest_gap(restored) < Duration::from_millis(200),
        "no loss on the way back"
    );
    // B always answered from an address it was reached at.
    assert_eq!(n.b_unsourced, 0);
    // And stays there, without probing or moving, while all is well.
    n.pings(Duration::from_secs(30));
    assert_eq!(n.moves(), 2);
    assert_eq!(
        n.a.peer_status(PeerId::new(0)).expect("peer").state,
        PeerState::Up
    );
}

#[test]
fn the_most_preferred_answering_uplink_wins_not_the_first_to_answer() {
    let mut n = Net::new(&[B1, B2, B3]);
    up(&mut n);
    // B3 answers fast, B2 slowly: B2 is preferred.
    n.delay[1] = Duration::from_millis(300);
    n.delay[2] = Duration::from_millis(1);
    n.cut[0] = true;
    n.pings(Duration::from_secs(4));
    assert_eq!(n.endpoint(), Some(addr(B2)));
    assert_eq!(n.moves(), 1, "straight to B2, not via B3");
}

#[test]
fn answers_from_another_configured_address_do_not_move_the_peer() {
    let mut n = Net::new(&[B1, B2]);
    up(&mut n);
    // B answers from B2 whatever A used (no IP_PKTINFO over there).
    n.b_source = Some(addr(B2));
    n.pings(Duration::from_secs(60));
    assert_eq!(n.endpoint(), Some(addr(B1)));
    assert_eq!(n.moves(), 0);
    assert!(n.longest_gap(n.now - Duration::from_secs(60)) < Duration::from_millis(200));
}

#[test]
fn rekey_responses_from_another_configured_address_do_not_move_the_peer() {
    let mut n = Net::new(&[B1, B2]);
    up(&mut n);
    n.b_source = Some(addr(B2));
    let before = n.a.peer_stats(PeerId::new(0)).handshakes;
    // Past two rekeys: A initiates to B1, B's responses come from B2.
    n.pings(Duration::from_secs(300));
    assert!(n.a.peer_stats(PeerId::new(0)).handshakes >= before + 2);
    assert_eq!(n.endpoint(), Some(addr(B1)));
    assert_eq!(n.moves(), 0, "a rekey response moved the peer");
}

#[test]
fn an_unlisted_source_still_roams() {
    let mut n = Net::new(&[B1, B2]);
    up(&mut n);
    // B's packets now come from an address A was not told about (NAT
    // rebinding): A follows, as for any peer.
    let b9 = addr("198.18.9.2:40000");
    n.b_addrs.push(b9);
    n.cut.push(false);
    n.delay.push(Duration::from_millis(10));
    n.b_source = Some(b9);
    n.pings(Duration::from_secs(1));
    assert_eq!(n.endpoint(), Some(b9));
    assert_eq!(n.moves(), 1);
}

#[test]
fn a_peer_that_is_down_cycles_its_handshakes_through_its_uplinks() {
    let mut n = Net::new(&[B1, B2]);
    // B1 dead from the start: the second handshake goes to B2.
    n.cut[0] = true;
    n.pings(Duration::from_secs(3));
    let st = n.a.peer_status(PeerId::new(0)).expect("peer");
    assert_eq!(st.state, PeerState::Up);
    assert_eq!(st.endpoint, Some(addr(B2)));
    // Both cut long enough for the peer to go down, then B2 returns alone.
    n.cut[1] = true;
    n.pings(Duration::from_secs(35));
    assert_eq!(
        n.a.peer_status(PeerId::new(0)).expect("peer").state,
        PeerState::Down
    );
    n.cut[1] = false;
    n.pings(Duration::from_secs(40));
    let st = n.a.peer_status(PeerId::new(0)).expect("peer");
    assert_eq!(st.state, PeerState::Up);
    assert_eq!(st.endpoint, Some(addr(B2)));
    // B1 back: the return probes find it.
    n.cut[0] = false;
    n.pings(RETURN_EVERY + PATH_PROBE_WAIT);
    assert_eq!(n.endpoint(), Some(addr(B1)));
}

#[test]
fn one_uplink_never_probes_and_a_reload_sets_the_list() {
    let mut n = Net::new(&[B1]);
    up(&mut n);
    n.cut[0] = true;
    n.pings(Duration::from_secs(5));
    assert_eq!(n.endpoint(), Some(addr(B1)));
    assert_eq!(n.moves(), 0);
    // A reload lists B2 first: A moves there and handshakes.
    n.b_addrs.push(addr(B2));
    n.cut.push(false);
    n.delay.push(Duration::from_millis(10));
    let now = n.now;
    n.a.set_peer_endpoints(PeerId::new(0), &[Some(addr(B2)), Some(addr(B1))], now);
    assert_eq!(n.endpoint(), Some(addr(B2)));
    n.pings(Duration::from_secs(1));
    let st = n.a.peer_status(PeerId::new(0)).expect("peer");
    assert_eq!(st.endpoints, vec![Some(addr(B2)), Some(addr(B1))]);
    assert_eq!(st.state, PeerState::Up);
    assert!(n.longest_gap(n.now - Duration::from_millis(500)) < Duration::from_millis(200));
    // The same list again changes nothing.
    let moves = n.moves();
    let now = n.now;
    n.a.set_peer_endpoints(PeerId::new(0), &[Some(addr(B2)), Some(addr(B1))], now);
    assert_eq!(n.moves(), moves);
    // A name in first place, resolved later, takes over when it resolves.
    let now = n.now;
    n.a.set_peer_endpoints(PeerId::new(0), &[None, Some(addr(B2))], now);
    assert_eq!(n.endpoint(), Some(addr(B2)));
    n.cut[0] = false;
    n.a.set_peer_endpoint_at(PeerId::new(0), 0, addr(B1), now);
    assert_eq!(n.endpoint(), Some(addr(B1)));
    n.pings(Duration::from_secs(1));
    assert_eq!(
        n.a.peer_status(PeerId::new(0)).expect("peer").state,
        PeerState::Up
    );
    assert!(n.longest_gap(n.now - Duration::from_millis(500)) < Duration::from_millis(200));
}
