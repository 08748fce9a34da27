//! The TCP transport's connections: the I/O half of `tunnel.transport =
//! "tcp"` / `"auto"` (the records are [`crate::wire::tcp`], the choice of
//! transport is the tunnel's).
//!
//! One listener on the tunnel's port number, connections we accepted or
//! opened, all non-blocking and watched by one epoll instance whose fd sits
//! in the worker's poll set. A connection is named by its remote address,
//! which is what the tunnel sends to ([`Conns::send`]); sending to an
//! address without a connection opens one (connect in the background, the
//! records wait in its queue). The listener and outgoing connects are
//! opened in `sockets.rs`; this file keeps the connections.
//!
//! Bounds, so no TCP peer can make the daemon buffer without limit or stall
//! the others:
//! - each connection buffers at most one incoming record
//!   ([`crate::wire::tcp::RecordReader`]) and [`QUEUE_LIMIT`] bytes going
//!   out; a record that does not fit is dropped (counted), never blocking;
//! - accepted connections that have not proved anything yet are admitted
//!   by [`Admission`]: a few per source host, [`admission::MAX_WAITING`]
//!   in all, room made at the expense of the source with the most (so a
//!   host opening connections in a loop pushes out only its own), each for
//!   at most [`admission::WAIT_TIMEOUT`]; connections we open wait as long;
//!   in all at most `4 × peers` authenticated ones besides;
//! - the listener defers accepting until the client has sent something
//!   (`TCP_DEFER_ACCEPT`), and an accepted connection's first record is
//!   read in the same wake-up, so a peer's connection is authenticated
//!   before the next accept could push it out;
//! - a connection's receive buffer is allocated when its first bytes
//!   arrive, small first ([`RecordReader`]);
//! - writes happen only when the socket takes them (`EPOLLOUT`), reads
//!   are budgeted per wake-up.
//!
//! Silence: the first record a connection delivers must be authentic (the
//! worker asks the tunnel, [`Tunnel::authenticated_sender`]); if it is
//! not, the connection is closed without a byte sent; garbage that is not
//! even a record stream is closed the same way. The first authentic record
//! binds the connection to its peer ([`Conns::bound_peer`]): the tunnel
//! takes nothing for another peer from it.
//!
//! [`Tunnel::authenticated_sender`]: crate::tunnel::Tunnel::authenticated_sender
//! [`Admission`]: crate::tunnel::admission::Admission
//! [`admission::MAX_WAITING`]: crate::tunnel::admission::MAX_WAITING
//! [`admission::WAIT_TIMEOUT`]: crate::tunnel::admission::WAIT_TIMEOUT

use std::collections::HashMap;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

mod sockets;
pub use sockets::bind_listener;

use crate::peer_id::PeerId;
use crate::tunnel::admission::{self, Admission};
use crate::wire::tcp::{MAX_MESSAGE, RecordQueue, RecordReader};

/// Bytes queued per connection on their way out (records and headers).
pub const QUEUE_LIMIT: usize = 512 * 1024;
/// How long a connection we opened may stay connecting or unauthenticated.
pub const UNAUTHENTICATED_TIMEOUT: Duration = admission::WAIT_TIMEOUT;
/// Seconds the kernel holds an accepted connection back until its first
/// bytes arrive (`TCP_DEFER_ACCEPT`).
const DEFER_ACCEPT_SECS: i32 = 5;
/// Epoll token of the listener.
const LISTENER: u64 = u64::MAX;

/// What the TCP transport did, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections we opened.
    pub connected: u64,
    /// Connections closed because their first record was not authentic,
    /// they broke the record format, they proved nothing in time, or
    /// another from the same source needed their place.
    pub refused: u64,
    /// Records dropped because a connection's queue was full or no
    /// connection could be opened.
    pub dropped: u64,
}

struct Conn {
    stream: TcpStream,
    remote: SocketAddr,
    /// Opened by us, connect not finished yet.
    connecting: bool,
    /// The peer its records proved to come from.
    peer: Option<PeerId>,
    /// We accepted it (rather than opened it).
    inbound: bool,
    born: Instant,
    reader: RecordReader,
    queue: RecordQueue,
    /// Registered for `EPOLLOUT`.
    watching_out: bool,
}

/// What [`Conns::read_record`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A message of this length was copied out, from the connection named
    /// by the address.
    Message(SocketAddr, usize),
    /// Nothing more for now.
    Again,
    /// The connection is gone (closed by the peer, an error, or garbage).
    Closed,
}

/// The listener and all connections.
pub struct Conns {
    epoll: Epoll,
    listener: Option<TcpListener>,
    /// Local address outgoing connections are bound to (`None`: any).
    bind: Option<SocketAddr>,
    slots: Vec<Option<Conn>>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Accepted connections that have proved nothing yet.
    admission: Admission,
    /// Authenticated connections allowed in all.
    max_authenticated: usize,
    /// Where the tunnel writes a message for a connection.
    out: Vec<u8>,
    /// Slots with records queued since the last flush.
    dirty: Vec<usize>,
    /// Addresses of connections closed since [`take_closed`](Self::take_closed).
    closed: Vec<SocketAddr>,
    events: Vec<EpollEvent>,
    counters: TcpCounters,
}

