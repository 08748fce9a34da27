//! The handshake as the [`Tunnel`] runs it: sending initiations (with the
//! right key and, when we hold one, the responder's cookie), answering them
//! (finding the initiator's key, checking who it claims to be and whether it
//! is fresh, the rate limit, the cookie round trip under load), completing
//! our own with a response, and taking cookies.
//!
//! The order of checks on an initiation is the point of this file: the key
//! hint (one table lookup: which key, hence which peers); the link's and the
//! source block's budgets for unauthenticated work; that key's first MAC;
//! the cookie if the responder is under load or the source's block spent
//! its budget; the payload's decryption (no DH), the initiator's name
//! against the peers of that key, the instance id, the timestamp; only then
//! is a budget charged for the DH: the source's if a cookie proved it, else
//! the authenticated peer's own. So garbage costs a lookup (one MAC if it
//! carries a real hint, within budget), replays of captured messages cost a
//! decryption, and nothing anyone sends with a peer's address spoofed is
//! charged to that peer or that address; a spoofed-source flood of fresh
//! initiations costs no DH once the responder asks for cookies.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::crypto::{CookieSecret, MAC_LEN};
use super::handshake::{self, HandshakeError};
use super::peer::{PeerState, RETRY_BASE, RETRY_MAX, Session};
use super::replay::ReplayWindow;
use super::transport::Dest;
use super::tunnel::{ClaimedName, Event, HandshakeRefusal, PeerId, Transmit, Tunnel};
use crate::wire::tunnel::{InitiationPacket, field};

/// A responder that answered this many initiations (did the DH) in the
/// current or the previous second is under load and asks for cookies.
pub(super) const UNDER_LOAD_PER_SEC: u32 = 50;
/// X25519 work a peer's handshakes may cost (per second, burst twice
/// that); the same per source for initiations a cookie proved.
pub(super) const DH_PER_SEC: u32 = 20;
pub(super) const DH_BURST: u32 = 40;
/// Initiations with a known key hint the link checks per second (a MAC,
/// and a cookie or a decryption), and bursts of as many; past that they
/// are dropped unchecked. About 3 % of a core at the worst.
pub(super) const UNAUTH_PER_LINK: u32 = 10_000;
/// Of those, per source block (IPv4 /24, IPv6 /56), bursts of twice that;
/// past that the block's sources must prove their address by a cookie
/// round trip before any decryption or DH.
pub(super) const UNAUTH_PER_BLOCK: u32 = 1_000;
/// The cookie secret is replaced this often; a cookie is used for a little
/// less than that by the initiator.
pub(super) const COOKIE_SECRET_LIFE: Duration = Duration::from_secs(120);
const COOKIE_USE: Duration = Duration::from_secs(110);

/// The responder's cookie secrets and its recent handshake load.
pub(super) struct CookieJar {
    current: CookieSecret,
    previous: Option<CookieSecret>,
    born: Instant,
    window: Instant,
    this_second: u32,
    last_second: u32,
}

impl CookieJar {
    pub(super) fn new(secret: [u8; 32], now: Instant) -> Self {
        CookieJar {
            current: CookieSecret::new(secret),
            previous: None,
            born: now,
            window: now,
            this_second: 0,
            last_second: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window);
        if elapsed >= Duration::from_secs(1) {
            self.last_second = if elapsed < Duration::from_secs(2) {
                self.this_second
            } else {
                0
            };
            self.this_second = 0;
            self.window = now;
        }
    }

    fn under_load(&mut self, now: Instant) -> bool {
        self.roll(now);
        self.this_second.max(self.last_second) >= UNDER_LOAD_PER_SEC
    }

    fn count_answer(&mut self, now: Instant) {
        self.roll(now);
        self.this_second = self.this_second.saturating_add(1);
    }

