//! What a worker sends through: the `sendmmsg` batch and TCP queues as the
//! tunnel's [`Transmit`], the TAP (written at once or staged), and the
//! bridge's [`bridge::Sink`] over all of them and the lease store. The
//! macros build them from disjoint field borrows, so a frame may still
//! borrow the tunnel or a lane's receive buffers.

use std::net::SocketAddr;
use std::time::Instant;

use super::super::tap::TapQueue;
use super::super::tcp::Conns;
use super::super::udp::{SendBatch, UdpSocket};
use super::lane::{OutBufs, STAGED_BYTES, STAGED_FRAMES, Staged};
use crate::bridge;
use crate::control::status::{SendFailure, note_send_failure};
use crate::leases::{LeaseChange, LeaseStore};
use crate::tunnel::{PeerId, Transmit, Tunnel};

/// Where the last datagram `r` dropped was going, and why (`errno`).
pub(super) fn send_failure(r: &super::super::udp::SendReport) -> Option<(SocketAddr, i32)> {
    r.failed_to.map(|to| {
        let errno = r.error.as_ref().and_then(|e| e.raw_os_error());
        (to, errno.unwrap_or(0))
    })
}

/// [`Transmit`] over a `sendmmsg` batch (flushed when full) and the TCP
/// connections' queues.
pub(super) struct UdpTx<'a> {
    pub(super) sock: &'a UdpSocket,
    pub(super) tcp: &'a mut Conns,
    pub(super) batch: &'a mut SendBatch,
    pub(super) spill: &'a mut [u8],
    pub(super) spilled: bool,
    pub(super) errors: &'a mut u64,
    pub(super) failure: &'a mut Option<SendFailure>,
    pub(super) now: Instant,
}

impl<'a> UdpTx<'a> {
    pub(super) fn new(
        sock: &'a UdpSocket,
        tcp: &'a mut Conns,
        out: &'a mut OutBufs,
        errors: &'a mut u64,
        failure: &'a mut Option<SendFailure>,
        now: Instant,
    ) -> Self {
        UdpTx {
            sock,
            tcp,
            batch: &mut out.batch,
            spill: &mut out.spill,
            spilled: false,
            errors,
            failure,
            now,
        }
    }

    pub(super) fn flush(&mut self) {
        let r = self.sock.send_batch(self.batch);
        *self.errors += r.dropped as u64;
        note_send_failure(self.failure, send_failure(&r), self.now);
    }
}

impl Transmit for UdpTx<'_> {
    fn buffer(&mut self) -> &mut [u8] {
        if self.batch.is_full() {
            // Never a wait here, under the lock: a TAP frame is taken only
            // with room for all its datagrams (the lane waits for room off
            // the lock). What still finds the socket full (a hub's flood to
            // many peers at once) is dropped and counted.
            self.flush();
        }
        self.spilled = self.batch.is_full();
        if self.spilled {
            return self.spill;
        }
        self.batch
            .next_buf()
            .expect("the batch has room: checked just above")
    }

    fn commit(&mut self, len: usize, to: SocketAddr) {
        self.commit_from(len, to, None);
    }

    fn commit_from(&mut self, len: usize, to: SocketAddr, from: Option<std::net::IpAddr>) {
        if self.spilled || !self.batch.commit_from(len, to, from) {
            *self.errors += 1;
        }
    }

    fn stream_buffer(&mut self) -> &mut [u8] {
        self.tcp.out_buffer()
    }

    fn commit_stream(&mut self, len: usize, to: SocketAddr) {
        self.tcp.send(len, to, self.now);
    }
}

/// The worker's [`UdpTx`] for this wake-up, from `lane`'s socket, send
/// batch and error counter and `self`'s TCP connections (disjoint field
/// borrows, so the tunnel and the rest of `self` stay usable).
macro_rules! tx {
    ($self:ident, $lane:ident, $now:ident) => {
        UdpTx::new(
            &$lane.udp,
            &mut $self.tcp,
            &mut $lane.b.out,
            &mut $lane.io.udp_send_errors,
            &mut $lane.io.last_send_error,
            $now,
        )
    };
}

/// `lane`'s [`TapOut`] (disjoint field borrows, so a frame may still
/// borrow the tunnel or the lane's receive buffers).
macro_rules! tap_out {
    ($lane:ident) => {
        TapOut {
            tap: &$lane.tap,
            staged: $lane.staged.as_mut(),
            errors: &mut $lane.io.tap_write_errors,
        }
    };
}

