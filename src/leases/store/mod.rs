//! The lease store (I/O): makes the responder's lease changes durable off the
//! worker thread, with group commit, and holds each reply that depends on a
//! change (an ACK) until that change is on disk (SPEC §5, RFC 2131 §3.1).
//! The persistence thread lives here; what it does to the files is in
//! [`disk`].
//!
//! On disk there are two kinds of files beside each other:
//! * the lease file itself (`<file>`), a snapshot in the versioned JSON
//!   format of [`LeaseDb::to_bytes`], always replaced atomically (temp file,
//!   fsync, rename, fsync of the directory, see
//!   [`write_lease_file_atomic`](disk::write_lease_file_atomic));
//! * journals (`<file>.journal.<generation>`), append-only, one line per
//!   change in the format of [`crate::leases::journal`].
//!
//! The worker hands over the changes it collected during one wake-up as one
//! batch; the persistence thread takes every batch queued while it was busy
//! (under load it starts a commit at most every 10 ms, so one
//! commit carries many ACKs' changes) and commits them together: one
//! `write` and one `fdatasync` of the current
//! journal (or, while the table is small, [`SMALL_TABLE`] leases, one atomic
//! rewrite of the lease file, which then always holds every ACKed lease, as
//! before journals existed). It then publishes the last durable batch and
//! wakes the worker through its eventfd, and the worker sends the replies it
//! held for batches up to that one. The worker never waits for the disk,
//! except on a reload that moves the lease file and at shutdown.
//!
//! Compaction: once the journal outgrows the last snapshot (and 4 MiB), the
//! thread starts a new journal generation and a background thread writes a
//! snapshot of the records as of the end of the old generations (flushed
//! 256 KiB at a time, so commits do not queue behind it), then
//! deletes those journals and fsyncs the directory. Only one compaction runs
//! at a time, so a journal never outlives a snapshot newer than its end.
//! Reading ([`load`](disk::load)): the lease file, then every journal in generation
//! order; replaying a journal the snapshot already covers changes nothing
//! (each line sets a record outright), so a crash at any point of a
//! compaction loses nothing. At [`LeaseStore::open`] (when there are
//! journals) and at close everything is compacted into the lease file and
//! the journals are removed.
//!
//! A failed write is logged and the replies still go out (refusing every
//! client while the disk is full would hurt the LAN more); the journal is
//! cut back to its last whole line so later appends stay readable.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::eventfd::EventFd;

use super::{LeaseChange, LeaseDb, journal};
use disk::{LeaseFileError, compact, journal_path, journals, sync_dir};

pub mod disk;

/// Up to this many leases, each commit rewrites the lease file (small, and
/// what a reader of the file sees at once); above it, commits append to the
/// journal.
pub const SMALL_TABLE: usize = 256;
/// A journal is compacted once it is larger than the last snapshot and this
/// (about 33,000 changes).
const MIN_COMPACT_BYTES: u64 = 4 << 20;
/// Replies held for durability at most; more are dropped (the clients
/// retransmit), so a stalled disk cannot grow the worker's memory.
pub const MAX_HELD: usize = 8192;
/// Longest frame held: a DHCP reply (576 bytes of IP) with Ethernet, VLAN
/// and virtio headers.
const HELD_FRAME: usize = 640;
/// Least time between the starts of two commits: under load a commit
/// carries every change of the last interval (one `fdatasync` for many
/// ACKs), at the price of at most this much added to an ACK's wait. At
/// 5,000 DORA/s, 5 ms rather than 2 took the daemon's CPU per exchange from
/// about 70 to 53 µs, and 10 rather than 5 from about 57 to 50 µs (half
/// the `fdatasync`s again, fewer wake-ups for held ACKs; an ACK at most
/// 10 ms later, where a client waits seconds before it retransmits);
/// flash wears less too.
const COMMIT_INTERVAL: Duration = Duration::from_millis(10);
/// How long shutdown or a reload waits for the disk.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Batches handed from the worker to the persistence thread.
#[derive(Default)]
struct Queue {
    changes: Vec<LeaseChange>,
    /// The last batch whose changes are in `changes`.
    seq: u64,
    closing: bool,
    /// The thread sleeps on `ready` (only then is a notification needed:
    /// it costs a system call).
    waiting: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// The last batch that is durable (or whose write failed and was logged).
    durable: AtomicU64,
    waker: Arc<EventFd>,
}