    fn cookie_ok(&self, from: SocketAddr, msg: &[u8]) -> bool {
        [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .any(|s| handshake::initiation_mac2_ok(&s.cookie(from), msg))
    }
}

/// What answering an accepted initiation needs besides the initiation.
struct Answer {
    eph: [u8; 32],
    local_index: u32,
    our_timestamp: [u8; 12],
    back: Dest,
    timestamp: [u8; 12],
    remote_index: u32,
}

impl Tunnel {
    /// Counts a refused handshake and reports it for the log, rate limited
    /// (a few a second; one reason from one address once a minute).
    pub(super) fn refuse(
        &mut self,
        from: SocketAddr,
        peer: Option<PeerId>,
        reason: HandshakeRefusal,
        now: Instant,
    ) {
        let c = &mut self.counters;
        match reason {
            HandshakeRefusal::UnknownKey => {
                c.rx_auth_failed += 1;
                c.rx_unknown_key += 1;
            }
            HandshakeRefusal::BadMac => c.rx_auth_failed += 1,
            HandshakeRefusal::OldVersion => c.rx_old_version += 1,
            HandshakeRefusal::UnknownPeer { .. } => c.rx_unknown_peer += 1,
            HandshakeRefusal::Stale => c.rx_replayed += 1,
            HandshakeRefusal::RateLimited => c.handshake_rate_limited += 1,
        }
        if let Some(p) = peer.and_then(|id| self.peers.get_mut(id.index())) {
            p.refused += 1;
            p.last_refusal = Some((now, from, reason));
        }
        if self.refusals.report(from.ip(), reason.key(), now) {
            self.events
                .push_back(Event::HandshakeRefused { from, peer, reason });
        }
    }

    fn count_handshake_error(&mut self, e: HandshakeError) {
        match e {
            HandshakeError::Malformed => self.counters.rx_malformed += 1,
            HandshakeError::Auth => self.counters.rx_auth_failed += 1,
        }
    }

    /// Sends (or starts) a handshake initiation to `id`. Retries alternate
    /// between the peer's keys, so a rotation that reached only one end
    /// still gets through, until the first key has worked with the peer.
    pub(super) fn start_handshake<T: Transmit + ?Sized>(
        &mut self,
        id: PeerId,
        now: Instant,
        tx: &mut T,
    ) {
        let p = &mut self.peers[id];
        let up = p.state == PeerState::Up;
        let tcp = p.transport.for_initiation(up && p.current.is_some(), now);
        // Not up: the peer's addresses in turn (a dead uplink is skipped
        // at the next retry).
        let target = p.uplinks.handshake_target(p.endpoint, up);
        let stream = p.transport.stream().filter(|_| tcp && p.transport.tcp());
        let dest = match (tcp, stream.or(target)) {
            (_, None) => return,
            (true, Some(to)) => Dest {
                to,
                src: None,
                stream: true,
            },
            (false, Some(to)) => Dest {
                to,
                // From where the peer reaches us, if that is where we send.
                src: p.local.filter(|_| p.endpoint == Some(to)),
                stream: false,
            },
        };
        if let Some(old) = self.peers[id].pending.take() {
            self.index.remove(&old.local_index);
        }
        let mut eph = [0u8; 32];
        self.entropy.fill(&mut eph);
        let local_index = self.new_index(id);
        let ts = self.wall_timestamp(now);
        let jitter = Duration::from_millis(u64::from(self.random_u32() % 250));
        let buf = dest.buffer(tx);
        let p = &mut self.peers[id];
        if buf.len() < field::INIT_LEN || p.keys.is_empty() {
            self.index.remove(&local_index);
            return;
        }
        let slot = if p.first_key_worked {
            0
        } else {
            p.attempts as usize % p.keys.len()
        };
        let cookie = p
            .cookie
            .as_ref()
            .filter(|(_, at)| now.saturating_duration_since(*at) < COOKIE_USE)
            .map(|(c, _)| c);
        let key = &p.keys[slot];
        let pending = handshake::write_initiation(
            &key.base_out,
            &key.mac_out,
            &key.hint_out,
            cookie,
            eph,
            local_index,
            &handshake::InitPayload {
                timestamp: ts,
                instance: self.instance,
                name: &self.params.local_name,
            },
            buf,
        );
        zeroize::Zeroize::zeroize(&mut eph);
        dest.commit(tx, field::INIT_LEN);
        if p.unanswered.on_sent(now) {
            self.events.push_back(Event::NoAnswer {
                peer: id,
                to: dest.to,
                tcp: dest.stream,
                handshakes: p.unanswered.count,
                since: p.unanswered.since.unwrap_or(now),
            });
        }
        p.pending = Some(pending);
        p.pending_slot = slot;
        let backoff = RETRY_BASE
            .saturating_mul(1 << p.attempts.min(8))
            .min(RETRY_MAX);
        p.attempts = p.attempts.saturating_add(1);
        p.timers.retransmit = Some(now + backoff + jitter);
    }

