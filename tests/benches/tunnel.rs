//! Benchmark of the tunnel core on one core: seal + open throughput of
//! frames through a live session pair, and the cost of a full handshake.
//!
//! Run with `cargo bench --bench tunnel` (release profile). Everything runs in
//! memory on one thread: `send_frame` seals into a `Transmit` that reuses one
//! buffer, `handle_datagram` opens it in place on the other side, so the
//! figures are the crypto + framing cost per frame, without syscalls.
//!
//! Criterion reports bytes/s for the `bytes` benchmarks (GiB/s; Gbit/s =
//! GiB/s x 8.59) and frames/s for the `frames` one. `classify` is what the
//! shared frame classifier (guards, responder) costs per frame.

#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tapbridge::peer_id::PeerId;
use tapbridge::tunnel::{
    Incoming, OsEntropy, PeerParams, PresharedKey, SendOutcome, Transmit, Tunnel, TunnelParams,
};

const PSK: [u8; 32] = [0x5a; 32];
const MAX_FRAME: usize = 1518;

/// One reusable datagram buffer: what the UDP shell does per batch slot.
struct OneBuf {
    buf: Box<[u8; 2048]>,
    len: usize,
    to: Option<SocketAddr>,
}

impl OneBuf {
    fn new() -> OneBuf {
        OneBuf {
            buf: Box::new([0; 2048]),
            len: 0,
            to: None,
        }
    }

