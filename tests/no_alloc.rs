//! The hot path allocates nothing per frame: after warm-up, frames pushed
//! through the real bridge pipeline (classifier, guards, switch) → tunnel
//! (seal, fragment) → tunnel (open, replay check, reassemble) → bridge
//! (guards, switch) perform zero heap allocations.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use tapbridge::bridge::{Bridge, Sink, TapOutcome, ToTap};
use tapbridge::guard::{BpduPolicy, Guard, GuardConfig};
use tapbridge::leases::LeaseChange;
use tapbridge::switch::Switch;
use tapbridge::tunnel::{
    Entropy, Incoming, PeerId, PeerParams, PresharedKey, Transmit, Tunnel, TunnelParams,
};

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

struct Seeded(u64);
impl Entropy for Seeded {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.0 >> 33) as u8;
        }
    }
}

/// A fixed ring of datagram buffers, like the shell's sendmmsg batch.
struct Ring {
    bufs: Vec<Vec<u8>>,
    lens: Vec<(usize, SocketAddr)>,
}

impl Transmit for Ring {
    fn buffer(&mut self) -> &mut [u8] {
        let i = self.lens.len();
        &mut self.bufs[i]
    }
    fn commit(&mut self, len: usize, to: SocketAddr) {
        self.lens.push((len, to));
    }
}

/// Site A's side of the bridge: frames for peers are sealed by its tunnel
/// into the ring.
struct Sealer<'a> {
    tunnel: &'a mut Tunnel,
    ring: &'a mut Ring,
    now: Instant,
    to_tap: u64,
}

impl ToTap for Sealer<'_> {
    fn to_tap(&mut self, _packet: &[u8]) {
        self.to_tap += 1;
    }
}

impl Sink for Sealer<'_> {
    fn reply(&mut self, _packet: &[u8], leases: &mut Vec<LeaseChange>) {
        leases.clear();
    }
    fn to_peer(&mut self, peer: PeerId, packet: &[u8]) {
        self.tunnel.send_frame(peer, packet, self.now, self.ring);
    }
    fn peer_up(&self, _peer: PeerId) -> bool {
        true
    }
}

/// Site B's TAP: counts what it is given.
struct Delivered(u64);

impl ToTap for Delivered {
    fn to_tap(&mut self, _packet: &[u8]) {
        self.0 += 1;
    }
}

fn params(local: &str, peer: &str, endpoint: &str) -> TunnelParams {
    TunnelParams {
        local_name: local.into(),
        peers: vec![PeerParams {
            name: peer.into(),
            keys: vec![PresharedKey::new([9u8; 32])],
            endpoints: vec![endpoint.parse().expect("addr")],
        }],
        keepalive: Duration::from_secs(10),
        rekey_after: Duration::from_secs(120),
        rekey_after_packets: 1 << 32,
        wan_mtu: 1500,
        auto_mtu: false,
        transport: tapbridge::tunnel::TransportMode::Udp,
        max_frame: 1518,
    }
}

#[test]
fn steady_state_allocates_nothing() {
    let a_addr: SocketAddr = "198.18.0.1:1".parse().expect("addr");
    let b_addr: SocketAddr = "198.18.0.2:1".parse().expect("addr");
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut a = Tunnel::new(
        params("a", "b", "198.18.0.2:1"),
        Box::new(Seeded(1)),
        now,
        wall,
    );
    let mut b = Tunnel::new(
        params("b", "a", "198.18.0.1:1"),
        Box::new(Seeded(2)),
        now,
        wall,
    );
    // Every guard on, so frames from the peer are classified in full.
    let guards = GuardConfig {
        storm_pps: 1_000_000,
        loop_detect: true,
        dhcp_guard: true,
        ra_guard: true,
        bpdu: BpduPolicy::Drop,
    };
    let mut bridge_a = Bridge::new(
        Switch::new(false),
        Guard::new(&guards, [1; 8], now),
        None,
        0,
        1,
    );
    let mut bridge_b = Bridge::new(
        Switch::new(false),
        Guard::new(&guards, [2; 8], now),
        None,
        0,
        1,
    );
    let mut ring = Ring {
        bufs: vec![vec![0u8; 2048]; 64],
        lens: Vec::with_capacity(64),
    };
    let mut ring_b = Ring {
        bufs: vec![vec![0u8; 2048]; 64],
        lens: Vec::with_capacity(64),
    };
    // Handshake.
    a.handle_timeout(now, &mut ring);
    for (i, &(len, _)) in ring.lens.iter().enumerate() {
        b.handle_datagram(a_addr, &mut ring.bufs[i][..len], now, &mut ring_b);
    }
    ring.lens.clear();
    for (i, &(len, _)) in ring_b.lens.iter().enumerate() {
        a.handle_datagram(b_addr, &mut ring_b.bufs[i][..len], now, &mut ring);
    }
    ring_b.lens.clear();
    let mut frames = [vec![0u8; 60], vec![0u8; 1000], vec![0u8; 1514]];
    for f in &mut frames {
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    }
    // An IPv4/UDP frame and an IPv6/UDP frame, for the classifier.
    frames[1][12..14].copy_from_slice(&[0x08, 0x00]);
    frames[1][14] = 0x45;
    frames[1][16..18].copy_from_slice(&986u16.to_be_bytes());
    frames[1][23] = 17;
    frames[1][34..40].copy_from_slice(&[0x13, 0x88, 0x17, 0x70, 0x03, 0xc6]);
    frames[2][12..14].copy_from_slice(&[0x86, 0xdd]);
    frames[2][14] = 0x60;
    frames[2][18..20].copy_from_slice(&1460u16.to_be_bytes());
    frames[2][20] = 17;
    frames[2][54..60].copy_from_slice(&[0x13, 0x88, 0x17, 0x70, 0x05, 0xb4]);
    let mut delivered = Delivered(0);
    let wall = SystemTime::now();
    let mut run = |rounds: usize, delivered: &mut Delivered| {
        for r in 0..rounds {
            let t = now + Duration::from_millis(r as u64);
            // What the worker asks on every wake-up.
            assert!(a.poll_timeout().is_some() && b.poll_timeout().is_some());
            let mut out = Sealer {
                tunnel: &mut a,
                ring: &mut ring,
                now: t,
                to_tap: 0,
            };
            let _ = bridge_a.poll_timeout();
            bridge_a.handle_timeout(t, wall, &mut out);
            for f in &mut frames {
                assert_eq!(
                    bridge_a.from_tap(f, t, wall, &mut out),
                    TapOutcome::Forwarded
                );
            }
            assert_eq!(out.to_tap, 0, "nothing comes back to A's TAP");
            for i in 0..ring.lens.len() {
                let (len, _) = ring.lens[i];
                if let Incoming::Frame { peer, frame } =
                    b.handle_datagram(a_addr, &mut ring.bufs[i][..len], t, &mut ring_b)
                {
                    // No hub: nothing to relay.
                    assert!(bridge_b.from_peer(peer, frame, t, delivered).is_none());
                }
            }
            ring.lens.clear();
            ring_b.lens.clear();
        }
    };
    run(50, &mut delivered);
    let warm = delivered.0;
    let before = counting::allocations();
    run(2000, &mut delivered);
    let allocs = counting::allocations() - before;
    assert_eq!(delivered.0 - warm, 6000, "every frame arrived");
    assert_eq!(allocs, 0, "heap allocations in steady state");
}
