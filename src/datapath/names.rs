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
        let peers = self.config.peers.iter().filter_map(|p| {
            let e @ PeerEndpoint::Name { .. } = p.endpoint.as_ref()? else {
                return None;
            };
            let state = tunnel.peer_status(tunnel.peer_id(&p.name)?)?.state;
            Some((p.name.as_str(), e, state))
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
    /// whose host a reload just named) is pointed at a new address and
    /// handshakes with it at once. Answers about a peer whose endpoint
    /// changed since the question are dropped.
    pub(super) fn take_resolved(&mut self, now: Instant) {
        while let Some(answer) = self.resolver.try_answer() {
            let q = &answer.query;
            let asked = PeerEndpoint::Name {
                host: q.host.clone(),
                port: q.port,
            };
            let current = self
                .config
                .peers
                .iter()
                .any(|p| p.name == q.peer && p.endpoint.as_ref() == Some(&asked));
            let Some(id) = self.tunnel.peer_id(&q.peer).filter(|_| current) else {
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
                Ok(addr) if st.endpoint == Some(addr) => {
                    // Records the address as configured; no new handshake.
                    self.tunnel.set_peer_endpoint(id, Some(addr), now);
                }
                Ok(_) if st.state == PeerState::Up && !q.forced => {}
                Ok(addr) => {
                    tracing::info!(
                        peer = %q.peer, host = %q.host, %addr,
                        "endpoint name resolved to a new address"
                    );
                    self.tunnel.set_peer_endpoint(id, Some(addr), now);
                }
            }
        }
    }
}
