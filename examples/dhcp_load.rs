//! dhcp_load — a DHCP load generator: many clients doing full DORA
//! (DISCOVER, OFFER, REQUEST, ACK) over a raw AF_PACKET socket.
//!
//! ```text
//! dhcp_load --iface IF [--count N] [--rate R] [--timeout S] [--first N] [--acked FILE]
//!           [--unicast]
//! ```
//!
//! Client `i` (of `--count`, default 1000) has MAC `02:dd:` followed by the
//! four bytes of `--first + i` and transaction id `0x7b000000 + i`; it sends
//! its DISCOVER at `i / rate` seconds (open loop: the offered rate does not
//! slow down when the server does), answers the first OFFER with a
//! REQUEST (option 50 and 54 from the offer), and is done at the ACK (a NAK
//! counts as failed). Every message sets the BROADCAST flag, so replies reach
//! a client with no address as broadcasts; with `--unicast` the flag is
//! clear, as most clients send it (a client that takes a unicast frame before
//! it has an address), and replies go to the client's MAC only. A message unanswered for a second is sent again,
//! at most three times. The run ends when every client is done or failed, or
//! after `--timeout` seconds (default 30).
//!
//! Prints one JSON line: offered rate, clients, completed, naks, timed out,
//! completed DORA per second (completed over the time from the first
//! DISCOVER to the last ACK), latency from the first DISCOVER to the ACK
//! (p50, p90, p99, max, ms), retransmissions, and how many addresses were
//! ACKed to more than one client. `--acked FILE` also writes `MAC IP` per
//! completed client. Exit status 0 when every client completed, 1 when some
//! did not, 2 on usage or socket errors.
//!
//! Needs CAP_NET_RAW (run it as root inside a network namespace). Written
//! for the benchmark (`scripts/dhcp_bench.sh`) and the e2e test
//! (`tests/e2e/dhcp_load.sh`); not installed.

#![allow(unsafe_code)] // AF_PACKET socket calls through libc

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use nix::libc;

const XID_BASE: u32 = 0x7b00_0000;
const RETRY: Duration = Duration::from_secs(1);
const MAX_TRIES: u8 = 4;

#[derive(Clone, Copy, PartialEq)]
enum State {
    Waiting,
    Discovering,
    Requesting,
    Done,
    Failed,
}

#[derive(Clone, Copy)]
struct Client {
    state: State,
    started: Option<Instant>,
    last_sent: Instant,
    tries: u8,
    offered: Ipv4Addr,
    server: Ipv4Addr,
    latency: Duration,
}

struct Args {
    iface: String,
    count: u32,
    rate: f64,
    timeout: Duration,
    first: u32,
    acked: Option<String>,
    /// Clear the BROADCAST flag in every message.
    unicast: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        iface: String::new(),
        count: 1000,
        rate: 1000.0,
        timeout: Duration::from_secs(30),
        first: 0,
        acked: None,
        unicast: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--iface" => a.iface = value()?,
            "--count" => a.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--rate" => a.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--timeout" => {
                let s: f64 = value()?.parse().map_err(|e| format!("--timeout: {e}"))?;
                a.timeout = Duration::from_secs_f64(s);
            }
            "--first" => a.first = value()?.parse().map_err(|e| format!("--first: {e}"))?,
            "--acked" => a.acked = Some(value()?),
            "--unicast" => a.unicast = true,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if a.iface.is_empty() || a.count == 0 || !a.rate.is_finite() || a.rate <= 0.0 {
        return Err("usage: dhcp_load --iface IF [--count N>0] [--rate R>0] [--timeout S] [--first N] [--acked FILE] [--unicast]".into());
    }
    Ok(a)
}

/// A raw socket bound to one interface, non-blocking, IPv4 frames only.
struct Raw {
    fd: libc::c_int,
}

impl Raw {
    fn open(iface: &str) -> Result<Raw, String> {
        let proto = (libc::ETH_P_IP as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto),
            )
        };
        if fd < 0 {
            return Err(format!(
                "cannot open a raw socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        let raw = Raw { fd };
        let name = std::ffi::CString::new(iface).map_err(|_| "bad interface name".to_string())?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(format!("no interface {iface}"));
        }
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and its size is passed.
        let r = unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(format!(
                "cannot bind to {iface}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let size: libc::c_int = 8 << 20;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: `size` is a c_int and its size is passed.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            };
            if r == 0 {
                break;
            }
        }
        Ok(raw)
    }

    fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: `frame` is a valid buffer of its length.
        unsafe {
            libc::send(self.fd, frame.as_ptr().cast(), frame.len(), 0) == frame.len() as isize
        }
    }

    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: `buf` is a valid writable buffer of its length.
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n > 0).then_some(n as usize)
    }

    fn wait(&self, timeout: Duration) {
        let mut p = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let t = timeout.min(Duration::from_secs(1));
        let ts = libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
        };
        // SAFETY: one valid pollfd, a valid timespec, no signal mask.
        unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.fd) };
    }
}

fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn mac_of(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0xdd, b[0], b[1], b[2], b[3]]
}

