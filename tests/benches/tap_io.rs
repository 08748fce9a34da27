//! Issue 12, lever 1: what would `io_uring` save on the TAP side? Writes
//! and reads of small frames on a real TAP, one syscall per frame (today's
//! data path) against batches of 64 submitted to an `io_uring` at once.
//!
//! `cargo bench --bench tap_io` (as root: it makes a private network
//! namespace and a TAP in it). Prints ns per frame, median and range of 5
//! runs of 200,000 frames each. Under `cargo test` it only checks that both
//! paths move frames (a few thousand), or says it needs root.
//!
//! What is measured: the syscall side of the TAP only. Written frames are
//! addressed to a MAC that is not the TAP's, so the kernel drops them right
//! after `tun_get_user` (the stack's own work, which no submission method
//! removes, is left out); frames read are queued by UDP sends through the
//! TAP before the clock starts.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Instant;

use io_uring::{IoUring, opcode, types};
use nix::sched::{CloneFlags, unshare};
use tapbridge::datapath::tap::{Tap, TapQueue};

const BATCH: usize = 64;
const FRAME: usize = 64;

/// A 64-byte Ethernet frame for a MAC nobody has.
fn frame(i: u32) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    f[..6].copy_from_slice(&[0x02, 0xee, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0xee, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14..18].copy_from_slice(&i.to_be_bytes());
    f
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {args:?} failed");
}

fn write_syscalls(q: &TapQueue, n: u32) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        q.write(&frame(i)).expect("TAP write");
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn write_uring(ring: &mut IoUring, q: &TapQueue, n: u32) -> f64 {
    let fd = types::Fd(q.as_raw_fd());
    let bufs: Vec<[u8; FRAME]> = (0..BATCH as u32).map(frame).collect();
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let k = (n - done).min(BATCH as u32) as usize;
        for b in &bufs[..k] {
            let e = opcode::Write::new(fd, b.as_ptr(), FRAME as u32).build();
            // SAFETY: the buffers outlive the submission (we wait for all
            // completions below before touching them).
            #[allow(unsafe_code)]
            unsafe {
                ring.submission().push(&e).expect("room in the ring");
            }
        }
        ring.submit_and_wait(k).expect("io_uring submit");
        for c in ring.completion() {
            assert_eq!(c.result(), FRAME as i32, "TAP write via io_uring");
        }
        done += k as u32;
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

/// Queues `n` frames on the TAP (UDP datagrams routed through it).
fn fill(sock: &UdpSocket, n: u32) {
    for i in 0..n {
        sock.send(&i.to_be_bytes())
            .expect("UDP send through the TAP");
    }
}

fn read_syscalls(q: &TapQueue, sock: &UdpSocket, n: u32) -> f64 {
    fill(sock, n);
    let mut buf = [0u8; 2048];
    let t = Instant::now();
    for _ in 0..n {
        q.read(&mut buf).expect("a queued frame");
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn read_uring(ring: &mut IoUring, q: &TapQueue, sock: &UdpSocket, n: u32) -> f64 {
    fill(sock, n);
    let fd = types::Fd(q.as_raw_fd());
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let k = (n - done).min(BATCH as u32) as usize;
        for b in &mut bufs[..k] {
            let e = opcode::Read::new(fd, b.as_mut_ptr(), b.len() as u32).build();
            // SAFETY: as in `write_uring`.
            #[allow(unsafe_code)]
            unsafe {
                ring.submission().push(&e).expect("room in the ring");
            }
        }
        ring.submit_and_wait(k).expect("io_uring submit");
        for c in ring.completion() {
            assert!(c.result() > 0, "TAP read via io_uring: {}", c.result());
        }
        done += k as u32;
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn summary(name: &str, mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let med = v[v.len() / 2];
    println!(
        "{name:<28} {med:>7.0} ns/frame  (range {:.0}-{:.0}, {} runs)",
        v[0],
        v[v.len() - 1],
        v.len()
    );
    med
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    if !nix::unistd::geteuid().is_root() {
        println!("tap_io: needs root (a network namespace and a TAP); skipped");
        return;
    }
    unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET) as root");
    let tap = Tap::create("tbbench0", 1).expect("TAP");
    ip(&["link", "set", "lo", "up"]);
    ip(&["link", "set", "tbbench0", "up", "txqueuelen", "300000"]);
    ip(&["addr", "add", "198.18.250.1/24", "dev", "tbbench0"]);
    ip(&[
        "neigh",
        "add",
        "198.18.250.2",
        "lladdr",
        "02:ee:00:00:00:02",
        "dev",
        "tbbench0",
    ]);
    let q = &tap.queues()[0];
    let sock = UdpSocket::bind("198.18.250.1:0").expect("bind");
    sock.connect("198.18.250.2:9").expect("connect");
    let mut ring = IoUring::new(256).expect("io_uring");
    let (n, runs) = if bench { (200_000, 5) } else { (2_000, 1) };
    // Frames the kernel queued before we started (IPv6 off or not) go first.
    let mut buf = [0u8; 2048];
    while q.read(&mut buf).is_ok() {}
    let mut w = (Vec::new(), Vec::new());
    let mut r = (Vec::new(), Vec::new());
    for _ in 0..runs {
        w.0.push(write_syscalls(q, n));
        w.1.push(write_uring(&mut ring, q, n));
        r.0.push(read_syscalls(q, &sock, n));
        r.1.push(read_uring(&mut ring, q, &sock, n));
    }
    println!("TAP I/O, {FRAME}-byte frames, {n} per run, batches of {BATCH}:");
    let ws = summary("write(), one per frame", w.0);
    let wu = summary("io_uring Write, batched", w.1);
    let rs = summary("read(), one per frame", r.0);
    let ru = summary("io_uring Read, batched", r.1);
    println!(
        "io_uring saves {:.0} ns per frame written ({:.0} %), {:.0} ns per frame read ({:.0} %)",
        ws - wu,
        100.0 * (ws - wu) / ws,
        rs - ru,
        100.0 * (rs - ru) / rs
    );
}
