//! The first worker's bookkeeping under the lock: the bridge's timers and
//! loop events, the tunnel's session events (the audit log, hooks, path
//! MTU ceilings), ARP refusals, and handing lease changes to the lease
//! store.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use super::super::tap::TapQueue;
use super::Worker;
use super::lane::Lane;
use super::out::{Out, TapOut, UdpTx};
use crate::guard::LoopEvent;
use crate::tunnel::{Event, HandshakeRefusal, PeerId, PeerStats};

impl Worker {
    /// The bridge's timers (loop probes and hold-downs, the responder's
    /// own frames: see [`Bridge::handle_timeout`]), then its events: a loop
    /// start or end is logged with the peer (at most one of each per peer
    /// and hold-down) and makes the Linux bridge forget what it learned on
    /// the TAP's port.
    pub(super) fn bridge_timers(&mut self, lane: &mut Lane, now: Instant, wall: SystemTime) {
        let mut out = out!(self, lane, now);
        self.bridge.handle_timeout(now, wall, &mut out);
        if let Some(c) = self
            .bridge
            .responder_mut()
            .and_then(|r| r.take_conflict_log(now))
        {
            tracing::warn!(
                conflicts = c.count,
                ip = %c.ip,
                mac = %c.mac,
                "DHCP address in use by another host, not offered"
            );
        }
        if let Some(n) = self
            .bridge
            .responder_mut()
            .and_then(|r| r.take_early_offers(now))
        {
            tracing::warn!(
                offers = n,
                held = crate::responder::dhcp::MAX_HELD,
                "DHCP offers sent before their conflict probe's hold ended: \
                 the held offers were at their bound (a burst of DISCOVERs)"
            );
        }
        while let Some(ev) = self.bridge.poll_event() {
            self.bridge_port_stale = true;
            match ev {
                LoopEvent::LoopStarted { peer, hold } => tracing::warn!(
                    peer = %self.peer_name(peer),
                    loops_detected = self.bridge.guard_counters().loops_detected,
                    "forwarding loop: the probe sent to this peer came back through the TAP, so \
                     its LAN also reaches ours another way; nothing but probes is exchanged with \
                     it until that path has been gone for {}s (other peers are not affected)",
                    hold.as_secs()
                ),
                LoopEvent::LoopEnded { peer, lasted } => tracing::info!(
                    peer = %self.peer_name(peer),
                    "forwarding loop gone after {}s; frames to and from this peer flow again",
                    lasted.as_secs()
                ),
                LoopEvent::PairLoopStarted { a, b, hold } => tracing::warn!(
                    peer = %self.peer_name(a),
                    other = %self.peer_name(b),
                    loops_detected = self.bridge.guard_counters().loops_detected,
                    "forwarding loop between two peers: the probe sent to this peer came back \
                     from the other, so their LANs are also joined another way; nothing is relayed \
                     between the two until that path has been gone for {}s (both still reach us \
                     and the other peers)",
                    hold.as_secs()
                ),
                LoopEvent::PairLoopEnded { a, b, lasted } => tracing::info!(
                    peer = %self.peer_name(a),
                    other = %self.peer_name(b),
                    "forwarding loop between two peers gone after {}s; relaying between them \
                     resumes",
                    lasted.as_secs()
                ),
                LoopEvent::BridgedTwice { peer } => tracing::warn!(
                    peer = %self.peer_name(peer),
                    loops_detected = self.bridge.guard_counters().loops_detected,
                    "this peer's LAN is bridged into the tunnel twice: the probe sent to it came \
                     back from it through its own LAN (both boxes of an HA pair active?); nothing \
                     circulates through this site, so nothing is cut here"
                ),
            }
        }
    }

    /// A peer's configured name, for the log ("-" if there is none).
    pub(super) fn peer_name(&self, p: PeerId) -> String {
        self.tunnel
            .peer_status(p)
            .map_or_else(|| "-".into(), |s| s.name)
    }

