//! The workers: threads that move frames between the TAP, the UDP socket
//! and the pure core (tunnel, switch, responder, guards).
//!
//! A link has `tunnel.workers` of them. Each owns a [`Lane`]: one queue of
//! the multi-queue TAP and one UDP socket in the listen port's
//! `SO_REUSEPORT` group. A steering program picks the socket by a
//! datagram's source ([`super::udp::steer`]), so a peer stays on one worker;
//! the TAP picks the queue of a flow's frames by where its replies were
//! written, so the flow stays there too, and in order. The core is one [`Worker`] behind a mutex: a worker
//! does its system calls (`recvmmsg`, TAP reads, `sendmmsg`) without it and
//! takes it once per batch to handle what it read. The first worker also
//! runs everything else: timers, the TCP transport, session events, control
//! requests, leases. The others wake it when they leave it something to do
//! sooner than it planned to wake.
//!
//! One wake-up handles bounded batches: up to [`BATCH`] datagrams per
//! `recvmmsg`, up to [`BATCH`] TAP reads, then (first worker) timers, one
//! `sendmmsg` flush, session events, control requests. The clock is read
//! once per wake-up. Buffers are allocated once; the steady state allocates
//! nothing per frame (tests/no_alloc.rs checks the core path).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::EventFd;
use nix::sys::signalfd::SignalFd;

use super::tap::TapQueue;
use super::tcp::{Conns, Read};
use super::udp::{RecvBatch, SendBatch, UdpSocket};
use crate::bridge::{self, Bridge, TapOutcome};
use crate::control::server::Command;
use crate::control::status::{self, IoCounters, StaticLinkInfo};
use crate::control::{Request, Response};
use crate::guard;
use crate::leases::LeaseChange;
use crate::metrics::MetricsServer;
use crate::reload::{PeerChange, Plan, ReloadError};
use crate::responder::Responder;
use crate::tunnel::{Event, PeerId, PeerParams, PeerStats, Transmit, Tunnel};

/// Datagrams or frames handled per batch.
pub const BATCH: usize = 64;
/// Largest frame read from the TAP: a 64 KiB GSO batch with its Ethernet,
/// VLAN and virtio headers.
const FRAME_BUF: usize = 65536 + 256;
/// TAP frames read before the core's lock is taken to handle them.
const TAP_READS: usize = 16;

/// Why the worker returned.
pub enum Exit {
    /// SIGTERM / SIGINT.
    Signal,
    /// A `down` request; answer it once the link is down.
    Down(Sender<Response>),
}

/// Everything the worker owns.
pub struct Worker {
    /// The configuration the link runs with, and the keys it loaded (what
    /// a reload compares against).
    pub config: crate::config::Config,
    /// See `config`.
    pub keys: Vec<Vec<crate::config::Psk>>,
    /// The tunnel core.
    pub tunnel: Tunnel,
    /// The layer-2 pipeline: responder, guards, switch.
    pub bridge: Bridge,
    /// Where leases are persisted.
    pub lease_file: Option<PathBuf>,
    /// Makes lease changes durable off this thread; holds the ACKs that
    /// wait for it.
    pub lease_store: crate::leases::LeaseStore,
    /// Lease changes on their way from the bridge to the lease store.
    pub lease_changes: Vec<LeaseChange>,
    /// The TCP listener and connections (`tunnel.transport`).
    pub tcp: Conns,
    /// Control requests.
    pub commands: Receiver<Command>,
    /// Where the metrics endpoint sends its requests (a reload that
    /// rebinds the endpoint hands it a clone).
    pub to_worker: Sender<Command>,
    /// The metrics endpoint, if `[metrics]` is configured.
    pub metrics: Option<MetricsServer>,
    /// Wakes the worker when a command is queued.
    pub waker: Arc<EventFd>,
    /// Runs `[hooks] peer_up`/`peer_down` off this thread.
    pub peer_hooks: crate::hooks::PeerHooks,
    /// Resolves named peers' endpoints again, off this thread.
    pub resolver: crate::resolver::Resolver,
    /// Static part of the status.
    pub info: StaticLinkInfo,
    /// systemd notifications: status lines, reload, the watchdog fed from
    /// the loop.
    pub sd: crate::sd_notify::SdNotify,
    /// What the other workers counted (added once per batch).
    pub lanes_io: IoCounters,
    /// Until when the first worker sleeps (the others wake it for anything
    /// due sooner).
    pub asleep_until: Option<Instant>,
}

/// One worker's own I/O: its TAP queue, its UDP socket, its buffers and
/// error counts.
pub struct Lane {
    /// The TAP queue.
    pub tap: TapQueue,
    /// The UDP socket (in the listen port's `SO_REUSEPORT` group when there
    /// is more than one worker).
    pub udp: UdpSocket,
    b: Buffers,
    io: IoCounters,
    /// Frames for the TAP, written once the lock is released (with more
    /// than one worker; `None` writes them at once).
    staged: Option<Staged>,
}

