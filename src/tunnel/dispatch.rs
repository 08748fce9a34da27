//! Which peer and session a frame or a message belongs to, and what it
//! does there. Outgoing: a frame from the local side is sealed on its
//! peer's current session, in fragments when it does not fit the path, or
//! queued while a session is set up. Incoming: every message, datagram or
//! TCP record, is dispatched by type (handshake messages go on to
//! `exchange.rs`); data, fragments and probes are checked against their
//! session's replay window and opened here. An authentic one proves the
//! peer alive, may move its endpoint and its transport, and yields a frame
//! for the local side (put back together first when it came in pieces) or
//! a probe answer.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::fragment::{self, FragHeader};
use super::paths::PATH_PROBE_ID;
use super::peer::{
    DATA_OVERHEAD, IPV4_UDP_OVERHEAD, IPV6_UDP_OVERHEAD, PeerState, ProbeDest,
    REJECT_AFTER_MESSAGES,
};
use super::replay::Replay;
use super::tunnel::{Event, HandshakeRefusal, Incoming, PeerId, SendOutcome, Transmit, Tunnel};
use crate::wire::tunnel::{DataPacket, MessageType, field, old_initiation_version, probe};

impl Tunnel {
    /// Largest frame a single datagram carries to peer `id` at `to` without
    /// fragmenting (its path MTU less the outer headers).
    pub fn frame_budget(&self, id: PeerId, to: SocketAddr) -> usize {
        let ip = if to.is_ipv4() {
            IPV4_UDP_OVERHEAD
        } else {
            IPV6_UDP_OVERHEAD
        };
        match self.peers.get(id.index()) {
            // A record carries the message whole: no outer headers to fit.
            Some(p) if p.transport.tcp() => crate::wire::tcp::MAX_MESSAGE - DATA_OVERHEAD,
            Some(p) => p.pmtu.current().saturating_sub(ip + DATA_OVERHEAD),
            None => self.params.wan_mtu.saturating_sub(ip + DATA_OVERHEAD),
        }
    }

    /// Encrypts `frame` for peer `id` and writes it through `tx`, fragmenting
    /// it when it does not fit the peer's path
    /// ([`frame_budget`](Self::frame_budget)). Without a session the frame is
    /// queued (bounded) and a handshake started.
    pub fn send_frame<T: Transmit + ?Sized>(
        &mut self,
        id: PeerId,
        frame: &[u8],
        now: Instant,
        tx: &mut T,
    ) -> SendOutcome {
        self.touch(id);
        let max_frame = self.params.max_frame;
        let Some(p) = self
            .peers
            .get_mut(id.index())
            .filter(|p| !p.removed && !self.standby)
        else {
            return SendOutcome::Dropped;
        };
        if frame.len() > max_frame {
            self.counters.tx_dropped += 1;
            return SendOutcome::Dropped;
        }
        let usable = p
            .current
            .as_ref()
            .is_some_and(|s| s.send_counter < REJECT_AFTER_MESSAGES);
        let reachable = p.dest().is_some();
        if !usable || !reachable {
            if !reachable || !p.queue.push(frame) {
                self.counters.tx_dropped += 1;
                return SendOutcome::Dropped;
            }
            if p.pending.is_none() {
                p.attempts = 0;
                self.start_handshake(id, now, tx);
            }
            return SendOutcome::Queued;
        }
        if self.transmit_frame(id, frame, now, tx) {
            SendOutcome::Sent
        } else {
            self.counters.tx_dropped += 1;
            SendOutcome::Dropped
        }
    }

