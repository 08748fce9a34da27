//! Batched datagrams: [`RecvBatch`] and [`SendBatch`] own every buffer,
//! address and `mmsghdr`, allocated once, and [`UdpSocket::recv_batch`] /
//! [`UdpSocket::send_batch`] move a whole batch per syscall. Runs of
//! equal-size datagrams to one destination go out with segmentation offload
//! (`UDP_SEGMENT`); with `UDP_GRO` one receive buffer may hold a run of
//! datagrams, which [`RecvBatch::get_segmented`] reports.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::Ordering;

use nix::libc;

use super::sys::{
    CmsgBuf, decode_addr, empty_iovec, encode_addr, recv_cmsgs, recvmmsg, sendmmsg, set_send_cmsgs,
    zeroed_mmsghdr, zeroed_storage,
};
use super::{MAX_BATCH, UdpSocket};

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
    /// Datagrams sent from the kernel's choice of address because the one
    /// asked for is no longer ours.
    pub unsourced: usize,
    /// Where the last dropped datagram was going.
    pub failed_to: Option<SocketAddr>,
}

impl UdpSocket {
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
        if self.gso.load(Ordering::Relaxed) {
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
                report.failed_to = Some(batch.dests[batch.head]);
                batch.head += 1;
                continue;
            }
            batch.prepare(batch.head, end, self.v6);
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
                Err(e) if stale_source(&e) && batch.srcs[batch.head].is_some() => {
                    // The source asked for is no longer ours (the address
                    // went away): let the kernel choose, and try again.
                    batch.srcs[batch.head] = None;
                    report.unsourced += 1;
                }
                Err(e) => {
                    // The first datagram of the run was refused outright
                    // (EMSGSIZE, ENETUNREACH, EPERM from a firewall, ...):
                    // drop it so it cannot block the queue.
                    report.failed_to = Some(batch.dests[batch.head]);
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
                    && batch.srcs[i + k] == batch.srcs[i]
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
                batch.prepare_group(groups, i, k, seg, self.v6);
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
                Err(e) if stale_source(&e) && batch.srcs[batch.head].is_some() => {
                    // As in the plain path; if it was GSO the kernel
                    // refused, the retry without a source says so.
                    let k = batch.gsizes[0];
                    batch.srcs[batch.head..batch.head + k].fill(None);
                    report.unsourced += k;
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                    ) && batch.gsizes[0] > 1 =>
                {
                    // No GSO here (old kernel, odd device): plain path only.
                    self.gso.store(false, Ordering::Relaxed);
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
}

/// `sendmsg`'s answers to a source address (`IP_PKTINFO`) that is not one
/// of ours (IPv4 route lookups say "network unreachable"). A datagram with
/// a source is tried once more without it, so a real error costs one retry.
fn stale_source(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EADDRNOTAVAIL | libc::ENETUNREACH)
    )
}

/// Preallocated buffers for [`UdpSocket::recv_batch`].
pub struct RecvBatch {
    buf_size: usize,
    data: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// Control-message space per buffer (the UDP_GRO segment size, the
    /// local address with `IP_PKTINFO`).
    cmsgs: Box<[CmsgBuf]>,
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
            cmsgs: vec![[0u64; 8]; count].into_boxed_slice(),
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
            h.msg_hdr.msg_controllen = mem::size_of::<CmsgBuf>();
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
    fn gro_segment(&self, i: usize) -> Option<usize> {
        self.cmsgs_of(i).0
    }

    /// The local address datagram `i` of the last receive was sent to, if
    /// the socket asked for it (bound to a wildcard address: see
    /// [`UdpSocket::bind`]); canonical.
    pub fn local_ip(&self, i: usize) -> Option<IpAddr> {
        self.cmsgs_of(i).1
    }

    fn cmsgs_of(&self, i: usize) -> (Option<usize>, Option<IpAddr>) {
        match self.hdrs.get(i).map(|h| &h.msg_hdr) {
            Some(hdr) if i < self.count && !hdr.msg_control.is_null() => {
                recv_cmsgs(&self.cmsgs[i], hdr.msg_controllen)
            }
            _ => (None, None),
        }
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
    /// The source address asked for, per datagram (of the destination's
    /// family, else `None`).
    srcs: Box<[Option<IpAddr>]>,
    names: Box<[libc::sockaddr_storage]>,
    name_lens: Box<[libc::socklen_t]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// One header per GSO run, its datagram count and its control message.
    ghdrs: Box<[libc::mmsghdr]>,
    gsizes: Box<[usize]>,
    cmsgs: Box<[CmsgBuf]>,
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
            srcs: vec![None; count].into_boxed_slice(),
            names: (0..count).map(|_| zeroed_storage()).collect(),
            name_lens: vec![0; count].into_boxed_slice(),
            iovs: (0..count).map(|_| empty_iovec()).collect(),
            hdrs: (0..count).map(|_| zeroed_mmsghdr()).collect(),
            ghdrs: (0..count).map(|_| zeroed_mmsghdr()).collect(),
            gsizes: vec![0; count].into_boxed_slice(),
            cmsgs: vec![[0u64; 8]; count].into_boxed_slice(),
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

    /// Slots free for more datagrams.
    pub fn free(&self) -> usize {
        self.hdrs.len() - self.count
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
        self.commit_from(len, dest, None)
    }

    /// Like [`SendBatch::commit`], sent from the local address `src` (if
    /// given and of `dest`'s family; the socket must hold that address).
    pub fn commit_from(&mut self, len: usize, dest: SocketAddr, src: Option<IpAddr>) -> bool {
        if self.is_full() || len > self.buf_size {
            return false;
        }
        self.lens[self.count] = len;
        self.dests[self.count] = dest;
        self.srcs[self.count] = src.filter(|s| s.is_ipv4() == dest.is_ipv4());
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
    fn prepare_group(&mut self, g: usize, first: usize, k: usize, seg: usize, v6: bool) {
        self.point_iovs(first, first + k);
        self.gsizes[g] = k;
        let h = &mut self.ghdrs[g];
        h.msg_hdr.msg_name = ptr::from_mut(&mut self.names[first]).cast();
        h.msg_hdr.msg_namelen = self.name_lens[first];
        h.msg_hdr.msg_iov = ptr::from_mut(&mut self.iovs[first]);
        h.msg_hdr.msg_iovlen = k;
        h.msg_hdr.msg_flags = 0;
        h.msg_len = 0;
        let seg = (k > 1).then_some(seg as u16);
        set_send_cmsgs(
            &mut h.msg_hdr,
            &mut self.cmsgs[g],
            seg,
            self.srcs[first],
            v6,
        );
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

    fn prepare(&mut self, from: usize, to: usize, v6: bool) {
        self.point_iovs(from, to);
        for i in from..to {
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = ptr::from_mut(&mut self.names[i]).cast();
            h.msg_hdr.msg_namelen = self.name_lens[i];
            h.msg_hdr.msg_iov = ptr::from_mut(&mut self.iovs[i]);
            h.msg_hdr.msg_iovlen = 1;
            set_send_cmsgs(&mut h.msg_hdr, &mut self.cmsgs[i], None, self.srcs[i], v6);
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