/// Frames waiting to be written to the TAP, copied end to end.
struct Staged {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

/// Bytes of frames a lane stages before it writes them under the lock.
const STAGED_BYTES: usize = 512 << 10;
/// Frames a lane stages before it writes them under the lock.
const STAGED_FRAMES: usize = BATCH * 4;

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
        }
    }

    /// Writes the staged frames to the TAP.
    fn write_staged(&mut self) {
        if let Some(st) = self.staged.as_mut() {
            self.io.tap_write_errors += st.write_to(&self.tap);
        }
    }
}

impl Staged {
    /// Writes the frames to `tap` in order and empties the stage; returns
    /// how many writes failed.
    fn write_to(&mut self, tap: &TapQueue) -> u64 {
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

/// [`Transmit`] over a `sendmmsg` batch (flushed when full) and the TCP
/// connections' queues.
struct UdpTx<'a> {
    sock: &'a UdpSocket,
    tcp: &'a mut Conns,
    batch: &'a mut SendBatch,
    spill: &'a mut [u8],
    spilled: bool,
    errors: &'a mut u64,
    now: Instant,
}

impl<'a> UdpTx<'a> {
    fn new(
        sock: &'a UdpSocket,
        tcp: &'a mut Conns,
        out: &'a mut OutBufs,
        errors: &'a mut u64,
        now: Instant,
    ) -> Self {
        UdpTx {
            sock,
            tcp,
            batch: &mut out.batch,
            spill: &mut out.spill,
            spilled: false,
            errors,
            now,
        }
    }

