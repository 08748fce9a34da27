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
        // One that sends half a record header and then nothing.
        let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        std::io::Write::write_all(&mut slow, &[0]).expect("send");
        // One that sends nothing at all: the kernel holds it back
        // (TCP_DEFER_ACCEPT), it never takes a place here.
        let _silent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
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
        // The slow one goes when its time is up.
        let until = Instant::now() + Duration::from_secs(2);
        while c.counters().accepted < 2 && Instant::now() < until {
            turn(&mut c);
        }
        c.expire(Instant::now() + Duration::from_secs(6));
        slow.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert_eq!(slow.read(&mut buf).expect("EOF"), 0, "closed, nothing sent");
        assert_eq!(c.counters().refused, 2);
        assert_eq!(c.counters().accepted, 2);
        assert!(c.is_empty());
    });
}

/// A connection from `src` (any port) to `port` on 127.0.0.1 that has sent
/// `bytes`.
fn connect_from(src: &str, port: u16, bytes: &[u8]) -> TcpStream {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::{AsRawFd, OwnedFd};
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    let from: std::net::SocketAddrV4 = format!("{src}:0").parse().expect("test literal");
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(from)).expect("bind");
    let to: std::net::SocketAddrV4 = format!("127.0.0.1:{port}").parse().expect("test literal");
    socket::connect(fd.as_raw_fd(), &SockaddrIn::from(to)).expect("connect");
    let mut s = TcpStream::from(fd);
    std::io::Write::write_all(&mut s, bytes).expect("send");
    s
}

#[test]
fn a_host_opening_connections_in_a_loop_pushes_out_only_its_own() {
    in_netns("a_host_opening_connections_in_a_loop", || {
        lo_up();
        let mut c = Conns::new(sa("127.0.0.1:0"), true, 1).expect("conns");
        let port = c.local_port().expect("listening");
        // A peer's connection, its first record not complete yet (it has
        // proved nothing so far).
        let mut peer = connect_from("127.0.0.2", port, &[0, 4, 1]);
        let peer_addr = peer.local_addr().expect("addr");
        let until = Instant::now() + Duration::from_secs(2);
        while c.counters().accepted < 1 && Instant::now() < until {
            turn(&mut c);
        }
        assert_eq!(c.counters().accepted, 1);
        // Another host opens 100 connections, each with one byte, polled
        // as they come (far more than the 32 places of the whole table).
        let mut flood = Vec::new();
        for _ in 0..100 {
            flood.push(connect_from("127.0.0.9", port, &[0]));
            turn(&mut c);
        }
        let until = Instant::now() + Duration::from_secs(2);
        while c.counters().accepted < 101 && Instant::now() < until {
            turn(&mut c);
        }
        assert_eq!(c.counters().accepted, 101);
        assert_eq!(c.len(), 1 + 4, "the flood holds four places, the peer one");
        // The peer's record completes: it is still there to be read.
        std::io::Write::write_all(&mut peer, &[2, 3, 4]).expect("send");
        let mut record = vec![0u8; 65535];
        let until = Instant::now() + Duration::from_secs(2);
        let mut got = None;
        while got.is_none() && Instant::now() < until {
            let mut readable = Vec::new();
            c.poll(Instant::now(), &mut readable);
            for slot in readable {
                if let Got::Message(from, len) = c.read_record(slot, &mut record) {
                    got = Some((from, record[..len].to_vec()));
                }
            }
        }
        assert_eq!(got, Some((peer_addr, vec![1, 2, 3, 4])));
    });
}
