//! The partner channel of a high-availability pair (SPEC §5): how the
//! active box hands its DHCP leases to the standby, so that a client
//! renewing at the new active box after a failover keeps its address. Pure:
//! datagrams, lease changes and `Instant`s in, datagrams and lease changes
//! out; the shell owns the UDP socket and the lease store.
//!
//! # What is sent
//!
//! Every box sends a heartbeat each [`HEARTBEAT`] with its role and how many
//! leases it holds. The **active** box also sends every lease change as it
//! happens (journal lines, [`crate::leases::journal`]), and its whole lease
//! table (a *full sync*, in numbered chunks) when the partner appears (a
//! new boot of it), and again while the partner's count disagrees with its
//! own (a lost datagram), at most every [`FULL_RETRY`]. The **standby**
//! applies what it receives (the shell persists it as its own); once every
//! chunk of a full sync arrived, it drops the records the sync did not
//! name. With each heartbeat the active box also lists the MACs it learned
//! behind its peers (at most [`MAX_MACS`]); the standby keeps those it
//! heard of within [`MAC_FRESH`] (at most twice [`MAX_MACS`]), to announce
//! them to the LAN when it is promoted. It lists its live ARP bindings
//! learned through the tunnel the same way (at most [`MAX_MACS`]), which
//! the standby records as if it had learned them, so a promoted box
//! answers ARP for remote hosts at once, and its live ND bindings (IPv6)
//! the same way. An active box never applies what it receives (two
//! actives at once do not overwrite each other).
//!
//! # Wire format and keys
//!
//! ```text
//! datagram  = version (1 byte, 1) ‖ boot id (16) ‖ counter (8, big-endian)
//!             ‖ AES-256-GCM(payload) ‖ tag (16)      aad = the first 25 bytes
//! payload   = kind (1: heartbeat, 2: changes, 3: full-sync chunk, 4: remote
//!             MACs, 5: ARP bindings, 6: ND bindings) ‖ role (0 active, 1
//!             standby) ‖ leases
//!             held (4) ‖ sync id (4) ‖ chunk index (2) ‖ chunk count (2) ‖
//!             then journal lines, each ending in "\n" (2, 3), or MACs (4):
//!             VLAN id (2; 0xffff untagged) ‖ MAC (6), repeated, or bindings
//!             (5): IPv4 address (4) ‖ MAC (6) ‖ peer number (2), repeated,
//!             or (6): IPv6 address (16) ‖ MAC (6) ‖ peer number (2), repeated
//! key       = HKDF-SHA256(ikm = partner PSK, salt = SHA-256("tapbridge partner
//!             channel v1" ‖ boot id))            (`tunnel::partner_key`)
//! nonce     = 0 (4 bytes) ‖ counter
//! ```
//!
//! The boot id is random per start of a daemon, so a key never sees a
//! counter twice. The receiver keeps one replay window per partner boot;
//! a datagram that does not authenticate, or replays, is dropped without a
//! word (and a new boot id is believed only once a datagram under it
//! authenticates).

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::leases::{LeaseChange, LeaseDb, journal};
use crate::mac::MacAddr;
use crate::role::Role;
use crate::tunnel::replay::ReplayWindow;
use crate::tunnel::{TAG_LEN, TransportKey, partner_key};

/// How often each box says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Nothing authentic for this long: the partner is down.
pub const DOWN_AFTER: Duration = Duration::from_secs(3);
/// How often a full sync may repeat while the partner's count disagrees.
pub const FULL_RETRY: Duration = Duration::from_secs(5);
/// The largest datagram sent (and the size of a receive buffer to offer).
pub const MAX_DATAGRAM: usize = 1400;

const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 16 + 8;
const META_LEN: usize = 1 + 1 + 4 + 4 + 2 + 2;
/// Room for journal lines in one datagram.
const LINES_ROOM: usize = MAX_DATAGRAM - HEADER_LEN - META_LEN - TAG_LEN;

const KIND_HEARTBEAT: u8 = 1;
const KIND_CHANGES: u8 = 2;
const KIND_FULL: u8 = 3;
const KIND_MACS: u8 = 4;
const KIND_BINDINGS: u8 = 5;
const KIND_ND_BINDINGS: u8 = 6;
/// An ARP binding on the wire: address, MAC, peer number.
const BINDING_ENTRY: usize = 12;
/// An ND binding on the wire: address (16), MAC, peer number.
const ND_BINDING_ENTRY: usize = 24;

