//! Opening the TCP transport's sockets: the listener (bound with
//! `TCP_DEFER_ACCEPT`, accepted from into [`Conns`]) and the connections we
//! open to peers (non-blocking connects from the link's own address).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, sockopt};

use super::{Conns, DEFER_ACCEPT_SECS, LISTENER};

/// A non-blocking TCP listener on `addr`, for [`Conns::install_listener`].
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    // Connections that send nothing stay in the kernel (SYN cookies under
    // pressure) instead of taking a place here. Best effort: without it,
    // the admission bounds still hold.
    let _ = super::super::udp::setsockopt_int(
        &l,
        nix::libc::IPPROTO_TCP,
        nix::libc::TCP_DEFER_ACCEPT,
        DEFER_ACCEPT_SECS,
    );
    Ok(l)
}

impl Conns {
    /// Starts or stops listening on `addr` (a reload); a no-op when that is
    /// already so.
    pub fn listen(&mut self, addr: SocketAddr, on: bool) -> io::Result<()> {
        if self.listening_on() == (on.then_some(addr)) {
            return Ok(());
        }
        if on {
            return self.install_listener(bind_listener(addr)?);
        }
        self.stop_listening();
        Ok(())
    }

    /// The address the listener is bound to, if one is open.
    pub fn listening_on(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Listens with `l` (from [`bind_listener`], bound by a reload before it
    /// took the lock), closing the listener before it.
    pub fn install_listener(&mut self, l: TcpListener) -> io::Result<()> {
        self.stop_listening();
        self.epoll
            .add(&l, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
            .map_err(io::Error::from)?;
        self.listener = Some(l);
        Ok(())
    }

    fn stop_listening(&mut self) {
        if let Some(l) = self.listener.take() {
            let _ = self.epoll.delete(&l);
        }
    }

    /// Whether a listener is open.
    pub fn listening(&self) -> bool {
        self.listener.is_some()
    }

    /// The port the listener is bound to, if one is open.
    pub fn local_port(&self) -> Option<u16> {
        let l = self.listener.as_ref()?;
        l.local_addr().ok().map(|a| a.port())
    }

    /// Accepts what the listener has; each new connection goes in
    /// `readable`, so its first record is read in this wake-up.
    pub(super) fn accept(&mut self, now: Instant, readable: &mut Vec<usize>) {
        loop {
            let Some(l) = self.listener.as_ref() else {
                return;
            };
            let (stream, remote) = match l.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of fds or memory: the next readiness retries.
                    tracing::warn!("TCP accept failed: {e}");
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            let remote = super::super::udp::canonical(remote);
            self.counters.accepted += 1;
            if let Some(slot) = self.insert(stream, remote, false, true, now) {
                readable.push(slot);
            }
        }
    }

    /// Opens a connection to `to` in the background.
    pub(super) fn connect(&mut self, to: SocketAddr, now: Instant) -> Option<usize> {
        let family = if to.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let fd: OwnedFd = socket::socket(
            family,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .ok()?;
        let _ = socket::setsockopt(&fd, sockopt::TcpNoDelay, &true);
        if let Some(b) = self.bind.filter(|b| b.is_ipv4() == to.is_ipv4()) {
            let _ = bind_to(&fd, b);
        }
        let started = match to {
            SocketAddr::V4(a) => socket::connect(fd.as_raw_fd(), &SockaddrIn::from(a)),
            SocketAddr::V6(a) => socket::connect(fd.as_raw_fd(), &SockaddrIn6::from(a)),
        };
        match started {
            Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
            Err(_) => return None,
        }
        self.insert(TcpStream::from(fd), to, true, false, now)
    }
}

/// Binds an outgoing socket to our local address (a site listening on one
/// address connects from it too).
fn bind_to(fd: &OwnedFd, addr: SocketAddr) -> nix::Result<()> {
    match addr {
        SocketAddr::V4(a) => socket::bind(fd.as_raw_fd(), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(a)),
    }
}
