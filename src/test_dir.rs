//! [`TempDir`] for unit tests: a fresh directory under the system's
//! temporary directory, removed on drop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Tells apart the directories of tests that run at once in one process,
/// even when they pass the same tag.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A directory of its own for one test (`tag`, the pid and a counter name
/// it), empty when made and removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "tb-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
