//! The workers: threads that move frames between the TAP, the UDP socket,
//! the tunnel and the bridge ([`crate::bridge`], which decides where each
//! frame goes). The workers make the system calls and decide nothing.
//!
//! A link has `tunnel.workers` of them. Each owns a [`Lane`]: one queue of
//! the multi-queue TAP and one UDP socket in the listen port's
//! `SO_REUSEPORT` group. A steering program picks the socket by a
//! datagram's source ([`super::udp::steer`]), so a peer stays on one worker;
//! the TAP picks the queue of a flow's frames by where its replies were
//! written, so the flow stays there too, and in order. The core (tunnel and
//! bridge) is one [`Worker`] behind a mutex: a worker does its system calls
//! (`recvmmsg`, TAP reads, `sendmmsg`) without it and takes it once per
//! batch to handle what it read; if that batch accepted handshake
//! initiations, it runs their responses' X25519 work after letting the lock
//! go and takes it once more to send them (`crate::tunnel::HandshakeJob`). The first worker also runs everything
//! else: timers, the TCP transport, session events, control requests
//! (`control`), leases and the log (`events`). The others wake it when they
//! leave it something to do sooner than it planned to wake. Reading a
//! reload's files and the Linux bridge's netlink flush happen without the
//! lock.
//!
//! One wake-up handles bounded batches: up to [`BATCH`] datagrams per
//! `recvmmsg`, the TAP (at once again after writing to it: the local
//! stack's answer is already there), one `sendmmsg` of what they made
//! ready, then (first worker) timers, session events, control requests.
//! The clock is read once per wake-up. Buffers are allocated once; the
//! steady state allocates nothing per frame (tests/no_alloc.rs drives the
//! bridge and tunnel with a counting allocator).

#[macro_use]
mod out;
mod control;
mod drain;
mod events;
mod lane;
mod partner;

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::EventFd;
use nix::sys::signalfd::SignalFd;

use control::{commands, flush_bridge_port, reload};
use drain::{drain_tap, drain_udp};
pub use lane::Lane;
use out::{Out, TapOut, UdpTx};
pub use partner::PartnerLink;

use super::tcp::{Conns, Read};
use crate::bridge::{Bridge, TapOutcome};
use crate::control::Response;
use crate::control::server::Command;
use crate::control::status::{IoCounters, StaticLinkInfo};
use crate::leases::LeaseChange;
use crate::metrics::MetricsServer;
use crate::tunnel::{PeerStats, Tunnel};

/// Datagrams or frames handled per batch.
pub const BATCH: usize = 64;
/// Largest frame read from the TAP: a 64 KiB GSO batch with its Ethernet,
/// VLAN and virtio headers.
const FRAME_BUF: usize = 65536 + 256;
/// TAP frames read before the core's lock is taken to handle them.
const TAP_READS: usize = 16;
/// Send slots a TAP frame may need: a 64 KiB GSO batch cut into segments
/// for a small path MTU. A frame is taken under the lock only when its lane's
/// send batch has this much room (see [`drain_tap`]).
const FRAME_DATAGRAMS: usize = 64;
/// How long a lane waits, off the lock, for its full socket to take more.
const SEND_WAIT_MS: u8 = 20;
/// Longest the first worker goes without its whole bookkeeping while
/// frames keep it awake (what has no deadline: the logs of refused ARP
/// bindings and of leases, re-resolving peer names).
const BOOKKEEPING: Duration = Duration::from_millis(10);

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
    /// A loop started or ended: the Linux bridge must forget what it learned
    /// on the TAP's port (done by the first worker once the lock is
    /// released: it is netlink I/O).
    pub bridge_port_stale: bool,
    /// The partner channel of a high-availability pair (`ha.partner`).
    pub partner: Option<PartnerLink>,
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
    let (waker, peers, port, partner) = {
        let w = lock(core);
        let i = &w.info.interface;
        let port = i.bridge.is_some().then(|| i.name.clone());
        // A duplicate of the partner socket to poll without the lock.
        let partner = w
            .partner
            .as_ref()
            .and_then(|p| p.as_fd().try_clone_to_owned().ok());
        (w.waker.clone(), w.tunnel.peer_count(), port, partner)
    };
    let mut logged: Vec<PeerStats> = vec![PeerStats::default(); peers];
    // When the bookkeeping last ran in full.
    let mut kept = Instant::now();
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
        // Without a partner channel its place is taken by the waker again
        // (already polled: harmless).
        let partner_fd = partner.as_ref().map_or(waker.as_fd(), |f| f.as_fd());
        let before = Instant::now();
        let [
            tap_ready,
            udp_ready,
            woken,
            signalled,
            tcp_ready,
            partner_ready,
        ] = ready(
            &mut [
                PollFd::new(lane.tap.as_fd(), PollFlags::POLLIN),
                PollFd::new(lane.udp.as_fd(), udp_events(want_out)),
                PollFd::new(waker.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(tcp.as_fd(), PollFlags::POLLIN),
                PollFd::new(partner_fd, PollFlags::POLLIN),
            ],
            ms,
        );
        lane.waited(before, tap_ready);
        let now = Instant::now();
        let wall = SystemTime::now();
        // Awake: the others need not wake it until it sleeps again.
        lock(core).asleep_until = None;
        if signalled {
            match signals.read_signal() {
                Ok(Some(s)) if s.ssi_signo == nix::sys::signal::Signal::SIGHUP as u32 => {
                    // Answered in the log only.
                    let r = reload(core, now, &mut logged, &lane.tap);
                    lane.io.count_reload(r.ok);
                }
                _ => return Exit::Signal,
            }
        }
        let written = lane.tap.frames_written();
        if udp_ready {
            drain_udp(core, lane, true, now, wall);
        }
        if tap_ready || lane.tap.frames_written() != written {
            drain_tap(core, lane, true, now, wall);
        }
        // What the batches made ready leaves before the timers and the
        // bookkeeping below run. Whoever a lone frame's send woke (the peer
        // daemon, or the application a datagram was for) was most likely
        // queued on this CPU behind us: it runs first, the bookkeeping
        // after (`bench.sh --breakdown`: the peer's wake-up 48 -> 23 us).
        // Not while frames come fast: then the next batch is what waits.
        if lane.send(now) && !lane.tap_busy {
            // Can only fail where a seccomp filter refuses it: no matter.
            let _ = nix::sched::sched_yield();
        }
        let answered = std::mem::take(&mut lane.answered);
        let mut guard = lock(core);
        let w = &mut *guard;
        // The bookkeeping runs in full only when something is due or came
        // in besides frames (and at least every BOOKKEEPING), so a wake-up
        // for a frame goes back to sleep at once: whatever the frame woke
        // on this CPU, or the next frame, does not wait for it.
        let due = signalled
            || woken
            || tcp_ready
            || partner_ready
            || now >= kept + BOOKKEEPING
            || w.tunnel.has_events()
            || w.next_deadline().is_some_and(|t| t <= now);
        if !due {
            w.tcp.flush();
            let errors = if answered {
                w.persist_leases(&lane.tap)
            } else {
                0
            };
            drop(guard);
            lane.io.tap_write_errors += errors;
            lane.write_staged();
            lane.send(now);
            continue;
        }
        kept = now;
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
        if partner_ready {
            w.drain_partner(now);
        }
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
        if woken {
            let _ = w.waker.read();
            w.take_resolved(now);
        }
        let port_stale = std::mem::take(&mut w.bridge_port_stale);
        drop(guard);
        if let (true, Some(port)) = (port_stale, &port) {
            flush_bridge_port(port);
        }
        let down = if woken {
            commands(core, lane, &mut logged, now, wall)
        } else {
            None
        };
        // Last, after the waker was read: a batch made durable since
        // wakes the next wait.
        let errors = {
            let mut w = lock(core);
            let errors = w.persist_leases(&lane.tap);
            w.partner_tick(now);
            errors
        };
        lane.io.tap_write_errors += errors;
        lane.write_staged();
        lane.send(now);
        if let Some(reply) = down {
            return Exit::Down(reply);
        }
    }
}

