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
use crate::control::server::Command;
use crate::control::status::{self, IoCounters, StaticLinkInfo};
use crate::control::{Request, Response};
use crate::guard::{self, Guard, PeerVerdict};
use crate::mac::MacAddr;
use crate::metrics::MetricsServer;
use crate::reload::{PeerChange, Plan, ReloadError};
use crate::responder::{LocalVerdict, OwnFrame, RemoteVerdict, Responder};
use crate::switch::{LocalRoute, Port, Switch};
use crate::tunnel::{Event, PeerId, PeerParams, PeerStats, Transmit, Tunnel};
use crate::wire::ethernet;
use crate::wire::virtio::{F_NEEDS_CSUM, VirtioNetHdr};

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
    /// The learning switch.
    pub switch: Switch,
    /// Storm control, loop detection, DHCP/RA guards, BPDU policy.
    pub guard: Guard,
    /// The local ARP/DHCP responder.
    pub responder: Option<Responder>,
    /// Where leases are persisted.
    pub lease_file: Option<PathBuf>,
    /// Makes lease changes durable off this thread; holds the ACKs that
    /// wait for it.
    pub lease_store: super::lease_store::LeaseStore,
    /// Length of the virtio-net header before each TAP frame (0 without
    /// offloads). The header travels through the tunnel with its frame.
    pub vnet_hdr: usize,
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
                reply: vec![0; FRAME_BUF],
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

/// The [`Edge`] a frame from a peer meets: `lane`'s TAP queue and stage and
/// `self`'s guards, switch and responder (disjoint field borrows, so the
/// frame may still borrow the tunnel).
macro_rules! edge {
    ($self:ident, $lane:ident) => {
        Edge {
            tap: &$lane.tap,
            staged: $lane.staged.as_mut(),
            guard: &mut $self.guard,
            switch: &mut $self.switch,
            responder: &mut $self.responder,
            vnet_hdr: $self.vnet_hdr,
        }
    };
}