/// What one client message says.
struct Message {
    kind: u8,
    xid: u32,
    mac: [u8; 6],
    /// (requested address, server identifier) of a REQUEST.
    req: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Set the BROADCAST flag.
    broadcast: bool,
}

/// A DHCP client message in a broadcast Ethernet/IPv4/UDP frame.
fn build(buf: &mut Vec<u8>, m: &Message) {
    let Message {
        kind,
        xid,
        mac,
        req,
        broadcast,
    } = *m;
    buf.clear();
    buf.extend_from_slice(&[0xff; 6]);
    buf.extend_from_slice(&mac);
    buf.extend_from_slice(&[0x08, 0x00]);
    let ip_at = buf.len();
    buf.extend_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
    ]);
    let udp_at = buf.len();
    buf.extend_from_slice(&[0, 68, 0, 67, 0, 0, 0, 0]);
    let dhcp_at = buf.len();
    buf.extend_from_slice(&[1, 1, 6, 0]);
    buf.extend_from_slice(&xid.to_be_bytes());
    buf.extend_from_slice(&[0, 0, if broadcast { 0x80 } else { 0 }, 0]); // secs, flags
    buf.extend_from_slice(&[0; 16]); // ciaddr, yiaddr, siaddr, giaddr
    buf.extend_from_slice(&mac);
    buf.extend_from_slice(&[0; 10 + 64 + 128]);
    buf.extend_from_slice(&[0x63, 0x82, 0x53, 0x63, 53, 1, kind]);
    if let Some((ip, server)) = req {
        buf.extend_from_slice(&[50, 4]);
        buf.extend_from_slice(&ip.octets());
        buf.extend_from_slice(&[54, 4]);
        buf.extend_from_slice(&server.octets());
    }
    buf.extend_from_slice(&[55, 3, 1, 3, 6, 255]);
    while buf.len() - dhcp_at < 300 {
        buf.push(0);
    }
    let udp_len = (buf.len() - udp_at) as u16;
    let ip_len = (buf.len() - ip_at) as u16;
    buf[ip_at + 2..ip_at + 4].copy_from_slice(&ip_len.to_be_bytes());
    let c = checksum(&buf[ip_at..udp_at], 0);
    buf[ip_at + 10..ip_at + 12].copy_from_slice(&c.to_be_bytes());
    buf[udp_at + 4..udp_at + 6].copy_from_slice(&udp_len.to_be_bytes());
    // Pseudo header: source 0.0.0.0, destination 255.255.255.255, UDP, length.
    let pseudo = 0xffff + 0xffff + 17 + u32::from(udp_len);
    let mut c = checksum(&buf[udp_at..], pseudo);
    if c == 0 {
        c = 0xffff;
    }
    buf[udp_at + 6..udp_at + 8].copy_from_slice(&c.to_be_bytes());
}

