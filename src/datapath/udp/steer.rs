//! Which of a port's `SO_REUSEPORT` sockets (one per worker) a datagram goes
//! to: a classic BPF program attached to the group
//! ([`UdpSocket::steer_by_source`](super::UdpSocket::steer_by_source)).
//!
//! Without it the kernel picks by a hash with a secret chosen at boot, so
//! which worker serves which peer changes from boot to boot and cannot be
//! predicted. The program picks by the datagram's source instead: for IPv4
//! the address XOR the port, for IPv6 the XOR of the address's four 32-bit
//! words (extension headers move the port, the address never moves); then
//! a multiplicative hash and the remainder by the number of workers.
//! [`worker_for`] is the same function in Rust (for tests and tools). A
//! peer's datagrams thus always reach the same worker, in order.

use std::net::{IpAddr, SocketAddr};

use nix::libc::{self, sock_filter};

/// Instructions in [`program`].
pub const PROGRAM_LEN: usize = 23;

/// Fibonacci hashing's multiplier (2^32 / golden ratio).
const MULTIPLIER: u32 = 0x9E37_79B1;

/// Offsets relative to the network header (`SKF_NET_OFF`): the kernel runs
/// the program with the packet data at the UDP payload.
const NET: u32 = libc::SKF_NET_OFF as u32;

const fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The steering program for `workers` sockets (at least 1): returns the
/// index of the socket in the group, which is the order they were bound in.
pub fn program(workers: u32) -> [sock_filter; PROGRAM_LEN] {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_B, BPF_H, BPF_IND, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_LDX,
        BPF_MISC, BPF_MOD, BPF_MSH, BPF_MUL, BPF_RET, BPF_RSH, BPF_TAX, BPF_W, BPF_X, BPF_XOR,
    };
    const BPF_A: u32 = 0x10;
    [
        // 0: A = IP version.
        stmt(BPF_LD | BPF_B | BPF_ABS, NET),
        stmt(BPF_ALU | BPF_RSH | BPF_K, 4),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 4, 0, 6),
        // 3: IPv4. X = header length; A = source port; A ^= address.
        stmt(BPF_LDX | BPF_B | BPF_MSH, NET),
        stmt(BPF_LD | BPF_H | BPF_IND, NET),
        stmt(BPF_MISC | BPF_TAX, 0),
        stmt(BPF_LD | BPF_W | BPF_ABS, NET + 12),
        stmt(BPF_ALU | BPF_XOR | BPF_X, 0),
        jump(BPF_JMP | BPF_JA, 10, 0, 0),
        // 9: IPv6. A = the XOR of the source address's four words.
        stmt(BPF_LD | BPF_W | BPF_ABS, NET + 8),
        stmt(BPF_MISC | BPF_TAX, 0),
        stmt(BPF_LD | BPF_W | BPF_ABS, NET + 12),
        stmt(BPF_ALU | BPF_XOR | BPF_X, 0),
        stmt(BPF_MISC | BPF_TAX, 0),
        stmt(BPF_LD | BPF_W | BPF_ABS, NET + 16),
        stmt(BPF_ALU | BPF_XOR | BPF_X, 0),
        stmt(BPF_MISC | BPF_TAX, 0),
        stmt(BPF_LD | BPF_W | BPF_ABS, NET + 20),
        stmt(BPF_ALU | BPF_XOR | BPF_X, 0),
        // 19: mix, keep the high half, pick a socket.
        stmt(BPF_ALU | BPF_MUL | BPF_K, MULTIPLIER),
        stmt(BPF_ALU | BPF_RSH | BPF_K, 16),
        stmt(BPF_ALU | BPF_MOD | BPF_K, workers.max(1)),
        stmt(BPF_RET | BPF_A, 0),
    ]
}