    fn flush(&mut self) {
        let r = self.sock.send_batch(self.batch);
        *self.errors += r.dropped as u64;
    }
}

impl Transmit for UdpTx<'_> {
    fn buffer(&mut self) -> &mut [u8] {
        if self.batch.is_full() {
            self.flush();
            if self.batch.is_full() {
                // Socket buffer full: wait briefly for room rather than drop.
                let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(20u8));
                self.flush();
            }
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
struct TapOut<'a> {
    tap: &'a TapQueue,
    staged: Option<&'a mut Staged>,
    /// Failed TAP writes.
    errors: &'a mut u64,
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
struct Out<'a> {
    tap: TapOut<'a>,
    tx: UdpTx<'a>,
    tunnel: &'a mut Tunnel,
    lease_store: &'a mut crate::leases::LeaseStore,
    now: Instant,
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

/// The `sendmmsg` batch, and where a datagram goes when it is full.
struct OutBufs {
    batch: SendBatch,
    spill: Vec<u8>,
}

struct Buffers {
    rx: RecvBatch,
    out: OutBufs,
    /// TAP frames read and not yet handled, and their lengths.
    frames: Vec<Vec<u8>>,
    lens: [usize; TAP_READS],
    hub: Vec<u8>,
    /// A message from a TCP connection.
    record: Vec<u8>,
    /// TCP connections with something to read.
    readable: Vec<usize>,
}

/// The core's lock. A panic never leaves a batch half applied in a way
/// the other workers could not go on from, so a poisoned lock is taken as
/// it is.
fn lock(core: &Mutex<Worker>) -> MutexGuard<'_, Worker> {
    core.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the link's workers until a signal or a `down` request: the first on
/// this thread with lane `first`, one thread for each of the `others`,
/// stopped and joined before this returns. `tcp` is a duplicate of the TCP
/// transport's epoll descriptor (the first worker polls it without holding
/// the lock). Gives the core and the first lane back (for the last lease
/// replies).
pub fn run(
    worker: Worker,
    mut first: Lane,
    others: Vec<Lane>,
    signals: SignalFd,
    tcp: OwnedFd,
) -> (Worker, Lane, Exit) {
    let core = Arc::new(Mutex::new(worker));
    let mut helpers = Vec::new();
    let stop = match EventFd::new() {
        Ok(fd) => Some(Arc::new(fd)),
        Err(e) => {
            tracing::warn!("cannot create the workers' stop eventfd: {e}; running one worker");
            None
        }
    };
    for (i, lane) in others.into_iter().enumerate() {
        let Some(stop) = stop.clone() else { break };
        let core = core.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("worker-{}", i + 1))
            .spawn(move || other_worker(&core, lane, &stop));
        match spawned {
            Ok(h) => helpers.push(h),
            // Its TAP queue and socket are closed: the kernel stops
            // steering flows and datagrams to them.
            Err(e) => tracing::warn!("cannot start worker {}: {e}; running without it", i + 1),
        }
    }
    let exit = first_worker(&core, &mut first, &signals, &tcp);
    if let Some(stop) = &stop {
        let _ = stop.write(1);
    }
    for h in helpers {
        if h.join().is_err() {
            tracing::error!("a worker thread panicked");
        }
    }
    let Ok(core) = Arc::try_unwrap(core) else {
        unreachable!("every worker thread was joined");
    };
    let worker = core.into_inner().unwrap_or_else(PoisonError::into_inner);
    (worker, first, exit)
}

/// The first worker: its lane, then under the lock everything else.
fn first_worker(core: &Mutex<Worker>, lane: &mut Lane, signals: &SignalFd, tcp: &OwnedFd) -> Exit {
    let (waker, peers) = {
        let w = lock(core);
        (w.waker.clone(), w.tunnel.peer_count())
    };
    let mut logged: Vec<PeerStats> = vec![PeerStats::default(); peers];
    loop {
        let now = Instant::now();
        let wait = {
            let mut w = lock(core);
            // Fed here, once per wake-up: a wedged loop starves the watchdog.
            let feed = w.sd.watchdog_tick(now).unwrap_or(Duration::MAX);
            let wait = w
                .next_deadline()
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1))
                .min(feed);
            w.asleep_until = Some(now + wait);
            wait
        };
        // Round up so a timer is never polled for before it is due.
        let ms = (wait.as_micros().div_ceil(1000)) as u16;
        let want_out = lane.b.out.batch.pending() > 0;
        let [tap_ready, udp_ready, woken, signalled, tcp_ready] = ready(
            &mut [
                PollFd::new(lane.tap.as_fd(), PollFlags::POLLIN),
                PollFd::new(lane.udp.as_fd(), udp_events(want_out)),
                PollFd::new(waker.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(tcp.as_fd(), PollFlags::POLLIN),
            ],
            ms,
        );
        let now = Instant::now();
        let wall = SystemTime::now();
        // Awake: the others need not wake it until it sleeps again.
        lock(core).asleep_until = None;
        if signalled {
            match signals.read_signal() {
                Ok(Some(s)) if s.ssi_signo == nix::sys::signal::Signal::SIGHUP as u32 => {
                    // Answered in the log only.
                    let r = lock(core).reload(now, &mut logged, &lane.tap);
                    lane.io.count_reload(r.ok);
                }
                _ => return Exit::Signal,
            }
        }
        if udp_ready {
            drain_udp(core, lane, true, now, wall);
        }
        if tap_ready {
            drain_tap(core, lane, true, now, wall);
        }
        let mut guard = lock(core);
        let w = &mut *guard;
        w.tunnel.set_wall_clock(now, wall);
        // Refusals any worker's datagrams caused.
        w.log_arp_refusals(now);
        if tcp_ready {
            w.drain_tcp(lane, now);
        }
        if w.tcp.deadline().is_some_and(|t| t <= now) {
            w.tcp.expire(now);
        }
        if w.tunnel.poll_timeout().is_some_and(|t| t <= now) {
            let mut tx = tx!(w, lane, now);
            w.tunnel.handle_timeout(now, &mut tx);
        }
        w.bridge_timers(lane, now, wall);
        w.tcp.flush();
        for conn in w.tcp.take_closed() {
            w.tunnel.stream_closed(conn);
        }
        if w.log_events(&mut logged, now) {
            w.notify_peers();
        }
        w.re_resolve(now);
        if let Some(n) = w
            .bridge
            .responder_mut()
            .and_then(|r| r.take_pool_exhausted(wall))
        {
            tracing::warn!(unanswered = n, "DHCP pool exhausted, DISCOVERs unanswered");
        }
        if let Some(n) = w
            .bridge
            .responder_mut()
            .and_then(|r| r.take_unlogged_leases(wall))
        {
            tracing::info!(
                unlogged = n,
                "DHCP leases granted or released beyond {} a second, not logged one by one",
                crate::responder::dhcp::LEASE_LOG_PER_SEC
            );
        }
        let mut down = None;
        if woken {
            let _ = w.waker.read();
            w.take_resolved(now);
            while let Ok(cmd) = w.commands.try_recv() {
                match cmd.request {
                    Request::Down => {
                        down = Some(cmd.reply);
                        break;
                    }
                    Request::Status => {
                        let mut io = lane.io;
                        io.add(&w.lanes_io);
                        io.rx_bad_vnet_hdr += w.bridge.counters().rx_bad_vnet_hdr;
                        let t = w.tcp.counters();
                        (io.tcp_accepted, io.tcp_refused, io.tcp_dropped) =
                            (t.accepted, t.refused, t.dropped);
                        let status = status::status(
                            &w.info,
                            &w.tunnel,
                            w.bridge.responder(),
                            io,
                            w.bridge.guard_counters(),
                            now,
                            wall,
                        );
                        let _ = cmd.reply.send(Response {
                            ok: true,
                            status: Some(status),
                            ..Response::default()
                        });
                    }
                    Request::Leases => {
                        let _ = cmd.reply.send(Response {
                            ok: true,
                            leases: Some(status::leases(w.bridge.responder(), wall)),
                            ..Response::default()
                        });
                    }
                    Request::Reload => {
                        let r = w.reload(now, &mut logged, &lane.tap);
                        lane.io.count_reload(r.ok);
                        let _ = cmd.reply.send(r);
                    }
                }
            }
        }
        // Last, after the waker was read: a batch made durable since
        // wakes the next poll.
        lane.io.tap_write_errors += w.persist_leases(&lane.tap);
        drop(guard);
        lane.write_staged();
        if lane.b.out.batch.pending() > 0 {
            let r = lane.udp.send_batch(&mut lane.b.out.batch);
            lane.io.udp_send_errors += r.dropped as u64;
        }
        if let Some(reply) = down {
            return Exit::Down(reply);
        }
    }
}

