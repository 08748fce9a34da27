//! [`LinkLock`]: one daemon per link, decided before anything is touched.
//!
//! `link up` takes an exclusive `flock` on `NAME.lock` beside the control
//! socket before it looks for a running daemon, a stale TAP or a stale
//! socket, and holds it until the daemon has taken everything down again.
//! A second `link up` of the same link (another administrator, systemd)
//! finds the lock held and refuses at once, having changed nothing; only the
//! holder cleans up what a dead instance left. The kernel drops the lock
//! when its holder exits, `kill -9` included, so a lock is never stale.
//!
//! The file itself stays: removing it would let a third instance lock a new
//! file of the same name while the second still waits on the old one.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::DaemonError;
use crate::config::Config;

/// Held while a daemon runs its link; dropping it lets the next one in.
#[derive(Debug)]
pub struct LinkLock {
    _file: Flock<File>,
}

/// The lock file of `cfg`'s link: beside its control socket.
pub fn lock_path(cfg: &Config) -> PathBuf {
    cfg.control.socket.with_extension("lock")
}

impl LinkLock {
    /// Takes the link's lock and writes our pid into it, or says who holds
    /// it ([`DaemonError::AlreadyUp`]).
    pub fn acquire(cfg: &Config) -> Result<LinkLock, DaemonError> {
        let path = lock_path(cfg);
        let file = open(&path)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((file, Errno::EWOULDBLOCK)) => {
                return Err(DaemonError::AlreadyUp {
                    name: cfg.name.clone(),
                    link: cfg.command_line_name(),
                    pid: holder(file),
                });
            }
            Err((_, e)) => return Err(lock_error(&path, e.into())),
        };
        let mut write = || -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())
        };
        write().map_err(|e| lock_error(&path, e))?;
        Ok(LinkLock { _file: file })
    }

    /// Does a daemon hold `cfg`'s link? (Looks without taking the lock
    /// for longer than the look.)
    pub fn is_held(cfg: &Config) -> bool {
        lock_held_at(&lock_path(cfg))
    }
}

/// Does a daemon hold the lock file at `path`?
pub(super) fn lock_held_at(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    matches!(
        Flock::lock(file, FlockArg::LockExclusiveNonblock),
        Err((_, Errno::EWOULDBLOCK))
    )
}

fn open(path: &Path) -> Result<File, DaemonError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| lock_error(path, e))?;
    }
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| lock_error(path, e))
}

/// The pid the holder wrote (0 if it has not yet, or wrote nonsense).
fn holder(mut file: File) -> u32 {
    let mut s = String::new();
    let _ = std::io::Read::take(&mut file, 32).read_to_string(&mut s);
    s.trim().parse().unwrap_or(0)
}

fn lock_error(path: &Path, source: std::io::Error) -> DaemonError {
    DaemonError::Lock {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let text = format!(
            "[interface]\n[tunnel]\nlisten = \"198.18.0.1:51901\"\npsk_file = \"k\"\n\
             [control]\nsocket = \"{}\"\n[[peer]]\nname = \"x\"\n",
            dir.join("lk.sock").display()
        );
        Config::parse("lk", Path::new("/etc/tapbridge/lk.toml"), &text).expect("valid config")
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = crate::test_dir::TempDir::new("lock");
        let cfg = config(&dir.0);
        assert!(!LinkLock::is_held(&cfg));
        let first = LinkLock::acquire(&cfg).expect("the first takes the lock");
        assert!(LinkLock::is_held(&cfg));
        match LinkLock::acquire(&cfg) {
            Err(DaemonError::AlreadyUp { name, pid, .. }) => {
                assert_eq!((name.as_str(), pid), ("lk", std::process::id()));
            }
            other => panic!("expected AlreadyUp, got {other:?}"),
        }
        drop(first);
        assert!(!LinkLock::is_held(&cfg));
        let again = LinkLock::acquire(&cfg).expect("free again after the drop");
        drop(again);
        assert!(lock_path(&cfg).exists(), "the file stays");
    }

    #[test]
    fn a_lock_file_that_is_a_symlink_is_refused() {
        let dir = crate::test_dir::TempDir::new("lock");
        let cfg = config(&dir.0);
        std::os::unix::fs::symlink(dir.0.join("elsewhere"), lock_path(&cfg)).expect("symlink");
        match LinkLock::acquire(&cfg) {
            Err(e @ DaemonError::Lock { .. }) => {
                assert!(e.to_string().contains("lk.lock"), "{e}");
            }
            other => panic!("expected a lock error, got {other:?}"),
        }
        assert!(!dir.0.join("elsewhere").exists());
    }
}
