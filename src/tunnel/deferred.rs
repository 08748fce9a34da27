//! Handshake cryptography off the data path's lock.
//!
//! The shell keeps the whole core (tunnel and bridge) behind one lock that
//! every worker takes for each batch of frames. Answering an initiation
//! costs two X25519 operations (~0.1 ms), which would hold that lock while
//! the other workers' frames wait. With deferral on
//! ([`Tunnel::set_deferred_handshakes`]), an initiation received as a
//! datagram is checked in full under the lock (key, MACs, cookie,
//! decryption, name, timestamp, budgets) and its session index reserved,
//! but the response is left as a [`HandshakeJob`]: the shell takes the
//! jobs ([`Tunnel::take_handshake_jobs`]), runs them without the lock
//! ([`HandshakeJob::run`]: the DH and the response message, touching no
//! tunnel state) and hands them back under the lock
//! ([`Tunnel::finish_handshake`]), which sends the response and installs
//! the session if the index is still the peer's. The initiation's
//! timestamp is taken as the last accepted when the job is queued, so a
//! replay in the same batch is refused. At most [`MAX_JOBS`] wait; past
//! that, and for TCP records, the response is made at once as before.

use std::time::Instant;

use zeroize::Zeroizing;

use super::crypto::MacKey;
use super::handshake::{self, ReceivedInitiation, SessionKeys};
use super::peer::Session;
use super::replay::ReplayWindow;
use super::transport::Dest;
use super::tunnel::{PeerId, Transmit, Tunnel};
use crate::wire::tunnel::field;

/// Jobs that may wait for the shell at once.
pub const MAX_JOBS: usize = 64;

/// What the response to one accepted initiation still needs: the DH.
pub struct HandshakeJob {
    peer: PeerId,
    local_index: u32,
    remote_index: u32,
    dest: Dest,
    work: Option<Work>,
    done: Option<(SessionKeys, [u8; field::RESP_LEN])>,
}

struct Work {
    init: ReceivedInitiation,
    mac: MacKey,
    ephemeral: Zeroizing<[u8; 32]>,
    timestamp: [u8; 12],
}

impl HandshakeJob {
    /// The peer whose initiation this answers.
    pub(super) fn peer(&self) -> PeerId {
        self.peer
    }

    /// Does the DH and writes the response (pure computation; call it
    /// without the core's lock). Running a job twice does nothing more.
    pub fn run(&mut self) {
        let Some(w) = self.work.take() else {
            return;
        };
        let mut msg = [0u8; field::RESP_LEN];
        if let Ok(keys) = handshake::write_response(
            w.init,
            &w.mac,
            *w.ephemeral,
            self.local_index,
            w.timestamp,
            &mut msg,
        ) {
            self.done = Some((keys, msg));
        }
    }
}

impl std::fmt::Debug for HandshakeJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeJob")
            .field("peer", &self.peer)
            .field("done", &self.done.is_some())
            .finish_non_exhaustive()
    }
}

impl Tunnel {
    /// Leave the DH of responses to initiations received as datagrams to
    /// the shell (see the module `deferred`); off by default.
    pub fn set_deferred_handshakes(&mut self, on: bool) {
        self.defer_dh = on;
    }

    /// Moves the handshakes waiting for their DH into `out`.
    pub fn take_handshake_jobs(&mut self, out: &mut Vec<HandshakeJob>) {
        out.append(&mut self.jobs);
    }

    /// Queues the response to the accepted initiation `init` (taking it)
    /// if deferral is on and there is room; leaves it otherwise.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn defer_response(
        &mut self,
        peer: PeerId,
        init: &mut Option<ReceivedInitiation>,
        mac: &MacKey,
        ephemeral: [u8; 32],
        local_index: u32,
        timestamp: [u8; 12],
        dest: Dest,
    ) {
        if !self.defer_dh || dest.stream || self.jobs.len() >= MAX_JOBS {
            return;
        }
        let Some(init) = init.take() else {
            return;
        };
        self.peers[peer].last_timestamp = Some(init.timestamp);
        let remote_index = init.sender;
        self.jobs.push(HandshakeJob {
            peer,
            local_index,
            remote_index,
            dest,
            work: Some(Work {
                init,
                mac: mac.clone(),
                ephemeral: Zeroizing::new(ephemeral),
                timestamp,
            }),
            done: None,
        });
    }

    /// Completes a job the shell ran: sends the response and installs the
    /// session as the peer's next, unless the peer or its reserved index
    /// went away meanwhile (then nothing is sent).
    pub fn finish_handshake<T: Transmit + ?Sized>(
        &mut self,
        mut job: HandshakeJob,
        now: Instant,
        tx: &mut T,
    ) {
        job.run();
        let id = job.peer;
        let reserved = self.index.get(&job.local_index) == Some(&id);
        let live = self.peers.get(id.index()).is_some_and(|p| !p.removed);
        let done = job.done.take();
        let (Some((keys, msg)), true, true) = (done, reserved, live) else {
            if reserved {
                self.index.remove(&job.local_index);
            }
            return;
        };
        let buf = job.dest.buffer(tx);
        if buf.len() < field::RESP_LEN {
            self.index.remove(&job.local_index);
            return;
        }
        buf[..field::RESP_LEN].copy_from_slice(&msg);
        job.dest.commit(tx, field::RESP_LEN);
        self.touch(id);
        let old = self.peers[id].next.replace(Session {
            local_index: job.local_index,
            remote_index: job.remote_index,
            keys,
            send_counter: 0,
            replay: ReplayWindow::new(),
            created: now,
        });
        Self::drop_session(&mut self.index, old);
    }
}
