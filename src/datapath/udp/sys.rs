//! The raw syscalls and `sockaddr`/`cmsg` encodings of the UDP socket: the
//! only place in [`super`] with `unsafe` code. Every `unsafe` block carries a
//! `// SAFETY:` note; the functions here are safe to call, given what their
//! docs say about the headers passed in (which [`super::batch`] prepares).

#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr;

use nix::libc;

use super::batch::{RecvBatch, SendBatch};

/// An all-zero `sockaddr_storage`, for the kernel (or [`encode_addr`]) to fill.
pub(super) fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    unsafe { mem::zeroed() }
}

/// An all-zero `mmsghdr`: null pointers, zero lengths.
pub(super) fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain old data (integers and raw pointers, possibly
    // private padding); all-zero (null pointers, zero lengths) is valid.
    unsafe { mem::zeroed() }
}

/// Writes `addr` as the sockaddr this socket family expects; returns its
/// length, or `None` if it cannot be expressed (an IPv6 address on an IPv4
/// socket).
pub(super) fn encode_addr(
    addr: SocketAddr,
    v6_socket: bool,
    out: &mut libc::sockaddr_storage,
) -> Option<libc::socklen_t> {
    let v6 = match (addr, v6_socket) {
        (SocketAddr::V4(a), false) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and at least as aligned
            // as sockaddr_in (that is its purpose); we have it exclusively.
            unsafe { ptr::from_mut(out).cast::<libc::sockaddr_in>().write(sin) };
            return Some(mem::size_of::<libc::sockaddr_in>() as libc::socklen_t);
        }
        (SocketAddr::V6(a), false) => {
            let v4 = a.ip().to_ipv4_mapped()?;
            return encode_addr(SocketAddr::V4(SocketAddrV4::new(v4, a.port())), false, out);
        }
        (SocketAddr::V4(a), true) => SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0),
        (SocketAddr::V6(a), true) => a,
    };
    let sin6 = libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: v6.port().to_be(),
        sin6_flowinfo: v6.flowinfo().to_be(),
        sin6_addr: libc::in6_addr {
            s6_addr: v6.ip().octets(),
        },
        sin6_scope_id: v6.scope_id(),
    };
    // SAFETY: as above, for sockaddr_in6.
    unsafe { ptr::from_mut(out).cast::<libc::sockaddr_in6>().write(sin6) };
    Some(mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
}

