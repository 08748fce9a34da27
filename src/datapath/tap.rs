//! The TAP device: where local Ethernet frames enter and leave the daemon.
//!
//! [`Tap::create`] makes a TAP interface (no packet-info header: every read
//! returns exactly one Ethernet frame, every write takes one) with one or more
//! **queues**, each a non-blocking file descriptor that a worker thread can own
//! and poll on its own. [`TapQueue::read`]/[`TapQueue::write`] are plain
//! `read(2)`/`write(2)` into caller buffers: no allocation per frame.
//!
//! Lifetime: the TAP is **not persistent**. It exists while at least one queue
//! fd is open and vanishes with the process, so a crash leaves no interface
//! behind (its addresses and routes vanish with it). The netlink layer can
//! still delete it explicitly while it is held (see `netlink::Change::Created`).
//!
//! Why two creation paths: a single queue is created with the `tun-tap` crate,
//! as the project's named dependency for the job. `tun-tap` cannot ask for
//! `IFF_MULTI_QUEUE`, which is how the kernel gives each worker its own queue
//! (flows are spread over queues by hash, so workers do not contend on one
//! fd). For more than one queue we therefore open `/dev/net/tun` ourselves and
//! issue `TUNSETIFF` with `IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE` once per
//! queue, all with the same name. The same path requests `IFF_VNET_HDR` and
//! `TUNSETOFFLOAD` (checksum and TCP segmentation offload) for
//! [`Tap::create_offload`], which `tun-tap` cannot do either.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

/// Most queues we ask the kernel for (it allows up to 256; more than one per
/// core never pays).
pub const MAX_QUEUES: usize = 64;

/// Errors creating a TAP device.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The requested name is not a valid interface name.
    #[error("invalid TAP name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The queue count is zero or above [`MAX_QUEUES`].
    #[error("invalid TAP queue count {0} (must be 1..={MAX_QUEUES})")]
    InvalidQueues(usize),
    /// An interface with this name already exists (a live instance's TAP, a
    /// stale one, or an unrelated device). `Tap::create` never attaches to an
    /// existing device; see `netlink::Netlink::remove_stale_tap`.
    #[error("cannot create TAP {0:?}: an interface with that name already exists")]
    Exists(String),
    /// The kernel refused to create or attach the TAP.
    #[error("cannot create TAP {name:?} (queue {queue})")]
    Create {
        /// The interface name.
        name: String,
        /// Which queue failed (0-based).
        queue: usize,
        /// The OS error (EBUSY: another process holds a TAP of this name;
        /// EPERM: missing CAP_NET_ADMIN; EINVAL: the name is an existing
        /// single-queue TAP or another kind of device).
        #[source]
        cause: io::Error,
    },
}

