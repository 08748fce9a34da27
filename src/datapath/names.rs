//! The worker's side of host-name endpoints ([`crate::resolver`]): asking
//! the resolver thread about named peers that are not up, and pointing a
//! peer at the address an answer brings. Runs once per wake-up at most,
//! never per frame, and never waits for DNS.

use std::time::Instant;

use super::worker::Worker;
use crate::config::PeerEndpoint;
use crate::resolver::Query;
use crate::tunnel::PeerState;

impl Worker {
    /// Asks the resolver thread about named peers that are connecting or
    /// down, at most every [`crate::resolver::RE_RESOLVE_EVERY`] each.
    pub(super) fn re_resolve(&mut self, now: Instant) {
        if !self.resolver.schedule.check_due(now) {
            return;
        }
        let tunnel = &self.tunnel;
        let peers = self.config.peers.iter().flat_map(|p| {
            let state = tunnel.peer_id(&p.name).and_then(|id| tunnel.peer_state(id));
            p.endpoints
                .iter()
                .filter(|e| matches!(e, PeerEndpoint::Name { .. }))
                .filter_map(move |e| Some((p.name.as_str(), e, state?)))
        });
        for query in self.resolver.schedule.due(now, peers) {
            self.resolver.ask(query, now);
        }
    }

    /// Asks about `name`'s host now, using the answer even if the peer is
    /// up (a reload named this host).
    pub(super) fn resolve_now(&mut self, name: &str, endpoint: &PeerEndpoint, now: Instant) {
        if let PeerEndpoint::Name { host, port } = endpoint {
            let query = Query {
                peer: name.to_owned(),
                host: host.clone(),
                port: *port,
                forced: true,
            };
            self.resolver.ask(query, now);
        }
    }

    /// Applies the resolver thread's answers: a peer that is not up (or
    /// whose host a reload just named) gets the new address in that name's
    /// place in its list of endpoints (and handshakes with it at once if
    /// that is where it should be). Answers about a name the peer no longer
    /// lists are dropped.
    pub(super) fn take_resolved(&mut self, now: Instant) {
        while let Some(answer) = self.resolver.try_answer() {
            let q = &answer.query;
            let asked = PeerEndpoint::Name {
                host: q.host.clone(),
                port: q.port,
            };
            let slot = self
                .config
                .peers
                .iter()
                .find(|p| p.name == q.peer)
                .and_then(|p| p.endpoints.iter().position(|e| *e == asked));
            let (Some(id), Some(slot)) = (self.tunnel.peer_id(&q.peer), slot) else {
                continue;
            };
            let Some(st) = self.tunnel.peer_status(id) else {
                continue;
            };
            match answer.result {
                Err(e) => tracing::warn!(
                    peer = %q.peer, host = %q.host,
                    "cannot resolve the peer's endpoint: {e}"
                ),
                Ok(addr) if st.endpoints.get(slot) == Some(&Some(addr)) => {}
                Ok(_) if st.state == PeerState::Up && !q.forced => {}
                Ok(addr) => {
                    tracing::info!(
                        peer = %q.peer, host = %q.host, %addr,
                        "endpoint name resolved to a new address"
                    );
                    self.tunnel.set_peer_endpoint_at(id, slot, addr, now);
                }
            }
        }
    }
}
