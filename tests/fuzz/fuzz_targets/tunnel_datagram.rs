#![no_main]
//! Fuzz target: datagrams from the wire into a tunnel with a live session.
//!
//! Two `Tunnel`s with deterministic entropy complete a handshake in memory,
//! then the fuzz input is read as a little program of operations: raw
//! datagrams, mutated or exact copies of real captured datagrams
//! (initiation, response, keepalive, data, fragments, and everything the
//! tunnels emit later), deliveries of datagrams in flight between the two,
//! frames to send, and virtual time passing (rekeys, keepalives, dead peers,
//! reassembly timeouts).
//!
//! Invariants checked on every datagram:
//! - nothing panics;
//! - a datagram that is not byte-for-byte one the tunnels emitted produces no
//!   `Transmit` output and no frame, and is counted in exactly one drop
//!   counter (garbage never gets an answer: a valid handshake needs the PSK);
//! - every delivered frame is one the peer sent, intact, and delivered at
//!   most once per side.
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
//! Input format (each operation starts with one byte `op`; bits 0..3 pick
//! the operation, bit 3 the side acted on (0 = b, the responder; 1 = a),
//! bits 4..6 the source address of an injected datagram):
//!
//! ```text
//! 0 raw      len:u16le (mod 2049), bytes
//! 1 mutate   capture:u8, n:u8 (1..=8 edits of pos:u16le val:u8;
//!            val 0 truncates at pos, else xors the byte at pos)
//! 2 replay   capture:u8 (byte-exact)
//! 3 time     ms:u16le (x8), then due timers on both sides
//! 4 pump     deliver every datagram in flight (bounded)
//! 5 send     len:u16le (mod max_frame + 64); a frame from the side
//! 6 lose     drop everything in flight
//! 7 deliver  which:u8; one datagram in flight (reordering)
//! ```
//!
//! Captures 0..7 are always: initiation (a), response (b), keepalive (a),
//! 1400-byte data (a), the two fragments of a 1518-byte frame (a), 100-byte
//! data (b); the last four were never delivered.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use tapbridge::tunnel::{Counters, Entropy, Incoming, PeerParams, PresharedKey, Transmit, Tunnel, TunnelParams};

const PSK: [u8; 32] = [0x42; 32];
const MAX_FRAME: usize = 1518;
const MAX_CAPTURES: usize = 256;
const MAX_FLIGHTS: usize = 256;

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

