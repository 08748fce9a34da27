//! The data path's I/O blocks against the real kernel: batched UDP over
//! loopback and TAP queues, each test in a private network namespace
//! (`unshare(CLONE_NEWNET)` on its own thread). Needs root; without it the
//! tests say so and return.

mod common;
use common::in_netns;

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tapbridge::datapath::tap::{Tap, TapError, TapQueue};
use tapbridge::datapath::udp::{RecvBatch, SendBatch, UdpOptions, UdpSocket};
use tapbridge::mac::MacAddr;
use tapbridge::netlink::Netlink;

fn lo_up(nl: &mut Netlink) {
    let lo = nl.link_by_name("lo").expect("lookup").expect("lo exists");
    nl.set_up(lo.index).expect("lo up");
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("test literal")
}

/// Waits (bounded, as a hang guard only) until `fd` is readable.
fn wait_readable<F: AsFd>(fd: &F) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(5000u16)), Ok(n) if n > 0)
}

fn payload(seq: u32, out: &mut [u8]) -> usize {
    fill(seq, 16 + (seq as usize * 7) % 1200, out)
}

/// Runs of 1000-byte datagrams, every 25th shorter: what segmentation
/// offload (UDP_SEGMENT) sends as one message and the kernel splits again.
fn uniform_payload(seq: u32, out: &mut [u8]) -> usize {
    fill(seq, if seq % 25 == 24 { 300 } else { 1000 }, out)
}

fn fill(seq: u32, len: usize, out: &mut [u8]) -> usize {
    out[..4].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in out[4..len].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_add(i) as u8;
    }
    len
}

/// Moves `total` datagrams from `tx` to `rx` in batches, checking each one's
/// contents and canonical source address.
fn pump(tx: &UdpSocket, rx: &UdpSocket, dest: SocketAddr, expect_src: SocketAddr, total: u32) {
    pump_with(payload, tx, rx, dest, expect_src, total);
}