/// Replies held until the batch they depend on is durable, oldest first.
/// Buffers are reused: holding a reply allocates nothing once warm.
#[derive(Default)]
struct Held {
    /// (batch, length, frame).
    queue: VecDeque<(u64, usize, Box<[u8; HELD_FRAME]>)>,
    // Boxed so a buffer moves between `queue` and `spare` without a copy.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<[u8; HELD_FRAME]>>,
    dropped: u64,
}

/// The worker's handle on the lease store. Without a lease file (no
/// `[dhcp]`) it discards changes and holds nothing.
#[derive(Default)]
pub struct LeaseStore {
    inner: Option<Inner>,
}

struct Inner {
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Changes taken from the responder since the last [`LeaseStore::commit`].
    staged: Vec<LeaseChange>,
    /// The last batch handed to the thread.
    submitted: u64,
    held: Held,
    /// A copy of every batch, for the partner channel of a
    /// high-availability pair (`None`: nobody wants one).
    mirror: Option<Vec<LeaseChange>>,
}

impl LeaseStore {
    /// Start the store for the lease file `path` (none: a store that
    /// persists nothing) holding `db` (the responder's records as they are
    /// now, read from that file and its journals): if there are journals,
    /// writes `db` as the lease file and removes them; then starts
    /// the persistence thread, which wakes `waker` whenever a batch becomes
    /// durable.
    pub fn open(
        path: Option<&Path>,
        db: LeaseDb,
        waker: Arc<EventFd>,
    ) -> Result<LeaseStore, LeaseFileError> {
        let Some(path) = path else {
            return Ok(LeaseStore::default());
        };
        let through = journals(path).last().map_or(0, |(g, _)| *g);
        // With journals, fold them into the lease file now; without, the
        // file already holds `db` but for records the responder dropped,
        // whose removals come as changes with the first batch.
        let snapshot_len = if through > 0 {
            compact(path, &db, through, false)?
        } else {
            fs::metadata(path).map_or(0, |m| m.len())
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            durable: AtomicU64::new(0),
            waker,
        });
        let mut thread = Persister {
            path: path.to_owned(),
            shared: shared.clone(),
            mirror: db,
            generation: through + 1,
            journal: None,
            snapshot_len,
            compaction: None,
            buf: Vec::new(),
            failing: false,
        };
        let handle = std::thread::Builder::new()
            .name("tb-leases".into())
            .spawn(move || thread.run())
            .map_err(|source| LeaseFileError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(LeaseStore {
            inner: Some(Inner {
                path: path.to_owned(),
                shared,
                thread: Some(handle),
                staged: Vec::new(),
                submitted: 0,
                held: Held::default(),
                mirror: None,
            }),
        })
    }

    /// Keep a copy of every change committed from now on, for
    /// [`Self::take_mirrored`] (the partner channel); off by default.
    pub fn set_mirror(&mut self, on: bool) {
        if let Some(inner) = self.inner.as_mut() {
            inner.mirror = on.then(Vec::new);
        }
    }

    /// Moves the changes committed since the last call (with
    /// [`Self::set_mirror`] on) to the end of `out`, oldest first.
    pub fn take_mirrored(&mut self, out: &mut Vec<LeaseChange>) {
        if let Some(m) = self.inner.as_mut().and_then(|i| i.mirror.as_mut()) {
            out.append(m);
        }
    }

    /// The lease file this store writes.
    pub fn path(&self) -> Option<&Path> {
        self.inner.as_ref().map(|i| i.path.as_path())
    }