/// An ARP (IPv4) or ND (IPv6) binding learned through the tunnel:
/// address, MAC, and the number of the peer it was learned from (peers are
/// numbered in configuration order, the same on both boxes).
pub type RemoteBinding = (IpAddr, MacAddr, u16);

/// The most remote MACs sent with one heartbeat.
pub const MAX_MACS: usize = 4096;
/// How long a remote MAC the partner listed is kept for announcing.
pub const MAC_FRESH: Duration = Duration::from_secs(10);
/// A VLAN-tagged MAC on the wire: VLAN id, MAC.
const MAC_ENTRY: usize = 8;
/// The VLAN id that stands for "untagged".
const UNTAGGED: u16 = 0xffff;

/// A MAC learned behind a peer, with its VLAN (`None`: untagged).
pub type RemoteMac = (Option<u16>, MacAddr);

/// The partner's boot we believe in, and its receive state.
struct PartnerBoot {
    boot: [u8; 16],
    key: TransportKey,
    replay: ReplayWindow,
}

/// A full sync being received.
struct FullIn {
    id: u32,
    count: u16,
    got: Vec<bool>,
    keys: HashSet<Box<[u8]>>,
}

/// What the partner last said about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    /// Its role.
    pub role: Role,
    /// The leases it holds.
    pub leases: u64,
    /// When.
    pub at: Instant,
}

/// One box's end of the partner channel.
pub struct Partner {
    psk: Zeroizing<[u8; 32]>,
    boot: [u8; 16],
    send_key: TransportKey,
    send_counter: u64,
    role: Role,
    peer: Option<PartnerBoot>,
    heard: Option<Heard>,
    next_heartbeat: Instant,
    /// Changes to send (active only).
    pending: Vec<LeaseChange>,
    /// The full sync being sent: its chunks' lines, the next to send.
    full_out: Vec<Vec<u8>>,
    full_next: usize,
    sync_id: u32,
    /// When a full sync may start again.
    full_allowed: Instant,
    /// Start a full sync at the next chance.
    full_due: bool,
    full_in: Option<FullIn>,
    /// Remote MACs to send before the next heartbeat (active), and the
    /// next to send.
    macs_out: Vec<RemoteMac>,
    macs_next: usize,
    /// Remote MACs the partner listed, and when (standby).
    macs_in: HashMap<RemoteMac, Instant>,
    /// ARP bindings to send before the next heartbeat (active).
    bindings_out: Vec<RemoteBinding>,
    bindings_next: usize,
    /// ARP bindings the partner listed, not yet taken (standby).
    bindings_in: Vec<RemoteBinding>,
    /// Datagrams dropped: not authentic, replayed or malformed.
    pub dropped: u64,
}

impl Partner {
    /// One end, keyed by `psk`, starting in `role`; `boot` must be random
    /// and new for every start (the shell reads it from the OS). The first
    /// heartbeat is due at `now`.
    pub fn new(psk: &[u8; 32], boot: [u8; 16], role: Role, now: Instant) -> Partner {
        Partner {
            psk: Zeroizing::new(*psk),
            send_key: partner_key(psk, &boot),
            boot,
            send_counter: 0,
            role,
            peer: None,
            heard: None,
            next_heartbeat: now,
            pending: Vec::new(),
            full_out: Vec::new(),
            full_next: 0,
            sync_id: 0,
            full_allowed: now,
            full_due: false,
            full_in: None,
            macs_out: Vec::new(),
            macs_next: 0,
            macs_in: HashMap::new(),
            bindings_out: Vec::new(),
            bindings_next: 0,
            bindings_in: Vec::new(),
            dropped: 0,
        }
    }

    /// This box's role changed. A box that becomes active starts a full
    /// sync (the partner may have missed something while this box stood
    /// by); one that stands by sends nothing but heartbeats.
    pub fn set_role(&mut self, role: Role) {
        if self.role == role {
            return;
        }
        self.role = role;
        self.pending.clear();
        self.full_out.clear();
        self.full_next = 0;
        self.full_in = None;
        self.full_due = role == Role::Active;
    }

