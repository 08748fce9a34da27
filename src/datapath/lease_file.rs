//! The DHCP lease file on disk: the I/O half of the lease file format, kept
//! out of the pure responder (which only turns the database into bytes and
//! back, see [`LeaseDb::load`] and [`LeaseDb::to_bytes`]). The lease store
//! (`super::lease_store`) builds on it: it writes snapshots with
//! [`write_lease_file_atomic`] and keeps journals beside the file.
//!
//! Promises: a missing file reads as an empty database; an unreadable or
//! corrupt one is an error naming the file ([`read_lease_file`]), or, with
//! [`load_or_set_aside`], is renamed to `<file>.corrupt-<unix time>` and read
//! as empty, so a damaged file never keeps a link down; a write replaces the file
//! atomically and durably (temp file, fsync, rename, fsync of the directory),
//! so after a crash it holds either the old or the new content, never a mix.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::leases::LeaseDb;

/// Errors reading or writing the lease file. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LeaseFileError {
    /// The lease file could not be read or written.
    #[error("cannot access lease file {}: {source}", path.display())]
    Io {
        /// The lease file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The lease file exists but is not a valid lease database.
    #[error("lease file {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The lease file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
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
    LeaseDb::load(&bytes).map_err(|reason| LeaseFileError::Corrupt {
        path: path.to_owned(),
        reason,
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
pub(crate) struct Pace {
    pub chunk: usize,
    pub pause: std::time::Duration,
}

/// [`write_lease_file_atomic`], optionally paced.
pub(crate) fn replace_file(path: &Path, bytes: &[u8], pace: Option<Pace>) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::MacAddr;
    use std::net::Ipv4Addr;

    const M1: MacAddr = MacAddr([2, 0, 0, 0, 0xaa, 1]);
    const T0: u64 = 1_700_000_000;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, 0, last)
    }

    #[test]
    fn corrupt_file_is_set_aside_and_read_as_empty() {
        let dir = std::env::temp_dir().join(format!("tb-leases-aside-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("site.leases");
        let (db, report) = load_or_set_aside(&path, T0);
        assert!(db.is_empty() && report.is_none(), "missing file is fine");
        fs::write(&path, b"\x00garbage{").expect("write");
        let (db, report) = load_or_set_aside(&path, T0);
        assert!(db.is_empty());
        let report = report.expect("set aside");
        assert!(report.error.to_string().contains("site.leases"));
        let aside = report.moved_to.expect("renamed");
        assert_eq!(aside, dir.join(format!("site.leases.corrupt-{T0}")));
        assert_eq!(fs::read(&aside).expect("kept"), b"\x00garbage{");
        assert!(!path.exists());
        // A good file is read as is.
        let mut good = LeaseDb::default();
        let lease = crate::leases::Lease {
            ip: ip(100),
            expires: T0,
            mac: M1,
            renewed: false,
        };
        good.insert(&[0xff, 1, 2, 3], lease);
        write_lease_file_atomic(&path, &good.to_bytes()).expect("write");
        let (db, report) = load_or_set_aside(&path, T0 + 1);
        assert!(report.is_none());
        assert_eq!(db, good);
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn lease_file_io_round_trip() {
        let dir = std::env::temp_dir().join(format!("tb-leases-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("site.leases");
        assert!(read_lease_file(&path).expect("missing is empty").is_empty());
        let mut db = LeaseDb::default();
        let lease = crate::leases::Lease {
            ip: ip(100),
            expires: T0,
            mac: M1,
            renewed: true,
        };
        db.insert(&[1, 2, 0, 0, 0, 0xaa, 1], lease);
        write_lease_file_atomic(&path, &db.to_bytes()).expect("write");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_lease_file(&path).expect("read"), db);
        fs::write(&path, b"not json").expect("write");
        let err = read_lease_file(&path).expect_err("corrupt").to_string();
        assert!(err.contains("site.leases"), "{err}");
        let leftovers: Vec<_> = fs::read_dir(&dir).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