    /// Call with the responder's `reply` and the lease `changes` it made for
    /// it (taken from `changes`): if there are any (an ACK), they join the
    /// next batch and the reply is held until that batch is durable (true:
    /// do not send it now; [`Self::send_durable`] will). False: send it now.
    pub fn hold_reply(&mut self, changes: &mut Vec<LeaseChange>, reply: &[u8]) -> bool {
        if changes.is_empty() {
            return false;
        }
        let Some(inner) = self.inner.as_mut() else {
            changes.clear();
            return false;
        };
        inner.staged.append(changes);
        let held = &mut inner.held;
        if held.queue.len() >= MAX_HELD || reply.len() > HELD_FRAME {
            held.dropped += 1;
            return true;
        }
        let mut buf = held
            .spare
            .pop()
            .unwrap_or_else(|| Box::new([0; HELD_FRAME]));
        buf[..reply.len()].copy_from_slice(reply);
        held.queue
            .push_back((inner.submitted + 1, reply.len(), buf));
        true
    }

    /// Hand the changes collected since the last call (those of held
    /// replies, and `changes`: those of frames that got no reply, taken) to
    /// the persistence thread as one batch. Call once per worker wake-up;
    /// cheap when nothing changed.
    pub fn commit(&mut self, changes: &mut Vec<LeaseChange>) {
        let Some(inner) = self.inner.as_mut() else {
            changes.clear();
            return;
        };
        inner.staged.append(changes);
        if inner.staged.is_empty() {
            return;
        }
        if let Some(m) = inner.mirror.as_mut() {
            m.extend_from_slice(&inner.staged);
        }
        inner.submitted += 1;
        let mut q = inner.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.changes.append(&mut inner.staged);
        q.seq = inner.submitted;
        let waiting = q.waiting;
        drop(q);
        if waiting {
            inner.shared.ready.notify_one();
        }
    }

    /// Send the held replies whose batches are durable now, with `send`;
    /// returns how many sends failed. Call after reading the worker's
    /// eventfd (a wake-up read before this call is never lost).
    pub fn send_durable(&mut self, mut send: impl FnMut(&[u8]) -> io::Result<usize>) -> u64 {
        let Some(inner) = self.inner.as_mut() else {
            return 0;
        };
        let durable = inner.shared.durable.load(Ordering::Acquire);
        let mut errors = 0;
        while inner.held.queue.front().is_some_and(|h| h.0 <= durable) {
            let Some((_, len, buf)) = inner.held.queue.pop_front() else {
                break;
            };
            if send(&buf[..len]).is_err() {
                errors += 1;
            }
            inner.held.spare.push(buf);
        }
        errors
    }

    /// Commit what is pending, wait (at most 10 s) until it is
    /// durable, and send the held replies: before a reload moves the lease
    /// file or replaces the responder, and at shutdown.
    pub fn flush(
        &mut self,
        changes: &mut Vec<LeaseChange>,
        send: impl FnMut(&[u8]) -> io::Result<usize>,
    ) -> u64 {
        self.commit(changes);
        if let Some(inner) = self.inner.as_ref() {
            let deadline = Instant::now() + FLUSH_TIMEOUT;
            while inner.shared.durable.load(Ordering::Acquire) < inner.submitted
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.send_durable(send)
    }

    /// Stop the persistence thread after it has written what it was given
    /// and compacted everything into the lease file. Call [`Self::flush`]
    /// first. The store persists nothing afterwards.
    pub fn close(&mut self) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        let mut q = inner.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.closing = true;
        drop(q);
        inner.shared.ready.notify_one();
        if let Some(t) = inner.thread.take() {
            let _ = t.join();
        }
        if inner.held.dropped > 0 {
            tracing::warn!(
                dropped = inner.held.dropped,
                "DHCP replies dropped while the lease file was slow to write"
            );
        }
    }
}

impl Drop for LeaseStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// The persistence thread's state.
struct Persister {
    path: PathBuf,
    shared: Arc<Shared>,
    /// The records as of the last batch taken.
    mirror: LeaseDb,
    /// The generation appends go to.
    generation: u64,
    /// The open journal of `generation` and its length (last whole line).
    journal: Option<(fs::File, u64)>,
    /// Size of the last snapshot written.
    snapshot_len: u64,
    /// The background compaction running, if any.
    compaction: Option<JoinHandle<Result<u64, LeaseFileError>>>,
    /// Journal lines of the batch being written (reused).
    buf: Vec<u8>,
    /// The last write failed (logged once until one succeeds).
    failing: bool,
}