    pub(super) fn handle_initiation<T: Transmit + ?Sized>(
        &mut self,
        from: SocketAddr,
        msg: &[u8],
        now: Instant,
        tx: &mut T,
    ) {
        let Some(pkt) = InitiationPacket::new_checked(msg) else {
            self.counters.rx_malformed += 1;
            return;
        };
        // The hint names the key: no search, and garbage that names none
        // costs nothing more.
        let hint = pkt.hint();
        if self.incoming.candidates(&hint).is_empty() {
            return self.refuse(from, None, HandshakeRefusal::UnknownKey, now);
        }
        // What follows costs MACs or a decryption before anything proves
        // the sender: bounded for the whole link, and per source block.
        if !self.unauth_total.allow(now) {
            return self.refuse(from, None, HandshakeRefusal::RateLimited, now);
        }
        // A TCP source cannot be spoofed: no budget or cookie round trip.
        let block_ok = self.rx_tcp || self.unauth_block.allow(from.ip(), now);
        let mut found = None;
        for &k in self.incoming.candidates(&hint) {
            self.mac1_checks += 1;
            if self
                .incoming
                .get(k)
                .mac
                .verify(pkt.mac1_input(), pkt.mac1())
            {
                found = Some(k);
                break;
            }
        }
        let Some(k) = found else {
            return self.refuse(from, None, HandshakeRefusal::BadMac, now);
        };
        let proven = self.rx_tcp
            || (pkt.mac2().iter().any(|&b| b != 0) && self.cookies.cookie_ok(from, msg));
        if !proven && (!block_ok || self.cookies.under_load(now)) {
            // Prove you receive at that address first: no DH for a spoofed
            // source. The reply is smaller than the initiation.
            let mut nonce = [0u8; 12];
            self.entropy.fill(&mut nonce);
            let buf = tx.buffer();
            if buf.len() < field::COOKIE_LEN {
                return;
            }
            let mut mac1 = [0u8; MAC_LEN];
            mac1.copy_from_slice(pkt.mac1());
            let cookie = self.cookies.current.cookie(from);
            let key = self.incoming.get(k);
            handshake::write_cookie_reply(&key.cookie, pkt.sender(), nonce, &mac1, &cookie, buf);
            tx.commit_from(field::COOKIE_LEN, from, self.rx_local);
            self.counters.cookie_replies += 1;
            return;
        }
        // Decrypting the payload is cheap (no DH); only what proves to be
        // authentic and fresh is charged to a DH budget below.
        let init = match handshake::read_initiation(&self.incoming.get(k).base, msg) {
            Ok(i) => i,
            Err(e) => return self.count_handshake_error(e),
        };
        // The key tells which peers it could be; the name it gives must be
        // one of theirs. A site holding its own key cannot pass as another.
        let key = self.incoming.get(k);
        let found = key
            .peers
            .iter()
            .find(|(id, _)| self.peers[*id].name.as_bytes() == init.name())
            .copied();
        let Some((id, slot)) = found else {
            let peer = (key.peers.len() == 1).then(|| key.peers[0].0);
            let name = ClaimedName::new(init.name());
            return self.refuse(from, peer, HandshakeRefusal::UnknownPeer { name }, now);
        };
        if self.on_other_stream(id) {
            return;
        }
        if slot != 0 && self.peers[id].first_key_worked {
            // A retired key: for this peer, no longer one of ours.
            return self.refuse(from, Some(id), HandshakeRefusal::BadMac, now);
        }
        self.touch(id);
        if init.instance == self.instance {
            // Our own initiation sent back at us: answering it would give us
            // a session with ourselves.
            self.counters.rx_replayed += 1;
            return;
        }
        if self.peers[id]
            .last_timestamp
            .is_some_and(|last| init.timestamp <= last)
        {
            return self.refuse(from, Some(id), HandshakeRefusal::Stale, now);
        }
        // The DH is charged to the source only when a cookie proved it (or
        // it is a TCP connection): anyone holding a key can put another
        // site's address on an initiation, and that must cost the other
        // site nothing. Otherwise to the peer the initiation proved to be.
        let allowed = if proven {
            self.limiter.allow(from.ip(), now)
        } else {
            self.peers[id].dh_budget.allow(now)
        };
        if !allowed {
            return self.refuse(from, Some(id), HandshakeRefusal::RateLimited, now);
        }
        self.cookies.count_answer(now);
        if slot == 0 {
            // The initiation proved the peer holds the first key.
            self.peers[id].first_key_worked = true;
        }
        let timestamp = init.timestamp;
        let remote_index = init.sender;
        let mut eph = [0u8; 32];
        self.entropy.fill(&mut eph);
        let local_index = self.new_index(id);
        let our_timestamp = self.wall_timestamp(now);
        let back = Dest {
            to: from,
            src: self.rx_local,
            stream: self.rx_tcp,
        };
        let mut init = Some(init);
        if self.defer_dh
            && let Some(mac) = self.peers[id].keys.get(slot).map(|k| k.mac_out.clone())
        {
            // The DH waits for the shell, off the lock (`deferred.rs`).
            self.defer_response(id, &mut init, &mac, eph, local_index, our_timestamp, back);
            if init.is_none() {
                self.heard_from(id, now);
            }
        }
        if let Some(init) = init {
            let answer = Answer {
                eph,
                local_index,
                our_timestamp,
                back,
                timestamp,
                remote_index,
            };
            self.respond_now(id, slot, init, answer, now, tx);
        }
        zeroize::Zeroize::zeroize(&mut eph);
    }