fn pump_with(
    payload: fn(u32, &mut [u8]) -> usize,
    tx: &UdpSocket,
    rx: &UdpSocket,
    dest: SocketAddr,
    expect_src: SocketAddr,
    total: u32,
) {
    let mut sb = SendBatch::new(64, 2048);
    let mut rb = RecvBatch::new(32, 65536);
    let mut seen = vec![false; total as usize];
    let mut received = 0u32;
    let mut next = 0u32;
    while received < total {
        while next < total {
            let Some(buf) = sb.next_buf() else { break };
            let len = payload(next, buf);
            assert!(sb.commit(len, dest));
            next += 1;
        }
        let report = tx.send_batch(&mut sb);
        assert_eq!(report.dropped, 0, "{report:?}");
        assert_eq!(sb.pending(), 0, "loopback takes a whole batch: {report:?}");
        loop {
            match rx.recv_batch(&mut rb) {
                Ok(n) => {
                    for i in 0..n {
                        let (bufs, src, seg) = rb.get_segmented(i).expect("whole buffer");
                        for data in bufs.chunks(seg) {
                            assert_eq!(src, expect_src);
                            let seq = u32::from_be_bytes(data[..4].try_into().expect("4 bytes"));
                            let mut want = [0u8; 2048];
                            let len = payload(seq, &mut want);
                            assert_eq!(data, &want[..len], "datagram {seq}");
                            assert!(!seen[seq as usize], "datagram {seq} twice");
                            seen[seq as usize] = true;
                            received += 1;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if received < next {
                        assert!(wait_readable(rx), "datagrams lost: {received} of {next}");
                        continue;
                    }
                    break;
                }
                Err(e) => panic!("recv_batch: {e}"),
            }
        }
    }
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn udp_batches_over_ipv4_loopback() {
    in_netns("udp_batches_over_ipv4_loopback", || {
        let mut nl = Netlink::new().expect("netlink");
        lo_up(&mut nl);
        let opts = UdpOptions::default();
        let rx = UdpSocket::bind(sa("127.0.0.1:0"), &opts).expect("bind rx");
        let tx = UdpSocket::bind(sa("127.0.0.1:0"), &opts).expect("bind tx");
        assert_ne!(rx.local_addr().port(), 0);
        pump(&tx, &rx, rx.local_addr(), tx.local_addr(), 1000);
    });
}

#[test]
fn equal_size_runs_arrive_as_separate_intact_datagrams() {
    in_netns(
        "equal_size_runs_arrive_as_separate_intact_datagrams",
        || {
            let mut nl = Netlink::new().expect("netlink");
            lo_up(&mut nl);
            let opts = UdpOptions::default();
            let rx = UdpSocket::bind(sa("127.0.0.1:0"), &opts).expect("bind rx");
            let tx = UdpSocket::bind(sa("127.0.0.1:0"), &opts).expect("bind tx");
            pump_with(
                uniform_payload,
                &tx,
                &rx,
                rx.local_addr(),
                tx.local_addr(),
                1000,
            );
            assert!(tx.gso_active(), "this kernel takes UDP_SEGMENT on loopback");
        },
    );
}

#[test]
fn gro_receiver_splits_runs_back_into_datagrams() {
    in_netns("gro_receiver_splits_runs_back_into_datagrams", || {
        let mut nl = Netlink::new().expect("netlink");
        lo_up(&mut nl);
        let gro = UdpOptions {
            gro: true,
            ..UdpOptions::default()
        };
        let rx = UdpSocket::bind(sa("127.0.0.1:0"), &gro).expect("bind rx");
        let tx = UdpSocket::bind(sa("127.0.0.1:0"), &UdpOptions::default()).expect("bind tx");
        let (dest, src) = (rx.local_addr(), tx.local_addr());
        pump_with(uniform_payload, &tx, &rx, dest, src, 1000);
        pump_with(payload, &tx, &rx, dest, src, 500);
    });
}

#[test]
fn udp_batches_over_ipv6_loopback() {
    in_netns("udp_batches_over_ipv6_loopback", || {
        let mut nl = Netlink::new().expect("netlink");
        lo_up(&mut nl);
        let opts = UdpOptions::default();
        let rx = UdpSocket::bind(sa("[::1]:0"), &opts).expect("bind rx");
        let tx = UdpSocket::bind(sa("[::1]:0"), &opts).expect("bind tx");
        pump(&tx, &rx, rx.local_addr(), tx.local_addr(), 1000);
    });
}

#[test]
fn dual_stack_socket_speaks_canonical_ipv4() {
    in_netns("dual_stack_socket_speaks_canonical_ipv4", || {
        let mut nl = Netlink::new().expect("netlink");
        lo_up(&mut nl);
        let opts = UdpOptions {
            reuse_port: true,
            ..UdpOptions::default()
        };
        let dual = UdpSocket::bind(sa("[::]:0"), &opts).expect("bind [::]");
        let port = dual.local_addr().port();
        let v4 = UdpSocket::bind(sa("127.0.0.1:0"), &opts).expect("bind v4");
        // v4 -> dual: the source shows up as plain IPv4.
        pump(
            &v4,
            &dual,
            sa(&format!("127.0.0.1:{port}")),
            v4.local_addr(),
            100,
        );
        // dual -> v4 with an IPv4 destination (sent v4-mapped underneath).
        let src = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
        pump(&dual, &v4, v4.local_addr(), src, 100);
        // SO_REUSEPORT lets a second worker socket share the port.
        let second = UdpSocket::bind(sa(&format!("[::]:{port}")), &opts).expect("reuseport");
        assert_eq!(second.local_addr().port(), port);
        // Without it the port is taken, and the error names the address.
        let e = UdpSocket::bind(sa(&format!("[::]:{port}")), &UdpOptions::default())
            .expect_err("in use");
        assert!(e.to_string().contains(&port.to_string()), "{e}");
    });
}

/// Receives `want` datagrams on `sock`: (payload, source, local address).
fn recv_all(sock: &UdpSocket, want: usize) -> Vec<(Vec<u8>, SocketAddr, Option<IpAddr>)> {
    let mut rb = RecvBatch::new(16, 2048);
    let mut got = Vec::new();
    while got.len() < want {
        assert!(wait_readable(sock), "datagrams missing: got {got:?}");
        let n = sock.recv_batch(&mut rb).expect("recv");
        for i in 0..n {
            let local = rb.local_ip(i);
            let (d, from) = rb.get(i).expect("datagram");
            got.push((d.to_vec(), from, local));
        }
    }
    got
}

/// A socket bound to a wildcard address learns which of its addresses each
/// datagram was sent to, and sends from the address it is told: runs to one
/// destination from different sources go out separately, also with GSO.
fn answers_from_the_address_used(server: &UdpSocket, client: &UdpSocket, a1: IpAddr, a2: IpAddr) {
    let port = server.local_addr().port();
    let mut sb = SendBatch::new(64, 2048);
    for to in [a1, a2] {
        assert!(sb.push(b"hello", SocketAddr::new(to, port)));
    }
    assert_eq!(client.send_batch(&mut sb).sent, 2);
    let got = recv_all(server, 2);
    assert_eq!(got[0].2, Some(a1), "{got:?}");
    assert_eq!(got[1].2, Some(a2), "{got:?}");
    let peer = got[0].1;
    // Equal-size runs from each address (one GSO message each), then one
    // with no source asked for.
    for (i, src) in [a2, a1, a2].into_iter().enumerate() {
        for _ in 0..5 {
            let buf = sb.next_buf().expect("room");
            buf[..1000].fill(i as u8);
            assert!(sb.commit_from(1000, peer, Some(src)));
        }
    }
    assert!(sb.push(b"kernel's choice", peer));
    assert_eq!(server.send_batch(&mut sb).sent, 16);
    let got = recv_all(client, 16);
    let from: Vec<IpAddr> = got.iter().map(|(_, f, _)| f.ip()).collect();
    let mut want = vec![a2; 5];
    want.extend([a1; 5]);
    want.extend([a2; 5]);
    assert_eq!(&from[..15], &want[..], "sources");
    for (i, (d, f, _)) in got.iter().enumerate().take(15) {
        assert_eq!((d.len(), d[0]), (1000, (i / 5) as u8), "datagram {i}");
        assert_eq!(f.port(), port);
    }
    assert_eq!(got[15].0, b"kernel's choice");
}

#[test]
fn wildcard_socket_answers_from_the_address_it_was_reached_at() {
    in_netns(
        "wildcard_socket_answers_from_the_address_it_was_reached_at",
        || {
            let mut nl = Netlink::new().expect("netlink");
            lo_up(&mut nl);
            let opts = UdpOptions {
                gro: true,
                ..UdpOptions::default()
            };
            let (a1, a2): (IpAddr, IpAddr) = ([127, 0, 0, 2].into(), [127, 0, 0, 3].into());
            let v4 = UdpSocket::bind(sa("0.0.0.0:0"), &opts).expect("bind 0.0.0.0");
            // Without GRO, so the 1000-byte runs arrive one by one.
            let plain = UdpOptions::default();
            let client = UdpSocket::bind(sa("127.0.0.1:0"), &plain).expect("bind client");
            answers_from_the_address_used(&v4, &client, a1, a2);
            // A dual-stack socket: IPv4 datagrams, and IPv6 ones.
            let dual = UdpSocket::bind(sa("[::]:0"), &opts).expect("bind [::]");
            answers_from_the_address_used(&dual, &client, a1, a2);
            let lo = nl.link_by_name("lo").expect("lookup").expect("lo");
            let (b1, b2): (IpAddr, IpAddr) = (sa("[2001:2::1]:0").ip(), sa("[2001:2::2]:0").ip());
            for b in [b1, b2] {
                nl.add_address(lo.index, b, 128).expect("address on lo");
            }
            // Usable once no longer tentative (a tentative address cannot
            // be bound; bounded wait as a hang guard only).
            for _ in 0..250 {
                let bindable = |ip| UdpSocket::bind(SocketAddr::new(ip, 0), &plain).is_ok();
                if bindable(b1) && bindable(b2) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let client6 = UdpSocket::bind(sa("[::1]:0"), &plain).expect("bind client6");
            answers_from_the_address_used(&dual, &client6, b1, b2);
            // A source that is no longer ours (the address went away): the
            // kernel's choice instead, GSO run and single datagram alike.
            let gone: IpAddr = [198, 18, 99, 1].into();
            let mut sb = SendBatch::new(8, 2048);
            for _ in 0..5 {
                let buf = sb.next_buf().expect("room");
                buf[..1000].fill(9);
                assert!(sb.commit_from(1000, client.local_addr(), Some(gone)));
            }
            assert!(sb.next_buf().is_some());
            assert!(sb.commit_from(10, client.local_addr(), Some(gone)));
            let report = v4.send_batch(&mut sb);
            assert_eq!((report.sent, report.unsourced), (6, 6), "{report:?}");
            let got = recv_all(&client, 6);
            assert!(
                got.iter()
                    .all(|(_, f, _)| f.ip() == IpAddr::from([127, 0, 0, 1])),
                "{got:?}"
            );
            // Bound to one address: nothing to learn.
            let one = UdpSocket::bind(sa("127.0.0.2:0"), &opts).expect("bind one");
            let mut sb = SendBatch::new(4, 64);
            assert!(sb.push(b"x", one.local_addr()));
            assert_eq!(client.send_batch(&mut sb).sent, 1);
            assert_eq!(recv_all(&one, 1)[0].2, None);
        },
    );
}

#[test]
fn send_batch_drops_unsendable_and_keeps_going() {
    in_netns("send_batch_drops_unsendable_and_keeps_going", || {
        let mut nl = Netlink::new().expect("netlink");
        lo_up(&mut nl);
        let opts = UdpOptions::default();
        let rx = UdpSocket::bind(sa("127.0.0.1:0"), &opts).expect("bind rx");
        let tx = UdpSocket::bind(sa("127.0.0.1:0"), &opts).expect("bind tx");
        let mut sb = SendBatch::new(8, 64);
        assert!(sb.push(b"one", rx.local_addr()));
        assert!(
            sb.push(b"lost", sa("[2001:2::1]:9")),
            "v6 dest on a v4 socket"
        );
        assert!(sb.push(b"three", rx.local_addr()));
        let report = tx.send_batch(&mut sb);
        assert_eq!((report.sent, report.dropped), (2, 1), "{report:?}");
        assert!(report.error.is_some());
        assert_eq!(sb.pending(), 0);

        // Truncated datagrams are not handed out.
        assert!(sb.push(&[7u8; 64], rx.local_addr()));
        assert_eq!(tx.send_batch(&mut sb).sent, 1);
        let mut rb = RecvBatch::new(8, 32);
        let mut got = Vec::new();
        while got.len() < 3 {
            assert!(wait_readable(&rx));
            let n = rx.recv_batch(&mut rb).expect("recv");
            for i in 0..n {
                got.push(rb.get(i).map(|(d, _)| d.to_vec()));
            }
        }
        assert_eq!(
            got,
            vec![Some(b"one".to_vec()), Some(b"three".to_vec()), None]
        );
        assert!(rb.get(99).is_none());
    });
}

fn read_frame(queues: &[TapQueue], buf: &mut [u8]) -> usize {
    loop {
        for q in queues {
            match q.read(buf) {
                Ok(n) => return n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("tap read: {e}"),
            }
        }
        let mut fds: Vec<PollFd> = queues
            .iter()
            .map(|q| PollFd::new(q.as_fd(), PollFlags::POLLIN))
            .collect();
        assert!(
            matches!(poll(&mut fds, PollTimeout::from(5000u16)), Ok(n) if n > 0),
            "no frame from the TAP"
        );
    }
}

const TAP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Reads frames until an ARP request shows up (IPv6 neighbour discovery and
/// MLD chatter from the fresh link may come first).
fn read_arp_request(queues: &[TapQueue]) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    for _ in 0..50 {
        let n = read_frame(queues, &mut buf);
        if n >= 42 && buf[12..14] == [0x08, 0x06] {
            return buf[..n].to_vec();
        }
    }
    panic!("no ARP request among 50 frames");
}

fn arp_reply(to_ip: [u8; 4], from_ip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&TAP_MAC);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02]);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&from_ip);
    f.extend_from_slice(&TAP_MAC);
    f.extend_from_slice(&to_ip);
    f
}

