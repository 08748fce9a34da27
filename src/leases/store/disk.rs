//! The lease files on disk (I/O): the lease file itself, the journals
//! beside it, and what the store does to them. The formats are pure and
//! live elsewhere ([`crate::leases::file`], [`crate::leases::journal`]);
//! this module reads and writes the bytes.
//!
//! Promises: a missing file reads as an empty database; an unreadable or
//! corrupt one is an error naming the file ([`read_lease_file`]), or, with
//! [`load_or_set_aside`] (and so [`load`]), is renamed to
//! `<file>.corrupt-<unix time>` and read as empty, so a damaged file never
//! keeps a link down; a journal with a bad line counts up to that line and
//! is set aside the same way ([`load_at`]). A write replaces the file
//! atomically and durably (temp file, fsync, rename, fsync of the
//! directory), so after a crash it holds either the old or the new content,
//! never a mix; a compaction (`compact`) writes the snapshot before it
//! deletes the journals it covers, so a crash between the two loses nothing.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Chain;
use crate::leases::{LeaseDb, journal};

/// Errors reading or writing the lease file. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LeaseFileError {
    /// The lease file could not be read or written.
    #[error("cannot access lease file {}", path.display())]
    Io {
        /// The lease file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The lease file exists but is not a valid lease database.
    #[error("lease file {} is corrupt", path.display())]
    Corrupt {
        /// The lease file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        error: crate::leases::FormatError,
    },
}

/// Why [`load`] failed: the one thing that keeps a link from starting
/// with its leases. (A lease file or journal that cannot be read is no
/// error: it is set aside and logged.)
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The lease file's directory does not exist and cannot be created.
    #[error("cannot create the lease directory {}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// What the OS said.
        #[source]
        cause: io::Error,
    },
}

/// Read the leases of the lease file `path` at start-up (or when a reload
/// starts DHCP): creates its directory if need be, then reads the file and
/// replays its journals ([`load_at`], now). A file or journal that cannot be
/// read or parsed is moved aside and logged; the link then starts with what
/// could be read (SPEC §5: never a reason for `link up` to fail).
pub fn load(path: &Path) -> Result<LeaseDb, LoadError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|cause| LoadError::CreateDir {
            dir: dir.to_owned(),
            cause,
        })?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (db, aside, warnings) = load_at(path, now);
    for w in warnings {
        tracing::warn!("{w}");
    }
    if let Some(a) = aside {
        match a.moved_to {
            Ok(to) => tracing::warn!(
                "{}; moved it to {} and starting with no leases",
                Chain(&a.error),
                to.display()
            ),
            Err(e) => tracing::warn!(
                "{}; could not move it aside ({e}); starting with no leases",
                Chain(&a.error)
            ),
        }
    }
    Ok(db)
}

/// Read and parse a lease file. A missing file is an empty database; an
/// unreadable or corrupt one is an error that names the file.
pub fn read_lease_file(path: &Path) -> Result<LeaseDb, LeaseFileError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LeaseDb::default()),
        Err(source) => {
            return Err(LeaseFileError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    LeaseDb::load(&bytes).map_err(|error| LeaseFileError::Corrupt {
        path: path.to_owned(),
        error,
    })
}

/// What [`load_or_set_aside`] did with a lease file it could not use.
#[derive(Debug)]
pub struct SetAside {
    /// Why the file could not be used.
    pub error: LeaseFileError,
    /// Where it was moved, or why moving it failed.
    pub moved_to: Result<PathBuf, std::io::Error>,
}

/// Read the lease file at `path`; if it cannot be read or parsed, move it to
/// `<path>.corrupt-<now_unix>` (kept for the operator, never overwritten by
/// our next write) and start from an empty database. Never fails: the caller
/// logs the [`SetAside`] report.
pub fn load_or_set_aside(path: &Path, now_unix: u64) -> (LeaseDb, Option<SetAside>) {
    match read_lease_file(path) {
        Ok(db) => (db, None),
        Err(error) => {
            let mut aside = path.as_os_str().to_owned();
            aside.push(format!(".corrupt-{now_unix}"));
            let aside = PathBuf::from(aside);
            let moved_to = fs::rename(path, &aside).map(|()| aside);
            (LeaseDb::default(), Some(SetAside { error, moved_to }))
        }
    }
}

/// Replace `path` with `bytes` atomically and durably: write a temp file in
/// the same directory (mode 0600), fsync it, rename it over `path`, fsync the
/// directory. After a crash the file holds either the old or the new content.
pub fn write_lease_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), LeaseFileError> {
    replace_file(path, bytes, None).map_err(|source| LeaseFileError::Io {
        path: path.to_owned(),
        source,
    })
}

