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
//! (under load it starts a commit at most every 2 ms, so one
//! commit carries many ACKs' changes) and commits them together: one `write` and one `fdatasync` of the current
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
/// ACKs), at the price of at most this much added to an ACK's wait.
const COMMIT_INTERVAL: Duration = Duration::from_millis(2);
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
            }),
        })
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
                tracing::error!("{e}");
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
                Ok(Err(e)) => tracing::error!("lease file compaction failed: {e}"),
                Err(_) => tracing::error!("lease file compaction failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::disk::{load_at, read_lease_file, write_lease_file_atomic};
    use super::*;
    use crate::leases::Lease;
    use crate::mac::MacAddr;
    use crate::responder::Responder;
    use std::net::Ipv4Addr;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let d = std::env::temp_dir().join(format!("tb-store-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).expect("temp dir");
            TempDir(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn change(n: u32, expires: u64) -> LeaseChange {
        let b = n.to_be_bytes();
        LeaseChange {
            key: vec![1, 2, 0, b[0], b[1], b[2], b[3]].into(),
            lease: Some(Lease {
                ip: Ipv4Addr::new(198, 18, b[2], b[3]),
                expires,
                mac: MacAddr([2, 0, b[0], b[1], b[2], b[3]]),
                renewed: true,
            }),
        }
    }

    fn waker() -> Arc<EventFd> {
        Arc::new(
            EventFd::from_value_and_flags(0, nix::sys::eventfd::EfdFlags::EFD_NONBLOCK)
                .expect("eventfd"),
        )
    }

    /// Drive the store the way the worker does, without a responder:
    /// stage changes for a "reply", commit, and wait for the release.
    fn submit(store: &mut LeaseStore, changes: Vec<LeaseChange>, reply: &[u8]) {
        let inner = store.inner.as_mut().expect("open");
        inner.staged.extend(changes);
        let mut buf = Box::new([0; HELD_FRAME]);
        buf[..reply.len()].copy_from_slice(reply);
        inner
            .held
            .queue
            .push_back((inner.submitted + 1, reply.len(), buf));
        store.commit(&mut Vec::new());
    }

    fn wait_sent(store: &mut LeaseStore, path: &Path) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while store
            .inner
            .as_ref()
            .is_some_and(|i| !i.held.queue.is_empty())
        {
            store.send_durable(|f| {
                // The moment a reply goes out, its lease must be readable.
                let (db, aside, warn) = load_at(path, 0);
                assert!(aside.is_none() && warn.is_empty(), "{warn:?}");
                let n = u32::from_be_bytes(f[..4].try_into().expect("4 bytes"));
                assert_eq!(
                    db.get(&change(n, 0).key).map(|l| l.ip),
                    change(n, 0).lease.map(|l| l.ip)
                );
                sent.push(f.to_vec());
                Ok(f.len())
            });
            assert!(Instant::now() < deadline, "never durable");
            std::thread::sleep(Duration::from_millis(1));
        }
        sent
    }

    #[test]
    fn small_tables_rewrite_the_lease_file_before_the_reply_goes_out() {
        let dir = TempDir::new("small");
        let path = dir.0.join("site.leases");
        let mut store = LeaseStore::open(Some(&path), LeaseDb::default(), waker()).expect("open");
        for n in 0..20u32 {
            submit(&mut store, vec![change(n, 1000)], &n.to_be_bytes());
            assert_eq!(wait_sent(&mut store, &path).len(), 1);
            // The lease file alone holds it: no journal while small.
            let db = read_lease_file(&path).expect("valid");
            assert_eq!(db.len(), n as usize + 1);
            assert!(journals(&path).is_empty());
        }
        store.close();
    }

    #[test]
    fn large_tables_journal_compact_and_read_back() {
        let dir = TempDir::new("large");
        let path = dir.0.join("site.leases");
        let mut db = LeaseDb::default();
        for n in 0..(SMALL_TABLE as u32 + 10) {
            change(n, 500).apply(&mut db);
        }
        let mut store = LeaseStore::open(Some(&path), db.clone(), waker()).expect("open");
        let mut want = db;
        // Enough changes for two compactions (each line ~120 bytes).
        let mut n = 0u32;
        for round in 0..20u64 {
            let batch: Vec<LeaseChange> = (0..3600)
                .map(|_| {
                    n += 1;
                    change(n % 5000, 1000 + round)
                })
                .collect();
            for c in &batch {
                c.apply(&mut want);
            }
            let reply = (n % 5000).to_be_bytes();
            submit(&mut store, batch, &reply);
            if round % 5 == 0 {
                wait_sent(&mut store, &path);
            }
        }
        wait_sent(&mut store, &path);
        // A compaction removed the first journal generation.
        let deadline = Instant::now() + Duration::from_secs(20);
        while journals(&path).first().is_none_or(|(g, _)| *g < 2) {
            assert!(
                Instant::now() < deadline,
                "no compaction: {:?}",
                journals(&path)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // What a restart after `kill -9` now would read.
        let (read, aside, warnings) = load_at(&path, 0);
        assert!(aside.is_none() && warnings.is_empty(), "{warnings:?}");
        assert_eq!(read, want);
        store.close();
        // Closed: everything is in the lease file, no journal is left.
        assert!(journals(&path).is_empty());
        assert_eq!(read_lease_file(&path).expect("valid"), want);
    }

    #[test]
    fn a_crash_between_compaction_steps_loses_nothing() {
        let dir = TempDir::new("crash");
        let path = dir.0.join("site.leases");
        // An old snapshot, a journal it does not cover, one it does not
        // either, and a torn last line.
        let mut old = LeaseDb::default();
        change(1, 10).apply(&mut old);
        write_lease_file_atomic(&path, &old.to_bytes()).expect("write");
        let mut j1 = Vec::new();
        journal::encode(&change(1, 20), &mut j1);
        journal::encode(&change(2, 20), &mut j1);
        fs::write(journal_path(&path, 4), &j1).expect("write");
        let mut j2 = Vec::new();
        journal::encode(&change(2, 30), &mut j2);
        journal::encode(&change(3, 30), &mut j2);
        j2.extend_from_slice(b"{\"client\":\"01:02");
        fs::write(journal_path(&path, 5), &j2).expect("write");
        let mut want = LeaseDb::default();
        for c in [change(1, 20), change(2, 30), change(3, 30)] {
            c.apply(&mut want);
        }
        let (db, _, warnings) = load_at(&path, 0);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(db, want);
        // The compaction of generation 4 wrote its snapshot, then crashed
        // before deleting the journal: replaying it again changes nothing.
        let mut through_4 = old.clone();
        for c in [change(1, 20), change(2, 20)] {
            c.apply(&mut through_4);
        }
        write_lease_file_atomic(&path, &through_4.to_bytes()).expect("write");
        assert_eq!(load_at(&path, 0).0, want);
        // A bad line in the middle of a journal: the lines before it count,
        // the journal is set aside, later journals still apply.
        fs::write(journal_path(&path, 4), b"not json\n").expect("write");
        let (db, _, warnings) = load_at(&path, 77);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("journal.4"), "{}", warnings[0]);
        assert!(dir.0.join("site.leases.journal.4.corrupt-77").exists());
        assert_eq!(db, want);
        // Opening compacts it all into the lease file.
        let store = LeaseStore::open(Some(&path), db, waker()).expect("open");
        assert!(journals(&path).is_empty());
        assert_eq!(read_lease_file(&path).expect("valid"), want);
        drop(store);
    }

    #[test]
    fn the_ack_is_held_until_its_lease_is_on_disk() {
        use crate::responder::fixtures::{Client, parse_reply};
        use crate::responder::{DhcpSettings, LocalVerdict, REPLY_BUFFER_LEN};
        use smoltcp::wire::DhcpMessageType;
        use std::time::SystemTime;

        let dir = TempDir::new("ack");
        let path = dir.0.join("leases");
        let net = |last| Ipv4Addr::new(198, 19, 0, last);
        let settings = DhcpSettings {
            server_address: net(254),
            server_mac: MacAddr([0x02, 0, 0, 0, 0, 0xfe]),
            pool_start: net(100),
            pool_end: net(199),
            subnet_addr: net(0),
            prefix_len: 24,
            router: None,
            dns: vec![],
            domain: None,
            lease_time: Duration::from_secs(3600),
            routes: vec![],
            mtu: None,
            reservations: vec![],
            search: Vec::new(),
            ntp: Vec::new(),
            extra_options: Vec::new(),
            conflict_check: false,
        };
        let mut r = Responder::new(None, Some(settings), LeaseDb::default()).expect("settings");
        let mut store = LeaseStore::open(Some(&path), r.lease_db(), waker()).expect("open");
        let mac = [0x52, 0x54, 0, 0, 1, 1];
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut buf = [0u8; REPLY_BUFFER_LEN];
        let ask = |r: &mut Responder, c: &Client, buf: &mut [u8]| match r.handle_local(
            &c.frame(),
            now,
            wall,
            buf,
        ) {
            LocalVerdict::Reply(n) => n,
            v => panic!("no reply to {:?}: {v:?}", c.kind),
        };
        let n = ask(
            &mut r,
            &Client::new(DhcpMessageType::Discover, mac),
            &mut buf,
        );
        let offered = parse_reply(&buf[..n]).yiaddr;
        let mut changes = Vec::new();
        r.take_lease_changes(&mut changes);
        assert!(
            !store.hold_reply(&mut changes, &buf[..n]),
            "an OFFER goes out at once"
        );
        let mut request = Client::new(DhcpMessageType::Request, mac);
        request.server_id = Some(net(254));
        request.requested = Some(offered);
        let n = ask(&mut r, &request, &mut buf);
        assert_eq!(parse_reply(&buf[..n]).message_type, DhcpMessageType::Ack);
        r.take_lease_changes(&mut changes);
        assert!(store.hold_reply(&mut changes, &buf[..n]), "the ACK waits");
        assert!(changes.is_empty(), "the store took the changes");
        assert_eq!(store.send_durable(|_| panic!("not committed yet")), 0);
        r.take_lease_changes(&mut changes);
        store.commit(&mut changes);
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while sent == 0 {
            store.send_durable(|frame| {
                // The moment the ACK goes out, the lease must be on disk.
                let (db, _, _) = load_at(&path, 0);
                let lease = db
                    .get_mac(&MacAddr(mac))
                    .expect("the ACKed lease is on disk");
                assert_eq!(lease.ip, offered);
                assert_eq!(frame, &buf[..n]);
                sent += 1;
                Ok(frame.len())
            });
            assert!(Instant::now() < deadline, "never durable");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn without_a_lease_file_nothing_is_held() {
        let mut store = LeaseStore::open(None, LeaseDb::default(), waker()).expect("open");
        store.commit(&mut Vec::new());
        assert_eq!(store.send_durable(|_| panic!("nothing held")), 0);
        assert!(store.path().is_none());
    }
}