/// Brings `tap` up with 198.18.0.1/24, sends a UDP datagram to 198.18.0.2,
/// checks the ARP request the kernel emits, answers it through queue
/// `reply_on`, and checks the UDP frame that follows.
fn arp_round_trip(tap: &Tap, reply_on: usize) {
    let mut nl = Netlink::new().expect("netlink");
    let idx = nl
        .link_by_name(tap.name())
        .expect("lookup")
        .expect("tap")
        .index;
    nl.set_mac(idx, MacAddr(TAP_MAC)).expect("mac");
    nl.set_up(idx).expect("up");
    nl.add_address(idx, "198.18.0.1".parse().expect("ip"), 24)
        .expect("address");

    let sock = UdpSocket::bind(sa("198.18.0.1:0"), &UdpOptions::default()).expect("bind");
    sock.send_to(b"hello tap", sa("198.18.0.2:9"))
        .expect("send");

    let arp = read_arp_request(tap.queues());
    assert_eq!(arp[0..6], [0xff; 6], "broadcast");
    assert_eq!(arp[6..12], TAP_MAC, "source MAC");
    assert_eq!(
        arp[14..22],
        [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01],
        "Ethernet/IPv4 request"
    );
    assert_eq!(arp[22..28], TAP_MAC, "sender hardware address");
    assert_eq!(arp[28..32], [198, 18, 0, 1], "sender IP");
    assert_eq!(arp[38..42], [198, 18, 0, 2], "target IP");

    let reply = arp_reply([198, 18, 0, 1], [198, 18, 0, 2]);
    assert_eq!(
        tap.queues()[reply_on].write(&reply).expect("write"),
        reply.len()
    );

    // Resolution done, the queued datagram goes out to the peer's MAC.
    let mut buf = [0u8; 2048];
    for _ in 0..50 {
        let n = read_frame(tap.queues(), &mut buf);
        let f = &buf[..n];
        if n < 42 || f[12..14] != [0x08, 0x00] || f[23] != 17 {
            continue;
        }
        assert_eq!(f[0..6], PEER_MAC, "sent to the MAC the ARP reply gave");
        assert_eq!(f[26..30], [198, 18, 0, 1]);
        assert_eq!(f[30..34], [198, 18, 0, 2]);
        assert_eq!(f[36..38], 9u16.to_be_bytes(), "destination port");
        assert_ne!(f[20] & 0x40, 0, "DF set on the outer packet");
        assert_eq!(&f[42..], b"hello tap");
        return;
    }
    panic!("the UDP datagram never reached the TAP");
}