    /// Answers an accepted initiation at once (the DH under the caller's
    /// lock) and keeps the session as the peer's next.
    fn respond_now<T: Transmit + ?Sized>(
        &mut self,
        id: PeerId,
        slot: usize,
        init: handshake::ReceivedInitiation,
        answer: Answer,
        now: Instant,
        tx: &mut T,
    ) {
        let Answer {
            mut eph,
            local_index,
            our_timestamp,
            back,
            timestamp,
            remote_index,
        } = answer;
        let buf = back.buffer(tx);
        let p = &mut self.peers[id];
        if buf.len() < field::RESP_LEN || slot >= p.keys.len() {
            self.index.remove(&local_index);
            return;
        }
        let keys = handshake::write_response(
            init,
            &p.keys[slot].mac_out,
            eph,
            local_index,
            our_timestamp,
            buf,
        );
        zeroize::Zeroize::zeroize(&mut eph);
        let keys = match keys {
            Ok(k) => k,
            Err(e) => {
                self.index.remove(&local_index);
                return self.count_handshake_error(e);
            }
        };
        back.commit(tx, field::RESP_LEN);
        self.heard_from(id, now);
        let p = &mut self.peers[id];
        p.last_timestamp = Some(timestamp);
        let old = p.next.replace(Session {
            local_index,
            remote_index,
            keys,
            send_counter: 0,
            replay: ReplayWindow::new(),
            created: now,
        });
        Self::drop_session(&mut self.index, old);
        // The endpoint is not moved yet: anyone on the path can relay an
        // initiation from elsewhere. The first data packet under the new
        // session proves the address (see `handle_data`).
    }