    /// Lease changes this box made, in order (the shell hands over every
    /// change it persists). Sent only while active.
    pub fn queue_changes(&mut self, changes: &[LeaseChange]) {
        if self.role == Role::Active {
            self.pending.extend_from_slice(changes);
        }
    }

    /// Whether the active box should hand over its remote MACs now
    /// ([`Partner::offer_macs`]): a heartbeat is due.
    pub fn macs_due(&self, now: Instant) -> bool {
        self.role == Role::Active && now >= self.next_heartbeat
    }

    /// The remote MACs to list with the next heartbeat (at most
    /// [`MAX_MACS`] are sent; only by an active box).
    pub fn offer_macs(&mut self, macs: impl Iterator<Item = RemoteMac>) {
        self.macs_out.clear();
        if self.role == Role::Active {
            self.macs_out.extend(macs.take(MAX_MACS));
        }
        self.macs_next = 0;
    }

    /// The ARP bindings to list with the next heartbeat (at most
    /// [`MAX_MACS`] are sent; only by an active box).
    pub fn offer_bindings(&mut self, bindings: impl Iterator<Item = RemoteBinding>) {
        self.bindings_out.clear();
        if self.role == Role::Active {
            self.bindings_out.extend(bindings.take(MAX_MACS));
            // IPv4 first: each datagram carries one family.
            self.bindings_out.sort_by_key(|b| b.0.is_ipv6());
        }
        self.bindings_next = 0;
    }

    /// Moves the ARP bindings the partner listed since the last call to the
    /// end of `out` (standby: to record them).
    pub fn take_bindings(&mut self, out: &mut Vec<RemoteBinding>) {
        out.append(&mut self.bindings_in);
    }