    /// One log line per session event, with the traffic since the previous
    /// event of that peer: the audit trail. Returns whether a peer's state
    /// may have changed. Also feeds the path MTU search the kernel's limit
    /// towards a peer when its path may have changed.
    pub(super) fn log_events(&mut self, logged: &mut Vec<PeerStats>, now: Instant) -> bool {
        let mut changed = false;
        while let Some(ev) = self.tunnel.poll_event() {
            let peer: PeerId = match &ev {
                Event::HandshakeCompleted { peer, .. }
                | Event::PeerDown { peer }
                | Event::EndpointMoved { peer, .. } => *peer,
                Event::PathMtuChanged { peer, mtu, lost } => {
                    let (peer, mtu, lost) = (*peer, *mtu, *lost);
                    let Some(st) = self.tunnel.peer_status(peer) else {
                        continue;
                    };
                    if lost {
                        tracing::warn!(
                            peer = %st.name, mtu,
                            "path MTU lowered: larger packets were lost or the route is narrower"
                        );
                        // The kernel may know the limit (an ICMP that did arrive).
                        self.refresh_path_ceiling(peer, st.endpoint, now);
                    } else {
                        tracing::debug!(peer = %st.name, mtu, "path MTU");
                    }
                    continue;
                }
                Event::TransportChanged { peer, tcp } => {
                    let (peer, tcp) = (*peer, *tcp);
                    if let Some(st) = self.tunnel.peer_status(peer) {
                        if tcp {
                            tracing::warn!(
                                peer = %st.name,
                                "transport: TCP (UDP handshakes went unanswered, or the peer \
                                 came over TCP)"
                            );
                        } else {
                            tracing::info!(peer = %st.name, "transport: UDP");
                        }
                    }
                    changed = true;
                    continue;
                }
                Event::HandshakeRefused { from, peer, reason } => {
                    // The tunnel reports only a few per second.
                    let (from, reason) = (*from, *reason);
                    let name = peer.map_or_else(|| "-".into(), |p| self.peer_name(p));
                    self.log_refusal(from, &name, reason);
                    continue;
                }
                Event::NoAnswer {
                    peer,
                    to,
                    tcp,
                    handshakes,
                    since,
                } => {
                    let name = self.peer_name(*peer);
                    let waited = now.saturating_duration_since(*since).as_secs();
                    let proto = if *tcp { "TCP" } else { "UDP" };
                    tracing::warn!(
                        peer = %name, %to, handshakes, waited_secs = waited,
                        "no answer from {name} at {to} after {handshakes} handshakes: check \
                         the key, the peer name, and that {proto} {} is open",
                        to.port()
                    );
                    continue;
                }
                Event::Answered { peer, after } => {
                    let name = self.peer_name(*peer);
                    tracing::info!(
                        peer = %name, unanswered = after,
                        "{name} answers again, after {after} unanswered handshakes"
                    );
                    continue;
                }
            };
            changed = true;
            let Some(st) = self.tunnel.peer_status(peer) else {
                continue;
            };
            if logged.len() <= peer.index() {
                logged.resize(peer.index() + 1, PeerStats::default());
            }
            let prev = logged[peer];
            let (txf, rxf) = (
                st.stats.tx_frames.saturating_sub(prev.tx_frames),
                st.stats.rx_frames.saturating_sub(prev.rx_frames),
            );
            let (txb, rxb) = (
                st.stats.tx_bytes.saturating_sub(prev.tx_bytes),
                st.stats.rx_bytes.saturating_sub(prev.rx_bytes),
            );
            logged[peer] = st.stats;
            let endpoint = st
                .endpoint
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into());
            if matches!(
                ev,
                Event::HandshakeCompleted { rekey: false, .. } | Event::EndpointMoved { .. }
            ) {
                self.refresh_path_ceiling(peer, st.endpoint, now);
            }
            let hooks = &self.config.hooks;
            match ev {
                Event::HandshakeCompleted { .. } => {
                    self.peer_hooks
                        .handshake(&st.name, st.endpoint, &hooks.peer_up);
                }
                Event::PeerDown { .. } => {
                    self.peer_hooks
                        .down(&st.name, st.endpoint, &hooks.peer_down);
                }
                _ => {}
            }
            match ev {
                // A 30-peer hub rekeys ~21,600 times a day: rekeys are debug.
                Event::HandshakeCompleted { rekey: true, .. } => tracing::debug!(
                    peer = %st.name, %endpoint, tx_frames = txf, rx_frames = rxf, tx_bytes = txb,
                    rx_bytes = rxb, "rekey completed"
                ),
                Event::HandshakeCompleted { rekey: false, .. } => tracing::info!(
                    peer = %st.name, %endpoint, tx_frames = txf, rx_frames = rxf, tx_bytes = txb,
                    rx_bytes = rxb, "handshake completed"
                ),
                Event::PeerDown { .. } => {
                    // Its TCP connections are presumed dead: the next
                    // handshake opens a fresh one.
                    self.tcp.close_peer(peer);
                    // Its ARP bindings may be stale now: no longer answered.
                    self.bridge.peer_down(peer);
                    tracing::warn!(
                        peer = %st.name, %endpoint, tx_frames = txf, rx_frames = rxf,
                        tx_bytes = txb, rx_bytes = rxb,
                        "peer down: nothing heard for three keepalive intervals"
                    )
                }
                Event::EndpointMoved { from, to, .. } => tracing::info!(
                    peer = %st.name, from = %from.map(|f| f.to_string()).unwrap_or_else(|| "-".into()),
                    %to, tx_frames = txf, rx_frames = rxf, tx_bytes = txb, rx_bytes = rxb,
                    "endpoint moved"
                ),
                Event::HandshakeRefused { .. }
                | Event::NoAnswer { .. }
                | Event::Answered { .. }
                | Event::PathMtuChanged { .. }
                | Event::TransportChanged { .. } => {}
            }
        }
        changed
    }

    /// The log line of a refused handshake message from `from` (`peer`:
    /// the peer it concerned, `-` when unknown), in the words of what to
    /// check. Only what the message proved is said: a key hint in no table
    /// may be another key or another name for this site, and is worded so.
    fn log_refusal(&self, from: SocketAddr, peer: &str, reason: HandshakeRefusal) {
        let site = &self.config.name;
        match reason {
            HandshakeRefusal::UnknownKey => tracing::warn!(
                %from, reason = "unknown_key",
                "handshake refused: initiation from {from} with a key this site does not \
                 have: check that both sites use the same key file, and that the sender's \
                 [[peer]] for this site is named \"{site}\""
            ),
            HandshakeRefusal::UnknownPeer { name } if peer != "-" => tracing::warn!(
                %from, %peer, reason = "unknown_peer", claimed = %name,
                "handshake refused: initiation from {from} authenticated with peer {peer}'s \
                 key, but names itself \"{name}\", which is not a [[peer]] here: check the \
                 peer name (each site's [[peer]] name is the other site's link name)"
            ),
            HandshakeRefusal::UnknownPeer { name } => tracing::warn!(
                %from, reason = "unknown_peer", claimed = %name,
                "handshake refused: initiation from {from} authenticated, but names itself \
                 \"{name}\", which is not a [[peer]] here: check the peer name (each site's \
                 [[peer]] name is the other site's link name)"
            ),
            HandshakeRefusal::BadMac => tracing::warn!(
                %from, reason = "bad_mac",
                "handshake refused: initiation from {from} names a key of this site but does \
                 not authenticate (damaged or forged); ignored"
            ),
            other => tracing::warn!(%from, %peer, "handshake refused: {other}"),
        }
    }

    /// Tells the tunnel the kernel's MTU towards peer `id` at `endpoint`
    /// (the ceiling of its path MTU search; a no-op for a pinned MTU).
    fn refresh_path_ceiling(&mut self, id: PeerId, endpoint: Option<SocketAddr>, now: Instant) {
        if let Some(mtu) = endpoint.and_then(super::super::udp::route_mtu) {
            self.tunnel.set_path_ceiling(id, mtu, now);
        }
    }

    /// Hands this wake-up's lease changes to the lease store and sends the
    /// replies whose changes are durable by now. Returns failed TAP writes.
    pub(super) fn persist_leases(&mut self, tap: &TapQueue) -> u64 {
        self.bridge.take_lease_changes(&mut self.lease_changes);
        self.lease_store.commit(&mut self.lease_changes);
        self.lease_store.send_durable(|frame| tap.write(frame))
    }

    /// Makes every lease change so far durable and sends the replies held
    /// for them (blocks on the disk: at shutdown, after the workers stopped).
    pub(super) fn flush_leases(&mut self, tap: &TapQueue) {
        self.bridge.take_lease_changes(&mut self.lease_changes);
        self.lease_store
            .flush(&mut self.lease_changes, |frame| tap.write(frame));
    }

    /// Logs the ARP bindings from the tunnel the responder refused (at most
    /// one line per [`crate::responder::REFUSAL_LOG_INTERVAL`]).
    pub(super) fn log_arp_refusals(&mut self, now: Instant) {
        let Some(l) = self
            .bridge
            .responder_mut()
            .and_then(|r| r.take_refusal_log(now))
        else {
            return;
        };
        let peer = self.peer_name(l.peer);
        tracing::warn!(
            refused = l.count, ip = %l.ip, mac = %l.mac, %peer,
            "ARP/ND bindings from the tunnel refused: {}", l.reason
        );
    }

    /// Makes the leases durable, sends the replies held for them, and
    /// leaves everything in the lease file (at shutdown).
    pub fn persist_leases_final(&mut self, tap: &TapQueue) {
        self.flush_leases(tap);
        self.lease_store.close();
    }
}
