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

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr;

use nix::libc;
use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, SockaddrStorage};

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
    #[error("cannot create a UDP socket for {addr}: {cause}")]
    Socket {
        /// The address we were about to bind.
        addr: SocketAddr,
        /// The OS error.
        cause: io::Error,
    },
    /// A socket option could not be set.
    #[error("cannot set {option} on the UDP socket for {addr}: {cause}")]
    Option {
        /// The address we were about to bind.
        addr: SocketAddr,
        /// The option's name.
        option: &'static str,
        /// The OS error.
        cause: io::Error,
    },
    /// `bind(2)` failed (EADDRINUSE: another process has the port).
    #[error("cannot bind UDP {addr}: {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        cause: io::Error,
    },
}

/// What one [`UdpSocket::send_batch`] call did.
#[derive(Debug, Default)]
pub struct SendReport {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Datagrams dropped because the kernel rejected them (see `error`).
    pub dropped: usize,
    /// The last error seen: `WouldBlock` if datagrams are still queued,
    /// otherwise the reason for the last drop. `None` if all went out.
    pub error: Option<io::Error>,
}

/// A non-blocking UDP socket for the tunnel. See the module docs.
#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
    v6: bool,
    local: SocketAddr,
    /// UDP segmentation offload (`UDP_SEGMENT`) for runs of equal-size
    /// datagrams; switched off for good if the kernel refuses it.
    gso: std::sync::atomic::AtomicBool,
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
            gso: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Whether runs of equal-size datagrams still go out with segmentation
    /// offload (false once the kernel refused it).
    pub fn gso_active(&self) -> bool {
        self.gso.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The address actually bound (with the kernel-chosen port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Receives up to `batch.capacity()` datagrams without blocking; returns
    /// how many arrived (`WouldBlock` if none). Read them with
    /// [`RecvBatch::get`].
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.count = 0;
        batch.prepare();
        loop {
            let n = recvmmsg(self.fd.as_raw_fd(), &mut batch.hdrs);
            match n {
                Ok(n) => {
                    batch.count = n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends the queued datagrams of `batch`. See the module docs for how
    /// partial sends and errors are handled. When everything queued has been
    /// sent or dropped, the batch is emptied for reuse.
    pub fn send_batch(&self, batch: &mut SendBatch) -> SendReport {
        let mut report = SendReport::default();
        if self.gso.load(std::sync::atomic::Ordering::Relaxed) {
            self.send_batch_gso(batch, &mut report);
        }
        while batch.head < batch.count {
            // The run of datagrams, from `head`, whose destination this
            // socket's family can express.
            let mut end = batch.head;
            while end < batch.count {
                match encode_addr(batch.dests[end], self.v6, &mut batch.names[end]) {
                    Some(len) => batch.name_lens[end] = len,
                    None => break,
                }
                end += 1;
            }
            if end == batch.head {
                report.dropped += 1;
                report.error = Some(io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
                batch.head += 1;
                continue;
            }
            batch.prepare(batch.head, end);
            match sendmmsg(self.fd.as_raw_fd(), &mut batch.hdrs[batch.head..end]) {
                Ok(0) => {
                    // Not expected from Linux for a non-empty batch; treat
                    // like EAGAIN rather than risk spinning.
                    report.error = Some(io::ErrorKind::WouldBlock.into());
                    break;
                }
                Ok(n) => {
                    batch.head += n;
                    report.sent += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    report.error = Some(e);
                    break;
                }
                Err(e) => {
                    // The first datagram of the run was refused outright
                    // (EMSGSIZE, ENETUNREACH, EPERM from a firewall, ...):
                    // drop it so it cannot block the queue.
                    batch.head += 1;
                    report.dropped += 1;
                    report.error = Some(e);
                }
            }
        }
        if batch.head >= batch.count {
            batch.head = 0;
            batch.count = 0;
        }
        report
    }

    /// Sends what it can of `batch` with UDP segmentation offload: each run of
    /// datagrams to one destination, all of one size but the last (shorter
    /// or equal), goes down as one `msghdr` with a `UDP_SEGMENT` control
    /// message, so the stack is crossed once per run instead of once per
    /// datagram. Leaves the rest (and everything, if the kernel refuses
    /// GSO) to the plain path.
    fn send_batch_gso(&self, batch: &mut SendBatch, report: &mut SendReport) {
        while batch.head < batch.count {
            let mut groups = 0;
            let mut i = batch.head;
            while i < batch.count && groups < batch.ghdrs.len() {
                match encode_addr(batch.dests[i], self.v6, &mut batch.names[i]) {
                    Some(len) => batch.name_lens[i] = len,
                    None => break,
                }
                let seg = batch.lens[i];
                let mut k = 1;
                let mut total = seg;
                while i + k < batch.count
                    && k < GSO_MAX_SEGMENTS
                    && batch.dests[i + k] == batch.dests[i]
                    && batch.lens[i + k] <= seg
                    && batch.lens[i + k] > 0
                    && total + batch.lens[i + k] <= GSO_MAX_BYTES
                {
                    total += batch.lens[i + k];
                    k += 1;
                    if batch.lens[i + k - 1] < seg {
                        break; // a shorter datagram can only be the last
                    }
                }
                batch.prepare_group(groups, i, k, seg);
                i += k;
                groups += 1;
            }
            if groups == 0 {
                return; // the plain path reports the unencodable address
            }
            match sendmmsg(self.fd.as_raw_fd(), &mut batch.ghdrs[..groups]) {
                Ok(0) => return,
                Ok(n) => {
                    let sent: usize = batch.gsizes[..n].iter().sum();
                    batch.head += sent;
                    report.sent += sent;
                    if n < groups {
                        return; // the socket is full, or an error waits
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                    ) && batch.gsizes[0] > 1 =>
                {
                    // No GSO here (old kernel, odd device): plain path only.
                    self.gso.store(false, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                Err(_) => return, // let the plain path deal with it datagram by datagram
            }
        }
        if batch.head >= batch.count {
            batch.head = 0;
            batch.count = 0;
        }
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

/// Preallocated buffers for [`UdpSocket::recv_batch`].
pub struct RecvBatch {
    buf_size: usize,
    data: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// Control-message space per buffer (the UDP_GRO segment size).
    cmsgs: Box<[[u64; 4]]>,
    count: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.hdrs.len())
            .field("buf_size", &self.buf_size)
            .field("count", &self.count)
            .finish()
    }
}

// SAFETY: the raw pointers inside `iovs`/`hdrs` only ever point into this
// struct's own heap buffers, are rewritten before every syscall, and are never
// dereferenced by Rust code; moving the struct to another thread moves the
// buffers with it.
#[allow(unsafe_code)]
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `count` buffers (clamped to 1..=[`MAX_BATCH`]) of `buf_size` bytes
    /// (at least 1). Datagrams longer than `buf_size` are dropped as truncated.
    pub fn new(count: usize, buf_size: usize) -> RecvBatch {
        let count = count.clamp(1, MAX_BATCH);
        let buf_size = buf_size.max(1);
        RecvBatch {
            buf_size,
            data: vec![0u8; count * buf_size].into_boxed_slice(),
            names: (0..count).map(|_| zeroed_storage()).collect(),
            iovs: (0..count).map(|_| empty_iovec()).collect(),
            hdrs: (0..count).map(|_| zeroed_mmsghdr()).collect(),
            cmsgs: vec![[0u64; 4]; count].into_boxed_slice(),
            count: 0,
        }
    }

    /// How many datagrams one call can receive.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// How many datagrams the last [`UdpSocket::recv_batch`] received.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if the last receive got nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i` of the last receive: its payload (mutable, for in-place
    /// decryption) and canonical source address. `None` if `i` is out of
    /// range, the datagram was truncated (longer than the buffer), or its
    /// source is not an IP address.
    pub fn get(&mut self, i: usize) -> Option<(&mut [u8], SocketAddr)> {
        if i >= self.count {
            return None;
        }
        let hdr = &self.hdrs[i];
        if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (hdr.msg_len as usize).min(self.buf_size);
        let src = decode_addr(&self.names[i], hdr.msg_hdr.msg_namelen)?;
        let start = i * self.buf_size;
        let buf = self.data.get_mut(start..start + len)?;
        Some((buf, src))
    }

    fn prepare(&mut self) {
        let base = self.data.as_mut_ptr();
        for i in 0..self.hdrs.len() {
            self.iovs[i] = libc::iovec {
                // `i * buf_size` is within `data`, which has `count * buf_size` bytes.
                iov_base: base.wrapping_add(i * self.buf_size).cast(),
                iov_len: self.buf_size,
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = ptr::from_mut(&mut self.names[i]).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = ptr::from_mut(&mut self.iovs[i]);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = mem::size_of::<[u64; 4]>();
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }

    /// Like [`get`](Self::get), plus the size of the datagrams the buffer
    /// holds: with `UDP_GRO`, one buffer may carry several datagrams of that
    /// size from one sender (the last may be shorter); otherwise it is the
    /// buffer's length.
    pub fn get_segmented(&mut self, i: usize) -> Option<(&mut [u8], SocketAddr, usize)> {
        let seg = self.gro_segment(i);
        let (buf, src) = self.get(i)?;
        let len = buf.len();
        Some((buf, src, seg.filter(|&s| s > 0).unwrap_or(len).max(1)))
    }

    /// The UDP_GRO segment size the kernel reported for buffer `i`, if any.
    #[allow(unsafe_code)]
    fn gro_segment(&self, i: usize) -> Option<usize> {
        let hdr = &self.hdrs.get(i)?.msg_hdr;
        if hdr.msg_control.is_null() || hdr.msg_controllen == 0 {
            return None;
        }
        // SAFETY: msg_control points at this batch's `cmsgs[i]` and the kernel
        // set msg_controllen to what it wrote there (at most its size);
        // CMSG_FIRSTHDR/CMSG_NXTHDR stay within it, and the data is read
        // unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                    let v = ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    return usize::try_from(v).ok();
                }
                c = libc::CMSG_NXTHDR(hdr, c);
            }
        }
        None
    }
}

/// Preallocated outgoing datagrams for [`UdpSocket::send_batch`].
///
/// Fill it with [`SendBatch::next_buf`] + [`SendBatch::commit`] (or
/// [`SendBatch::push`]) until it is full, then flush. Slots are reused once
/// every queued datagram has been sent or dropped (or after `clear`).
pub struct SendBatch {
    buf_size: usize,
    data: Box<[u8]>,
    lens: Box<[usize]>,
    dests: Box<[SocketAddr]>,
    names: Box<[libc::sockaddr_storage]>,
    name_lens: Box<[libc::socklen_t]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// One header per GSO run, its datagram count and its control message.
    ghdrs: Box<[libc::mmsghdr]>,
    gsizes: Box<[usize]>,
    cmsgs: Box<[[u64; 4]]>,
    head: usize,
    count: usize,
}

/// Most datagrams in one GSO send (the kernel's UDP_MAX_SEGMENTS is 64 on
/// older kernels).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send (below the 64 KiB IP limit with headers).
const GSO_MAX_BYTES: usize = 60_000;

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("capacity", &self.hdrs.len())
            .field("buf_size", &self.buf_size)
            .field("pending", &self.pending())
            .finish()
    }
}

// SAFETY: as for `RecvBatch`: the raw pointers only point into this struct's
// own heap buffers, are rewritten before every syscall and never dereferenced
// by Rust code.
#[allow(unsafe_code)]
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// `count` slots (clamped to 1..=[`MAX_BATCH`]) of `buf_size` bytes (at least 1).
    pub fn new(count: usize, buf_size: usize) -> SendBatch {
        let count = count.clamp(1, MAX_BATCH);
        let buf_size = buf_size.max(1);
        let unspec = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        SendBatch {
            buf_size,
            data: vec![0u8; count * buf_size].into_boxed_slice(),
            lens: vec![0; count].into_boxed_slice(),
            dests: vec![unspec; count].into_boxed_slice(),
            names: (0..count).map(|_| zeroed_storage()).collect(),
            name_lens: vec![0; count].into_boxed_slice(),
            iovs: (0..count).map(|_| empty_iovec()).collect(),
            hdrs: (0..count).map(|_| zeroed_mmsghdr()).collect(),
            ghdrs: (0..count).map(|_| zeroed_mmsghdr()).collect(),
            gsizes: vec![0; count].into_boxed_slice(),
            cmsgs: vec![[0u64; 4]; count].into_boxed_slice(),
            head: 0,
            count: 0,
        }
    }

    /// How many datagrams the batch holds.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Size of each slot.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Datagrams committed but not yet sent or dropped.
    pub fn pending(&self) -> usize {
        self.count - self.head
    }

    /// True when no slot is free (flush before adding more).
    pub fn is_full(&self) -> bool {
        self.count == self.hdrs.len()
    }

    /// Forgets every queued datagram.
    pub fn clear(&mut self) {
        self.head = 0;
        self.count = 0;
    }

    /// The next free slot (all `buf_size` bytes of it), or `None` when full.
    /// Write the datagram at its start, then [`SendBatch::commit`] it.
    pub fn next_buf(&mut self) -> Option<&mut [u8]> {
        if self.is_full() {
            return None;
        }
        let start = self.count * self.buf_size;
        self.data.get_mut(start..start + self.buf_size)
    }

    /// Queues the first `len` bytes of the slot [`SendBatch::next_buf`]
    /// returned, for `dest`. Returns false (and queues nothing) if the batch
    /// is full or `len` exceeds the slot.
    pub fn commit(&mut self, len: usize, dest: SocketAddr) -> bool {
        if self.is_full() || len > self.buf_size {
            return false;
        }
        self.lens[self.count] = len;
        self.dests[self.count] = dest;
        self.count += 1;
        true
    }

    /// Copies `payload` into the next slot and queues it. Returns false if
    /// the batch is full or the payload does not fit a slot.
    pub fn push(&mut self, payload: &[u8], dest: SocketAddr) -> bool {
        let Some(buf) = self.next_buf() else {
            return false;
        };
        let Some(dst) = buf.get_mut(..payload.len()) else {
            return false;
        };
        dst.copy_from_slice(payload);
        self.commit(payload.len(), dest)
    }

    /// Points the headers of slots `from..to` at their buffers and names.
    /// Group header `g`: datagrams `first..first + k`, segments of `seg`
    /// bytes. The datagrams' iovecs are consecutive, so the header points at
    /// `k` of them; the kernel joins and re-splits them at `seg`.
    #[allow(unsafe_code)]
    fn prepare_group(&mut self, g: usize, first: usize, k: usize, seg: usize) {
        self.point_iovs(first, first + k);
        self.gsizes[g] = k;
        let h = &mut self.ghdrs[g];
        h.msg_hdr.msg_name = ptr::from_mut(&mut self.names[first]).cast();
        h.msg_hdr.msg_namelen = self.name_lens[first];
        h.msg_hdr.msg_iov = ptr::from_mut(&mut self.iovs[first]);
        h.msg_hdr.msg_iovlen = k;
        h.msg_hdr.msg_flags = 0;
        h.msg_len = 0;
        if k == 1 {
            h.msg_hdr.msg_control = ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            return;
        }
        let buf = &mut self.cmsgs[g];
        // SAFETY: CMSG_SPACE(2) (24 bytes on 64-bit Linux) fits the 32-byte,
        // 8-aligned buffer; CMSG_FIRSTHDR/CMSG_DATA stay inside it because
        // msg_controllen says so, and the u16 written is within CMSG_LEN(2).
        unsafe {
            let space = libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as usize;
            h.msg_hdr.msg_control = buf.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = space;
            let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as usize;
            ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
        }
    }

    /// Points iovec `i` at the queued bytes of datagram `i`, for `from..to`.
    fn point_iovs(&mut self, from: usize, to: usize) {
        let base = self.data.as_mut_ptr();
        for i in from..to {
            self.iovs[i] = libc::iovec {
                // `i * buf_size + lens[i]` is within `data` (lens[i] <= buf_size).
                iov_base: base.wrapping_add(i * self.buf_size).cast(),
                iov_len: self.lens[i],
            };
        }
    }

    fn prepare(&mut self, from: usize, to: usize) {
        self.point_iovs(from, to);
        for i in from..to {
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = ptr::from_mut(&mut self.names[i]).cast();
            h.msg_hdr.msg_namelen = self.name_lens[i];
            h.msg_hdr.msg_iov = ptr::from_mut(&mut self.iovs[i]);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }
}

#[allow(unsafe_code)]
fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    unsafe { mem::zeroed() }
}

#[allow(unsafe_code)]
fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain old data (integers and raw pointers, possibly
    // private padding); all-zero (null pointers, zero lengths) is valid.
    unsafe { mem::zeroed() }
}

/// Writes `addr` as the sockaddr this socket family expects; returns its
/// length, or `None` if it cannot be expressed (an IPv6 address on an IPv4
/// socket).
#[allow(unsafe_code)]
fn encode_addr(
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
#[allow(unsafe_code)]
fn decode_addr(name: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
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

fn storage_to_std(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(a) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4((*a).into()));
    }
    s.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into()))
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

#[allow(unsafe_code)]
fn setsockopt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is an open socket; we pass a pointer to a live c_int and
    // its exact size, which is what these integer options expect.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            ptr::from_ref(&value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[allow(unsafe_code)]
fn recvmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let vlen = libc::c_uint::try_from(hdrs.len()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: every header points at a live iovec covering a buffer of the
    // batch and at a sockaddr_storage with its size in msg_namelen (set by
    // `RecvBatch::prepare` just before); the batch is exclusively borrowed
    // for the call, so nothing else touches those buffers.
    let n = unsafe { libc::recvmmsg(fd, hdrs.as_mut_ptr(), vlen, 0, ptr::null_mut()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[allow(unsafe_code)]
fn sendmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let vlen = libc::c_uint::try_from(hdrs.len()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: every header points at a live iovec covering `lens[i]` bytes of
    // the batch's buffer and at an encoded sockaddr of `name_lens[i]` bytes
    // (set by `SendBatch::prepare` just before); the batch is exclusively
    // borrowed for the call.
    let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), vlen, 0) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[allow(unsafe_code)]
fn sendto(
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

#[allow(unsafe_code)]
fn recvfrom(
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn send_batch_slots() {
        let mut b = SendBatch::new(2, 8);
        let dest: SocketAddr = "198.18.0.1:1".parse().expect("literal");
        assert!(!b.push(&[0; 9], dest), "oversized payload refused");
        assert!(b.push(&[1; 8], dest));
        assert!(b.commit(3, dest));
        assert!(b.is_full());
        assert!(b.next_buf().is_none());
        assert!(!b.commit(1, dest));
        assert_eq!(b.pending(), 2);
        b.clear();
        assert_eq!(b.pending(), 0);
    }
}