impl Persister {
    fn run(&mut self) {
        let mut batch = Vec::new();
        let mut last_commit: Option<Instant> = None;
        let shared = self.shared.clone();
        let lock = || shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let mut q = lock();
            while q.changes.is_empty() && !q.closing {
                q.waiting = true;
                q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                q.waiting = false;
            }
            // Group commit: at most one commit per COMMIT_INTERVAL, so under
            // load each one carries many changes; an idle store commits at once.
            let wait = last_commit.map_or(Duration::ZERO, |t| {
                COMMIT_INTERVAL.saturating_sub(t.elapsed())
            });
            if !wait.is_zero() && !q.closing {
                drop(q);
                std::thread::sleep(wait);
                q = lock();
            }
            std::mem::swap(&mut q.changes, &mut batch);
            let (seq, closing) = (q.seq, q.closing);
            drop(q);
            if !batch.is_empty() {
                last_commit = Some(Instant::now());
            }
            if !batch.is_empty() {
                let result = self.write(&batch);
                self.report(result);
                batch.clear();
                self.shared.durable.store(seq, Ordering::Release);
                let _ = self.shared.waker.write(1);
            }
            self.finish_compaction(false);
            if closing {
                self.finish_compaction(true);
                let result = compact(&self.path, &self.mirror, self.generation, false).map(|_| ());
                self.report(result);
                return;
            }
            self.maybe_compact();
        }
    }

    fn report(&mut self, result: Result<(), LeaseFileError>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!("{}", crate::error::Chain(&e));
            }
            Err(_) => {}
        }
    }

    /// Make one group of changes durable.
    fn write(&mut self, batch: &[LeaseChange]) -> Result<(), LeaseFileError> {
        for c in batch {
            c.apply(&mut self.mirror);
        }
        if self.mirror.len() <= SMALL_TABLE && self.compaction.is_none() {
            // Small: the lease file itself, as a reader expects it.
            self.journal = None;
            self.snapshot_len = compact(&self.path, &self.mirror, self.generation, false)?;
            self.generation += 1;
            return Ok(());
        }
        self.buf.clear();
        for c in batch {
            journal::encode(c, &mut self.buf);
        }
        let path = journal_path(&self.path, self.generation);
        let io_err = |source| LeaseFileError::Io {
            path: path.clone(),
            source,
        };
        if self.journal.is_none() {
            let f = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)
                .map_err(io_err)?;
            let len = f.metadata().map_err(io_err)?.len();
            // The new file's name must survive a crash as well as its lines.
            sync_dir(&self.path).map_err(io_err)?;
            self.journal = Some((f, len));
        }
        let Some((f, len)) = self.journal.as_mut() else {
            return Ok(());
        };
        let written = f.write_all(&self.buf).and_then(|()| f.sync_data());
        match written {
            Ok(()) => {
                *len += self.buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut a partial line off so later appends stay readable.
                let _ = f.set_len(*len);
                Err(io_err(e))
            }
        }
    }

    /// Start a background compaction when the journal has outgrown the
    /// last snapshot and none is running.
    fn maybe_compact(&mut self) {
        let Some((_, len)) = &self.journal else {
            return;
        };
        if self.compaction.is_some() || *len < self.snapshot_len.max(MIN_COMPACT_BYTES) {
            return;
        }
        let through = self.generation;
        self.generation += 1;
        self.journal = None;
        let (path, db) = (self.path.clone(), self.mirror.clone());
        let spawned = std::thread::Builder::new()
            .name("tb-lease-compact".into())
            .spawn(move || compact(&path, &db, through, true));
        match spawned {
            Ok(h) => self.compaction = Some(h),
            Err(e) => tracing::warn!("cannot start a lease file compaction: {e}"),
        }
    }

    /// Collect a finished compaction (`wait`: wait for it).
    fn finish_compaction(&mut self, wait: bool) {
        if !self
            .compaction
            .as_ref()
            .is_some_and(|h| wait || h.is_finished())
        {
            return;
        }
        if let Some(h) = self.compaction.take() {
            match h.join() {
                Ok(Ok(len)) => self.snapshot_len = len,
                Ok(Err(e)) => {
                    tracing::error!("lease file compaction failed: {}", crate::error::Chain(&e))
                }
                Err(_) => tracing::error!("lease file compaction failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
