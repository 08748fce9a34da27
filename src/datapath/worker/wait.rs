//! How a worker sleeps until one of its descriptors is ready: one epoll
//! instance per worker with its descriptors registered once (level
//! triggered), each under its index in the worker's list.
//!
//! `poll(2)` on the same list hooked the worker into every descriptor's
//! wait queue before each sleep and unhooked it after, and asked each
//! descriptor for its state again on the way out: measured on a ping's
//! round trip (`bench.sh --breakdown`), a woken worker took 24 µs from being
//! scheduled to its first read, against 14 µs for a daemon using epoll.

use std::io;
use std::os::fd::BorrowedFd;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Most descriptors a worker watches.
pub(super) const MAX_FDS: usize = 8;

/// A worker's epoll instance.
pub struct Waiter {
    epoll: Epoll,
    events: [EpollEvent; MAX_FDS],
    /// Whether the descriptor [`want_out`](Self::want_out) names is also
    /// watched for room to send now.
    out: bool,
}

impl Waiter {
    /// Watches `fds` for input, each under its index.
    pub(super) fn new(fds: &[BorrowedFd<'_>]) -> io::Result<Waiter> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        let mut w = Waiter {
            epoll,
            events: [EpollEvent::empty(); MAX_FDS],
            out: false,
        };
        for (i, fd) in fds.iter().enumerate() {
            w.add(*fd, i)?;
        }
        Ok(w)
    }

    /// Also watches `fd` for input, under `index` (below [`MAX_FDS`]).
    pub(super) fn add(&mut self, fd: BorrowedFd<'_>, index: usize) -> io::Result<()> {
        debug_assert!(
            index < MAX_FDS,
            "a worker watches at most {MAX_FDS} descriptors"
        );
        self.epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, index as u64))
            .map_err(io::Error::from)
    }

    /// Watches `fd` (registered under `index`) for room to send as well,
    /// or no longer: while a batch waits for a full socket. One descriptor
    /// of a worker is ever watched this way.
    pub(super) fn want_out(&mut self, fd: BorrowedFd<'_>, index: usize, on: bool) {
        if self.out == on {
            return;
        }
        let flags = if on {
            EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
        } else {
            EpollFlags::EPOLLIN
        };
        let mut ev = EpollEvent::new(flags, index as u64);
        // Only fails for a descriptor that is not registered, which this
        // one is; then the worker wakes on input only.
        if self.epoll.modify(fd, &mut ev).is_ok() {
            self.out = on;
        }
    }

    /// Waits up to `ms` milliseconds; which of the descriptors are ready
    /// (none when a signal interrupted the wait; an error is logged and
    /// slows the loop down rather than spinning it).
    pub(super) fn wait<const N: usize>(&mut self, ms: u16) -> [bool; N] {
        let mut ready = [false; N];
        let n = match self.epoll.wait(&mut self.events, EpollTimeout::from(ms)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => return ready,
            Err(e) => {
                tracing::error!("epoll_wait failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
                return ready;
            }
        };
        for ev in &self.events[..n] {
            if let Some(r) = usize::try_from(ev.data())
                .ok()
                .and_then(|i| ready.get_mut(i))
            {
                *r = true;
            }
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use nix::sys::eventfd::EventFd;

    use super::*;

    #[test]
    fn reports_ready_descriptors_by_index_and_input_only_by_default() {
        let a = EventFd::new().expect("an eventfd");
        let b = EventFd::new().expect("an eventfd");
        let mut w = Waiter::new(&[a.as_fd(), b.as_fd()]).expect("an epoll instance");
        assert_eq!(w.wait::<2>(0), [false, false]);
        b.write(1).expect("written");
        assert_eq!(w.wait::<2>(0), [false, true]);
        // Level-triggered: still ready until read.
        assert_eq!(w.wait::<2>(0), [false, true]);
        b.read().expect("read");
        // An eventfd can always take more: ready for output once asked.
        w.want_out(a.as_fd(), 0, true);
        assert_eq!(w.wait::<2>(0), [true, false]);
        w.want_out(a.as_fd(), 0, false);
        assert_eq!(w.wait::<2>(0), [false, false]);
    }

    #[test]
    fn an_index_beyond_the_answer_is_ignored() {
        let a = EventFd::new().expect("an eventfd");
        let w_fd = EventFd::new().expect("an eventfd");
        let mut w = Waiter::new(&[a.as_fd()]).expect("an epoll instance");
        w.add(w_fd.as_fd(), 5).expect("added");
        w_fd.write(1).expect("written");
        assert_eq!(w.wait::<2>(0), [false, false]);
    }
}