    /// The remote MACs the partner listed within [`MAC_FRESH`] (what a
    /// promoted box announces besides those it learned itself).
    pub fn partner_macs(&self, now: Instant) -> Vec<RemoteMac> {
        self.macs_in
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) < MAC_FRESH)
            .map(|(m, _)| *m)
            .collect()
    }

    /// What the partner last said, if anything.
    pub fn heard(&self) -> Option<Heard> {
        self.heard
    }

    /// Whether something authentic came from the partner within
    /// [`DOWN_AFTER`].
    pub fn is_up(&self, now: Instant) -> bool {
        self.heard
            .is_some_and(|h| now.saturating_duration_since(h.at) < DOWN_AFTER)
    }

    /// When [`Partner::poll_transmit`] has something to send without a new
    /// input (the next heartbeat).
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_heartbeat)
    }

    /// One datagram from the partner. Changes the standby must apply (to
    /// its records, then persist) are appended to `apply`; `db` is this
    /// box's lease table as it is now (what a completed full sync prunes).
    /// Anything not authentic is dropped and counted, never answered.
    pub fn handle_datagram(
        &mut self,
        buf: &mut [u8],
        now: Instant,
        db: &LeaseDb,
        apply: &mut Vec<LeaseChange>,
    ) {
        let Some((len, new_boot)) = self.open(buf) else {
            self.dropped += 1;
            return;
        };
        let payload = &buf[HEADER_LEN..HEADER_LEN + len];
        let Some(m) = Meta::parse(payload) else {
            self.dropped += 1;
            return;
        };
        // Back after a silence, or restarted: it may have missed anything.
        let new_boot = new_boot || !self.is_up(now);
        self.heard = Some(Heard {
            role: m.role,
            leases: u64::from(m.leases),
            at: now,
        });
        if self.role == Role::Active {
            // A partner that (re)appeared, or disagrees about the count
            // with nothing on the way to it, gets everything again.
            let disagrees = u64::from(m.leases) != db.len() as u64
                && self.pending.is_empty()
                && self.full_next >= self.full_out.len();
            if new_boot || disagrees {
                self.full_due = true;
            }
            return;
        }
        let lines = &payload[META_LEN..];
        match m.kind {
            KIND_CHANGES => {
                for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    match journal::decode(line) {
                        Ok(c) => apply.push(c),
                        Err(_) => self.dropped += 1,
                    }
                }
            }
            KIND_FULL => self.take_chunk(&m, lines, db, apply),
            KIND_MACS => {
                if self.macs_in.len() >= 2 * MAX_MACS {
                    self.macs_in
                        .retain(|_, t| now.saturating_duration_since(*t) < MAC_FRESH);
                }
                for e in lines.chunks_exact(MAC_ENTRY) {
                    let vid = u16::from_be_bytes([e[0], e[1]]);
                    let Some(mac) = MacAddr::from_slice(&e[2..]) else {
                        continue;
                    };
                    let vlan = (vid != UNTAGGED).then_some(vid & 0x0fff);
                    if !mac.is_unicast_host() {
                        continue;
                    }
                    // Bounded even if the partner lists more than it may
                    // within MAC_FRESH: what is known is refreshed, nothing
                    // new is kept beyond twice a heartbeat's worth.
                    let len = self.macs_in.len();
                    match self.macs_in.get_mut(&(vlan, mac)) {
                        Some(t) => *t = now,
                        None if len < 2 * MAX_MACS => {
                            self.macs_in.insert((vlan, mac), now);
                        }
                        None => {}
                    }
                }
            }
            KIND_BINDINGS | KIND_ND_BINDINGS => {
                let (size, v6) = if m.kind == KIND_ND_BINDINGS {
                    (ND_BINDING_ENTRY, true)
                } else {
                    (BINDING_ENTRY, false)
                };
                for e in lines.chunks_exact(size) {
                    let (ip, rest) = if v6 {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(&e[..16]);
                        (IpAddr::from(a), &e[16..])
                    } else {
                        (IpAddr::from([e[0], e[1], e[2], e[3]]), &e[4..])
                    };
                    let Some(mac) = MacAddr::from_slice(&rest[..6]) else {
                        continue;
                    };
                    let peer = u16::from_be_bytes([rest[6], rest[7]]);
                    if self.bindings_in.len() < MAX_MACS {
                        self.bindings_in.push((ip, mac, peer));
                    }
                }
            }
            _ => {}
        }
    }

    /// A full-sync chunk: its records applied, and once every chunk of the
    /// sync is in, removals for every record it did not name.
    fn take_chunk(&mut self, m: &Meta, lines: &[u8], db: &LeaseDb, apply: &mut Vec<LeaseChange>) {
        if m.count == 0 || m.index >= m.count {
            self.dropped += 1;
            return;
        }
        let fresh = self
            .full_in
            .as_ref()
            .is_none_or(|f| f.id != m.sync_id || f.count != m.count);
        if fresh {
            self.full_in = Some(FullIn {
                id: m.sync_id,
                count: m.count,
                got: vec![false; usize::from(m.count)],
                keys: HashSet::new(),
            });
        }
        let Some(f) = self.full_in.as_mut() else {
            return;
        };
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match journal::decode(line) {
                Ok(c) => {
                    f.keys.insert(c.key.clone());
                    apply.push(c);
                }
                Err(_) => self.dropped += 1,
            }
        }
        f.got[usize::from(m.index)] = true;
        if f.got.iter().all(|&g| g) {
            // Every record the active box has was named: the rest are gone
            // there. The changes above are applied first (they come first).
            for (key, _) in db.iter() {
                if !f.keys.contains(key) {
                    apply.push(LeaseChange {
                        key: key.into(),
                        lease: None,
                    });
                }
            }
            self.full_in = None;
        }
    }

    /// The next datagram to send to the partner, written into `buf` (at
    /// least [`MAX_DATAGRAM`] bytes): a full-sync chunk, pending changes, or
    /// a heartbeat when one is due. `db` is this box's lease table (what a
    /// full sync sends). Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant, db: &LeaseDb, buf: &mut [u8]) -> Option<usize> {
        if buf.len() < MAX_DATAGRAM {
            return None;
        }
        if self.role == Role::Active && self.full_due && now >= self.full_allowed {
            self.start_full(db, now);
        }
        let leases = u32::try_from(db.len()).unwrap_or(u32::MAX);
        if self.full_next < self.full_out.len() {
            let i = self.full_next;
            self.full_next += 1;
            let meta = Meta {
                kind: KIND_FULL,
                role: self.role,
                leases,
                sync_id: self.sync_id,
                index: i as u16,
                count: self.full_out.len() as u16,
            };
            let lines = std::mem::take(&mut self.full_out[i]);
            let n = self.seal(&meta, &lines, buf);
            self.full_out[i] = lines;
            return Some(n);
        }
        if !self.pending.is_empty() {
            let mut lines = Vec::with_capacity(LINES_ROOM);
            let mut taken = 0;
            let mut line = Vec::new();
            for c in &self.pending {
                line.clear();
                journal::encode(c, &mut line);
                if lines.len() + line.len() > LINES_ROOM {
                    break;
                }
                lines.extend_from_slice(&line);
                taken += 1;
            }
            // A line never exceeds the room (client ids are at most 255
            // bytes); should one, it is dropped rather than block the rest.
            self.pending.drain(..taken.max(1));
            let meta = Meta::plain(KIND_CHANGES, self.role, leases);
            return Some(self.seal(&meta, &lines, buf));
        }
        if now >= self.next_heartbeat && self.macs_next < self.macs_out.len() {
            let room = LINES_ROOM / MAC_ENTRY;
            let end = (self.macs_next + room).min(self.macs_out.len());
            let mut body = Vec::with_capacity((end - self.macs_next) * MAC_ENTRY);
            for (vlan, mac) in &self.macs_out[self.macs_next..end] {
                body.extend_from_slice(&vlan.unwrap_or(UNTAGGED).to_be_bytes());
                body.extend_from_slice(&mac.0);
            }
            self.macs_next = end;
            let meta = Meta::plain(KIND_MACS, self.role, leases);
            return Some(self.seal(&meta, &body, buf));
        }
        if now >= self.next_heartbeat && self.bindings_next < self.bindings_out.len() {
            // One family per datagram (they are sorted IPv4 first).
            let v6 = self.bindings_out[self.bindings_next].0.is_ipv6();
            let (kind, size) = if v6 {
                (KIND_ND_BINDINGS, ND_BINDING_ENTRY)
            } else {
                (KIND_BINDINGS, BINDING_ENTRY)
            };
            let mut body = Vec::with_capacity(LINES_ROOM);
            while let Some((ip, mac, peer)) = self.bindings_out.get(self.bindings_next) {
                if ip.is_ipv6() != v6 || body.len() + size > LINES_ROOM {
                    break;
                }
                match ip {
                    IpAddr::V4(a) => body.extend_from_slice(&a.octets()),
                    IpAddr::V6(a) => body.extend_from_slice(&a.octets()),
                }
                body.extend_from_slice(&mac.0);
                body.extend_from_slice(&peer.to_be_bytes());
                self.bindings_next += 1;
            }
            let meta = Meta::plain(kind, self.role, leases);
            return Some(self.seal(&meta, &body, buf));
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + HEARTBEAT;
            self.macs_out.clear();
            self.macs_next = 0;
            self.bindings_out.clear();
            self.bindings_next = 0;
            let meta = Meta::plain(KIND_HEARTBEAT, self.role, leases);
            return Some(self.seal(&meta, &[], buf));
        }
        None
    }

    /// Cuts `db` into chunks of journal lines (at most `u16::MAX` chunks).
    fn start_full(&mut self, db: &LeaseDb, now: Instant) {
        self.full_due = false;
        self.full_allowed = now + FULL_RETRY;
        self.sync_id = self.sync_id.wrapping_add(1);
        self.pending.clear();
        self.full_out.clear();
        self.full_next = 0;
        let mut chunk = Vec::with_capacity(LINES_ROOM);
        let mut line = Vec::new();
        for (key, lease) in db.iter() {
            line.clear();
            journal::encode(
                &LeaseChange {
                    key: key.into(),
                    lease: Some(lease),
                },
                &mut line,
            );
            if chunk.len() + line.len() > LINES_ROOM {
                self.full_out.push(std::mem::take(&mut chunk));
            }
            chunk.extend_from_slice(&line);
        }
        // Even an empty table is a (one-chunk) sync: the partner prunes all.
        self.full_out.push(chunk);
        self.full_out.truncate(usize::from(u16::MAX));
    }

    /// Writes header, sealed payload and tag; returns the length.
    fn seal(&mut self, meta: &Meta, lines: &[u8], buf: &mut [u8]) -> usize {
        let body = &mut buf[HEADER_LEN..];
        meta.emit(&mut body[..META_LEN]);
        let body_len = META_LEN + lines.len();
        body[META_LEN..body_len].copy_from_slice(lines);
        self.seal_body(body_len, buf)
    }

    /// Under `cfg(fuzzing)` (cargo-fuzz builds only, never a shipped
    /// binary): seals `payload` as it stands (kind, role, counts and lines,
    /// unchecked) into `buf` as this box's next datagram and returns its
    /// length, so the fuzz target reaches the parser behind the
    /// authentication. `buf` needs `payload.len()` plus 41 bytes.
    #[cfg(fuzzing)]
    pub fn seal_payload(&mut self, payload: &[u8], buf: &mut [u8]) -> usize {
        buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
        self.seal_body(payload.len(), buf)
    }

    /// Seals the `body_len` bytes after the header in place under this
    /// box's next counter, writing the header before them and the tag
    /// after; returns the datagram's length.
    fn seal_body(&mut self, body_len: usize, buf: &mut [u8]) -> usize {
        let counter = self.send_counter;
        self.send_counter += 1;
        buf[0] = VERSION;
        buf[1..17].copy_from_slice(&self.boot);
        buf[17..HEADER_LEN].copy_from_slice(&counter.to_be_bytes());
        let (header, rest) = buf.split_at_mut(HEADER_LEN);
        let tag = self.send_key.seal(counter, header, &mut rest[..body_len]);
        rest[body_len..body_len + TAG_LEN].copy_from_slice(&tag);
        HEADER_LEN + body_len + TAG_LEN
    }

    /// Authenticates `buf` in place; the payload's length if it is
    /// authentic, fresh and from the partner's boot (adopting a new boot
    /// that authenticates: then `true` comes with it).
    fn open(&mut self, buf: &mut [u8]) -> Option<(usize, bool)> {
        if buf.len() < HEADER_LEN + META_LEN + TAG_LEN || buf[0] != VERSION {
            return None;
        }
        let boot: [u8; 16] = buf[1..17].try_into().ok()?;
        if boot == self.boot {
            // Our own datagram reflected back.
            return None;
        }
        let counter = u64::from_be_bytes(buf[17..HEADER_LEN].try_into().ok()?);
        let (header, rest) = buf.split_at_mut(HEADER_LEN);
        let len = rest.len() - TAG_LEN;
        match &mut self.peer {
            Some(p) if p.boot == boot => {
                p.replay.check(counter).ok()?;
                if !p.key.open(counter, header, rest) {
                    return None;
                }
                p.replay.accept(counter).ok()?;
                Some((len, false))
            }
            _ => {
                let key = partner_key(&self.psk, &boot);
                if !key.open(counter, header, rest) {
                    return None;
                }
                let mut replay = ReplayWindow::new();
                replay.accept(counter).ok()?;
                self.peer = Some(PartnerBoot { boot, key, replay });
                self.full_in = None;
                Some((len, true))
            }
        }
    }
}

/// The fixed part of a payload.
struct Meta {
    kind: u8,
    role: Role,
    leases: u32,
    sync_id: u32,
    index: u16,
    count: u16,
}

impl Meta {
    fn plain(kind: u8, role: Role, leases: u32) -> Meta {
        Meta {
            kind,
            role,
            leases,
            sync_id: 0,
            index: 0,
            count: 0,
        }
    }

    fn emit(&self, out: &mut [u8]) {
        out[0] = self.kind;
        out[1] = u8::from(self.role == Role::Standby);
        out[2..6].copy_from_slice(&self.leases.to_be_bytes());
        out[6..10].copy_from_slice(&self.sync_id.to_be_bytes());
        out[10..12].copy_from_slice(&self.index.to_be_bytes());
        out[12..14].copy_from_slice(&self.count.to_be_bytes());
    }

    fn parse(p: &[u8]) -> Option<Meta> {
        let p = p.get(..META_LEN)?;
        let role = match p[1] {
            0 => Role::Active,
            1 => Role::Standby,
            _ => return None,
        };
        let u16_at = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        Some(Meta {
            kind: p[0],
            role,
            leases: u32_at(2),
            sync_id: u32_at(6),
            index: u16_at(10),
            count: u16_at(12),
        })
    }
}