/// Reads a kernel-written sockaddr back as a canonical `SocketAddr`.
pub(super) fn decode_addr(
    name: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(name.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, the
            // length says all of it was written, and storage is big and
            // aligned enough for it.
            let sin = unsafe { ptr::from_ref(name).cast::<libc::sockaddr_in>().read() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { ptr::from_ref(name).cast::<libc::sockaddr_in6>().read() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    u32::from_be(sin6.sin6_flowinfo),
                    sin6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h, which x86-64 and
/// arm64 use; the libc crate does not define it for Linux).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Attaches the classic BPF `program` to the `SO_REUSEPORT` group of `fd`
/// (it picks the socket each datagram goes to).
pub(super) fn attach_reuseport_cbpf(fd: &OwnedFd, program: &[libc::sock_filter]) -> io::Result<()> {
    let len =
        u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // `prog` points at `len` live instructions for the duration of the
    // call; the kernel copies them and never writes through `filter`.
    setsockopt(fd, libc::SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog)
}

/// Sets an integer socket option.
pub(in crate::datapath) fn setsockopt_int(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    setsockopt(fd, level, name, &value)
}

/// Sets socket option `name` at `level` to `value`, which must be of the
/// type the option expects (the kernel reads `size_of::<T>()` bytes).
fn setsockopt<T>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `fd` is an open socket; we pass a pointer to a live `T` and
    // its exact size, and the kernel only reads that many bytes from it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            ptr::from_ref(value).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an integer socket option.
pub(super) fn getsockopt_int(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket; we pass a pointer to a live c_int and
    // its size, which the kernel fills for these integer options.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `recvmmsg(2)` into `hdrs`. The headers must point into buffers that
/// outlive the call, as `RecvBatch::prepare` sets them up; that is why this
/// is visible to the `udp` module only.
pub(super) fn recvmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let vlen = libc::c_uint::try_from(hdrs.len()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: every header points at a live iovec covering a buffer of the
    // batch and at a sockaddr_storage with its size in msg_namelen (set by
    // `RecvBatch::prepare` just before); the batch is exclusively borrowed
    // for the call, so nothing else touches those buffers.
    let n = unsafe { libc::recvmmsg(fd, hdrs.as_mut_ptr(), vlen, 0, ptr::null_mut()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `sendmmsg(2)` of `hdrs`, under the same rule as [`recvmmsg`] (headers set
/// up by `SendBatch::prepare` or `SendBatch::prepare_group`).
pub(super) fn sendmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let vlen = libc::c_uint::try_from(hdrs.len()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: every header points at a live iovec covering `lens[i]` bytes of
    // the batch's buffer and at an encoded sockaddr of `name_lens[i]` bytes
    // (set by `SendBatch::prepare` just before); the batch is exclusively
    // borrowed for the call.
    let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), vlen, 0) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `sendto(2)` of `buf` to the first `len` bytes of `name`.
pub(super) fn sendto(
    fd: RawFd,
    buf: &[u8],
    name: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> io::Result<usize> {
    // SAFETY: `buf` and `name` are live for the call and `len` does not
    // exceed the size of `name`.
    let n = unsafe {
        libc::sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            0,
            ptr::from_ref(name).cast(),
            len,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `recvmsg(2)` of one datagram into `buf`; returns its length, the length
/// of the source address written to `name`, and whether it was truncated.
pub(super) fn recvfrom(
    fd: RawFd,
    buf: &mut [u8],
    name: &mut libc::sockaddr_storage,
) -> io::Result<(usize, libc::socklen_t, bool)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg = zeroed_mmsghdr().msg_hdr;
    msg.msg_name = ptr::from_mut(name).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = ptr::from_mut(&mut iov);
    msg.msg_iovlen = 1;
    // SAFETY: `msg` points at `iov` (covering `buf`) and `name` (with its
    // size), all live and exclusively borrowed for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    Ok((n, msg.msg_namelen, msg.msg_flags & libc::MSG_TRUNC != 0))
}

/// An iovec pointing nowhere, until a batch points it at a buffer.
pub(super) fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }
}

// SAFETY: the raw pointers inside a `RecvBatch`'s `iovs`/`hdrs` only ever
// point into the struct's own heap buffers, are rewritten before every
// syscall, and are never dereferenced by Rust code; moving the struct to
// another thread moves the buffers with it.
unsafe impl Send for RecvBatch {}

// SAFETY: as for `RecvBatch`: the raw pointers only point into this struct's
// own heap buffers, are rewritten before every syscall and never dereferenced
// by Rust code.
unsafe impl Send for SendBatch {}

/// Control-message space of one datagram: a `UDP_SEGMENT` or `UDP_GRO`
/// message (24 bytes on 64-bit Linux) and a packet-info message (32 bytes
/// for `IP_PKTINFO`, 40 for `IPV6_PKTINFO`), 8-aligned.
pub(super) type CmsgBuf = [u64; 8];

/// Attaches the control messages a send needs to `hdr`, stored in `buf`:
/// `UDP_SEGMENT` (segments of `seg` bytes) and the source address `src`
/// (`IP_PKTINFO` on an IPv4 socket, `IPV6_PKTINFO` on an IPv6 one, with a
/// v4-mapped address for IPv4, which Linux accepts on a dual-stack socket).
/// With neither, `hdr` has no control data. `hdr` then points at `buf`,
/// which must stay put until the header has been sent.
pub(super) fn set_send_cmsgs(
    hdr: &mut libc::msghdr,
    buf: &mut CmsgBuf,
    seg: Option<u16>,
    src: Option<IpAddr>,
    v6_socket: bool,
) {
    *buf = [0; 8];
    let seg_space = seg.map_or(0, |_| cmsg_space::<u16>());
    let src_space = match src {
        None => 0,
        Some(_) if v6_socket => cmsg_space::<libc::in6_pktinfo>(),
        Some(_) => cmsg_space::<libc::in_pktinfo>(),
    };
    if seg_space + src_space == 0 {
        hdr.msg_control = ptr::null_mut();
        hdr.msg_controllen = 0;
        return;
    }
    hdr.msg_control = buf.as_mut_ptr().cast();
    hdr.msg_controllen = seg_space + src_space;
    // SAFETY: the spaces add up to at most 24 + 40 = 64 bytes, the size of
    // the zeroed, 8-aligned `buf`, and msg_controllen says exactly that, so
    // CMSG_FIRSTHDR/CMSG_NXTHDR return headers inside `buf` (non-null for
    // each message we counted) and each CMSG_DATA has room for its
    // CMSG_LEN; the data is written unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        if let Some(seg) = seg {
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as usize;
            ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
            c = libc::CMSG_NXTHDR(hdr, c);
        }
        match src {
            None => {}
            Some(ip) if v6_socket => {
                let v6 = match ip {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                (*c).cmsg_level = libc::IPPROTO_IPV6;
                (*c).cmsg_type = libc::IPV6_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(mem::size_of_val(&info) as u32) as usize;
                ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>(), info);
            }
            Some(ip) => {
                let v4 = match ip {
                    IpAddr::V4(a) => a,
                    IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
                };
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(mem::size_of_val(&info) as u32) as usize;
                ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), info);
            }
        }
    }
}

fn cmsg_space<T>() -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE(mem::size_of::<T>() as u32) as usize }
}

/// What the kernel's control messages in `buf` (`controllen` bytes of it,
/// as it reported in `msg_controllen`) say about a received datagram: the
/// `UDP_GRO` segment size and the local address it was sent to
/// (`IP_PKTINFO`/`IPV6_PKTINFO`, canonical).
pub(super) fn recv_cmsgs(buf: &CmsgBuf, controllen: usize) -> (Option<usize>, Option<IpAddr>) {
    let (mut gro, mut local) = (None, None);
    if controllen == 0 {
        return (gro, local);
    }
    let mut hdr = zeroed_mmsghdr().msg_hdr;
    hdr.msg_control = buf.as_ptr().cast_mut().cast();
    hdr.msg_controllen = controllen.min(mem::size_of_val(buf));
    // SAFETY: `hdr` describes `buf` and at most its size, so
    // CMSG_FIRSTHDR/CMSG_NXTHDR stay within it; a message's data is read
    // only if its cmsg_len covers it, nothing is written through the
    // pointer, and the data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&hdr);
        while !c.is_null() {
            let len = (*c).cmsg_len as usize;
            let fits = |n: usize| len >= libc::CMSG_LEN(n as u32) as usize;
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_UDP, libc::UDP_GRO) if fits(mem::size_of::<libc::c_int>()) => {
                    let v = ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    gro = usize::try_from(v).ok();
                }
                (libc::IPPROTO_IP, libc::IP_PKTINFO) if fits(mem::size_of::<libc::in_pktinfo>()) => {
                    let i = ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                    local = Some(IpAddr::V4(Ipv4Addr::from(i.ipi_addr.s_addr.to_ne_bytes())));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                    if fits(mem::size_of::<libc::in6_pktinfo>()) =>
                {
                    let i = ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>());
                    let ip = Ipv6Addr::from(i.ipi6_addr.s6_addr);
                    local = Some(match ip.to_ipv4_mapped() {
                        Some(v4) => IpAddr::V4(v4),
                        None => IpAddr::V6(ip),
                    });
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&hdr, c);
        }
    }
    (gro, local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::udp::canonical;

    #[test]
    fn addresses_round_trip_canonically() {
        let mut s = zeroed_storage();
        let v4: SocketAddr = "198.18.0.1:51901".parse().expect("literal");
        let len = encode_addr(v4, true, &mut s).expect("v4 on v6 socket is mapped");
        assert_eq!(i32::from(s.ss_family), libc::AF_INET6);
        assert_eq!(decode_addr(&s, len), Some(v4));
        let len = encode_addr(v4, false, &mut s).expect("v4 on v4 socket");
        assert_eq!(i32::from(s.ss_family), libc::AF_INET);
        assert_eq!(decode_addr(&s, len), Some(v4));
        let v6: SocketAddr = "[2001:2::1]:7".parse().expect("literal");
        assert!(encode_addr(v6, false, &mut s).is_none());
        let len = encode_addr(v6, true, &mut s).expect("v6 on v6 socket");
        assert_eq!(decode_addr(&s, len), Some(v6));
        assert_eq!(decode_addr(&s, 3), None, "short length is rejected");
        let mapped: SocketAddr = "[::ffff:198.18.0.1]:51901".parse().expect("literal");
        assert_eq!(canonical(mapped), v4);
    }
}
