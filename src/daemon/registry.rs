//! The runtime registry of running links: how `bridge-ctl status` without
//! NAME finds every link, whatever its `control.socket`.
//!
//! A daemon writes one file into [`REGISTRY_DIR`] once its control socket
//! listens, named after the link and its socket (two links of one name in
//! two network namespaces do not collide), holding the socket's path; it
//! removes the file when it takes the link down. A file left by a killed
//! daemon names a socket nobody answers on and whose lock nobody holds:
//! [`registered_sockets`] skips it and removes it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use super::lock::lock_held_at;

/// Where the registry lives.
pub const REGISTRY_DIR: &str = "/run/tapbridge/links";

/// A link's entry in the registry; dropping it removes the entry.
#[derive(Debug)]
pub struct Registration {
    path: PathBuf,
}

impl Registration {
    /// Enters link `name`, whose control socket is `socket`, in the
    /// registry in `dir` (atomically: a reader sees the whole entry or
    /// none).
    pub fn enter(dir: &Path, name: &str, socket: &Path) -> std::io::Result<Registration> {
        std::fs::create_dir_all(dir)?;
        let mut h = DefaultHasher::new();
        socket.hash(&mut h);
        let path = dir.join(format!("{name}.{:016x}", h.finish()));
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        let mut f = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        writeln!(f, "{}", socket.display())?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        Ok(Registration { path })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The control sockets of the links registered in `dir`, sorted. An entry
/// whose socket is gone and whose lock nobody holds (its daemon was killed)
/// is removed.
pub fn registered_sockets(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let entry = e.path();
        if entry.extension().is_some_and(|x| x == "tmp") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&entry) else {
            continue;
        };
        let socket = PathBuf::from(text.trim_end_matches('\n'));
        if !socket.is_absolute() {
            continue;
        }
        if !socket.exists() && !lock_held_at(&socket.with_extension("lock")) {
            let _ = std::fs::remove_file(&entry);
            continue;
        }
        out.push(socket);
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    #[test]
    fn an_entry_lives_as_long_as_its_registration_and_a_stale_one_is_swept() {
        let dir = TempDir::new("registry");
        let reg = dir.0.join("links");
        let sock_a = dir.0.join("a.sock");
        let sock_b = dir.0.join("elsewhere/b.sock");
        std::fs::write(&sock_a, "").expect("socket stand-in");
        let a = Registration::enter(&reg, "a", &sock_a).expect("enter a");
        let b = Registration::enter(&reg, "b", &sock_b).expect("enter b");
        // b's socket does not exist and nobody holds its lock: a killed
        // daemon's entry, swept.
        assert_eq!(registered_sockets(&reg), vec![sock_a.clone()]);
        assert_eq!(std::fs::read_dir(&reg).expect("dir").count(), 1);
        drop(b);
        drop(a);
        assert!(registered_sockets(&reg).is_empty());
        assert_eq!(std::fs::read_dir(&reg).expect("dir").count(), 0);
    }

    #[test]
    fn one_name_with_two_sockets_is_two_entries() {
        let dir = TempDir::new("registry2");
        let reg = dir.0.join("links");
        let (s1, s2) = (dir.0.join("1/x.sock"), dir.0.join("2/x.sock"));
        for s in [&s1, &s2] {
            std::fs::create_dir_all(s.parent().expect("parent")).expect("mkdir");
            std::fs::write(s, "").expect("socket stand-in");
        }
        let _r1 = Registration::enter(&reg, "x", &s1).expect("enter");
        let _r2 = Registration::enter(&reg, "x", &s2).expect("enter");
        assert_eq!(registered_sockets(&reg), vec![s1, s2]);
    }
}