/// The worker (0-based) that [`program`] sends datagrams from `src` to,
/// out of `workers`. A v4-mapped IPv6 source is IPv4 on the wire.
pub fn worker_for(src: SocketAddr, workers: u32) -> u32 {
    let ip = match src.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let key = match ip {
        IpAddr::V4(a) => u32::from(a) ^ u32::from(src.port()),
        IpAddr::V6(a) => a
            .octets()
            .chunks_exact(4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .fold(0, |x, w| x ^ w),
    };
    (key.wrapping_mul(MULTIPLIER) >> 16) % workers.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::libc::{
        BPF_ABS, BPF_ALU, BPF_B, BPF_H, BPF_IND, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_LDX,
        BPF_MISC, BPF_MOD, BPF_MSH, BPF_MUL, BPF_RET, BPF_RSH, BPF_TAX, BPF_W, BPF_X, BPF_XOR,
    };

    /// Runs `prog` the way the kernel runs a reuseport program, over the
    /// opcodes it uses: `net` is the packet from its IP header on; loads at
    /// `SKF_NET_OFF + n` read `net[n..]` big-endian. None where the kernel
    /// would stop the program (a load past the end).
    fn run(prog: &[sock_filter], net: &[u8]) -> Option<u32> {
        let load = |off: u32, size: usize| -> Option<u32> {
            let at = off.checked_sub(NET)? as usize;
            let b = net.get(at..at + size)?;
            Some(b.iter().fold(0u32, |v, x| (v << 8) | u32::from(*x)))
        };
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        for _ in 0..prog.len() {
            let i = prog.get(pc)?;
            let code = u32::from(i.code);
            pc += 1;
            match code {
                c if c == BPF_LD | BPF_B | BPF_ABS => a = load(i.k, 1)?,
                c if c == BPF_LD | BPF_H | BPF_ABS => a = load(i.k, 2)?,
                c if c == BPF_LD | BPF_W | BPF_ABS => a = load(i.k, 4)?,
                c if c == BPF_LD | BPF_H | BPF_IND => a = load(i.k.wrapping_add(x), 2)?,
                c if c == BPF_LDX | BPF_B | BPF_MSH => x = (load(i.k, 1)? & 0xf) * 4,
                c if c == BPF_MISC | BPF_TAX => x = a,
                c if c == BPF_ALU | BPF_RSH | BPF_K => a >>= i.k,
                c if c == BPF_ALU | BPF_MUL | BPF_K => a = a.wrapping_mul(i.k),
                c if c == BPF_ALU | BPF_MOD | BPF_K => a %= i.k,
                c if c == BPF_ALU | BPF_XOR | BPF_X => a ^= x,
                c if c == BPF_JMP | BPF_JA => pc += i.k as usize,
                c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                    pc += usize::from(if a == i.k { i.jt } else { i.jf });
                }
                c if c == BPF_RET | 0x10 => return Some(a),
                other => panic!("opcode {other:#x} is not emulated"),
            }
        }
        None
    }

    fn ipv4(src: [u8; 4], port: u16, options: usize) -> Vec<u8> {
        let ihl = 5 + options / 4;
        let mut p = vec![0u8; ihl * 4 + 8];
        p[0] = 0x40 | ihl as u8;
        p[9] = 17;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&[198, 18, 0, 1]);
        p[ihl * 4..ihl * 4 + 2].copy_from_slice(&port.to_be_bytes());
        p
    }

    fn ipv6(src: [u8; 16], port: u16) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[6] = 17;
        p[8..24].copy_from_slice(&src);
        p[40..42].copy_from_slice(&port.to_be_bytes());
        p
    }

    #[test]
    fn the_program_computes_worker_for() {
        for workers in 1..=crate::config::MAX_WORKERS as u32 {
            let prog = program(workers);
            for n in 0..200u32 {
                let v4 = [198, 18, (n / 7) as u8, n as u8];
                let port = 51901u16.wrapping_add((n * 13) as u16);
                for options in [0, 4, 12] {
                    let got = run(&prog, &ipv4(v4, port, options));
                    let addr = SocketAddr::from((v4, port));
                    assert_eq!(
                        got,
                        Some(worker_for(addr, workers)),
                        "{addr} options {options}"
                    );
                }
                let mut v6 = [0u8; 16];
                v6[..6].copy_from_slice(&[0x20, 0x01, 0x00, 0x02, 0x00, n as u8]);
                v6[15] = (n * 3) as u8;
                let addr = SocketAddr::from((v6, port));
                assert_eq!(run(&prog, &ipv6(v6, port)), Some(worker_for(addr, workers)));
            }
        }
    }

    #[test]
    fn agrees_with_the_tools_copy() {
        // tests/tools/steer.py, which the tests and benchmarks use to place
        // peers on workers: `pick 198.18.9 51901 3` and `worker 2001:2::5
        // 51901 4`.
        let at = |a: [u8; 4]| SocketAddr::from((a, 51901));
        assert_eq!(worker_for(at([198, 18, 9, 9]), 3), 0);
        assert_eq!(worker_for(at([198, 18, 9, 2]), 3), 1);
        assert_eq!(worker_for(at([198, 18, 9, 5]), 3), 2);
        let v6 = SocketAddr::from((std::net::Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 5), 51901));
        assert_eq!(worker_for(v6, 4), 1);
    }

    #[test]
    fn v4_mapped_sources_are_ipv4() {
        let v4 = SocketAddr::from(([198, 18, 1, 2], 51901));
        let mapped = SocketAddr::from((
            std::net::Ipv4Addr::new(198, 18, 1, 2).to_ipv6_mapped(),
            51901,
        ));
        for w in 1..8 {
            assert_eq!(worker_for(v4, w), worker_for(mapped, w));
        }
    }

    #[test]
    fn sources_spread_over_the_workers() {
        // 64 sites, numbered as a hub's branches often are: every worker
        // gets some, none more than twice its share.
        for workers in [2u32, 3, 4, 8] {
            let mut per = vec![0u32; workers as usize];
            for n in 0..64u8 {
                let src = SocketAddr::from(([198, 18, n, 1], 51901));
                per[worker_for(src, workers) as usize] += 1;
            }
            let share = 64 / workers;
            assert!(
                per.iter().all(|&c| c > 0 && c <= 2 * share),
                "{workers} workers: {per:?}"
            );
        }
    }
}