/// How [`replace_file`] spreads a large write: `chunk` bytes at a time, each
/// flushed to disk, then a pause, so other writers' `fdatasync`s on the same
/// disk never queue behind the whole file.
#[derive(Clone, Copy)]
struct Pace {
    chunk: usize,
    pause: Duration,
}

/// [`write_lease_file_atomic`], optionally paced.
fn replace_file(path: &Path, bytes: &[u8], pace: Option<Pace>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    // Unique per call: a background compaction and a commit never share one.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}-{n}", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        match pace {
            None => f.write_all(bytes)?,
            Some(p) => {
                for chunk in bytes.chunks(p.chunk.max(1)) {
                    f.write_all(chunk)?;
                    f.sync_data()?;
                    std::thread::sleep(p.pause);
                }
            }
        }
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// What [`load_at`] found besides the records: each entry one sentence for
/// the log.
pub type LoadWarnings = Vec<String>;

/// Read the lease file at `path` and replay its journals: [`load`] at
/// `now_unix`, with what it found returned instead of logged. A lease file that
/// cannot be read or parsed is moved aside as before (see
/// [`load_or_set_aside`]); a journal with a bad line is replayed up to that
/// line and moved aside to `<journal>.corrupt-<now_unix>`. Never fails.
pub fn load_at(path: &Path, now_unix: u64) -> (LeaseDb, Option<SetAside>, LoadWarnings) {
    let (mut db, aside) = load_or_set_aside(path, now_unix);
    let mut warnings = Vec::new();
    for (_, journal) in journals(path) {
        let bytes = match fs::read(&journal) {
            Ok(b) => b,
            Err(e) => {
                warnings.push(format!(
                    "cannot read lease journal {}: {e}",
                    journal.display()
                ));
                continue;
            }
        };
        if let Err(e) = journal::replay(&mut db, &bytes) {
            let mut to = journal.as_os_str().to_owned();
            to.push(format!(".corrupt-{now_unix}"));
            let moved = match fs::rename(&journal, &to) {
                Ok(()) => format!("moved it to {}", Path::new(&to).display()),
                Err(m) => format!("could not move it aside ({m})"),
            };
            warnings.push(format!(
                "lease journal {} is corrupt ({}); kept the changes before that line and {moved}",
                journal.display(),
                Chain(&e)
            ));
        }
    }
    (db, aside, warnings)
}

/// The journals of the lease file `path`, oldest generation first.
pub(super) fn journals(path: &Path) -> Vec<(u64, PathBuf)> {
    let (dir, name) = split(path);
    let Some(name) = name.to_str() else {
        return Vec::new();
    };
    let prefix = format!("{name}.journal.");
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name();
            let generation = n.to_str()?.strip_prefix(&prefix)?.parse().ok()?;
            Some((generation, e.path()))
        })
        .collect();
    found.sort();
    found
}

pub(super) fn journal_path(path: &Path, generation: u64) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".journal.{generation}"));
    PathBuf::from(p)
}

fn split(path: &Path) -> (&Path, &std::ffi::OsStr) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    (dir, path.file_name().unwrap_or_default())
}

pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    fs::File::open(split(path).0)?.sync_all()
}

/// Write `db` as the lease file, then delete the journals up to and
/// including `through` and make that durable: a compaction. `paced`: write
/// the snapshot in [`PACE`] pieces, each flushed to disk before the
/// next, so a commit's `fdatasync` never queues behind megabytes of
/// snapshot (a background compaction under load).
pub(super) fn compact(
    path: &Path,
    db: &LeaseDb,
    through: u64,
    paced: bool,
) -> Result<u64, LeaseFileError> {
    let bytes = db.to_bytes();
    let io_err = |source| LeaseFileError::Io {
        path: path.to_owned(),
        source,
    };
    replace_file(path, &bytes, paced.then_some(PACE)).map_err(io_err)?;
    let mut removed = false;
    for (g, j) in journals(path) {
        if g <= through {
            fs::remove_file(&j).map_err(io_err)?;
            removed = true;
        }
    }
    if removed {
        sync_dir(path).map_err(io_err)?;
    }
    Ok(bytes.len() as u64)
}

/// A paced compaction writes and flushes its snapshot 256 KiB at a time.
const PACE: Pace = Pace {
    chunk: 256 << 10,
    pause: Duration::from_millis(1),
};

#[cfg(test)]
mod tests;
