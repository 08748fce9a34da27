//! The tunnel's UDP socket, with batched `recvmmsg`/`sendmmsg`.
//!
//! [`UdpSocket::bind`] opens a non-blocking, close-on-exec UDP socket for IPv4
//! or IPv6 and sets it up for the data path:
//! - **DF on every outer packet** (`IP_MTU_DISCOVER`/`IPV6_MTU_DISCOVER` =
//!   `PMTUDISC_DO`, plus `IPV6_DONTFRAG`): the tunnel fragments frames itself
//!   to fit `wan_mtu`, so the network must never fragment our datagrams; a send
//!   larger than the known path MTU fails with `EMSGSIZE` instead.
//! - **Dual stack for `[::]`**: binding the IPv6 unspecified address clears
//!   `IPV6_V6ONLY`, so one socket also serves IPv4 peers.
//! - **Answers from the address used**: a socket bound to a wildcard address
//!   asks for `IP_PKTINFO` (IPv4) or `IPV6_RECVPKTINFO` (IPv6, which also
//!   reports IPv4 datagrams, v4-mapped), so [`RecvBatch::local_ip`] tells
//!   which of the host's addresses each datagram was sent to;
//!   [`SendBatch::commit_from`] sends from a given address (`IP_PKTINFO` /
//!   `IPV6_PKTINFO` next to `UDP_SEGMENT`; a GSO run has one source). A
//!   multihomed gateway thus answers a peer from the address the peer used,
//!   without policy routing. A source that is no longer ours is dropped and
//!   the kernel chooses.
//! - **Canonical addresses**: every [`SocketAddr`] this module hands out is
//!   canonical — an IPv4 peer seen through a dual-stack socket as
//!   `::ffff:a.b.c.d` is reported as plain IPv4 — and IPv4 destinations given
//!   to an IPv6 socket are sent v4-mapped. So endpoint comparisons (roaming)
//!   do not depend on which socket family carried the packet.
//! - **Large buffers** (`SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` when privileged,
//!   falling back to the plain options, which the kernel caps at
//!   `net.core.[rw]mem_max`) and optionally **`SO_REUSEPORT`** so several
//!   workers can each own a socket on the same port.
//!
//! Batching: [`RecvBatch`] and [`SendBatch`] own all buffers, addresses and
//! `mmsghdr` arrays, allocated once at construction; receiving or sending a
//! batch allocates nothing. A batch holds `count` buffers of `buf_size` bytes
//! ([`DEFAULT_BATCH`] × [`DEFAULT_BUF_SIZE`] by default).
//!
//! Sending never blocks and never spins: [`UdpSocket::send_batch`] sends as
//! much as the kernel takes, drops datagrams the kernel rejects outright
//! (e.g. `EMSGSIZE`, unreachable network) and stops at `EAGAIN`, leaving the
//! rest queued for the next call after the socket polls writable.
//!
//! Layout: [`socket`] opens and sets up the socket and moves single
//! datagrams; [`batch`] holds the batches and the batched send and receive
//! paths (GSO runs out, GRO runs in); `sys` holds the raw syscalls and all of
//! this module's `unsafe` code, each block with its `// SAFETY:` note.

pub mod batch;
pub mod socket;
pub mod steer;
mod sys;
pub(super) use sys::setsockopt_int;

use std::io;
use std::net::{IpAddr, SocketAddr};

pub use batch::{RecvBatch, SendBatch, SendReport};
pub use socket::UdpSocket;

/// Datagrams per batch by default.
pub const DEFAULT_BATCH: usize = 64;
/// Bytes per datagram buffer by default (fits a 1500-byte WAN MTU with room).
pub const DEFAULT_BUF_SIZE: usize = 2048;
/// Largest batch the kernel handles in one call (`UIO_MAXIOV`).
pub const MAX_BATCH: usize = 1024;

/// How to set the socket up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// Set `SO_REUSEPORT` (one socket per worker on the same port).
    pub reuse_port: bool,
    /// Requested `SO_RCVBUF`/`SO_SNDBUF` in bytes (0: leave the defaults).
    pub buffer_bytes: usize,
    /// Ask for `UDP_GRO`: the kernel may hand over several datagrams of one
    /// size from one sender as a single buffer; read them with
    /// [`RecvBatch::get_segmented`] and buffers of 64 KiB. Best effort.
    pub gro: bool,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            reuse_port: false,
            buffer_bytes: 4 << 20,
            gro: false,
        }
    }
}

/// Errors setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    /// `socket(2)` failed.
    #[error("cannot create a UDP socket for {addr}")]
    Socket {
        /// The address we were about to bind.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        cause: io::Error,
    },
    /// A socket option could not be set.
    #[error("cannot set {option} on the UDP socket for {addr}")]
    Option {
        /// The address we were about to bind.
        addr: SocketAddr,
        /// The option's name.
        option: &'static str,
        /// The OS error.
        #[source]
        cause: io::Error,
    },
    /// `bind(2)` failed (EADDRINUSE: another process has the port).
    #[error("cannot bind UDP {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        cause: io::Error,
    },
}

/// Canonical form of an address: v4-mapped IPv6 becomes IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// The largest IP packet the kernel would send to `to` now: the route's MTU,
/// lowered by any ICMP "fragmentation needed" (or "packet too big") it has
/// seen for that destination. Read from a throwaway socket connected to
/// `to` (`IP_MTU`/`IPV6_MTU`); `None` if there is no route. The path MTU
/// search uses it as its ceiling, never as its result.
pub fn route_mtu(to: SocketAddr) -> Option<usize> {
    let (any, level, name): (SocketAddr, _, _) = if to.is_ipv4() {
        (
            (IpAddr::from([0u8; 4]), 0).into(),
            nix::libc::IPPROTO_IP,
            nix::libc::IP_MTU,
        )
    } else {
        (
            (IpAddr::from([0u16; 8]), 0).into(),
            nix::libc::IPPROTO_IPV6,
            nix::libc::IPV6_MTU,
        )
    };
    let sock = std::net::UdpSocket::bind(any).ok()?;
    sock.connect(to).ok()?;
    sys::getsockopt_int(&sock, level, name)
        .ok()
        .and_then(|m| usize::try_from(m).ok())
        .filter(|&m| m > 0)
}
