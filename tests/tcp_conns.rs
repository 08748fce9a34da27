//! The TCP transport's connections against the real kernel, each test in a
//! private network namespace (loopback only). Needs root; without it the
//! tests say so and return.

mod common;
use common::in_netns;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tapbridge::datapath::tcp::{Conns, QUEUE_LIMIT, Read as Got};
use tapbridge::netlink::Netlink;
use tapbridge::wire::tcp::{HEADER_LEN, RecordReader};

fn lo_up() {
    let mut nl = Netlink::new().expect("netlink");
    let lo = nl.link_by_name("lo").expect("lookup").expect("lo exists");
    nl.set_up(lo.index).expect("lo up");
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test literal")
}

/// Queues one `len`-byte message numbered `n` for `to`.
fn send(c: &mut Conns, to: SocketAddr, n: u32, len: usize) {
    let buf = c.out_buffer();
    buf[..4].copy_from_slice(&n.to_be_bytes());
    buf[4..len].fill(n as u8);
    c.send(len, to, Instant::now());
}

/// Lets the connections make progress (connects, writes).
fn turn(c: &mut Conns) {
    let mut readable = Vec::new();
    c.poll(Instant::now(), &mut readable);
    c.flush();
}

#[test]
fn a_stalled_peer_never_blocks_the_others_and_its_queue_is_bounded() {
    in_netns("a_stalled_peer_never_blocks_the_others", || {
        lo_up();
        let mut c = Conns::new(sa("127.0.0.1:0"), false, 2).expect("conns");
        // One peer accepts and never reads; the other reads everything.
        let stalled = TcpListener::bind("127.0.0.1:0").expect("bind");
        let healthy = TcpListener::bind("127.0.0.1:0").expect("bind");
        let (to_stalled, to_healthy) = (
            stalled.local_addr().expect("addr"),
            healthy.local_addr().expect("addr"),
        );
        let reader = std::thread::spawn(move || {
            let (mut s, _) = healthy.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut r = RecordReader::new();
            let mut got = Vec::new();
            while got.len() < 100 {
                let n = s.read(r.spare()).expect("read");
                assert!(n > 0, "closed early after {} records", got.len());
                r.filled(n);
                while let Some(m) = r.next_message().expect("records") {
                    got.push(u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
                }
            }
            got
        });
        let _held = std::thread::spawn(move || {
            let (s, _) = stalled.accept().expect("accept");
            std::thread::sleep(Duration::from_secs(20));
            drop(s);
        });
        let started = Instant::now();
        let len = 60_000;
        for n in 0..400u32 {
            // 24 MB at the stalled peer: far more than its socket and our
            // queue hold. Every call returns at once, and the healthy peer
            // gets its (smaller) share meanwhile.
            send(&mut c, to_stalled, n, len);
            if n % 4 == 0 {
                send(&mut c, to_healthy, n / 4, 1000);
            }
            turn(&mut c);
        }
        // The healthy peer's last records may still be queued: let them go.
        let until = Instant::now() + Duration::from_secs(10);
        while !reader.is_finished() && Instant::now() < until {
            turn(&mut c);
            std::thread::sleep(Duration::from_millis(1));
        }
        let got = reader.join().expect("reader");
        assert_eq!(got, (0..100).collect::<Vec<_>>(), "in order, none lost");
        let dropped = c.counters().dropped;
        // What the stalled peer took: socket buffers plus our bounded queue.
        let kept = 400 - dropped as usize;
        assert!(dropped > 0, "the stalled peer's excess is dropped");
        assert!(
            kept * (len + HEADER_LEN) < QUEUE_LIMIT + 16 * 1024 * 1024,
            "{kept} records kept for a peer that reads nothing"
        );
        eprintln!(
            "stalled peer: {kept} of 400 records kept, {dropped} dropped; {:?} in all",
            started.elapsed()
        );
    });
}

#[test]
fn garbage_and_a_silent_connection_are_closed_without_a_byte() {
    in_netns("garbage_and_a_silent_connection_are_closed", || {
        lo_up();
        let mut c = Conns::new(sa("127.0.0.1:0"), true, 1).expect("conns");
        assert!(c.listening());
        let port = c.local_port().expect("listening");
        let mut garbage = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        std::io::Write::write_all(&mut garbage, &[0, 0, 9, 9]).expect("send");
        let silent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut record = vec![0u8; 65535];
        let t0 = Instant::now();
        let mut closed = 0;
        while closed < 1 && t0.elapsed() < Duration::from_secs(5) {
            let mut readable = Vec::new();
            c.poll(Instant::now(), &mut readable);
            for slot in readable {
                if c.read_record(slot, &mut record) == Got::Closed {
                    closed += 1;
                }
            }
        }
        assert_eq!(closed, 1, "the zero-length record broke the stream");
        garbage
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 16];
        assert_eq!(
            garbage.read(&mut buf).expect("EOF"),
            0,
            "closed, nothing sent"
        );
        // The silent one goes when its time is up.
        c.expire(Instant::now() + Duration::from_secs(6));
        let mut silent = silent;
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert_eq!(
            silent.read(&mut buf).expect("EOF"),
            0,
            "closed, nothing sent"
        );
        assert_eq!(c.counters().refused, 2);
        assert_eq!(c.counters().accepted, 2);
        assert!(c.is_empty());
    });
}