/// Sends the frame in `lane`'s hub buffer (`len` bytes from peer `from`,
/// copied there by [`Edge::take_from_peer`]) on to the other peers `route`
/// names (a hub); never to a peer a loop runs through. A macro for the same
/// reason as `tx!`: `lane`'s receive buffers may still be borrowed.
macro_rules! relay {
    ($self:ident, $lane:ident, $from:expr, $route:expr, $len:expr, $now:ident) => {{
        let (from, route) = ($from, $route);
        let packet = &$lane.b.hub[..$len];
        let mut tx = tx!($self, $lane, $now);
        for p in 0..$self.tunnel.peer_count() {
            if p != from
                && (route.flood_peers || route.peer == Some(p))
                && $self.guard.allow_to_peer(p)
            {
                $self.tunnel.send_frame(p, packet, $now, &mut tx);
            }
        }
    }};
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
    reply: Vec<u8>,
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
        w.guard_timers(lane, now);
        w.responder_timers(lane, now, wall);
        w.tcp.flush();
        for conn in w.tcp.take_closed() {
            w.tunnel.stream_closed(conn);
        }
        if w.log_events(&mut logged, now) {
            w.notify_peers();
        }
        w.re_resolve(now);
        if let Some(n) = w
            .responder
            .as_mut()
            .and_then(|r| r.take_pool_exhausted(wall))
        {
            tracing::warn!(unanswered = n, "DHCP pool exhausted, DISCOVERs unanswered");
        }
        if let Some(n) = w
            .responder
            .as_mut()
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
                        let t = w.tcp.counters();
                        (io.tcp_accepted, io.tcp_refused, io.tcp_dropped) =
                            (t.accepted, t.refused, t.dropped);
                        let status = status::status(
                            &w.info,
                            &w.tunnel,
                            w.responder.as_ref(),
                            io,
                            w.guard.counters(),
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
                            leases: Some(status::leases(w.responder.as_ref(), wall)),
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
        let held = self.responder.as_ref().and_then(|r| r.poll_timeout());
        [
            self.tunnel.poll_timeout(),
            self.guard.poll_timeout(),
            self.tcp.deadline(),
            held,
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
                let mut edge = edge!(self, lane);
                let Some((route, len)) =
                    edge.take_from_peer(peer, packet, &mut lane.b.hub, &mut lane.io, now)
                else {
                    continue;
                };
                relay!(self, lane, peer, route, len, now);
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
                let mut edge = edge!(self, lane);
                let forward_to = frame.and_then(|(peer, packet)| {
                    edge.take_from_peer(peer, packet, &mut lane.b.hub, &mut lane.io, now)
                        .map(|r| (peer, r))
                });
                self.tcp.handled(slot, self.tunnel.authenticated_sender());
                if let Some((peer, (route, len))) = forward_to {
                    relay!(self, lane, peer, route, len, now);
                }
            }
        }
    }

    /// Handles the first `count` frames read from `lane`'s TAP queue: the
    /// responder, the guards, the switch, the tunnel. Returns whether the
    /// responder answered or took any of them.
    fn take_frames(
        &mut self,
        lane: &mut Lane,
        count: usize,
        now: Instant,
        wall: SystemTime,
    ) -> bool {
        let mut answered = false;
        let h = self.vnet_hdr;
        for i in 0..count {
            let n = lane.b.lens[i];
            if n < h + 14 {
                continue;
            }
            let read = &mut lane.b.frames[i];
            if let Some(r) = self.responder.as_mut() {
                if h > 0
                    && VirtioNetHdr::new_checked(&read[..h])
                        .is_some_and(|v| v.flags() & F_NEEDS_CSUM != 0)
                    && is_dhcp_to_server(&read[h..n])
                {
                    // The kernel may leave a UDP checksum for "hardware" to
                    // finish; the responder checks it, so finish it here.
                    crate::wire::virtio::finish_checksum(&mut read[..n]);
                }
                match r.handle_local(&read[h..n], now, wall, &mut lane.b.reply[h..]) {
                    LocalVerdict::Forward => {}
                    LocalVerdict::Consumed => {
                        answered = true;
                        continue;
                    }
                    LocalVerdict::Reply(len) => {
                        answered = true;
                        lane.b.reply[..h].fill(0); // plain frame: no offload
                        // An ACK waits until its lease is on disk (SPEC §5).
                        let reply = &lane.b.reply[..h + len];
                        if !self.lease_store.hold_reply(r, reply) && lane.tap.write(reply).is_err()
                        {
                            lane.io.tap_write_errors += 1;
                        }
                        continue;
                    }
                }
            }
            let packet = &lane.b.frames[i][..n];
            let frame = &packet[h..];
            if self.guard.from_local(frame, now) == guard::LocalVerdict::Drop {
                continue;
            }
            let dst: MacAddr = frame[..6].try_into().expect("14 bytes checked");
            let src: MacAddr = frame[6..12].try_into().expect("14 bytes checked");
            let vlan = ethernet::vlan(frame);
            if self.guard.watches_moves()
                && matches!(self.switch.port_of(vlan, src, now), Some(Port::Peer(_)))
            {
                self.guard.mac_moved(now);
            }
            let mut tx = tx!(self, lane, now);
            match self.switch.from_local(vlan, dst, src, now) {
                LocalRoute::Peer(p) => {
                    if self.guard.allow_to_peer(p) {
                        self.tunnel.send_frame(p, packet, now, &mut tx);
                    }
                }
                // Broadcast, multicast, unknown unicast: storm control.
                LocalRoute::Flood if !self.guard.allow_flood(now) => {}
                LocalRoute::Flood => {
                    for p in 0..self.tunnel.peer_count() {
                        if self.guard.allow_to_peer(p) {
                            self.tunnel.send_frame(p, packet, now, &mut tx);
                        }
                    }
                }
                LocalRoute::Drop => {}
            }
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
                        if let Some(r) = self.responder.as_mut() {
                            r.forget_peer(id);
                        }
                        self.switch.forget_peer(id);
                        self.guard.forget_peer(id, now);
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
            self.switch.set_hub(t.hub);
        }
        self.tcp.set_peers(self.tunnel.peer_count());
        self.guard.set_peer_count(self.tunnel.peer_count());
        if plan.transport {
            self.tunnel.set_transport(t.transport, now);
            if !t.transport.listens_on_tcp() {
                self.tcp.close_all();
                let _ = self.tcp.listen(self.info.listen, false);
            }
        }
        if plan.guard {
            self.guard.reconfigure(&plan.config.guard, now);
        }
        if let Some((mut next, lease_file)) = responder {
            // Leases as they are now stay on disk whatever happens next.
            self.flush_leases(tap);
            if let (Some(n), Some(old)) = (next.as_mut(), self.responder.take()) {
                n.take_over(old);
            }
            self.responder = next;
            if self.lease_store.path() != lease_file.as_deref() {
                self.lease_store.close();
                let db = self
                    .responder
                    .as_ref()
                    .map(|r| r.lease_db())
                    .unwrap_or_default();
                let store = super::lease_store::LeaseStore::open(
                    lease_file.as_deref(),
                    db,
                    self.waker.clone(),
                );
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
        let leases = match (&self.responder, &lease_file) {
            (Some(r), _) if running_dhcp => r.lease_db(),
            (_, Some(f)) => crate::daemon::load_leases(f).map_err(|e| refuse(format!("{e:#}")))?,
            _ => Default::default(),
        };
        let next = Responder::new(arp, dhcp, leases).map_err(|e| refuse(e.to_string()))?;
        if let (Some(file), Some(bytes)) = (&lease_file, next.lease_snapshot())
            && self.lease_file.as_ref() != Some(file)
        {
            super::lease_file::write_lease_file_atomic(file, &bytes)
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

    /// The guard's timers: ends the loops whose hold-down passed, sends
    /// every peer that is up its own loop probe when a round is due (only
    /// after a MAC moved between the local side and a peer, or during a
    /// loop), logs loop starts and ends with the peer (at most one of each
    /// per peer and hold-down) and flushes the MAC table on both.
    fn guard_timers(&mut self, lane: &mut Lane, now: Instant) {
        if self.guard.poll_timeout().is_none_or(|t| t > now) {
            return;
        }
        self.guard.handle_timeout(now);
        if self.guard.poll_probe(now) {
            let h = self.vnet_hdr;
            lane.b.hub[..h].fill(0); // plain frame: no offload
            for p in 0..self.tunnel.peer_count() {
                if self.tunnel.peer_state(p) != Some(crate::tunnel::PeerState::Up) {
                    continue;
                }
                // Each peer's probe names it: the one that comes back tells
                // whose LAN also reaches ours.
                let probe = self.guard.probe_for(p);
                let len = h + probe.len();
                lane.b.hub[h..len].copy_from_slice(probe);
                let mut tx = tx!(self, lane, now);
                self.tunnel.send_frame(p, &lane.b.hub[..len], now, &mut tx);
            }
        }
        while let Some(ev) = self.guard.poll_event() {
            self.switch.flush();
            self.flush_bridge_port();
            match ev {
                guard::Event::LoopStarted { peer, hold } => tracing::warn!(
                    peer = %self.peer_name(peer),
                    loops_detected = self.guard.counters().loops_detected,
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
                    if let Some(r) = self.responder.as_mut() {
                        r.forget_peer(peer);
                    }
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
        self.lease_store.commit(self.responder.as_mut());
        self.lease_store.send_durable(|frame| tap.write(frame))
    }

    /// Makes every lease change so far durable and sends the replies held
    /// for them (blocks on the disk: a reload, shutdown).
    fn flush_leases(&mut self, tap: &TapQueue) {
        self.lease_store
            .flush(self.responder.as_mut(), |frame| tap.write(frame));
    }

    /// Sends what the responder sends on its own (ARP probes of the DHCP
    /// conflict check: into the TAP and, as any broadcast, to the peers;
    /// held OFFERs: into the TAP) and logs the conflicts it found.
    fn responder_timers(&mut self, lane: &mut Lane, now: Instant, wall: SystemTime) {
        let Some(r) = self.responder.as_mut() else {
            return;
        };
        let h = self.vnet_hdr;
        while let Some(t) = r.poll_transmit(now, wall, &mut lane.b.reply[h..]) {
            lane.b.reply[..h].fill(0); // plain frame: no offload
            let (len, flood) = match t {
                OwnFrame::Local(n) => (n, false),
                OwnFrame::Probe(n) => (n, true),
            };
            let packet = &lane.b.reply[..h + len];
            if lane.tap.write(packet).is_err() {
                lane.io.tap_write_errors += 1;
            }
            if flood && self.guard.allow_flood(now) {
                let mut tx = tx!(self, lane, now);
                for p in 0..self.tunnel.peer_count() {
                    self.tunnel.send_frame(p, packet, now, &mut tx);
                }
            }
        }
        if let Some(c) = r.take_conflict_log(now) {
            tracing::warn!(
                conflicts = c.count,
                ip = %c.ip,
                mac = %c.mac,
                "DHCP address in use by another host, not offered"
            );
        }
    }

    /// Logs the ARP bindings from the tunnel the responder refused (at most
    /// one line per [`crate::responder::REFUSAL_LOG_INTERVAL`]).
    fn log_arp_refusals(&mut self, now: Instant) {
        let Some(l) = self
            .responder
            .as_mut()
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

/// The local side of the data path, as a frame from a peer meets it: the
/// guards, the responder, the switch and the TAP.
struct Edge<'a> {
    tap: &'a TapQueue,
    /// Where frames for the TAP wait for the lock to be released, if they do.
    staged: Option<&'a mut Staged>,
    guard: &'a mut Guard,
    switch: &'a mut Switch,
    responder: &'a mut Option<Responder>,
    vnet_hdr: usize,
}

impl Edge<'_> {
    /// Writes `packet` to the TAP, or stages it. When the stage is full,
    /// what it holds is written first: frames reach the TAP in order.
    fn write(&mut self, packet: &[u8], io: &mut IoCounters) {
        if let Some(st) = self.staged.as_deref_mut() {
            let fits = |st: &Staged| {
                st.buf.len() + packet.len() <= STAGED_BYTES && st.ends.len() < STAGED_FRAMES
            };
            if !fits(st) {
                io.tap_write_errors += st.write_to(self.tap);
            }
            if fits(st) {
                st.buf.extend_from_slice(packet);
                st.ends.push(st.buf.len());
                return;
            }
        }
        if self.tap.write(packet).is_err() {
            io.tap_write_errors += 1;
        }
    }

    /// Takes `packet` (virtio-net header and frame) from `peer`: checks it,
    /// lets the guards and the responder see it, writes it to the TAP if
    /// the switch says so. When it must also go to other peers (a hub),
    /// it is copied into `hub` and the route and length returned.
    fn take_from_peer(
        &mut self,
        peer: PeerId,
        packet: &[u8],
        hub: &mut [u8],
        io: &mut IoCounters,
        now: Instant,
    ) -> Option<(crate::switch::RemoteRoute, usize)> {
        let h = self.vnet_hdr;
        if packet.len() < h + 14 {
            return None;
        }
        if h > 0
            && !VirtioNetHdr::new_checked(&packet[..h]).is_some_and(|v| v.is_sane(packet.len() - h))
        {
            // The peer's kernel would never write this header; ours is not
            // handed what a buggy or hostile (but authenticated) peer made
            // up.
            io.rx_bad_vnet_hdr += 1;
            return None;
        }
        let frame = &packet[h..];
        match self.guard.from_peer(frame, peer, now) {
            PeerVerdict::Forward => {}
            PeerVerdict::Drop => return None,
            PeerVerdict::Probe => {
                // Out to our LAN only: if it comes back to the peer's TAP,
                // its LAN and ours are also joined.
                self.write(packet, io);
                return None;
            }
        }
        let dst: MacAddr = frame[..6].try_into().expect("14 bytes checked");
        let src: MacAddr = frame[6..12].try_into().expect("14 bytes checked");
        let vlan = ethernet::vlan(frame);
        if self.guard.watches_moves() && self.switch.port_of(vlan, src, now) == Some(Port::Local) {
            self.guard.mac_moved(now);
        }
        if let Some(r) = self.responder.as_mut() {
            if r.handle_remote(frame, peer, now) == RemoteVerdict::Drop {
                return None;
            }
        }
        let route = self.switch.from_peer(peer, vlan, dst, src, now);
        if route.local {
            self.write(packet, io);
        }
        if route.peer.is_none() && !route.flood_peers {
            return None;
        }
        // Hub: the frame borrows the tunnel; copy it out first.
        let len = packet.len();
        hub[..len].copy_from_slice(packet);
        Some((route, len))
    }
}

/// Is this an untagged IPv4 UDP frame to the DHCP server port (one the
/// responder parses, so its checksum must be complete)?
fn is_dhcp_to_server(frame: &[u8]) -> bool {
    let c = ethernet::classify(frame);
    c.untagged() && c.is_dhcpv4_to_server()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_dhcp_to_the_server_port() {
        let mut frame = vec![0u8; 14 + 20 + 8 + 4];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[16..18].copy_from_slice(&32u16.to_be_bytes());
        frame[14 + 9] = 17;
        frame[34..36].copy_from_slice(&68u16.to_be_bytes());
        frame[36..38].copy_from_slice(&67u16.to_be_bytes());
        frame[38..40].copy_from_slice(&12u16.to_be_bytes());
        assert!(is_dhcp_to_server(&frame));
        let mut tagged = frame[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0, 10]);
        tagged.extend_from_slice(&frame[12..]);
        assert!(
            !is_dhcp_to_server(&tagged),
            "the responder serves untagged only"
        );
        frame[37] = 68;
        assert!(!is_dhcp_to_server(&frame));
        assert!(!is_dhcp_to_server(&frame[..20]));
    }
}
