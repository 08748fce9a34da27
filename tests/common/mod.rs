//! Helpers shared by the integration tests.

use nix::sched::{CloneFlags, unshare};

/// Runs `f` on a fresh thread inside a private network namespace that
/// vanishes with the thread. Returns without running it when not root.
pub fn in_netns<F: FnOnce() + Send + 'static>(test: &str, f: F) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping {test}: needs root to create a network namespace");
        return;
    }
    let joined = std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET) as root");
        f();
    })
    .join();
    if let Err(panic) = joined {
        std::panic::resume_unwind(panic);
    }
}