    pub(super) fn handle_response<T: Transmit + ?Sized>(
        &mut self,
        from: SocketAddr,
        msg: &[u8],
        now: Instant,
        tx: &mut T,
    ) {
        let Some(pkt) = crate::wire::tunnel::ResponsePacket::new_checked(msg) else {
            self.counters.rx_malformed += 1;
            return;
        };
        let receiver = pkt.receiver();
        let Some(&id) = self.index.get(&receiver) else {
            self.counters.rx_unknown_session += 1;
            return;
        };
        if self.on_other_stream(id) {
            return;
        }
        self.touch(id);
        let p = &self.peers[id];
        if p.pending.as_ref().is_none_or(|h| h.local_index != receiver) {
            self.counters.rx_unknown_session += 1;
            return;
        }
        let Some(key) = p.keys.get(p.pending_slot) else {
            return;
        };
        if let Err(e) = handshake::response_receiver_checked(&key.mac_in, msg) {
            return self.count_handshake_error(e);
        }
        // It answers the initiation we wait for (a replayed response finds
        // none) under the peer's key: charge the peer, not the source
        // address (which an initiation from someone else may have spent).
        if !self.peers[id].dh_budget.allow(now) {
            return self.refuse(from, Some(id), HandshakeRefusal::RateLimited, now);
        }
        let p = &mut self.peers[id];
        let Some(pending) = p.pending.as_ref() else {
            return;
        };
        let (keys, remote_index, their_time) = match handshake::read_response(pending, msg) {
            Ok(k) => k,
            Err(e) => return self.count_handshake_error(e),
        };
        p.pending = None;
        if p.pending_slot == 0 {
            p.first_key_worked = true;
        }
        // The peer's clock as of now: any initiation it made before this
        // (a replay recorded earlier, perhaps before we restarted) is stale.
        if p.last_timestamp.is_none_or(|t| t < their_time) {
            p.last_timestamp = Some(their_time);
        }
        p.timers.retransmit = None;
        let session = Session {
            local_index: receiver,
            remote_index,
            keys,
            send_counter: 0,
            replay: ReplayWindow::new(),
            created: now,
        };
        self.heard_from(id, now);
        self.on_transport(id, self.rx_tcp, from, now);
        if !self.rx_tcp {
            let p = &mut self.peers[id];
            p.local = self.rx_local;
            // The roaming rule of data (`dispatch.rs`): an up peer answering
            // a rekey from another of its listed addresses stays where it is.
            if p.endpoint != Some(from) && (p.state != PeerState::Up || p.uplinks.roams_to(from)) {
                self.move_endpoint(id, from, now);
            }
        }
        self.install_session(id, session, true, now);
        // Flush frames held during the handshake; if there were none, a
        // keepalive confirms the session to the responder right away.
        let mut sent_any = false;
        let mut queue = std::mem::take(&mut self.peers[id].queue.lens);
        let bufs = std::mem::take(&mut self.peers[id].queue.bufs);
        while let Some((b, len)) = queue.pop_front() {
            sent_any |= self.transmit_frame(id, &bufs[b][..len], now, tx);
        }
        self.peers[id].queue.bufs = bufs;
        self.peers[id].queue.lens = queue;
        if !sent_any {
            self.send_keepalive(id, now, tx);
        }
    }

    /// A responder under load sent us a cookie for our pending initiation:
    /// keep it for the next attempt (the retransmission timer sends it).
    pub(super) fn handle_cookie_reply(&mut self, msg: &[u8], now: Instant) {
        let receiver = match handshake::cookie_reply_receiver(msg) {
            Ok(r) => r,
            Err(e) => return self.count_handshake_error(e),
        };
        let Some(&id) = self.index.get(&receiver) else {
            self.counters.rx_unknown_session += 1;
            return;
        };
        self.touch(id);
        let p = &mut self.peers[id];
        let (Some(pending), Some(key)) = (
            p.pending.as_ref().filter(|h| h.local_index == receiver),
            p.keys.get(p.pending_slot),
        ) else {
            self.counters.rx_unknown_session += 1;
            return;
        };
        match handshake::read_cookie_reply(&key.cookie_out, pending, msg) {
            Ok(cookie) => p.cookie = Some((cookie, now)),
            Err(e) => self.count_handshake_error(e),
        }
    }

    /// Replaces the cookie secret when it is due.
    pub(super) fn rotate_cookie_secret(&mut self, now: Instant) {
        if now.saturating_duration_since(self.cookies.born) < COOKIE_SECRET_LIFE {
            return;
        }
        let mut fresh = [0u8; 32];
        self.entropy.fill(&mut fresh);
        let old = std::mem::replace(&mut self.cookies.current, CookieSecret::new(fresh));
        zeroize::Zeroize::zeroize(&mut fresh);
        self.cookies.previous = Some(old);
        self.cookies.born = now;
    }
}
