//! Setting the tunnel's UDP socket up ([`UdpSocket::bind`]: DF, dual stack,
//! buffer sizes, `SO_REUSEPORT`, `UDP_GRO`) and moving single datagrams
//! ([`UdpSocket::send_to`], [`UdpSocket::recv_from`]). The batched paths are
//! in [`super::batch`]; the syscalls in `super::sys`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::libc;
use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, SockaddrStorage};

use super::sys::{decode_addr, encode_addr, recvfrom, sendto, setsockopt_int, zeroed_storage};
use super::{UdpError, UdpOptions};

/// A non-blocking UDP socket for the tunnel. See the module docs.
#[derive(Debug)]
pub struct UdpSocket {
    pub(super) fd: OwnedFd,
    /// An IPv6 socket (IPv4 destinations are sent v4-mapped).
    pub(super) v6: bool,
    local: SocketAddr,
    /// UDP segmentation offload (`UDP_SEGMENT`) for runs of equal-size
    /// datagrams; switched off for good if the kernel refuses it.
    pub(super) gso: AtomicBool,
}

impl UdpSocket {
    /// Opens and binds a socket on `addr` (port 0 picks a free port).
    pub fn bind(addr: SocketAddr, opts: &UdpOptions) -> Result<UdpSocket, UdpError> {
        let v6 = addr.is_ipv6();
        let family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let fd = nix::sys::socket::socket(
            family,
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::Udp,
        )
        .map_err(|e| UdpError::Socket {
            addr,
            cause: e.into(),
        })?;
        let set = |level, name, value: libc::c_int, option| {
            setsockopt_int(&fd, level, name, value).map_err(|cause| UdpError::Option {
                addr,
                option,
                cause,
            })
        };
        if opts.reuse_port {
            set(libc::SOL_SOCKET, libc::SO_REUSEPORT, 1, "SO_REUSEPORT")?;
        }
        if opts.gro {
            // Older kernels lack it; datagrams then simply arrive one by one.
            let _ = setsockopt_int(&fd, libc::SOL_UDP, libc::UDP_GRO, 1);
        }
        if opts.buffer_bytes > 0 {
            let size = libc::c_int::try_from(opts.buffer_bytes).unwrap_or(libc::c_int::MAX);
            for (force, plain, option) in [
                (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, "SO_RCVBUF"),
                (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, "SO_SNDBUF"),
            ] {
                // FORCE needs CAP_NET_ADMIN; without it the plain option,
                // capped by net.core.[rw]mem_max, is the best we can do.
                if setsockopt_int(&fd, libc::SOL_SOCKET, force, size).is_err() {
                    set(libc::SOL_SOCKET, plain, size, option)?;
                }
            }
        }
        if v6 {
            if addr.ip().is_unspecified() {
                set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0, "IPV6_V6ONLY")?;
            }
            set(
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DO,
                "IPV6_MTU_DISCOVER",
            )?;
            set(libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1, "IPV6_DONTFRAG")?;
            // Linux applies the IPv4 option to v4-mapped traffic of a
            // dual-stack socket; a v6-only socket never needs it.
            let _ = setsockopt_int(
                &fd,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            );
        } else {
            set(
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
                "IP_MTU_DISCOVER",
            )?;
        }
        if addr.ip().is_unspecified() {
            // Which of our addresses each datagram was sent to, so answers
            // leave from it (a multihomed gateway without policy routing).
            // A dual-stack socket reports IPv4 datagrams as v4-mapped.
            if v6 {
                set(
                    libc::IPPROTO_IPV6,
                    libc::IPV6_RECVPKTINFO,
                    1,
                    "IPV6_RECVPKTINFO",
                )?;
            } else {
                set(libc::IPPROTO_IP, libc::IP_PKTINFO, 1, "IP_PKTINFO")?;
            }
        }
        let storage = SockaddrStorage::from(addr);
        nix::sys::socket::bind(fd.as_raw_fd(), &storage).map_err(|e| UdpError::Bind {
            addr,
            cause: e.into(),
        })?;
        let local = nix::sys::socket::getsockname::<SockaddrStorage>(fd.as_raw_fd())
            .ok()
            .and_then(|s| storage_to_std(&s))
            .unwrap_or(addr);
        Ok(UdpSocket {
            fd,
            v6,
            local,
            gso: AtomicBool::new(true),
        })
    }

    /// Whether runs of equal-size datagrams still go out with segmentation
    /// offload (false once the kernel refused it).
    pub fn gso_active(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Makes the `SO_REUSEPORT` group this socket is in send each datagram
    /// to socket number [`super::steer::worker_for`] of `workers` (in the
    /// order they were bound), instead of by the kernel's hash with a
    /// secret. Call once every socket of the group is bound.
    pub fn steer_by_source(&self, workers: u32) -> io::Result<()> {
        super::sys::attach_reuseport_cbpf(&self.fd, &super::steer::program(workers))
    }

    /// The address actually bound (with the kernel-chosen port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends one datagram (for the odd control message; the data path uses
    /// [`UdpSocket::send_batch`]).
    pub fn send_to(&self, buf: &[u8], dest: SocketAddr) -> io::Result<usize> {
        let mut name = zeroed_storage();
        let len = encode_addr(dest, self.v6, &mut name)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))?;
        sendto(self.fd.as_raw_fd(), buf, &name, len)
    }

    /// Receives one datagram; returns its length and canonical source.
    /// Truncated datagrams are reported as `InvalidData`.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut name = zeroed_storage();
        let (n, name_len, truncated) = recvfrom(self.fd.as_raw_fd(), buf, &mut name)?;
        if truncated {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "datagram truncated",
            ));
        }
        let src = decode_addr(&name, name_len).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "unknown source address family")
        })?;
        Ok((n, src))
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Reads what `getsockname` returned as a std address.
fn storage_to_std(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(a) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4((*a).into()));
    }
    s.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into()))
}
