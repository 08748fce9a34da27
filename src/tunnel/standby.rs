//! The standby box of a high-availability pair (SPEC §5): a tunnel that is
//! silent. While standing by it has no session, starts no handshake,
//! answers no initiation (the other sites keep one session, with the
//! active box) and runs no timer; every datagram is dropped unread, as an
//! unauthenticated one would be. Becoming active starts a handshake with
//! every peer that has an address, at once: the other sites move their
//! endpoint to this box when the handshake completes (`dispatch.rs`).

use std::time::Instant;

use super::peer::PeerState;
use super::tunnel::{Event, PeerId, Tunnel};

impl Tunnel {
    /// Whether the tunnel stands by ([`set_standby`](Self::set_standby)).
    pub fn standby(&self) -> bool {
        self.standby
    }

    /// Stands by (`true`) or becomes active (`false`). Standing by drops
    /// every session, pending handshake, queued frame and deferred
    /// response at once (a peer that was up reports
    /// [`Event::PeerDown`]); becoming active makes a handshake with every
    /// peer with a known address due now. Setting the state it already has
    /// changes nothing.
    pub fn set_standby(&mut self, standby: bool, now: Instant) {
        if self.standby == standby {
            return;
        }
        self.standby = standby;
        self.touch_all();
        if standby {
            self.index.clear();
            self.jobs.clear();
            for id in PeerId::all(self.peers.len()) {
                let p = &mut self.peers[id];
                p.current = None;
                p.next = None;
                p.older = Default::default();
                p.pending = None;
                p.queue.lens.clear();
                p.timers = Default::default();
                p.attempts = 0;
                p.transport.on_down();
                p.pmtu.pause();
                if p.state == PeerState::Up && !p.removed {
                    self.events.push_back(Event::PeerDown { peer: id });
                }
                p.state = PeerState::Down;
            }
        } else {
            for p in self.peers.iter_mut().filter(|p| !p.removed) {
                p.uplinks.on_session();
                if p.endpoint.is_some() || p.uplinks.best().is_some() {
                    p.timers.rekey = Some(now);
                }
            }
        }
    }
}