/// (xid, message type, yiaddr, server id) of a BOOTREPLY to port 68.
fn parse(frame: &[u8]) -> Option<(u32, u8, Ipv4Addr, Option<Ipv4Addr>)> {
    if frame.len() < 14 + 20 + 8 + 240 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    if frame[14 + 9] != 17 || ihl < 20 {
        return None;
    }
    let udp = frame.get(14 + ihl..)?;
    if udp.len() < 8 + 240 || udp[2..4] != [0, 68] {
        return None;
    }
    let d = &udp[8..];
    if d[0] != 2 || d[236..240] != [0x63, 0x82, 0x53, 0x63] {
        return None;
    }
    let xid = u32::from_be_bytes(d[4..8].try_into().ok()?);
    let yiaddr = Ipv4Addr::new(d[16], d[17], d[18], d[19]);
    let (mut kind, mut server) = (0, None);
    let mut o = &d[240..];
    while let [code, rest @ ..] = o {
        match *code {
            0 => o = rest,
            255 => break,
            _ => {
                let [len, rest @ ..] = rest else { break };
                let len = usize::from(*len);
                let val = rest.get(..len)?;
                match *code {
                    53 if len == 1 => kind = val[0],
                    54 if len == 4 => server = Some(Ipv4Addr::new(val[0], val[1], val[2], val[3])),
                    _ => {}
                }
                o = &rest[len..];
            }
        }
    }
    Some((xid, kind, yiaddr, server))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn run(a: &Args) -> Result<bool, String> {
    let sock = Raw::open(&a.iface)?;
    let n = a.count as usize;
    let t0 = Instant::now();
    let mut clients = vec![
        Client {
            state: State::Waiting,
            started: None,
            last_sent: t0,
            tries: 0,
            offered: Ipv4Addr::UNSPECIFIED,
            server: Ipv4Addr::UNSPECIFIED,
            latency: Duration::ZERO,
        };
        n
    ];
    let mut frame = Vec::with_capacity(600);
    let mut rx = vec![0u8; 2048];
    let (mut next, mut open) = (0usize, n);
    let (mut naks, mut retransmits, mut send_errors) = (0u64, 0u64, 0u64);
    let mut last_ack = t0;
    let mut last_scan = t0;
    let deadline = t0 + a.timeout;
    let broadcast = !a.unicast;
    // One client message: kind 1 (DISCOVER) or 3 (REQUEST with `req`).
    let message = |kind, xid, mac, req| Message {
        kind,
        xid,
        mac,
        req,
        broadcast,
    };
    while open > 0 && Instant::now() < deadline {
        let now = Instant::now();
        // Open loop: everyone due by now starts, at most 256 per turn.
        let due = ((now - t0).as_secs_f64() * a.rate) as usize;
        let mut burst = 0;
        while next < n && next < due + 1 && burst < 256 {
            let i = next;
            let xid = XID_BASE + i as u32;
            build(
                &mut frame,
                &message(1, xid, mac_of(a.first + i as u32), None),
            );
            if !sock.send(&frame) {
                send_errors += 1;
            }
            let c = &mut clients[i];
            c.state = State::Discovering;
            c.started = Some(now);
            c.last_sent = now;
            c.tries = 1;
            next += 1;
            burst += 1;
        }
        // Replies.
        while let Some(len) = sock.recv(&mut rx) {
            let Some((xid, kind, yiaddr, server)) = parse(&rx[..len]) else {
                continue;
            };
            let Some(i) = xid
                .checked_sub(XID_BASE)
                .map(|i| i as usize)
                .filter(|&i| i < next)
            else {
                continue;
            };
            let now = Instant::now();
            let c = &mut clients[i];
            match (c.state, kind) {
                (State::Discovering, 2) => {
                    c.offered = yiaddr;
                    c.server = server.unwrap_or(Ipv4Addr::UNSPECIFIED);
                    c.state = State::Requesting;
                    c.tries = 1;
                    c.last_sent = now;
                    let (mac, req) = (mac_of(a.first + i as u32), Some((c.offered, c.server)));
                    build(&mut frame, &message(3, xid, mac, req));
                    if !sock.send(&frame) {
                        send_errors += 1;
                    }
                }
                (State::Requesting, 5) if yiaddr == c.offered => {
                    c.state = State::Done;
                    c.latency = now - c.started.unwrap_or(t0);
                    last_ack = now;
                    open -= 1;
                }
                (State::Requesting, 6) => {
                    c.state = State::Failed;
                    naks += 1;
                    open -= 1;
                }
                _ => {}
            }
        }
        // Retransmissions, ten times a second.
        let now = Instant::now();
        if now - last_scan >= Duration::from_millis(100) {
            last_scan = now;
            for (i, c) in clients[..next].iter_mut().enumerate() {
                if !matches!(c.state, State::Discovering | State::Requesting)
                    || now - c.last_sent < RETRY
                {
                    continue;
                }
                if c.tries >= MAX_TRIES {
                    c.state = State::Failed;
                    open -= 1;
                    continue;
                }
                let xid = XID_BASE + i as u32;
                let mac = mac_of(a.first + i as u32);
                match c.state {
                    State::Discovering => build(&mut frame, &message(1, xid, mac, None)),
                    _ => {
                        let req = Some((c.offered, c.server));
                        build(&mut frame, &message(3, xid, mac, req))
                    }
                }
                if !sock.send(&frame) {
                    send_errors += 1;
                }
                c.tries += 1;
                c.last_sent = now;
                retransmits += 1;
            }
        }
        let wait = if next < n {
            // Until the next client is due (a batch per wake-up above 4k/s).
            Duration::from_secs_f64((1.0 / a.rate).max(250e-6))
        } else {
            Duration::from_millis(20)
        };
        sock.wait(wait);
    }
    let mut lat: Vec<Duration> = clients
        .iter()
        .filter(|c| c.state == State::Done)
        .map(|c| c.latency)
        .collect();
    lat.sort();
    let completed = lat.len();
    let mut by_ip: HashMap<Ipv4Addr, u32> = HashMap::new();
    let mut listing = String::new();
    for (i, c) in clients
        .iter()
        .enumerate()
        .filter(|(_, c)| c.state == State::Done)
    {
        *by_ip.entry(c.offered).or_default() += 1;
        let m = mac_of(a.first + i as u32);
        let _ = writeln!(
            listing,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} {}",
            m[0], m[1], m[2], m[3], m[4], m[5], c.offered
        );
    }
    let shared = by_ip.values().filter(|&&k| k > 1).count();
    if let Some(path) = &a.acked {
        std::fs::write(path, listing).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    let span = (last_ack - t0).as_secs_f64();
    let rate = if completed > 0 && span > 0.0 {
        completed as f64 / span
    } else {
        0.0
    };
    let timed_out = n - completed - naks as usize;
    println!(
        "{{\"offered_rate\":{},\"clients\":{n},\"completed\":{completed},\"naks\":{naks},\"timed_out\":{timed_out},\
\"dora_per_sec\":{rate:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\
\"retransmits\":{retransmits},\"send_errors\":{send_errors},\"shared_addresses\":{shared}}}",
        a.rate,
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    Ok(completed == n && shared == 0)
}

fn main() {
    let code = match parse_args().and_then(|a| run(&a)) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("dhcp_load: {e}");
            2
        }
    };
    std::process::exit(code);
}