/// Every worker but the first: its lane only, until `stop` is written.
fn other_worker(core: &Mutex<Worker>, mut lane: Lane, stop: &EventFd) {
    loop {
        let want_out = lane.b.out.batch.pending() > 0;
        let before = Instant::now();
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
        lane.waited(before, tap_ready);
        let now = Instant::now();
        let wall = SystemTime::now();
        let written = lane.tap.frames_written();
        if udp_ready {
            drain_udp(core, &mut lane, false, now, wall);
        }
        if tap_ready || lane.tap.frames_written() != written {
            drain_tap(core, &mut lane, false, now, wall);
        }
        if lane.b.out.batch.pending() > 0 {
            let r = lane.udp.send_batch(&mut lane.b.out.batch);
            if r.dropped > 0 {
                lock(core)
                    .lanes_io
                    .count_send_errors(r.dropped, out::send_failure(&r), now);
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

impl Worker {
    /// The earliest timer of the core, the TCP connections and the held
    /// replies: when the first worker must be awake.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.tunnel.poll_timeout(),
            self.bridge.poll_timeout(),
            self.tcp.deadline(),
            self.partner_deadline(),
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
                let bound = self.tcp.bound_peer(slot);
                let mut tx = tx!(self, lane, now);
                let incoming =
                    self.tunnel
                        .handle_record(conn, bound, &mut lane.b.record[..len], now, &mut tx);
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
    /// Hands the frames `range` of `lane`'s read buffers to the bridge,
    /// while its send batch has `room` free slots before each (a
    /// non-blocking send makes room). Whether the responder answered or took
    /// one, and the index of the first frame not taken.
    fn take_frames(
        &mut self,
        lane: &mut Lane,
        range: std::ops::Range<usize>,
        room: usize,
        now: Instant,
        wall: SystemTime,
    ) -> (bool, usize) {
        let mut answered = false;
        for i in range.clone() {
            if lane.b.out.batch.free() < room {
                let r = lane.udp.send_batch(&mut lane.b.out.batch);
                lane.io
                    .count_send_errors(r.dropped, out::send_failure(&r), now);
                if lane.b.out.batch.free() < room {
                    return (answered, i);
                }
            }
            let n = lane.b.lens[i];
            let mut out = out!(self, lane, now);
            let packet = &mut lane.b.frames[i][..n];
            answered |= self.bridge.from_tap(packet, now, wall, &mut out) == TapOutcome::Answered;
        }
        (answered, range.end)
    }
}
