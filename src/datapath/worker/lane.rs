//! A worker's own I/O: its TAP queue and UDP socket, the buffers it reads
//! into and sends from (allocated once), the frames it stages for the TAP
//! while another worker holds the core, and its error counts.

use std::os::fd::AsFd;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::super::tap::TapQueue;
use super::super::udp::{RecvBatch, SendBatch, UdpSocket};
use super::{BATCH, FRAME_BUF, TAP_READS};
use crate::control::status::IoCounters;

/// One worker's own I/O: its TAP queue, its UDP socket, its buffers and
/// error counts.
pub struct Lane {
    /// The TAP queue.
    pub tap: TapQueue,
    /// The UDP socket (in the listen port's `SO_REUSEPORT` group when there
    /// is more than one worker).
    pub udp: UdpSocket,
    pub(super) b: Buffers,
    pub(super) io: IoCounters,
    /// Frames for the TAP, written once the lock is released (with more
    /// than one worker; `None` writes them at once).
    pub(super) staged: Option<Staged>,
    /// Handshake responses whose DH runs between two holds of the lock.
    pub(super) jobs: Vec<crate::tunnel::HandshakeJob>,
    /// Whether frames come from the TAP faster than the worker sleeps:
    /// then a drain reads them in batches; otherwise it takes one frame and
    /// the next wait finds any other (see [`super::drain_tap`]).
    pub(super) tap_busy: bool,
    /// A frame of the first worker's TAP drains since its last bookkeeping
    /// was answered or taken by the responder: its lease changes wait to
    /// be handed to the lease store.
    pub(super) answered: bool,
}

/// A wait shorter than this did not sleep: what it found was there already.
const QUICK_WAKE: std::time::Duration = std::time::Duration::from_micros(20);

/// Frames waiting to be written to the TAP, copied end to end.
pub(super) struct Staged {
    pub(super) buf: Vec<u8>,
    pub(super) ends: Vec<usize>,
}

/// Bytes of frames a lane stages before it writes them under the lock.
pub(super) const STAGED_BYTES: usize = 512 << 10;

/// Frames a lane stages before it writes them under the lock.
pub(super) const STAGED_FRAMES: usize = BATCH * 4;

impl Lane {
    /// A lane for `tap` and `udp`, its buffers allocated. `shared`: one of
    /// several workers, so frames for the TAP are written after the lock is
    /// released rather than while it is held.
    pub fn new(tap: TapQueue, udp: UdpSocket, shared: bool) -> Lane {
        let dgram = 9216 + 128;
        Lane {
            tap,
            udp,
            b: Buffers {
                // 64 KiB each: with UDP_GRO a buffer holds a run of datagrams.
                rx: RecvBatch::new(BATCH, 65536),
                out: OutBufs {
                    batch: SendBatch::new(BATCH * 8, dgram),
                    spill: vec![0; dgram],
                },
                frames: (0..TAP_READS).map(|_| vec![0; FRAME_BUF]).collect(),
                lens: [0; TAP_READS],
                hub: vec![0; FRAME_BUF],
                record: vec![0; crate::wire::tcp::MAX_MESSAGE],
                readable: Vec::with_capacity(64),
            },
            io: IoCounters::default(),
            staged: shared.then(|| Staged {
                buf: Vec::with_capacity(STAGED_BYTES),
                ends: Vec::with_capacity(STAGED_FRAMES),
            }),
            jobs: Vec::with_capacity(crate::tunnel::MAX_JOBS),
            tap_busy: false,
            answered: false,
        }
    }

    /// After a wait that began at `before`: a TAP queue found ready at once
    /// means frames come faster than the worker sleeps, so its drains read
    /// them in batches.
    pub(super) fn waited(&mut self, before: Instant, tap_ready: bool) {
        if tap_ready && before.elapsed() < QUICK_WAKE {
            self.tap_busy = true;
        }
    }

    /// Waits up to `ms` milliseconds for the UDP socket to take more, then
    /// sends what the batch holds (called without the core's lock).
    pub(super) fn wait_writable(&mut self, ms: u8) {
        let mut fds = [PollFd::new(self.udp.as_fd(), PollFlags::POLLOUT)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
        let r = self.udp.send_batch(&mut self.b.out.batch);
        if r.dropped > 0 {
            let failed = super::out::send_failure(&r);
            self.io.count_send_errors(r.dropped, failed, Instant::now());
        }
    }

    /// Sends what the batch holds, if anything (called without the core's
    /// lock); failures are counted in this lane's counters. Whether there
    /// was anything to send.
    pub(super) fn send(&mut self, now: Instant) -> bool {
        if self.b.out.batch.pending() == 0 {
            return false;
        }
        let r = self.udp.send_batch(&mut self.b.out.batch);
        self.io
            .count_send_errors(r.dropped, super::out::send_failure(&r), now);
        true
    }

    /// Writes the staged frames to the TAP.
    pub(super) fn write_staged(&mut self) {
        if let Some(st) = self.staged.as_mut() {
            self.io.tap_write_errors += st.write_to(&self.tap);
        }
    }
}

impl Staged {
    /// Writes the frames to `tap` in order and empties the stage; returns
    /// how many writes failed.
    pub(super) fn write_to(&mut self, tap: &TapQueue) -> u64 {
        let (mut start, mut failed) = (0, 0);
        for &end in &self.ends {
            if tap.write(&self.buf[start..end]).is_err() {
                failed += 1;
            }
            start = end;
        }
        self.buf.clear();
        self.ends.clear();
        failed
    }
}

/// The `sendmmsg` batch, and where a datagram goes when it is full.
pub(super) struct OutBufs {
    pub(super) batch: SendBatch,
    pub(super) spill: Vec<u8>,
}

pub(super) struct Buffers {
    pub(super) rx: RecvBatch,
    pub(super) out: OutBufs,
    /// TAP frames read and not yet handled, and their lengths.
    pub(super) frames: Vec<Vec<u8>>,
    pub(super) lens: [usize; TAP_READS],
    pub(super) hub: Vec<u8>,
    /// A message from a TCP connection.
    pub(super) record: Vec<u8>,
    /// TCP connections with something to read.
    pub(super) readable: Vec<usize>,
}
