//! The DHCP lease file on disk: the I/O half of the lease store, kept out of
//! the pure responder (which only turns the database into bytes and back,
//! see [`LeaseDb::load`] and [`LeaseDb::to_bytes`]).
//!
//! Promises: a missing file reads as an empty database; an unreadable or
//! corrupt one is an error naming the file; a write replaces the file
//! atomically and durably (temp file, fsync, rename, fsync of the directory),
//! so after a crash it holds either the old or the new content, never a mix.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::responder::LeaseDb;

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

/// Replace `path` with `bytes` atomically and durably: write a temp file in
/// the same directory (mode 0600), fsync it, rename it over `path`, fsync the
/// directory. After a crash the file holds either the old or the new content.
pub fn write_lease_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), LeaseFileError> {
    let io_err = |source| LeaseFileError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io_err(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
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
    fn lease_file_io_round_trip() {
        let dir = std::env::temp_dir().join(format!("tb-leases-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("site.leases");
        assert!(read_lease_file(&path).expect("missing is empty").is_empty());
        let mut db = LeaseDb::default();
        db.insert(M1, ip(100), T0);
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