/// Checks a name the way the kernel's `dev_valid_name` does.
pub fn validate_name(name: &str) -> Result<(), TapError> {
    let bad = |reason| {
        Err(TapError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("it is a path component");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return bad("it contains '/', ':', NUL or whitespace");
    }
    Ok(())
}

/// A TAP interface and its queues. Dropping it closes the queues, which
/// removes the interface.
#[derive(Debug)]
pub struct Tap {
    name: String,
    queues: Vec<TapQueue>,
}

/// One queue of a TAP: a non-blocking fd carrying whole Ethernet frames.
#[derive(Debug)]
pub struct TapQueue {
    file: File,
    /// Frames written so far: a worker that wrote some reads the queue
    /// next, since what the local stack answered is already waiting there
    /// (the kernel handles a written frame within the `write`).
    written: Cell<u64>,
}

impl Tap {
    /// Creates the TAP `name` with `queues` queues, all non-blocking and
    /// close-on-exec, in the calling thread's network namespace. Refuses with
    /// [`TapError::Exists`] if any interface of that name exists — otherwise a
    /// second multi-queue instance could silently attach queues to a live
    /// instance's TAP.
    pub fn create(name: &str, queues: usize) -> Result<Tap, TapError> {
        check_new(name, queues)?;
        let create_err = |queue, cause| TapError::Create {
            name: name.to_owned(),
            queue,
            cause,
        };
        let mut out = Vec::with_capacity(queues);
        let mut actual = name.to_owned();
        if queues == 1 {
            let iface = tun_tap::Iface::without_packet_info(name, tun_tap::Mode::Tap)
                .map_err(|e| create_err(0, e))?;
            actual = iface.name().to_owned();
            let file = iface_into_file(iface);
            set_nonblocking(&file).map_err(|e| create_err(0, e))?;
            out.push(TapQueue::new(file));
        } else {
            for q in 0..queues {
                let file = open_mq_queue(name).map_err(|e| create_err(q, e))?;
                out.push(TapQueue::new(file));
            }
        }
        Ok(Tap {
            name: actual,
            queues: out,
        })
    }

    /// The interface name the kernel gave the TAP.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queues, one per worker.
    pub fn queues(&self) -> &[TapQueue] {
        &self.queues
    }

    /// Takes the queues out (e.g. to move one into each worker thread). The
    /// interface lives as long as any of them is open.
    pub fn into_queues(self) -> Vec<TapQueue> {
        self.queues
    }
}

impl TapQueue {
    fn new(file: File) -> TapQueue {
        TapQueue {
            file,
            written: Cell::new(0),
        }
    }

    /// How many frames were written to this queue so far (wraps).
    pub fn frames_written(&self) -> u64 {
        self.written.get()
    }

    /// Reads one frame into `buf`; returns its length. `WouldBlock` when no
    /// frame is waiting. A frame longer than `buf` is truncated by the kernel,
    /// so `buf` should hold MTU + 18 bytes (Ethernet header + one VLAN tag).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one whole frame. `WouldBlock` when the queue is full.
    pub fn write(&self, frame: &[u8]) -> io::Result<usize> {
        let n = (&self.file).write(frame)?;
        self.written.set(self.written.get().wrapping_add(1));
        Ok(n)
    }
}

impl AsRawFd for TapQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for TapQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

fn set_nonblocking(file: &File) -> io::Result<()> {
    let flags = fcntl(file, FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(file, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

#[allow(unsafe_code)]
fn iface_into_file(iface: tun_tap::Iface) -> File {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = iface.into_raw_fd();
    // SAFETY: `into_raw_fd` hands over sole ownership of an open fd (the
    // `/dev/net/tun` file tun-tap opened); nothing else will close it.
    unsafe { File::from_raw_fd(fd) }
}

mod ioctl {
    #![allow(unsafe_code, missing_docs)]
    use nix::libc;
    nix::ioctl_readwrite_bad!(tunsetiff, libc::TUNSETIFF, libc::ifreq);
    nix::ioctl_write_int_bad!(tunsetoffload, libc::TUNSETOFFLOAD);
}

/// What both creation paths refuse: a bad name, a bad queue count, or a
/// name some interface already has.
fn check_new(name: &str, queues: usize) -> Result<(), TapError> {
    validate_name(name)?;
    if queues == 0 || queues > MAX_QUEUES {
        return Err(TapError::InvalidQueues(queues));
    }
    if nix::net::if_::if_nametoindex(name).is_ok() {
        return Err(TapError::Exists(name.to_owned()));
    }
    Ok(())
}

/// Length of the `virtio_net_hdr` that precedes every frame on a TAP created
/// with offloads ([`Tap::create_offload`]).
pub const VNET_HDR_LEN: usize = crate::wire::virtio::HDR_LEN;

impl Tap {
    /// Like [`create`](Self::create), but with `IFF_VNET_HDR`: every frame read
    /// or written is preceded by a [`VNET_HDR_LEN`]-byte `virtio_net_hdr`, and
    /// the kernel may hand over frames with partial checksums and, with
    /// `tso`, TCP segmentation left undone (frames up to 64 KiB). The tunnel
    /// carries header and frame to the other site, whose kernel finishes the
    /// work — one trip through each stack per 64 KiB instead of per 1.5 KiB.
    pub fn create_offload(name: &str, queues: usize, tso: bool) -> Result<Tap, TapError> {
        check_new(name, queues)?;
        let mut offload = libc::TUN_F_CSUM;
        if tso {
            offload |= libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
        }
        let mut out = Vec::with_capacity(queues);
        for q in 0..queues {
            let file = open_queue(name, queues > 1, true)
                .and_then(|f| set_offload(&f, offload).map(|()| f))
                .map_err(|cause| TapError::Create {
                    name: name.to_owned(),
                    queue: q,
                    cause,
                })?;
            out.push(TapQueue::new(file));
        }
        Ok(Tap {
            name: name.to_owned(),
            queues: out,
        })
    }
}

#[allow(unsafe_code)]
fn set_offload(file: &File, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: `file` is an open TAP queue fd; TUNSETOFFLOAD takes the flags
    // by value and touches no user memory.
    unsafe { ioctl::tunsetoffload(file.as_raw_fd(), flags as libc::c_int) }?;
    Ok(())
}

/// Opens one queue of a multi-queue TAP.
fn open_mq_queue(name: &str) -> io::Result<File> {
    open_queue(name, true, false)
}

/// Opens `/dev/net/tun` and attaches it to the TAP `name` with the given
/// flags.
fn open_queue(name: &str, multi_queue: bool, vnet_hdr: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    // The name was validated: at most IFNAMSIZ-1 bytes, no NUL.
    let mut ifr_name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (dst, src) in ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    let flags = flags as libc::c_short;
    let mut ifr = libc::ifreq {
        ifr_name,
        ifr_ifru: libc::__c_anonymous_ifr_ifru { ifru_flags: flags },
    };
    tunsetiff_checked(&file, &mut ifr)?;
    Ok(file)
}

#[allow(unsafe_code)]
fn tunsetiff_checked(file: &File, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `file` is an open /dev/net/tun fd and `ifr` is a fully
    // initialised, exclusively borrowed `struct ifreq` that outlives the call;
    // TUNSETIFF reads it and writes the final name back into it.
    unsafe { ioctl::tunsetiff(file.as_raw_fd(), ifr) }?;
    Ok(())
}
