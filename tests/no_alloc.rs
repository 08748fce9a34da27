//! The hot path allocates nothing per frame: after warm-up, frames pushed
//! through switch → tunnel (seal, fragment) → tunnel (open, replay check,
//! reassemble) → switch perform zero heap allocations.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use tapbridge::guard::{BpduPolicy, Guard, GuardConfig, LocalVerdict, PeerVerdict};
use tapbridge::switch::{LocalRoute, Switch};
use tapbridge::tunnel::{
    Entropy, Incoming, PeerParams, PresharedKey, Transmit, Tunnel, TunnelParams,
};
use tapbridge::wire::ethernet;

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
    let mut sw_a = Switch::new(false);
    let mut sw_b = Switch::new(false);
    // Every guard on, so frames from the peer are classified in full.
    let guards = GuardConfig {
        storm_pps: 1_000_000,
        loop_detect: true,
        dhcp_guard: true,
        ra_guard: true,
        bpdu: BpduPolicy::Drop,
    };
    let mut guard_a = Guard::new(&guards, [1; 8], now);
    let mut guard_b = Guard::new(&guards, [2; 8], now);
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
    let mut delivered = 0u64;
    let mut run = |rounds: usize, delivered: &mut u64| {
        for r in 0..rounds {
            let t = now + Duration::from_millis(r as u64);
            guard_a.handle_timeout(t);
            let _ = guard_a.poll_probe(t);
            // What the worker asks on every wake-up.
            assert!(a.poll_timeout().is_some() && b.poll_timeout().is_some());
            for f in &frames {
                assert_eq!(guard_a.from_local(f, t), LocalVerdict::Forward);
                let dst = f[..6].try_into().expect("6");
                let src = f[6..12].try_into().expect("6");
                match sw_a.from_local(ethernet::vlan(f), dst, src, t) {
                    LocalRoute::Peer(p) => {
                        assert!(guard_a.allow_to_peer(p));
                        a.send_frame(p, f, t, &mut ring);
                    }
                    LocalRoute::Flood => {
                        assert!(guard_a.allow_flood(t) && guard_a.allow_to_peer(0));
                        a.send_frame(0, f, t, &mut ring);
                    }
                    LocalRoute::Drop => {}
                }
            }
            for i in 0..ring.lens.len() {
                let (len, _) = ring.lens[i];
                if let Incoming::Frame { peer, frame } =
                    b.handle_datagram(a_addr, &mut ring.bufs[i][..len], t, &mut ring_b)
                {
                    assert_eq!(guard_b.from_peer(frame, peer, t), PeerVerdict::Forward);
                    let dst = frame[..6].try_into().expect("6");
                    let src = frame[6..12].try_into().expect("6");
                    sw_b.from_peer(peer, ethernet::vlan(frame), dst, src, t);
                    *delivered += 1;
                }
            }
            ring.lens.clear();
            ring_b.lens.clear();
        }
    };
    run(50, &mut delivered);
    let warm = delivered;
    let before = counting::allocations();
    run(2000, &mut delivered);
    let allocs = counting::allocations() - before;
    assert_eq!(delivered - warm, 6000, "every frame arrived");
    assert_eq!(allocs, 0, "heap allocations in steady state");
}