#[test]
fn tap_carries_arp_both_ways() {
    in_netns("tap_carries_arp_both_ways", || {
        let tap = Tap::create("tbio0", 1).expect("tap");
        assert_eq!(tap.name(), "tbio0");
        assert_eq!(tap.queues().len(), 1);
        arp_round_trip(&tap, 0);
    });
}

#[test]
fn multi_queue_tap_carries_arp_both_ways() {
    in_netns("multi_queue_tap_carries_arp_both_ways", || {
        let tap = Tap::create("tbmq0", 3).expect("multi-queue tap");
        assert_eq!(tap.queues().len(), 3);
        arp_round_trip(&tap, 2);
        // A second instance cannot attach to a live TAP.
        assert!(matches!(Tap::create("tbmq0", 2), Err(TapError::Exists(_))));
        assert!(matches!(Tap::create("tbmq0", 1), Err(TapError::Exists(_))));
        // Closing every queue removes the interface.
        drop(tap);
        let mut nl = Netlink::new().expect("netlink");
        assert!(nl.link_by_name("tbmq0").expect("lookup").is_none());
    });
}

#[test]
fn tap_names_are_validated() {
    // No privileges needed: validation happens before any syscall.
    for bad in [
        "",
        "a/b",
        "x:y",
        "with space",
        "sixteen-chars-xx",
        ".",
        "..",
    ] {
        assert!(
            matches!(Tap::create(bad, 1), Err(TapError::InvalidName { .. })),
            "{bad:?} accepted"
        );
    }
    assert!(matches!(
        Tap::create("tbok", 0),
        Err(TapError::InvalidQueues(0))
    ));
}