/// Every worker but the first: its lane only, until `stop` is written.
fn other_worker(core: &Mutex<Worker>, mut lane: Lane, stop: &EventFd) {
    loop {
        let want_out = lane.b.out.batch.pending() > 0;
        let [tap_ready, udp_ready, stopped] = ready(
            &mut [
                PollFd::new(lane.tap.as_fd(), PollFlags::POLLIN),
                PollFd::new(lane.udp.as_fd(), udp_events(want_out)),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ],
            1000,
        );
        if stopped {
            return;
        }
        let now = Instant::now();
        let wall = SystemTime::now();
        if udp_ready {
            drain_udp(core, &mut lane, false, now, wall);
        }
        if tap_ready {
            drain_tap(core, &mut lane, false, now, wall);
        }
        if lane.b.out.batch.pending() > 0 {
            let r = lane.udp.send_batch(&mut lane.b.out.batch);
            if r.dropped > 0 {
                lock(core).lanes_io.udp_send_errors += r.dropped as u64;
            }
        }
    }
}

/// Polls `fds` for up to `ms` milliseconds; which of them are ready (none
/// when a signal interrupted the wait; an error is logged and slows the
/// loop down rather than spinning it).
fn ready<const N: usize>(fds: &mut [PollFd<'_>; N], ms: u16) -> [bool; N] {
    match poll(fds, PollTimeout::from(ms)) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return [false; N],
        Err(e) => {
            tracing::error!("poll failed: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::array::from_fn(|i| fds[i].revents().is_some_and(|f| !f.is_empty()))
}

/// What to poll the UDP socket for: room to send too while a batch waits.
fn udp_events(want_out: bool) -> PollFlags {
    if want_out {
        PollFlags::POLLIN | PollFlags::POLLOUT
    } else {
        PollFlags::POLLIN
    }
}

/// Reads `lane`'s socket (a few batches at most, so the TAP side is not
/// starved) and hands each batch to the core under its lock.
fn drain_udp(core: &Mutex<Worker>, lane: &mut Lane, first: bool, now: Instant, wall: SystemTime) {
    for _ in 0..4 {
        let n = match lane.udp.recv_batch(&mut lane.b.rx) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("UDP receive failed: {e}");
                return;
            }
        };
        let mut w = lock(core);
        w.tunnel.set_wall_clock(now, wall);
        w.take_datagrams(lane, n, now);
        if !first {
            w.hand_over(&mut lane.io, false);
        }
        drop(w);
        lane.write_staged();
        if n < lane.b.rx.capacity() {
            return;
        }
    }
}

/// Reads `lane`'s TAP queue, [`TAP_READS`] frames at a time (up to
/// [`BATCH`]), and hands each group to the core under its lock.
fn drain_tap(core: &Mutex<Worker>, lane: &mut Lane, first: bool, now: Instant, wall: SystemTime) {
    for _ in 0..BATCH / TAP_READS {
        let mut count = 0;
        while count < TAP_READS {
            match lane.tap.read(&mut lane.b.frames[count]) {
                Ok(n) => {
                    lane.b.lens[count] = n;
                    count += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("TAP read failed: {e}");
                    break;
                }
            }
        }
        if count == 0 {
            return;
        }
        let mut w = lock(core);
        w.tunnel.set_wall_clock(now, wall);
        let answered = w.take_frames(lane, count, now, wall);
        if !first {
            w.hand_over(&mut lane.io, answered);
        }
        drop(w);
        if count < TAP_READS {
            return;
        }
    }
}

impl Worker {
    /// The earliest timer of the core, the TCP connections and the held
    /// replies: when the first worker must be awake.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.tunnel.poll_timeout(),
            self.bridge.poll_timeout(),
            self.tcp.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// After another worker's batch: takes its counts, sends what it queued
    /// on TCP connections, and wakes the first worker when it left work for
    /// it (session events, a timer due before the first worker planned to
    /// wake, or `answered`: a frame the responder answered or took, whose
    /// lease changes must be made durable).
    fn hand_over(&mut self, io: &mut IoCounters, answered: bool) {
        self.lanes_io.add(io);
        *io = IoCounters::default();
        self.tcp.flush();
        // The first worker reads the deadlines under the lock just before
        // it sleeps, so only a deadline that came after that can be missed.
        // Events and answers may come after it looked for them and before
        // it sleeps, so those always wake it (rare: at worst one more turn
        // of its loop).
        let sooner = self
            .asleep_until
            .is_some_and(|a| self.next_deadline().is_some_and(|t| t < a));
        if answered || sooner || self.tunnel.has_events() {
            // Woken already if this fails: an eventfd only fails when full.
            let _ = self.waker.write(1);
            // Once is enough until it sleeps again.
            self.asleep_until = None;
        }
    }

    /// Hands `n` datagrams of `lane`'s receive batch to the tunnel, and the
    /// frames they carry to the local side and (a hub) the other peers.
    fn take_datagrams(&mut self, lane: &mut Lane, n: usize, now: Instant) {
        for i in 0..n {
            // With UDP_GRO one buffer may hold several datagrams of one size.
            let local = lane.b.rx.local_ip(i);
            let Some((bufs, from, seg)) = lane.b.rx.get_segmented(i) else {
                continue;
            };
            for buf in bufs.chunks_mut(seg) {
                let mut tx = tx!(self, lane, now);
                // `packet` is the virtio-net header (if any) and the frame.
                let crate::tunnel::Incoming::Frame {
                    peer,
                    frame: packet,
                } = self
                    .tunnel
                    .handle_datagram_at(from, local, buf, now, &mut tx)
                else {
                    continue;
                };
                let Some(relay) = self
                    .bridge
                    .from_peer(peer, packet, now, &mut tap_out!(lane))
                else {
                    continue;
                };
                // The frame borrows the tunnel: copied out before it is
                // sent on.
                let len = packet.len();
                lane.b.hub[..len].copy_from_slice(packet);
                relay!(self, lane, relay, len, now);
            }
        }
    }

    /// Reads the TCP connections that have data: accepts, completes
    /// connects, then hands each record to the tunnel (a bounded number per
    /// connection and wake-up, so one busy connection starves nobody).
    fn drain_tcp(&mut self, lane: &mut Lane, now: Instant) {
        self.tcp.poll(now, &mut lane.b.readable);
        for i in 0..lane.b.readable.len() {
            let slot = lane.b.readable[i];
            for _ in 0..BATCH {
                let (conn, len) = match self.tcp.read_record(slot, &mut lane.b.record) {
                    Read::Message(conn, len) => (conn, len),
                    Read::Again | Read::Closed => break,
                };
                let mut tx = tx!(self, lane, now);
                let incoming =
                    self.tunnel
                        .handle_record(conn, &mut lane.b.record[..len], now, &mut tx);
                let frame = match incoming {
                    crate::tunnel::Incoming::Frame { peer, frame } => Some((peer, frame)),
                    crate::tunnel::Incoming::Nothing => None,
                };
                let relay = frame.and_then(|(peer, packet)| {
                    let relay = self
                        .bridge
                        .from_peer(peer, packet, now, &mut tap_out!(lane))?;
                    lane.b.hub[..packet.len()].copy_from_slice(packet);
                    Some((relay, packet.len()))
                });
                self.tcp.handled(slot, self.tunnel.authenticated_sender());
                if let Some((relay, len)) = relay {
                    relay!(self, lane, relay, len, now);
                }
            }
        }
    }

    /// Hands the first `count` frames read from `lane`'s TAP queue to the
    /// bridge. Returns whether the responder answered or took any of them.
    fn take_frames(
        &mut self,
        lane: &mut Lane,
        count: usize,
        now: Instant,
        wall: SystemTime,
    ) -> bool {
        let mut answered = false;
        for i in 0..count {
            let n = lane.b.lens[i];
            let mut out = out!(self, lane, now);
            let packet = &mut lane.b.frames[i][..n];
            answered |= self.bridge.from_tap(packet, now, wall, &mut out) == TapOutcome::Answered;
        }
        answered
    }

    /// Re-reads the config and key files and applies what changed (see
    /// [`crate::reload`]): all of it, or on any error nothing. Logged, and
    /// answered with one line per change. systemd is told it is reloading,
    /// and the peer count afterwards.
    fn reload(&mut self, now: Instant, logged: &mut Vec<PeerStats>, tap: &TapQueue) -> Response {
        self.sd.reloading();
        let response = self.apply_reload(now, logged, tap);
        self.sd.reloaded();
        self.notify_peers();
        response
    }

    fn apply_reload(
        &mut self,
        now: Instant,
        logged: &mut Vec<PeerStats>,
        tap: &TapQueue,
    ) -> Response {
        let result = crate::reload::plan(&self.config, &self.keys)
            .and_then(|plan| self.apply(plan, now, logged, tap));
        match result {
            Ok(lines) => {
                if lines.is_empty() {
                    tracing::info!("reload: no change");
                }
                for line in &lines {
                    tracing::info!("reload: {line}");
                }
                Response {
                    ok: true,
                    changes: Some(lines),
                    ..Response::default()
                }
            }
            Err(e) => {
                tracing::warn!("reload refused: {e}");
                Response {
                    config_error: true,
                    ..Response::error(e.to_string())
                }
            }
        }
    }

    /// Puts `plan` in place. What can fail (the new responder, the new
    /// lease file, the new metrics address) is prepared first; after that
    /// nothing can fail and everything is applied.
    fn apply(
        &mut self,
        plan: Plan,
        now: Instant,
        logged: &mut Vec<PeerStats>,
        tap: &TapQueue,
    ) -> Result<Vec<String>, ReloadError> {
        let path = plan.config.path.clone();
        // 1. Fallible preparation; nothing running is touched.
        let responder = if plan.responder {
            Some(self.next_responder(&plan.config)?)
        } else {
            None
        };
        let metrics = if plan.metrics {
            Some(match &plan.config.metrics {
                Some(m) => Some(
                    MetricsServer::start(m.listen, self.to_worker.clone(), self.waker.clone())
                        .map_err(|e| ReloadError::apply(&path, "metrics", e.to_string()))?,
                ),
                None => None,
            })
        } else {
            None
        };
        let t = &plan.config.tunnel;
        if plan.transport && t.transport.listens_on_tcp() {
            // The last fallible step: nothing is changed if it fails.
            let listen = self.info.listen;
            self.tcp.listen(listen, true).map_err(|e| {
                ReloadError::apply(
                    &path,
                    "tunnel",
                    format!("cannot listen on TCP {listen}: {e}"),
                )
            })?;
        }
        // 2. Apply; nothing below fails.
        for change in plan.peers {
            match change {
                PeerChange::Removed { name } => {
                    if let Some(id) = self.tunnel.peer_id(&name) {
                        let endpoint = self.tunnel.peer_status(id).and_then(|s| s.endpoint);
                        self.tunnel.remove_peer(id, now);
                        self.bridge.forget_peer(id, now);
                        // Its session ends here: peer_down, if it was up (the
                        // hooks of the configuration it was removed from).
                        self.peer_hooks
                            .down(&name, endpoint, &self.config.hooks.peer_down);
                    }
                }
                PeerChange::Added {
                    name,
                    endpoints,
                    keys,
                } => {
                    for e in &endpoints {
                        self.resolve_now(&name, e, now);
                    }
                    let id = self.tunnel.add_peer(
                        PeerParams {
                            name,
                            keys,
                            // Names join the list when the resolver answers.
                            endpoints: endpoints.iter().filter_map(|e| e.addr()).collect(),
                        },
                        now,
                    );
                    if logged.len() <= id {
                        logged.resize(id + 1, PeerStats::default());
                    }
                    logged[id] = PeerStats::default();
                }
                PeerChange::Endpoint { name, endpoints } => {
                    if let Some(id) = self.tunnel.peer_id(&name) {
                        // A name has no address until the resolver thread
                        // answers; without any, the current one is kept.
                        let addrs: Vec<_> = endpoints.iter().map(|e| e.addr()).collect();
                        self.tunnel.set_peer_endpoints(id, &addrs, now);
                    }
                    for e in &endpoints {
                        self.resolve_now(&name, e, now);
                    }
                }
                PeerChange::Keys { name, keys } => {
                    if let Some(id) = self.tunnel.peer_id(&name) {
                        self.tunnel.set_peer_keys(id, keys, now);
                    }
                }
            }
        }
        let t = &plan.config.tunnel;
        if plan.timers {
            self.tunnel.set_timers(t.keepalive, t.rekey_after);
        }
        if plan.hub {
            self.bridge.set_hub(t.hub);
        }
        self.tcp.set_peers(self.tunnel.peer_count());
        self.bridge.set_peer_count(self.tunnel.peer_count());
        if plan.transport {
            self.tunnel.set_transport(t.transport, now);
            if !t.transport.listens_on_tcp() {
                self.tcp.close_all();
                let _ = self.tcp.listen(self.info.listen, false);
            }
        }
        if plan.guard {
            self.bridge.reconfigure_guard(&plan.config.guard, now);
        }
        if let Some((mut next, lease_file)) = responder {
            // Leases as they are now stay on disk whatever happens next.
            self.flush_leases(tap);
            if let (Some(n), Some(old)) = (next.as_mut(), self.bridge.replace_responder(None)) {
                n.take_over(old);
            }
            self.bridge.replace_responder(next);
            if self.lease_store.path() != lease_file.as_deref() {
                self.lease_store.close();
                let db = self
                    .bridge
                    .responder()
                    .map(|r| r.lease_db())
                    .unwrap_or_default();
                let store =
                    crate::leases::LeaseStore::open(lease_file.as_deref(), db, self.waker.clone());
                self.lease_store = store.unwrap_or_else(|e| {
                    tracing::error!("{e}; leases are not persisted");
                    Default::default()
                });
            }
            self.lease_file = lease_file;
        }
        if let Some(m) = metrics {
            // The old endpoint closes as the new one takes over.
            self.metrics = m;
        }
        self.config = plan.config;
        self.keys = plan.keys;
        Ok(plan.lines)
    }

    /// The responder for `cfg`, carrying over the running one's leases and
    /// state where they still fit, and its lease file; `None` without
    /// `[arp]` and `[dhcp]`. A new lease file is written before anything
    /// changes, so the leases are never only in memory.
    fn next_responder(
        &self,
        cfg: &crate::config::Config,
    ) -> Result<(Option<Responder>, Option<PathBuf>), ReloadError> {
        let lease_file = cfg.dhcp.as_ref().map(|d| d.lease_file.clone());
        let Some((arp, dhcp)) = crate::daemon::responder_settings(cfg, self.info.interface.mac)
        else {
            return Ok((None, None));
        };
        let section = if cfg.dhcp != self.config.dhcp {
            "dhcp"
        } else {
            "arp"
        };
        let refuse = |m: String| ReloadError::apply(&cfg.path, section, m);
        // The running lease table when DHCP keeps running; the lease file,
        // as at start-up, when it starts.
        let running_dhcp = self.config.dhcp.is_some();
        let leases = match (self.bridge.responder(), &lease_file) {
            (Some(r), _) if running_dhcp => r.lease_db(),
            (_, Some(f)) => crate::leases::load(f).map_err(|e| refuse(e.to_string()))?,
            _ => Default::default(),
        };
        let next = Responder::new(arp, dhcp, leases).map_err(|e| refuse(e.to_string()))?;
        if let (Some(file), Some(bytes)) = (&lease_file, next.lease_snapshot())
            && self.lease_file.as_ref() != Some(file)
        {
            crate::leases::write_lease_file_atomic(file, &bytes)
                .map_err(|e| refuse(e.to_string()))?;
        }
        Ok((Some(next), lease_file))
    }

    /// Makes the Linux bridge the TAP is enslaved to forget the MACs it
    /// learned on the TAP's port (a loop started or ended, so those hosts
    /// may be reachable only the other way now: without this, local hosts
    /// keep sending into the TAP until the bridge's entries age out). Rare:
    /// a netlink connection is opened for it.
    fn flush_bridge_port(&self) {
        if self.info.interface.bridge.is_none() {
            return;
        }
        let name = &self.info.interface.name;
        let flushed = crate::netlink::Netlink::new()
            .map_err(|e| e.to_string())
            .and_then(|mut nl| {
                let link = nl
                    .link_by_name(name)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("{name} is gone"))?;
                nl.flush_bridge_port(link.index).map_err(|e| e.to_string())
            });
        if let Err(e) = flushed {
            tracing::warn!("could not make the bridge forget the MACs behind {name}: {e}");
        }
    }

    /// Tells systemd how many peers are up (on peer events, not per frame).
    fn notify_peers(&mut self) {
        if !self.sd.enabled() {
            return;
        }
        let n = self.tunnel.peer_count();
        let up = (0..n)
            .filter_map(|p| self.tunnel.peer_status(p))
            .filter(|s| s.state == crate::tunnel::PeerState::Up)
            .count();
        let status = format!(
            "link up, {n} peer{}, {up} up",
            if n == 1 { "" } else { "s" }
        );
        self.sd.status(&status);
    }

    /// The bridge's timers (loop probes and hold-downs, the responder's
    /// own frames: see [`Bridge::handle_timeout`]), then its events: a loop
    /// start or end is logged with the peer (at most one of each per peer
    /// and hold-down) and makes the Linux bridge forget what it learned on
    /// the TAP's port.
    fn bridge_timers(&mut self, lane: &mut Lane, now: Instant, wall: SystemTime) {
        let mut out = out!(self, lane, now);
        self.bridge.handle_timeout(now, wall, &mut out);
        if let Some(c) = self
            .bridge
            .responder_mut()
            .and_then(|r| r.take_conflict_log(now))
        {
            tracing::warn!(
                conflicts = c.count,
                ip = %c.ip,
                mac = %c.mac,
                "DHCP address in use by another host, not offered"
            );
        }
        while let Some(bridge::Event::Loop(ev)) = self.bridge.poll_event() {
            self.flush_bridge_port();
            match ev {
                guard::Event::LoopStarted { peer, hold } => tracing::warn!(
                    peer = %self.peer_name(peer),
                    loops_detected = self.bridge.guard_counters().loops_detected,
                    "forwarding loop: the probe sent to this peer came back through the TAP, so \
                     its LAN also reaches ours another way; nothing but probes is exchanged with \
                     it until that path has been gone for {}s (other peers are not affected)",
                    hold.as_secs()
                ),
                guard::Event::LoopEnded { peer, lasted } => tracing::info!(
                    peer = %self.peer_name(peer),
                    "forwarding loop gone after {}s; frames to and from this peer flow again",
                    lasted.as_secs()
                ),
            }
        }
    }

    /// A peer's configured name, for the log ("-" if there is none).
    fn peer_name(&self, p: PeerId) -> String {
        self.tunnel
            .peer_status(p)
            .map_or_else(|| "-".into(), |s| s.name)
    }

    /// One log line per session event, with the traffic since the previous
    /// event of that peer: the audit trail. Returns whether a peer's state
    /// may have changed. Also feeds the path MTU search the kernel's limit
    /// towards a peer when its path may have changed.
    fn log_events(&mut self, logged: &mut Vec<PeerStats>, now: Instant) -> bool {
        let mut changed = false;
        while let Some(ev) = self.tunnel.poll_event() {
            let peer: PeerId = match &ev {
                Event::HandshakeCompleted { peer, .. }
                | Event::PeerDown { peer }
                | Event::EndpointMoved { peer, .. } => *peer,
                Event::PathMtuChanged { peer, mtu, lost } => {
                    let (peer, mtu, lost) = (*peer, *mtu, *lost);
                    let Some(st) = self.tunnel.peer_status(peer) else {
                        continue;
                    };
                    if lost {
                        tracing::warn!(
                            peer = %st.name, mtu,
                            "path MTU lowered: larger packets were lost or the route is narrower"
                        );
                        // The kernel may know the limit (an ICMP that did arrive).
                        self.refresh_path_ceiling(peer, st.endpoint, now);
                    } else {
                        tracing::debug!(peer = %st.name, mtu, "path MTU");
                    }
                    continue;
                }
                Event::TransportChanged { peer, tcp } => {
                    let (peer, tcp) = (*peer, *tcp);
                    if let Some(st) = self.tunnel.peer_status(peer) {
                        if tcp {
                            tracing::warn!(
                                peer = %st.name,
                                "transport: TCP (UDP handshakes went unanswered, or the peer \
                                 came over TCP)"
                            );
                        } else {
                            tracing::info!(peer = %st.name, "transport: UDP");
                        }
                    }
                    changed = true;
                    continue;
                }
                Event::HandshakeRefused { from, peer, reason } => {
                    // The tunnel reports only a few per second.
                    let name = peer.map_or_else(|| "-".into(), |p| self.peer_name(p));
                    tracing::warn!(%from, peer = %name, "handshake refused: {reason}");
                    continue;
                }
            };
            changed = true;
            let Some(st) = self.tunnel.peer_status(peer) else {
                continue;
            };
            if logged.len() <= peer {
                logged.resize(peer + 1, PeerStats::default());
            }
            let prev = logged[peer];
            let (txf, rxf) = (
                st.stats.tx_frames.saturating_sub(prev.tx_frames),
                st.stats.rx_frames.saturating_sub(prev.rx_frames),
            );
            let (txb, rxb) = (
                st.stats.tx_bytes.saturating_sub(prev.tx_bytes),
                st.stats.rx_bytes.saturating_sub(prev.rx_bytes),
            );
            logged[peer] = st.stats;
            let endpoint = st
                .endpoint
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into());
            if matches!(
                ev,
                Event::HandshakeCompleted { rekey: false, .. } | Event::EndpointMoved { .. }
            ) {
                self.refresh_path_ceiling(peer, st.endpoint, now);
            }
            let hooks = &self.config.hooks;
            match ev {
                Event::HandshakeCompleted { .. } => {
                    self.peer_hooks
                        .handshake(&st.name, st.endpoint, &hooks.peer_up);
                }
                Event::PeerDown { .. } => {
                    self.peer_hooks
                        .down(&st.name, st.endpoint, &hooks.peer_down);
                }
                _ => {}
            }
            match ev {
                // A 30-peer hub rekeys ~21,600 times a day: rekeys are debug.
                Event::HandshakeCompleted { rekey: true, .. } => tracing::debug!(
                    peer = %st.name, %endpoint, tx_frames = txf, rx_frames = rxf, tx_bytes = txb,
                    rx_bytes = rxb, "rekey completed"
                ),
                Event::HandshakeCompleted { rekey: false, .. } => tracing::info!(
                    peer = %st.name, %endpoint, tx_frames = txf, rx_frames = rxf, tx_bytes = txb,
                    rx_bytes = rxb, "handshake completed"
                ),
                Event::PeerDown { .. } => {
                    // Its TCP connections are presumed dead: the next
                    // handshake opens a fresh one.
                    self.tcp.close_peer(peer);
                    // Its ARP bindings may be stale now: no longer answered.
                    self.bridge.peer_down(peer);
                    tracing::warn!(
                        peer = %st.name, %endpoint, tx_frames = txf, rx_frames = rxf,
                        tx_bytes = txb, rx_bytes = rxb,
                        "peer down: nothing heard for three keepalive intervals"
                    )
                }
                Event::EndpointMoved { from, to, .. } => tracing::info!(
                    peer = %st.name, from = %from.map(|f| f.to_string()).unwrap_or_else(|| "-".into()),
                    %to, tx_frames = txf, rx_frames = rxf, tx_bytes = txb, rx_bytes = rxb,
                    "endpoint moved"
                ),
                Event::HandshakeRefused { .. }
                | Event::PathMtuChanged { .. }
                | Event::TransportChanged { .. } => {}
            }
        }
        changed
    }

    /// Tells the tunnel the kernel's MTU towards peer `id` at `endpoint`
    /// (the ceiling of its path MTU search; a no-op for a pinned MTU).
    fn refresh_path_ceiling(&mut self, id: PeerId, endpoint: Option<SocketAddr>, now: Instant) {
        if let Some(mtu) = endpoint.and_then(super::udp::route_mtu) {
            self.tunnel.set_path_ceiling(id, mtu, now);
        }
    }

    /// Hands this wake-up's lease changes to the lease store and sends the
    /// replies whose changes are durable by now. Returns failed TAP writes.
    fn persist_leases(&mut self, tap: &TapQueue) -> u64 {
        self.bridge.take_lease_changes(&mut self.lease_changes);
        self.lease_store.commit(&mut self.lease_changes);
        self.lease_store.send_durable(|frame| tap.write(frame))
    }

    /// Makes every lease change so far durable and sends the replies held
    /// for them (blocks on the disk: a reload, shutdown).
    fn flush_leases(&mut self, tap: &TapQueue) {
        self.bridge.take_lease_changes(&mut self.lease_changes);
        self.lease_store
            .flush(&mut self.lease_changes, |frame| tap.write(frame));
    }

    /// Logs the ARP bindings from the tunnel the responder refused (at most
    /// one line per [`crate::responder::REFUSAL_LOG_INTERVAL`]).
    fn log_arp_refusals(&mut self, now: Instant) {
        let Some(l) = self
            .bridge
            .responder_mut()
            .and_then(|r| r.take_refusal_log(now))
        else {
            return;
        };
        let peer = self.peer_name(l.peer);
        tracing::warn!(
            refused = l.count, ip = %l.ip, mac = %l.mac, %peer,
            "ARP/ND bindings from the tunnel refused: {}", l.reason
        );
    }

    /// Makes the leases durable, sends the replies held for them, and
    /// leaves everything in the lease file (at shutdown).
    pub fn persist_leases_final(&mut self, tap: &TapQueue) {
        self.flush_leases(tap);
        self.lease_store.close();
    }
}