/// The worker's [`Out`] for this wake-up: `lane`'s TAP and send batch,
/// `self`'s tunnel and lease store (disjoint field borrows, so the bridge
/// stays usable).
macro_rules! out {
    ($self:ident, $lane:ident, $now:ident) => {
        Out {
            tap: TapOut {
                tap: &$lane.tap,
                staged: $lane.staged.as_mut(),
                errors: &mut $lane.io.tap_write_errors,
            },
            tx: UdpTx::new(
                &$lane.udp,
                &mut $self.tcp,
                &mut $lane.b.out,
                &mut $lane.io.udp_send_errors,
                &mut $lane.io.last_send_error,
                $now,
            ),
            tunnel: &mut $self.tunnel,
            lease_store: &mut $self.lease_store,
            now: $now,
        }
    };
}

/// Sends the frame in `lane`'s hub buffer (`len` bytes, copied there from
/// a peer's frame) on to the other peers, as the bridge decided (a hub). A
/// macro for the same reason as `out!`: `lane`'s receive buffers may still
/// be borrowed.
macro_rules! relay {
    ($self:ident, $lane:ident, $relay:expr, $len:expr, $now:ident) => {{
        let (relay, len) = ($relay, $len);
        let mut out = out!($self, $lane, $now);
        $self.bridge.relay(relay, &$lane.b.hub[..len], &mut out);
    }};
}

/// Where frames for the TAP go: written at once, or staged until the lock
/// is released (with more than one worker).
pub(super) struct TapOut<'a> {
    pub(super) tap: &'a TapQueue,
    pub(super) staged: Option<&'a mut Staged>,
    /// Failed TAP writes.
    pub(super) errors: &'a mut u64,
}

impl bridge::ToTap for TapOut<'_> {
    /// When the stage is full, what it holds is written first: frames reach
    /// the TAP in order.
    fn to_tap(&mut self, packet: &[u8]) {
        if let Some(st) = self.staged.as_deref_mut() {
            let fits = |st: &Staged| {
                st.buf.len() + packet.len() <= STAGED_BYTES && st.ends.len() < STAGED_FRAMES
            };
            if !fits(st) {
                *self.errors += st.write_to(self.tap);
            }
            if fits(st) {
                st.buf.extend_from_slice(packet);
                st.ends.push(st.buf.len());
                return;
            }
        }
        if self.tap.write(packet).is_err() {
            *self.errors += 1;
        }
    }
}

/// The bridge's [`bridge::Sink`] in the worker: the TAP, the tunnel (and
/// through it the send batch), the lease store.
pub(super) struct Out<'a> {
    pub(super) tap: TapOut<'a>,
    pub(super) tx: UdpTx<'a>,
    pub(super) tunnel: &'a mut Tunnel,
    pub(super) lease_store: &'a mut LeaseStore,
    pub(super) now: Instant,
}

impl bridge::ToTap for Out<'_> {
    fn to_tap(&mut self, packet: &[u8]) {
        self.tap.to_tap(packet);
    }
}

impl bridge::Sink for Out<'_> {
    fn reply(&mut self, packet: &[u8], leases: &mut Vec<LeaseChange>) {
        // An ACK waits until its lease is on disk (SPEC §5); anything else
        // goes out at once, ahead of what is staged.
        if !self.lease_store.hold_reply(leases, packet) && self.tap.tap.write(packet).is_err() {
            *self.tap.errors += 1;
        }
    }

    fn to_peer(&mut self, peer: PeerId, packet: &[u8]) {
        self.tunnel.send_frame(peer, packet, self.now, &mut self.tx);
    }

    fn peer_up(&self, peer: PeerId) -> bool {
        self.tunnel.peer_state(peer) == Some(crate::tunnel::PeerState::Up)
    }
}

impl super::Worker {
    /// Sends the responses whose DH `lane`'s worker did without the lock,
    /// and installs their sessions.
    pub(super) fn finish_handshakes(&mut self, lane: &mut super::Lane, now: Instant) {
        let mut jobs = std::mem::take(&mut lane.jobs);
        for job in jobs.drain(..) {
            let mut tx = tx!(self, lane, now);
            self.tunnel.finish_handshake(job, now, &mut tx);
        }
        lane.jobs = jobs;
    }
}