    fn datagram(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl Transmit for OneBuf {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf[..]
    }
    fn commit(&mut self, len: usize, to: SocketAddr) {
        self.len = len;
        self.to = Some(to);
    }
}

/// Keeps every datagram of a handshake (a few, each small).
#[derive(Default)]
struct Collect {
    scratch: Vec<u8>,
    sent: Vec<Vec<u8>>,
}

impl Transmit for Collect {
    fn buffer(&mut self) -> &mut [u8] {
        self.scratch.resize(2048, 0);
        &mut self.scratch
    }
    fn commit(&mut self, len: usize, _to: SocketAddr) {
        self.sent.push(self.scratch[..len].to_vec());
    }
}

fn addrs() -> [SocketAddr; 2] {
    [
        "198.18.0.1:51901".parse().expect("fixed address"),
        "198.18.0.2:51901".parse().expect("fixed address"),
    ]
}

fn params(local: &str, peer: &str, endpoint: SocketAddr) -> TunnelParams {
    TunnelParams {
        local_name: local.into(),
        peers: vec![PeerParams {
            name: peer.into(),
            keys: vec![PresharedKey::new(PSK)],
            endpoints: vec![endpoint],
        }],
        keepalive: Duration::from_secs(10),
        rekey_after: Duration::from_secs(120),
        // The benchmark never reaches a rekey.
        rekey_after_packets: 1 << 40,
        wan_mtu: 1500,
        auto_mtu: false,
        transport: tapbridge::tunnel::TransportMode::Udp,
        max_frame: MAX_FRAME,
    }
}

fn pair(now: Instant) -> [Tunnel; 2] {
    let wall = SystemTime::now();
    let [a, b] = addrs();
    [
        Tunnel::new(params("a", "b", b), Box::new(OsEntropy), now, wall),
        Tunnel::new(params("b", "a", a), Box::new(OsEntropy), now, wall),
    ]
}

/// a initiates, b responds, a confirms (keepalive), b completes.
/// Returns the number of datagrams exchanged.
fn handshake(t: &mut [Tunnel; 2], now: Instant) -> usize {
    let [a_addr, b_addr] = addrs();
    let mut init = Collect::default();
    t[0].handle_timeout(now, &mut init);
    let mut resp = Collect::default();
    for mut d in init.sent {
        t[1].handle_datagram(a_addr, &mut d, now, &mut resp);
    }
    let mut confirm = Collect::default();
    for mut d in resp.sent {
        t[0].handle_datagram(b_addr, &mut d, now, &mut confirm);
    }
    let mut nothing = Collect::default();
    let n = confirm.sent.len();
    for mut d in confirm.sent {
        t[1].handle_datagram(a_addr, &mut d, now, &mut nothing);
    }
    n
}

/// A live pair: both sides completed one handshake.
fn live_pair() -> ([Tunnel; 2], Instant) {
    let now = Instant::now();
    let mut t = pair(now);
    handshake(&mut t, now);
    for (side, tunnel) in t.iter().enumerate() {
        let hs = tunnel.peer_stats(PeerId::new(0)).handshakes;
        assert_eq!(hs, 1, "side {side} has a session");
    }
    (t, now)
}

/// Seals `frame` on a and opens it on b; panics if it does not arrive whole.
fn seal_open(t: &mut [Tunnel; 2], frame: &[u8], now: Instant, tx: &mut OneBuf, rx: &mut OneBuf) {
    let from = addrs()[0];
    let out = t[0].send_frame(PeerId::new(0), frame, now, tx);
    debug_assert_eq!(out, SendOutcome::Sent);
    match t[1].handle_datagram(from, tx.datagram(), now, rx) {
        Incoming::Frame { frame: f, .. } => {
            black_box(f);
        }
        Incoming::Nothing => panic!("the frame did not arrive"),
    }
}

/// Fragmented frames go through two datagrams; the Transmit keeps them.
fn seal_open_fragmented(t: &mut [Tunnel; 2], frame: &[u8], now: Instant, tx: &mut Collect) {
    let from = addrs()[0];
    tx.sent.clear();
    t[0].send_frame(PeerId::new(0), frame, now, tx);
    let mut rx = OneBuf::new();
    let mut got = false;
    for d in &mut tx.sent {
        if let Incoming::Frame { frame: f, .. } = t[1].handle_datagram(from, d, now, &mut rx) {
            black_box(f);
            got = true;
        }
    }
    assert!(got, "the fragmented frame did not arrive");
}

fn bench_seal_open(c: &mut Criterion) {
    let frame = vec![0xa5u8; 1400];
    let mut g = c.benchmark_group("seal_open_1400");
    g.measurement_time(Duration::from_secs(5));
    g.warm_up_time(Duration::from_secs(1));

    let (mut t, now) = live_pair();
    let (mut tx, mut rx) = (OneBuf::new(), OneBuf::new());
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("bytes", |bch| {
        bch.iter(|| seal_open(&mut t, black_box(&frame), now, &mut tx, &mut rx))
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("frames", |bch| {
        bch.iter(|| seal_open(&mut t, black_box(&frame), now, &mut tx, &mut rx))
    });
    g.finish();

    // Sealing alone, for the split between the two sides.
    let mut g = c.benchmark_group("seal_1400");
    g.measurement_time(Duration::from_secs(5));
    g.warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("bytes", |bch| {
        bch.iter(|| t[0].send_frame(PeerId::new(0), black_box(&frame), now, &mut tx))
    });
    g.finish();

    // A full-size frame (1500 MTU + Ethernet + VLAN) is cut in two.
    let big = vec![0x3cu8; MAX_FRAME];
    let (mut t, now) = live_pair();
    let mut tx = Collect::default();
    let mut g = c.benchmark_group("seal_open_1518_fragmented");
    g.measurement_time(Duration::from_secs(5));
    g.warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("bytes", |bch| {
        bch.iter(|| seal_open_fragmented(&mut t, black_box(&big), now, &mut tx))
    });
    g.finish();
}

fn bench_handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.measurement_time(Duration::from_secs(5));
    g.warm_up_time(Duration::from_secs(1));
    g.bench_function("initiation_response_completion", |bch| {
        bch.iter_batched(
            || {
                let now = Instant::now();
                (pair(now), now)
            },
            |(mut t, now)| {
                let n = handshake(&mut t, now);
                assert_eq!(n, 1, "the initiator confirms with one keepalive");
                t
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A hub whose `n` peers each have their own key.
fn hub(n: usize, now: Instant) -> Tunnel {
    let peers = (0..n)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            PeerParams {
                name: format!("spoke-{i}"),
                keys: vec![PresharedKey::new(k)],
                endpoints: Vec::new(),
            }
        })
        .collect();
    let params = TunnelParams {
        local_name: "hub".into(),
        peers,
        ..params("hub", "x", addrs()[1])
    };
    Tunnel::new(params, Box::new(OsEntropy), now, SystemTime::now())
}

/// An initiation spoke 0 of [`hub`] sends it, as seen on the wire.
fn spoke0_initiation(now: Instant) -> Vec<u8> {
    let hub_addr = addrs()[1];
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&0u64.to_le_bytes());
    let mut spoke = Tunnel::new(
        TunnelParams {
            peers: vec![PeerParams {
                name: "hub".into(),
                keys: vec![PresharedKey::new(k)],
                endpoints: vec![hub_addr],
            }],
            ..params("spoke-0", "hub", hub_addr)
        },
        Box::new(OsEntropy),
        now,
        SystemTime::now(),
    );
    let mut out = Collect::default();
    let queued = spoke.send_frame(PeerId::new(0), &[0u8; 60], now, &mut out);
    assert_eq!(queued, SendOutcome::Queued);
    out.sent.remove(0)
}

/// What one garbage initiation costs a hub of 1, 10, 100 and 1000 peers
/// with their own keys. `random_hint`: bytes shaped like an initiation
/// whose key hint names no key (refused after one table lookup).
/// `copied_hint`: a real initiation of spoke 0's with its payload changed,
/// as someone who saw one on the wire could send (one first-MAC check).
/// The clock advances 2 ms per message so the link's budgets for
/// unauthenticated work never run dry (a spent budget drops even earlier).
/// (Garbage no longer marks every peer's timer for recomputation, so the
/// worker's next `poll_timeout` costs what it does without it; see
/// `poll_timeout` below.)
/// Both stay flat with the number of keys; before key hints, the first
/// cost 0.29 µs per key (290 µs at 1000).
fn bench_key_lookup(c: &mut Criterion) {
    use tapbridge::wire::tunnel::{MessageType, field};
    let mut g = c.benchmark_group("garbage_initiation");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    let mut random = [0x3cu8; field::INIT_LEN];
    random[..4].copy_from_slice(&MessageType::Initiation.head());
    let from = addrs()[0];
    for n in [1usize, 10, 100, 1000] {
        let start = Instant::now();
        let mut copied = spoke0_initiation(start);
        copied[field::INIT_PAYLOAD.start + 5] ^= 1;
        for (what, msg) in [("random_hint", &random[..]), ("copied_hint", &copied[..])] {
            let mut t = hub(n, start);
            let mut out = Collect::default();
            let mut now = start;
            let mut sent = 0u64;
            g.bench_function(format!("{what}/{n}_keys"), |bch| {
                bch.iter(|| {
                    now += Duration::from_millis(2);
                    sent += 1;
                    let mut d = [0u8; field::INIT_LEN];
                    d.copy_from_slice(msg);
                    black_box(t.handle_datagram(from, &mut d, now, &mut out));
                })
            });
            assert!(out.sent.is_empty());
            let per = if what == "random_hint" { 0 } else { 1 };
            assert_eq!(t.mac1_checks(), per * sent, "{what}, {n} keys");
            assert_eq!(t.counters().rx_auth_failed, sent, "{what}, {n} keys");
        }
    }
    g.finish();
}

/// What the worker pays on every wake-up to learn when the tunnel's next
/// timer is due, at a hub of 1, 100 and 1000 peers with handshakes under
/// way (each has retransmission, expiry and path timers armed).
fn bench_poll_timeout(c: &mut Criterion) {
    let mut g = c.benchmark_group("poll_timeout");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    for n in [1usize, 100, 1000] {
        let now = Instant::now();
        let mut t = hub(n, now);
        for p in 0..n {
            let port = 20000 + p as u16;
            t.set_peer_endpoint(
                PeerId::new(p),
                Some(SocketAddr::from(([198, 18, 0, 2], port))),
                now,
            );
        }
        let mut out = Collect::default();
        t.handle_timeout(now, &mut out);
        assert!(t.poll_timeout().is_some());
        g.bench_function(format!("{n}_peers"), |bch| {
            bch.iter(|| black_box(t.poll_timeout()))
        });
    }
    g.finish();
}

/// The classifier on a bulk TCP segment (decided without slicing), a small
/// UDP datagram and a DHCPDISCOVER (both sliced by etherparse).
fn bench_classify(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    let mut tcp = vec![0u8; 1514];
    tcp[12..14].copy_from_slice(&[0x08, 0x00]);
    tcp[14..24].copy_from_slice(&[0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 6]);
    let mut udp = vec![0u8; 60];
    udp[12..14].copy_from_slice(&[0x08, 0x00]);
    udp[14..24].copy_from_slice(&[0x45, 0, 0, 46, 0, 1, 0x40, 0, 64, 17]);
    udp[34..42].copy_from_slice(&[0x14, 0xe9, 0x14, 0xe9, 0, 26, 0, 0]);
    let mut dhcp = vec![0u8; 342];
    dhcp[..6].fill(0xff);
    dhcp[12..14].copy_from_slice(&[0x08, 0x00]);
    dhcp[14..24].copy_from_slice(&[0x45, 0, 0x01, 0x48, 0, 1, 0, 0, 64, 17]);
    dhcp[34..42].copy_from_slice(&[0, 68, 0, 67, 0x01, 0x34, 0, 0]);
    dhcp[42] = 1;
    for (name, f) in [
        ("tcp_1514", &tcp),
        ("udp_60", &udp),
        ("dhcp_discover", &dhcp),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| tapbridge::wire::ethernet::classify(black_box(f)))
        });
    }
    g.finish();
}

/// The worker split on paper: `workers` threads, each owning a live
/// session pair of its own (per-worker sessions: nothing shared, so no lock
/// and no atomic on the path), each sealing and opening `frames` frames of
/// `len` bytes. Criterion reports the aggregate frames/s, so perfect
/// scaling doubles it from 1 to 2 workers. This is the core alone: the
/// kernel's share of a frame (TAP and UDP syscalls, 62-79 % of the
/// daemons' CPU under `bench.sh`) is not in it.
fn bench_worker_split(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for len in [64usize, 1400] {
        let mut g = c.benchmark_group(format!("worker_split_{len}"));
        g.measurement_time(Duration::from_secs(5));
        g.warm_up_time(Duration::from_secs(1));
        for workers in (1..=cores.min(4)).filter(|w| w.is_power_of_two()) {
            let mut pairs: Vec<_> = (0..workers).map(|_| live_pair()).collect();
            g.throughput(Throughput::Elements(workers as u64));
            g.bench_function(format!("{workers}_workers"), |bch| {
                bch.iter_custom(|iters| {
                    let frame = vec![0xa5u8; len];
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for (t, now) in pairs.iter_mut() {
                            let (frame, now) = (&frame, *now);
                            s.spawn(move || {
                                let (mut tx, mut rx) = (OneBuf::new(), OneBuf::new());
                                for _ in 0..iters {
                                    seal_open(t, black_box(frame), now, &mut tx, &mut rx);
                                }
                            });
                        }
                    });
                    start.elapsed()
                })
            });
        }
        g.finish();
    }
}

criterion_group!(
    benches,
    bench_seal_open,
    bench_handshake,
    bench_key_lookup,
    bench_classify,
    bench_worker_split,
    bench_poll_timeout
);
criterion_main!(benches);