    /// Processes one received datagram (decrypting in place). Anything that
    /// does not authenticate is counted and produces no output at all.
    pub fn handle_datagram<'a, T: Transmit + ?Sized>(
        &'a mut self,
        from: SocketAddr,
        buf: &'a mut [u8],
        now: Instant,
        tx: &mut T,
    ) -> Incoming<'a> {
        self.handle_datagram_at(from, None, buf, now, tx)
    }

    /// [`handle_datagram`](Self::handle_datagram) for a datagram that
    /// arrived at our local address `local` (known when listening on a
    /// wildcard address). Answers to it leave from `local`, and so does
    /// everything sent to the peer after an authenticated data packet
    /// arrived there ([`Transmit::commit_from`]).
    pub fn handle_datagram_at<'a, T: Transmit + ?Sized>(
        &'a mut self,
        from: SocketAddr,
        local: Option<IpAddr>,
        buf: &'a mut [u8],
        now: Instant,
        tx: &mut T,
    ) -> Incoming<'a> {
        self.rx_tcp = false;
        self.rx_bound = None;
        self.handle_message(from, local, buf, now, tx)
    }

    /// Processes one message that arrived as a record on the TCP
    /// connection whose remote address is `conn`. The same protocol as
    /// [`handle_datagram`](Self::handle_datagram); answers go back on that
    /// connection ([`Transmit::commit_stream`]), and so does everything for
    /// the peer once a message from it authenticated there. `bound`: the
    /// peer an earlier record on this connection proved, if any; a message
    /// for another peer is dropped (`rx_other_stream`), so one connection
    /// never carries, nor re-points, another peer's stream.
    pub fn handle_record<'a, T: Transmit + ?Sized>(
        &'a mut self,
        conn: SocketAddr,
        bound: Option<PeerId>,
        buf: &'a mut [u8],
        now: Instant,
        tx: &mut T,
    ) -> Incoming<'a> {
        self.rx_tcp = true;
        self.rx_bound = bound;
        self.handle_message(conn, None, buf, now, tx)
    }

    /// The peer the last message handed to
    /// [`handle_datagram`](Self::handle_datagram) or
    /// [`handle_record`](Self::handle_record) proved to come from: an
    /// accepted initiation or response, or an authentic data message.
    /// `None` for anything else. A TCP connection whose first record is not
    /// authentic is closed by the shell without a byte sent.
    pub fn authenticated_sender(&self) -> Option<PeerId> {
        self.rx_authentic
    }

    fn handle_message<'a, T: Transmit + ?Sized>(
        &'a mut self,
        from: SocketAddr,
        local: Option<IpAddr>,
        buf: &'a mut [u8],
        now: Instant,
        tx: &mut T,
    ) -> Incoming<'a> {
        self.rx_local = local;
        self.rx_authentic = None;
        if self.standby {
            // The active box of the pair answers; this one stays silent.
            return Incoming::Nothing;
        }
        match MessageType::of(buf) {
            None if old_initiation_version(buf).is_some() => {
                self.refuse(from, None, HandshakeRefusal::OldVersion, now);
                Incoming::Nothing
            }
            None => {
                self.counters.rx_malformed += 1;
                Incoming::Nothing
            }
            // A handshake message changes at most the timers of the peer
            // it proves to come from (`exchange.rs` touches that one): one
            // that proves nothing costs no timer bookkeeping.
            Some(MessageType::Initiation) => {
                self.rotate_cookie_secret(now);
                self.handle_initiation(from, buf, now, tx);
                Incoming::Nothing
            }
            Some(MessageType::Response) => {
                self.handle_response(from, buf, now, tx);
                Incoming::Nothing
            }
            Some(MessageType::CookieReply) => {
                self.handle_cookie_reply(buf, now);
                Incoming::Nothing
            }
            Some(ty @ (MessageType::Data | MessageType::Fragment | MessageType::Probe)) => {
                self.handle_data(ty, from, buf, now, tx)
            }
        }
    }

    fn handle_data<'a, T: Transmit + ?Sized>(
        &'a mut self,
        ty: MessageType,
        from: SocketAddr,
        buf: &'a mut [u8],
        now: Instant,
        tx: &mut T,
    ) -> Incoming<'a> {
        let Some(pkt) = DataPacket::new_checked(&*buf) else {
            self.counters.rx_malformed += 1;
            return Incoming::Nothing;
        };
        let (receiver, counter) = (pkt.receiver(), pkt.counter());
        let Some(&id) = self.index.get(&receiver) else {
            self.counters.rx_unknown_session += 1;
            return Incoming::Nothing;
        };
        if self.on_other_stream(id) {
            return Incoming::Nothing;
        }
        let p = &mut self.peers[id];
        let is_next = p.next.as_ref().is_some_and(|s| s.local_index == receiver);
        let Some(session) = p.session_mut(receiver) else {
            // The index belongs to a handshake in flight, not a session.
            self.counters.rx_unknown_session += 1;
            return Incoming::Nothing;
        };
        if counter >= REJECT_AFTER_MESSAGES {
            // No sender ever uses such a counter; one near the top of the
            // range would push the window where nothing later fits.
            self.counters.rx_replayed += 1;
            return Incoming::Nothing;
        }
        match session.replay.check(counter) {
            Ok(()) => {}
            Err(Replay::Duplicate | Replay::TooOld) => {
                self.counters.rx_replayed += 1;
                return Incoming::Nothing;
            }
        }
        let len = buf.len();
        let (hdr, rest) = buf.split_at_mut(field::DATA_HEADER_LEN);
        if !session.keys.recv.open(counter, hdr, rest) {
            self.counters.rx_auth_failed += 1;
            return Incoming::Nothing;
        }
        if session.replay.accept(counter).is_err() {
            self.counters.rx_replayed += 1;
            return Incoming::Nothing;
        }
        // Authentic: the peer is alive, possibly at a new address. Apart
        // from the response to our own initiation (`exchange.rs`), this is
        // the only received message that moves an endpoint (roaming, or the
        // first contact of a session we answered); an initiation never does.
        let dead = self.params.keepalive * 3;
        p.timers.dead = Some(now + dead);
        self.heard_from(id, now);
        self.touch(id);
        if self.rx_tcp {
            // A connection is not a UDP endpoint: nothing roams.
            self.on_transport(id, true, from, now);
        } else {
            self.on_transport(id, false, from, now);
            let p = &mut self.peers[id];
            p.uplinks.on_authentic();
            if ty != MessageType::Probe {
                // Probes test paths; the traffic's own packets say where
                // the peer reaches us.
                p.local = self.rx_local;
            }
            // A peer with several addresses may answer from any of them:
            // that moves it only while it is not up (see `paths`), or when
            // this is the first packet of a session it initiated: a
            // completed handshake from another of its addresses is the
            // move (the other box of a high-availability pair took over,
            // or its site switched uplinks).
            if p.endpoint != Some(from)
                && (is_next || p.state != PeerState::Up || p.uplinks.roams_to(from))
            {
                self.move_endpoint(id, from, now);
            }
        }
        if is_next {
            // First packet under a session we answered: the initiator has it,
            // so it becomes ours to send with.
            let s = self.peers[id]
                .next
                .take()
                .expect("the packet matched the next session");
            self.install_session(id, s, false, now);
        } else if self.peers[id].state != PeerState::Up {
            self.peers[id].state = PeerState::Up;
        }
        let max_frame = self.params.max_frame;
        let body = &rest[..len - DATA_OVERHEAD];
        if ty == MessageType::Probe {
            // Authentic, so answered (an acknowledgement is small and never
            // answered itself); never a frame.
            match probe::parse(body) {
                Some((probe::REQUEST, pid, size)) => {
                    // Back where it came from: a path probe tests that path.
                    let back = ProbeDest::Reply(from);
                    self.send_probe(id, probe::ACK, pid, usize::from(size), back, tx);
                }
                Some((_, pid, _)) if pid & PATH_PROBE_ID != 0 => {
                    if let Some(slot) = self.peers[id].uplinks.on_ack(pid, from) {
                        self.move_to_slot(id, slot, now);
                    }
                }
                Some((_, pid, size)) => {
                    if let Some(mtu) = self.peers[id].pmtu.on_ack(pid, usize::from(size), now) {
                        self.events.push_back(Event::PathMtuChanged {
                            peer: id,
                            mtu,
                            lost: false,
                        });
                    }
                }
                None => self.counters.rx_malformed += 1,
            }
            return Incoming::Nothing;
        }
        let p = &mut self.peers[id];
        match ty {
            MessageType::Data if body.is_empty() => Incoming::Nothing,
            MessageType::Data if body.len() > max_frame => {
                self.counters.rx_malformed += 1;
                Incoming::Nothing
            }
            MessageType::Data => {
                count_carried(
                    &mut p.stats.rx_frames,
                    &mut p.stats.rx_bytes,
                    body,
                    self.offload_header,
                );
                Incoming::Frame {
                    peer: id,
                    frame: body,
                }
            }
            _ => {
                let Some(h) = FragHeader::parse(body) else {
                    self.counters.rx_malformed += 1;
                    return Incoming::Nothing;
                };
                match p
                    .reassembly
                    .push(h, receiver, &body[fragment::HEADER_LEN..], now)
                {
                    Err(_) => {
                        self.counters.rx_malformed += 1;
                        Incoming::Nothing
                    }
                    Ok((frame, evicted)) => {
                        self.counters.reassembly_dropped += u64::from(evicted);
                        match frame {
                            Some(frame) => {
                                self.counters.reassembled += 1;
                                count_carried(
                                    &mut p.stats.rx_frames,
                                    &mut p.stats.rx_bytes,
                                    frame,
                                    self.offload_header,
                                );
                                Incoming::Frame { peer: id, frame }
                            }
                            None => Incoming::Nothing,
                        }
                    }
                }
            }
        }
    }

    /// An authentic message from peer `id` came over TCP (`tcp`, on the
    /// connection `from`) or UDP: the peer's messages follow it.
    /// Whether the message at hand, for `id`, came on a TCP connection
    /// bound to another peer (then counted, and to be dropped).
    pub(super) fn on_other_stream(&mut self, id: PeerId) -> bool {
        let other = self.rx_bound.is_some_and(|b| b != id);
        if other {
            self.counters.rx_other_stream += 1;
        }
        other
    }

    pub(super) fn on_transport(&mut self, id: PeerId, tcp: bool, from: SocketAddr, now: Instant) {
        if self.peers[id].transport.on_authentic(tcp, from, now) {
            self.events
                .push_back(Event::TransportChanged { peer: id, tcp });
        }
    }
}

/// Adds what `packet` carries to a peer's frame and byte counters: with an
/// offload header, the frames a segmentation batch becomes
/// ([`crate::wire::virtio::carried`]); without, one frame of its length.
pub(super) fn count_carried(
    frames: &mut u64,
    bytes: &mut u64,
    packet: &[u8],
    offload_header: bool,
) {
    let (n, len) = if offload_header {
        crate::wire::virtio::carried(packet)
    } else {
        (1, packet.len() as u64)
    };
    *frames += n;
    *bytes += len;
}