fn params(local: &str, peer: &str, endpoint: SocketAddr) -> TunnelParams {
    TunnelParams {
        local_name: local.into(),
        peers: vec![PeerParams {
            name: peer.into(),
            keys: vec![PresharedKey::new(PSK)],
            endpoint: Some(endpoint),
        }],
        keepalive: Duration::from_secs(10),
        rekey_after: Duration::from_secs(120),
        rekey_after_packets: 1 << 32,
        wan_mtu: 1500,
        max_frame: MAX_FRAME,
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
}

/// A datagram on its way from one side to the other.
struct Flight {
    from: usize,
    to: SocketAddr,
    bytes: Vec<u8>,
}

struct World {
    now: Instant,
    t: [Tunnel; 2],
    addr: [SocketAddr; 2],
    /// Every datagram either side emitted (replay/mutation sources), bounded.
    captures: Vec<Vec<u8>>,
    /// Every datagram either side emitted, unbounded.
    genuine: HashSet<Vec<u8>>,
    flights: Vec<Flight>,
    next_seq: u32,
    /// Sequence numbers each side sent and each side received.
    sent: [HashSet<u32>; 2],
    received: [HashSet<u32>; 2],
}

impl World {
    fn new() -> World {
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = addr("198.18.0.1:51901");
        let b = addr("198.18.0.2:51901");
        let mut w = World {
            now,
            t: [
                Tunnel::new(
                    params("a", "b", b),
                    Box::new(FuzzEntropy(1)),
                    now,
                    wall,
                ),
                Tunnel::new(
                    params("b", "a", a),
                    Box::new(FuzzEntropy(2)),
                    now,
                    wall,
                ),
            ],
            addr: [a, b],
            captures: Vec::new(),
            genuine: HashSet::new(),
            flights: Vec::new(),
            next_seq: 0,
            sent: [HashSet::new(), HashSet::new()],
            received: [HashSet::new(), HashSet::new()],
        };
        // The handshake: a initiates, b answers, a confirms with a keepalive.
        let mut out = Out::new();
        w.t[0].handle_timeout(now, &mut out);
        w.emit(0, out);
        w.pump();
        assert!(w.flights.is_empty(), "the handshake settles");
        for side in 0..2 {
            let st = w.t[side].peer_status(0).expect("one peer");
            assert_eq!(
                st.stats.handshakes, 1,
                "side {side} completed the handshake"
            );
        }
        // Real data for the fuzzer to replay and mutate, not yet delivered:
        // a whole frame and a fragmented one from a, a small one from b.
        w.send(0, 1400);
        w.send(0, MAX_FRAME);
        w.send(1, 100);
        assert_eq!(
            w.captures.len(),
            7,
            "the fixed captures of the input format"
        );
        w.flights.clear();
        w
    }

    /// Records what `side` emitted as genuine and puts it in flight.
    fn emit(&mut self, side: usize, out: Out) {
        for (to, bytes) in out.sent {
            if self.captures.len() < MAX_CAPTURES {
                self.captures.push(bytes.clone());
            }
            self.genuine.insert(bytes.clone());
            if self.flights.len() < MAX_FLIGHTS {
                self.flights.push(Flight {
                    from: side,
                    to,
                    bytes,
                });
            }
        }
    }

    fn send(&mut self, side: usize, len: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sent[side].insert(seq);
        let f = frame(seq, len);
        let mut out = Out::new();
        self.t[side].send_frame(0, &f, self.now, &mut out);
        self.emit(side, out);
    }

    /// Hands `bytes` from `from` to `side` and checks the invariants.
    fn deliver(&mut self, side: usize, from: SocketAddr, mut bytes: Vec<u8>) {
        let genuine = self.genuine.contains(&bytes);
        let before = drops(&self.t[side].counters());
        let mut out = Out::new();
        let got = match self.t[side].handle_datagram(from, &mut bytes, self.now, &mut out) {
            Incoming::Frame { peer, frame: f } => {
                assert_eq!(peer, 0, "only one peer is configured");
                Some(f.to_vec())
            }
            Incoming::Nothing => None,
        };
        let after = drops(&self.t[side].counters());
        if !genuine {
            assert!(
                out.sent.is_empty(),
                "side {side} answered a datagram it was never sent: {:02x?}",
                out.sent
            );
            assert!(
                got.is_none(),
                "side {side} delivered a frame from a forgery"
            );
            assert_eq!(
                after,
                before + 1,
                "a forged datagram is counted exactly once"
            );
        }
        if let Some(f) = got {
            assert!(
                f.len() >= 4 && f.len() <= MAX_FRAME,
                "frame length {}",
                f.len()
            );
            let seq = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
            assert_eq!(f, frame(seq, f.len()), "frame {seq} corrupted");
            assert!(
                self.sent[1 - side].contains(&seq),
                "frame {seq} was sent by the peer"
            );
            assert!(
                self.received[side].insert(seq),
                "frame {seq} delivered twice"
            );
        }
        self.emit(side, out);
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

    fn deliver_flight(&mut self, i: usize) {
        let f = self.flights.remove(i);
        if let Some(side) = self.addr.iter().position(|a| *a == f.to) {
            let from = self.addr[f.from];
            self.deliver(side, from, f.bytes);
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        for side in 0..2 {
            let mut out = Out::new();
            self.t[side].handle_timeout(self.now, &mut out);
            self.emit(side, out);
        }
    }

    /// The source of an injected datagram for `side`.
    fn source(&self, side: usize, pick: u8) -> SocketAddr {
        match pick & 3 {
            0 => self.addr[1 - side],
            1 => addr("198.18.0.1:40000"),
            2 => addr("198.18.9.9:1234"),
            _ => addr("[2001:2::9]:51901"),
        }
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

fn run(data: &[u8]) -> Option<()> {
    let mut w = World::new();
    let mut r = Reader(data);
    while let Some(op) = r.u8() {
        let side = if op & 8 == 0 { 1 } else { 0 };
        let from = w.source(side, op >> 4);
        match op & 7 {
            0 => {
                let len = usize::from(r.u16()?) % 2049;
                let bytes = r.bytes(len).to_vec();
                w.deliver(side, from, bytes);
            }
            1 => {
                let mut bytes = w.captures[usize::from(r.u8()?) % w.captures.len()].clone();
                for _ in 0..(r.u8()? % 8) + 1 {
                    let pos = usize::from(r.u16()?);
                    match r.u8()? {
                        0 => bytes.truncate(pos),
                        x if !bytes.is_empty() => {
                            let i = pos % bytes.len();
                            bytes[i] ^= x;
                        }
                        _ => {}
                    }
                }
                w.deliver(side, from, bytes);
            }
            2 => {
                let bytes = w.captures[usize::from(r.u8()?) % w.captures.len()].clone();
                w.deliver(side, from, bytes);
            }
            3 => {
                let ms = u64::from(r.u16()?) * 8;
                w.advance(Duration::from_millis(ms));
            }
            4 => w.pump(),
            5 => {
                let len = usize::from(r.u16()?) % (MAX_FRAME + 64);
                w.send(side, len.max(4));
            }
            6 => w.flights.clear(),
            _ => {
                let which = usize::from(r.u8()?);
                if !w.flights.is_empty() {
                    w.deliver_flight(which % w.flights.len());
                }
            }
        }
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    run(data);
});