/// Counts heap allocations made by the current thread, to prove the batched
/// paths allocate nothing per datagram.
#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

#[test]
fn steady_state_batches_do_not_allocate() {
    in_netns("steady_state_batches_do_not_allocate", || {
        let mut nl = Netlink::new().expect("netlink");
        lo_up(&mut nl);
        let rx = UdpSocket::bind(sa("[::1]:0"), &UdpOptions::default()).expect("bind rx");
        let tx = UdpSocket::bind(sa("[::1]:0"), &UdpOptions::default()).expect("bind tx");
        let tap = Tap::create("tbal0", 1).expect("tap");
        let frame = arp_reply([198, 18, 0, 1], [198, 18, 0, 2]);
        let dest = rx.local_addr();
        let mut sb = SendBatch::new(64, 2048);
        let mut rb = RecvBatch::new(64, 2048);
        let round = |sb: &mut SendBatch, rb: &mut RecvBatch| -> (usize, usize, u64) {
            let mut seq = 0u32;
            while let Some(buf) = sb.next_buf() {
                let len = payload(seq, buf);
                sb.commit(len, dest);
                seq += 1;
            }
            let sent = tx.send_batch(sb).sent;
            let mut got = 0;
            let mut sum = 0u64;
            while got < sent {
                match rx.recv_batch(rb) {
                    Ok(n) => {
                        for i in 0..n {
                            if let Some((data, _src)) = rb.get(i) {
                                sum += u64::from(data[0]) + data.len() as u64;
                                got += 1;
                            }
                        }
                    }
                    Err(_) => {
                        if !wait_readable(&rx) {
                            break;
                        }
                    }
                }
            }
            // The TAP is down: the kernel drops what we write, but the write
            // itself is the hot-path call we care about.
            let _ = tap.queues()[0].write(&frame);
            (sent, got, sum)
        };
        round(&mut sb, &mut rb); // warm-up
        let before = counting::allocations();
        let mut moved = 0;
        for _ in 0..20 {
            let (sent, got, _) = round(&mut sb, &mut rb);
            assert_eq!(sent, 64);
            assert_eq!(got, 64);
            moved += got;
        }
        let allocs = counting::allocations() - before;
        assert_eq!(moved, 20 * 64);
        assert_eq!(allocs, 0, "allocations in steady state");
    });
}