impl Conns {
    /// Connections for a link of `peers` peers; listening on `listen` when
    /// `listening` (the same port number as UDP).
    pub fn new(listen: SocketAddr, listening: bool, peers: usize) -> io::Result<Conns> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        let mut conns = Conns {
            epoll,
            listener: None,
            bind: (!listen.ip().is_unspecified()).then_some(SocketAddr::new(listen.ip(), 0)),
            slots: Vec::new(),
            by_addr: HashMap::new(),
            admission: Admission::new(),
            max_authenticated: 4 * peers.max(1),
            out: vec![0; MAX_MESSAGE],
            dirty: Vec::with_capacity(64),
            closed: Vec::new(),
            events: vec![EpollEvent::empty(); 64],
            counters: TcpCounters::default(),
        };
        conns.listen(listen, listening)?;
        Ok(conns)
    }

    /// A new peer count (a reload): the bound on authenticated connections.
    pub fn set_peers(&mut self, peers: usize) {
        self.max_authenticated = 4 * peers.max(1);
    }

    /// The fd to poll for readiness of any connection or the listener.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }

    /// What the transport did.
    pub fn counters(&self) -> TcpCounters {
        self.counters
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// No connection is open.
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// The buffer the tunnel writes the next TCP message into.
    pub fn out_buffer(&mut self) -> &mut [u8] {
        &mut self.out
    }

    /// Queues the first `len` bytes of [`out_buffer`](Self::out_buffer) as a
    /// record on the connection named `to`, opening one if there is none.
    /// Written at the next [`flush`](Self::flush).
    pub fn send(&mut self, len: usize, to: SocketAddr, now: Instant) {
        let slot = match self.by_addr.get(&to) {
            Some(&s) => s,
            None => match self.connect(to, now) {
                Some(s) => s,
                None => {
                    self.counters.dropped += 1;
                    return;
                }
            },
        };
        let Some(c) = self.slots[slot].as_mut() else {
            self.counters.dropped += 1;
            return;
        };
        let was_empty = c.queue.pending().is_empty();
        if !c.queue.push(&self.out[..len.min(MAX_MESSAGE)]) {
            self.counters.dropped += 1;
            return;
        }
        if was_empty && !c.connecting {
            self.dirty.push(slot);
        }
    }

    /// Writes what is queued, as far as the sockets take it; the rest goes
    /// when they poll writable.
    pub fn flush(&mut self) {
        while let Some(slot) = self.dirty.pop() {
            self.write_out(slot);
        }
    }

    /// Handles what the epoll instance reports: accepts, finished
    /// connects, writable and broken sockets. Slots with data to read are
    /// put in `readable`.
    pub fn poll(&mut self, now: Instant, readable: &mut Vec<usize>) {
        readable.clear();
        let n = match self.epoll.wait(&mut self.events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("epoll_wait on TCP connections failed: {e}");
                return;
            }
        };
        for i in 0..n {
            let (token, flags) = (self.events[i].data(), self.events[i].events());
            if token == LISTENER {
                self.accept(now, readable);
                continue;
            }
            let slot = token as usize;
            let Some(c) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if c.connecting && flags.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR) {
                match c.stream.take_error() {
                    Ok(None) => {
                        c.connecting = false;
                        self.counters.connected += 1;
                    }
                    _ => {
                        self.close(slot);
                        continue;
                    }
                }
            }
            if flags.contains(EpollFlags::EPOLLOUT) {
                self.write_out(slot);
            }
            if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR)
                && self.slots[slot].is_some()
                && !readable.contains(&slot)
            {
                readable.push(slot);
            }
        }
    }

    /// The next message on connection `slot`, copied into `out` (at least
    /// [`MAX_MESSAGE`] bytes). Reads from the socket as needed.
    pub fn read_record(&mut self, slot: usize, out: &mut [u8]) -> Read {
        loop {
            let Some(c) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                return Read::Closed;
            };
            let broken = match c.reader.next_message() {
                Ok(Some(m)) if m.len() <= out.len() => {
                    out[..m.len()].copy_from_slice(m);
                    return Read::Message(c.remote, m.len());
                }
                // Not a record stream (or a record we cannot take).
                Ok(Some(_)) | Err(_) => true,
                Ok(None) => false,
            };
            if broken {
                self.counters.refused += 1;
                self.close(slot);
                return Read::Closed;
            }
            let gone = match c.stream.read(c.reader.spare()) {
                Ok(0) => true,
                Ok(n) => {
                    c.reader.filled(n);
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::Again,
                Err(e) => e.kind() != io::ErrorKind::Interrupted,
            };
            if gone {
                self.close(slot);
                return Read::Closed;
            }
        }
    }

    /// The tunnel handled a message from `slot`; `peer` is the peer it
    /// proved to come from, if it did. A connection whose first message
    /// proves nothing is closed without a byte sent.
    pub fn handled(&mut self, slot: usize, peer: Option<PeerId>) {
        let Some(c) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        match (c.peer, peer) {
            (None, None) => {
                self.counters.refused += 1;
                self.close(slot);
            }
            (None, Some(p)) => {
                c.peer = Some(p);
                self.admission.forget(slot);
                if c.inbound {
                    // A peer's newest connection replaces its older ones.
                    self.close_where(|o, s| s != slot && o.inbound && o.peer == Some(p));
                }
                let authenticated = self.slots.iter().flatten().filter(|c| c.peer.is_some());
                if authenticated.count() > self.max_authenticated {
                    self.close_oldest(|c| c.peer.is_some() && c.peer != Some(p));
                }
            }
            _ => {}
        }
    }

    /// The peer connection `slot` is bound to (its first authentic record
    /// proved it), if any: the tunnel takes nothing for another peer from
    /// it.
    pub fn bound_peer(&self, slot: usize) -> Option<PeerId> {
        self.slots.get(slot).and_then(Option::as_ref)?.peer
    }

    /// Closes every connection of `peer` (it went silent: its connections
    /// are presumed dead, and the next handshake opens a fresh one).
    pub fn close_peer(&mut self, peer: PeerId) {
        self.close_where(|c, _| c.peer == Some(peer));
    }

    /// Closes every connection (the transport was switched off).
    pub fn close_all(&mut self) {
        self.close_where(|_, _| true);
    }

    /// Closes connections that stayed unauthenticated (or connecting) too
    /// long.
    pub fn expire(&mut self, now: Instant) {
        while let Some(slot) = self.admission.next_expired(now) {
            self.counters.refused += 1;
            self.close(slot);
        }
        for slot in 0..self.slots.len() {
            let stale = self.slots[slot].as_ref().is_some_and(|c| {
                !c.inbound
                    && c.peer.is_none()
                    && now.saturating_duration_since(c.born) >= UNAUTHENTICATED_TIMEOUT
            });
            if stale {
                self.counters.refused += 1;
                self.close(slot);
            }
        }
    }

    /// When [`expire`](Self::expire) has work to do.
    pub fn deadline(&self) -> Option<Instant> {
        let opened = self
            .slots
            .iter()
            .flatten()
            .filter(|c| !c.inbound && c.peer.is_none())
            .map(|c| c.born + UNAUTHENTICATED_TIMEOUT)
            .min();
        match (opened, self.admission.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Addresses of connections closed since the last call (the tunnel
    /// forgets them as a way to its peers).
    pub fn take_closed(&mut self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.closed.drain(..)
    }

    fn insert(
        &mut self,
        stream: TcpStream,
        remote: SocketAddr,
        connecting: bool,
        inbound: bool,
        now: Instant,
    ) -> Option<usize> {
        if let Some(&old) = self.by_addr.get(&remote) {
            self.close(old);
        }
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let flags = if connecting {
            EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
        } else {
            EpollFlags::EPOLLIN
        };
        if self
            .epoll
            .add(&stream, EpollEvent::new(flags, slot as u64))
            .is_err()
        {
            // Dropping the stream closes it.
            return None;
        }
        if inbound && let Some(out) = self.admission.admit(slot, remote.ip(), now) {
            self.counters.refused += 1;
            self.close(out);
        }
        self.slots[slot] = Some(Conn {
            stream,
            remote,
            connecting,
            peer: None,
            inbound,
            born: now,
            reader: RecordReader::new(),
            queue: RecordQueue::new(QUEUE_LIMIT),
            watching_out: connecting,
        });
        self.by_addr.insert(remote, slot);
        Some(slot)
    }

    fn write_out(&mut self, slot: usize) {
        let Some(c) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if c.connecting {
            return;
        }
        loop {
            let pending = c.queue.pending();
            if pending.is_empty() {
                break;
            }
            match c.stream.write(pending) {
                Ok(0) => {
                    self.close(slot);
                    return;
                }
                Ok(n) => c.queue.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(slot);
                    return;
                }
            }
        }
        let want_out = !c.queue.pending().is_empty();
        if want_out != c.watching_out {
            let flags = if want_out {
                EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
            } else {
                EpollFlags::EPOLLIN
            };
            let mut ev = EpollEvent::new(flags, slot as u64);
            if self.epoll.modify(&c.stream, &mut ev).is_ok() {
                c.watching_out = want_out;
            }
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(c) = self.slots.get_mut(slot).and_then(Option::take) {
            self.admission.forget(slot);
            let _ = self.epoll.delete(&c.stream);
            self.by_addr.remove(&c.remote);
            if c.peer.is_some() {
                self.closed.push(c.remote);
            }
        }
    }

    fn close_where(&mut self, f: impl Fn(&Conn, usize) -> bool) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].as_ref().is_some_and(|c| f(c, slot)) {
                self.close(slot);
            }
        }
    }

    fn close_oldest(&mut self, f: impl Fn(&Conn) -> bool) {
        let oldest = (0..self.slots.len())
            .filter(|&s| self.slots[s].as_ref().is_some_and(&f))
            .min_by_key(|&s| self.slots[s].as_ref().map(|c| c.born));
        if let Some(s) = oldest {
            self.close(s);
        }
    }
}
