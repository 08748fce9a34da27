//! The DHCP conflict check (`dhcp.conflict_check`, pure): never offer an
//! address another host is using. Two sites bridged at Layer 2 often run
//! overlapping pools (the same config at every branch), and a host with a
//! static address can sit inside a pool; a client that does no duplicate
//! address detection of its own (busybox udhcpc without `-a`) would take such
//! an address and break both hosts.
//!
//! What it promises, with the check on:
//! - An address **seen in use** by another MAC is never offered and a
//!   REQUEST for it is NAKed. "Seen in use": the sender of an ARP frame from
//!   a peer (any ARP, with or without `arp.suppress`), or the sender of a
//!   local ARP frame that is not the address's lease holder. A probe (sender
//!   0.0.0.0) uses nothing yet (it may be another site's responder probing
//!   an address leased here): it only counts against an offer held here for
//!   the same address. The record keeps an address for
//!   [`IN_USE_SECS`] after it was last seen, at most [`MAX_IN_USE`] addresses
//!   (when full: expired ones go first, then the oldest), and never
//!   allocates after construction.
//! - An OFFER of an address nobody could be using is **sent at once**: a
//!   reservation (the operator named it) or the address this server leased
//!   to the same client before (its record is kept after the lease ended),
//!   unless another MAC was seen using it since. RFC 5227 probes a fresh
//!   address; there is nothing to find for these, and after a site-wide
//!   power cut most DISCOVERs are of this kind. (REQUESTs, renewals
//!   included, are never held.)
//! - Every other OFFER is **probed first**: a DISCOVER gets no immediate
//!   answer; the responder emits an RFC 5227 ARP probe (sender IP 0.0.0.0,
//!   target the candidate; with the others of its [`PROBE_SLACK`] slot)
//!   that the shell writes into the TAP and floods to the peers, and holds
//!   the offer for [`PROBE_HOLD`]. An ARP frame from
//!   another MAC that claims or probes the candidate meanwhile sets it aside
//!   and the responder tries the next candidate (at most [`MAX_CANDIDATES`]
//!   per DISCOVER); otherwise the OFFER goes out when the hold ends.
//! - Held offers are bounded by memory, [`MAX_HELD`] (room for 40,000
//!   DISCOVERs a second); at the bound the offer held longest goes out at
//!   once, before its hold ends (counted in `dhcp_offers_early`, logged at
//!   most once per [`CONFLICT_LOG_INTERVAL`]), so the client that waited
//!   longest is answered first and none is dropped.
//! - An address found in use is set aside in the allocator for
//!   [`IN_USE_SECS`] ([`Allocator::set_aside`](super::alloc::Allocator::set_aside)),
//!   counted in `dhcp_conflicts` and logged (rate-limited, see
//!   [`ConflictLog`]).
//! - Reservations are exempt: the operator named the address, so it is
//!   offered at once and never set aside.
//! - The client itself is never in conflict with its own address: frames
//!   from its chaddr, or from the MAC its lease was granted to (a client
//!   keyed by option 61 that comes back on a new interface), do not count.
//!   Only pool addresses are recorded.
//! - Probes are bounded: one per candidate address of a DISCOVER (at most
//!   [`MAX_CANDIDATES`]), and their flood to the peers goes through storm
//!   control like any broadcast, so a burst of DISCOVERs (random MACs) is
//!   not amplified into a storm.
//!
//! Answers to a probe are unicast to the responder's MAC with target IP
//! 0.0.0.0; [`Responder::handle_local`](super::super::Responder::handle_local)
//! forwards such answers into the tunnel instead of consuming them, since
//! another site with the same configured `arp.mac` may have sent the probe.
//!
//! Sans-I/O like the rest of the responder: the shell asks
//! [`poll_timeout`](super::super::Responder::poll_timeout) when to come back
//! and drains [`poll_transmit`](super::super::Responder::poll_transmit),
//! which yields probes and held offers that fell due as [`OwnFrame`]s.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use smoltcp::wire::{ArpOperation, DhcpMessageType};

use super::super::ResponderCounters;
use super::super::arp::{Arp, broadcast_request};
use super::alloc::ClientRef;
use super::{Answer, ClientMsg, DhcpServer};
use crate::mac::MacAddr;

mod held;
mod in_use;
use held::{Held, HeldSet, Step};
use in_use::InUse;

/// How long an offer is held after its probe went out. Long enough for an
/// answer to cross a WAN twice (the probe floods to the peers and the
/// owner's reply comes back); short next to the 4 s a client waits before it
/// sends its first retransmission (RFC 2131 §4.1).
pub const PROBE_HOLD: Duration = Duration::from_millis(400);

/// How much later than its DISCOVER a probe may go out: the probes of a
/// burst of DISCOVERs that come within this of each other go out together,
/// in one `sendmmsg` to the peers (and one wake-up of each peer's daemon),
/// not one per probe. At 5,000 DISCOVERs a second: 0.11 sends per exchange
/// instead of 0.53.
pub const PROBE_SLACK: Duration = Duration::from_millis(2);

/// How much later than [`PROBE_HOLD`] an OFFER may go out: the OFFERs of a
/// burst of DISCOVERs that fall due within this of each other go out
/// together, so the worker wakes once per slack, not once per offer (at
/// 5,000 DISCOVERs a second that took the daemon's CPU per exchange from
/// about 78 to 65 µs).
pub const OFFER_SLACK: Duration = Duration::from_millis(4);

/// How long an address stays "in use" after its user was last seen (and
/// how long the allocator sets it aside).
pub const IN_USE_SECS: u64 = 600;

/// Most addresses remembered as in use.
pub const MAX_IN_USE: usize = 4096;

/// Most offers held for their probes at once: memory, not rate (about 150
/// bytes each, 2.4 MiB in all). At [`PROBE_HOLD`] each, room for 40,000
/// DISCOVERs a second. When it is full the oldest held offer is answered
/// at once, without waiting out its hold (counted in `dhcp_offers_early`).
pub const MAX_HELD: usize = 16_384;

/// Most addresses tried for one DISCOVER.
pub const MAX_CANDIDATES: u8 = 4;

/// Least time between two [`ConflictLog`]s.
pub const CONFLICT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A frame the responder sends on its own (not as the answer to a frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnFrame {
    /// Write `out[..n]` into the TAP: a held OFFER that fell due.
    Local(usize),
    /// Write `out[..n]` into the TAP and flood it to every peer (through
    /// storm control, like any broadcast): an ARP probe.
    Probe(usize),
}

/// Addresses found in use to log: at most one line per [`CONFLICT_LOG_INTERVAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictLog {
    /// Conflicts since the previous line.
    pub count: u64,
    /// The address of the last one.
    pub ip: Ipv4Addr,
    /// The MAC that was using it.
    pub mac: MacAddr,
}

/// The state of the check: the in-use record, held offers, the log.
#[derive(Debug)]
pub(in super::super) struct ConflictCheck {
    in_use: InUse,
    held: HeldSet,
    /// OFFERs answered early since the last log line (the set was full).
    early_unlogged: u64,
    early_logged_at: Option<Instant>,
    unlogged: u64,
    last: Option<(Ipv4Addr, MacAddr)>,
    logged_at: Option<Instant>,
}

impl ConflictCheck {
    pub(super) fn new() -> ConflictCheck {
        ConflictCheck {
            in_use: InUse::new(),
            held: HeldSet::default(),
            early_unlogged: 0,
            early_logged_at: None,
            unlogged: 0,
            last: None,
            logged_at: None,
        }
    }

    /// Conflicts to log now, if any and the previous line is at least
    /// [`CONFLICT_LOG_INTERVAL`] old.
    pub(in super::super) fn take_log(&mut self, now: Instant) -> Option<ConflictLog> {
        if self.unlogged == 0
            || self
                .logged_at
                .is_some_and(|t| now.saturating_duration_since(t) < CONFLICT_LOG_INTERVAL)
        {
            return None;
        }
        let (ip, mac) = self.last?;
        self.logged_at = Some(now);
        Some(ConflictLog {
            count: std::mem::take(&mut self.unlogged),
            ip,
            mac,
        })
    }

    /// OFFERs answered before their hold ended because the held set was
    /// full, to log now: at most one count per [`CONFLICT_LOG_INTERVAL`].
    pub(in super::super) fn take_early_log(&mut self, now: Instant) -> Option<u64> {
        if self.early_unlogged == 0
            || self
                .early_logged_at
                .is_some_and(|t| now.saturating_duration_since(t) < CONFLICT_LOG_INTERVAL)
        {
            return None;
        }
        self.early_logged_at = Some(now);
        Some(std::mem::take(&mut self.early_unlogged))
    }

    fn note(&mut self, ip: Ipv4Addr, mac: MacAddr, counters: &mut ResponderCounters) {
        counters.dhcp_conflicts += 1;
        self.unlogged += 1;
        self.last = Some((ip, mac));
    }
}

/// What became of a DISCOVER under the check.
pub(super) enum Checked {
    /// Answer at once (a reservation).
    Answer(Answer),
    /// Held for its probe (or a retransmission of a held one): no answer now.
    Held,
    /// No answer (pool full, every candidate in use, too many held).
    Nothing,
}

impl DhcpServer {
    /// A DISCOVER with the check on: pick an address nobody is seen using and
    /// hold it for its probe (see the module docs).
    pub(super) fn discover_checked(
        &mut self,
        msg: &ClientMsg<'_>,
        client: ClientRef<'_>,
        now: u64,
        at: Instant,
        counters: &mut ResponderCounters,
    ) -> Checked {
        if let Some(check) = &mut self.conflict
            && let Some(h) = check.held.get_mut(client.key)
        {
            // A retransmission: answer the latest one, probe once.
            h.xid = msg.xid;
            h.broadcast = msg.broadcast;
            h.chaddr = msg.chaddr;
            return Checked::Held;
        }
        let Some(ip) = self.pick(client, msg.requested, now, at, counters) else {
            return Checked::Nothing;
        };
        // Nothing to find for a reservation (the operator named it) or for
        // the address this server leased to this client before (nobody was
        // seen using it since: `pick` skips those).
        let known = self.alloc.db().get(client.key).is_some_and(|l| l.ip == ip);
        if known || self.alloc.reservation(&client.mac) == Some(ip) {
            return Checked::Answer(Answer {
                kind: Some(DhcpMessageType::Offer),
                yiaddr: ip,
                lease: true,
                config: true,
                lease_secs: self.grant_secs(client, ip, now).0,
            });
        }
        let Some(check) = &mut self.conflict else {
            return Checked::Nothing;
        };
        if check.held.len() >= MAX_HELD {
            // Full: the oldest held OFFER goes out now, so the client that
            // waited longest is answered first and nobody is dropped.
            if check.held.answer_oldest_at(at) {
                counters.dhcp_offers_early += 1;
                check.early_unlogged += 1;
            }
            if check.held.len() >= 2 * MAX_HELD {
                // Only when offers cannot even be answered early (a reply
                // buffer too small): the one bound left.
                self.alloc.cancel_offer(client.key);
                return Checked::Nothing;
            }
        }
        check.held.insert(Held {
            key: client.key.into(),
            client_id: msg.client_id.is_some(),
            chaddr: msg.chaddr,
            xid: msg.xid,
            broadcast: msg.broadcast,
            requested: msg.requested,
            ip,
            step: Step::Probe,
            at,
            tried: 1,
            seq: 0,
        });
        Checked::Held
    }

    /// Offer the client an address (held in the allocator), skipping those
    /// seen in use by another MAC. `None` when the pool is full (counted)
    /// or [`MAX_CANDIDATES`] were in use.
    fn pick(
        &mut self,
        client: ClientRef<'_>,
        requested: Option<Ipv4Addr>,
        now: u64,
        at: Instant,
        counters: &mut ResponderCounters,
    ) -> Option<Ipv4Addr> {
        for _ in 0..MAX_CANDIDATES {
            let Some(ip) = self.alloc.offer(client, requested, now) else {
                counters.dhcp_pool_exhausted += 1;
                self.exhausted_unreported += 1;
                return None;
            };
            match self.used_by_other(client, ip, at) {
                Some(mac) => self.set_aside(ip, mac, now, counters),
                None => return Some(ip),
            }
        }
        self.alloc.cancel_offer(client.key);
        None
    }

    /// The MAC seen using `ip` if it is not the client's (its chaddr, or
    /// the MAC its lease was granted to: a client keyed by option 61 may
    /// come back on a new interface). Reserved addresses are never in use by
    /// others.
    pub(super) fn used_by_other(
        &self,
        client: ClientRef<'_>,
        ip: Ipv4Addr,
        at: Instant,
    ) -> Option<MacAddr> {
        let check = self.conflict.as_ref()?;
        if self.alloc.reservation(&client.mac) == Some(ip) {
            return None;
        }
        let leased = self
            .alloc
            .db()
            .get(client.key)
            .map_or(client.mac, |l| l.mac);
        check.in_use.other_than(ip, &[client.mac, leased], at)
    }

    /// `ip` is in use by `mac`: keep it out of the pool, count and log it.
    pub(super) fn set_aside(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: u64,
        counters: &mut ResponderCounters,
    ) {
        self.alloc.set_aside(ip, now.saturating_add(IN_USE_SECS));
        if let Some(check) = &mut self.conflict {
            check.note(ip, mac, counters);
        }
    }

    /// A message other than DISCOVER from the client ends its held offer.
    pub(super) fn drop_held(&mut self, key: &[u8]) {
        if let Some(check) = &mut self.conflict {
            check.held.remove(key);
        }
    }

    /// An untagged ARP frame seen on the local side or from a peer: record
    /// who uses which pool address, and catch conflicts with held offers.
    /// Never allocates.
    pub(in super::super) fn observe_arp(
        &mut self,
        arp: &Arp,
        from_peer: bool,
        at: Instant,
        counters: &mut ResponderCounters,
    ) {
        let Some(check) = &mut self.conflict else {
            return;
        };
        let probe = arp.spa.is_unspecified();
        let ip = match (probe, arp.op) {
            (false, ArpOperation::Request | ArpOperation::Reply) => arp.spa,
            (true, ArpOperation::Request) => arp.tpa,
            _ => return,
        };
        let range = u32::from(self.settings.pool_start)..=u32::from(self.settings.pool_end);
        if !range.contains(&u32::from(ip))
            || !arp.sha.is_unicast_host()
            || arp.sha == self.settings.server_mac
        {
            return;
        }
        let db = self.alloc.db();
        // A local host using its own lease is no news; a probe is a host
        // (or another site's responder) checking an address before it uses
        // it: it only matters against a held offer, below.
        if !probe && (from_peer || db.owner(ip) != Some(arp.sha)) {
            check.in_use.saw(ip, arp.sha, at);
        }
        let Some(h) = check.held.at_ip(ip) else {
            return;
        };
        if h.step == Step::Repick
            || arp.sha == h.chaddr
            || db.get(&h.key).is_some_and(|l| l.mac == arp.sha)
        {
            return;
        }
        if let Some(mut h) = check.held.remove_at_ip(ip) {
            h.step = Step::Repick;
            h.at = at;
            check.held.insert(h);
        }
        check.note(ip, arp.sha, counters);
    }

    /// When [`poll_transmit`](Self::poll_transmit) has something to do.
    pub(in super::super) fn poll_timeout(&self) -> Option<Instant> {
        self.conflict.as_ref()?.held.next_due()
    }

    /// The next probe or held OFFER due at `at` (`now`: wall-clock UNIX
    /// seconds), written into `out`. Call until `None`.
    pub(in super::super) fn poll_transmit(
        &mut self,
        now: u64,
        at: Instant,
        out: &mut [u8],
        counters: &mut ResponderCounters,
    ) -> Option<OwnFrame> {
        loop {
            let check = self.conflict.as_mut()?;
            let mut h = check.held.pop_due(at)?;
            match h.step {
                Step::Probe => {
                    h.step = Step::Offer;
                    h.at = at + PROBE_HOLD;
                    let ip = h.ip;
                    match emit_probe(self.settings.server_mac, ip, out) {
                        Some(n) => {
                            check.held.insert(h);
                            counters.dhcp_probes += 1;
                            return Some(OwnFrame::Probe(n));
                        }
                        None => counters.dhcp_ignored += 1,
                    }
                }
                Step::Offer => {
                    let client = ClientRef {
                        key: &h.key,
                        mac: h.chaddr,
                    };
                    if let Some(mac) = self.used_by_other(client, h.ip, at) {
                        // Seen between the probe and now (e.g. a gratuitous ARP).
                        self.conflict.as_mut()?.note(h.ip, mac, counters);
                        h.step = Step::Repick;
                        h.at = at;
                        self.conflict.as_mut()?.held.insert(h);
                        continue;
                    }
                    if !self.alloc.usable_by(client, h.ip, now) {
                        counters.dhcp_ignored += 1;
                        continue;
                    }
                    let msg = ClientMsg {
                        kind: Some(DhcpMessageType::Discover),
                        xid: h.xid,
                        broadcast: h.broadcast,
                        ciaddr: Ipv4Addr::UNSPECIFIED,
                        giaddr: Ipv4Addr::UNSPECIFIED,
                        chaddr: h.chaddr,
                        requested: h.requested,
                        server_id: None,
                        client_id: h.client_id.then_some(&*h.key),
                    };
                    let answer = Answer {
                        kind: Some(DhcpMessageType::Offer),
                        yiaddr: h.ip,
                        lease: true,
                        config: true,
                        lease_secs: self.grant_secs(client, h.ip, now).0,
                    };
                    match self.emit(&msg, &answer, out) {
                        Some(n) => {
                            counters.dhcp_replies += 1;
                            return Some(OwnFrame::Local(n));
                        }
                        None => counters.dhcp_ignored += 1,
                    }
                }
                Step::Repick => {
                    // Counted when it was seen; keep it out of the pool.
                    self.alloc.set_aside(h.ip, now.saturating_add(IN_USE_SECS));
                    let client = ClientRef {
                        key: &h.key,
                        mac: h.chaddr,
                    };
                    if h.tried >= MAX_CANDIDATES {
                        self.alloc.cancel_offer(client.key);
                        counters.dhcp_ignored += 1;
                        continue;
                    }
                    let Some(ip) = self.pick(client, h.requested, now, at, counters) else {
                        continue;
                    };
                    h.ip = ip;
                    h.tried += 1;
                    h.step = Step::Probe;
                    h.at = at;
                    self.conflict.as_mut()?.held.insert(h);
                }
            }
        }
    }

    /// Takes over the in-use record of `old` (a reload that rebuilt the
    /// DHCP half); held offers are dropped (their clients retry).
    pub(in super::super) fn adopt_in_use(&mut self, old: &mut DhcpServer) {
        if let (Some(new), Some(old)) = (&mut self.conflict, &mut old.conflict) {
            std::mem::swap(&mut new.in_use, &mut old.in_use);
        }
    }
}

/// An RFC 5227 probe from `mac`: "who has `ip`?", sender IP 0.0.0.0,
/// broadcast. `None` if `out` is too small.
fn emit_probe(mac: MacAddr, ip: Ipv4Addr, out: &mut [u8]) -> Option<usize> {
    broadcast_request(mac, Ipv4Addr::UNSPECIFIED, ip, out)
}

#[cfg(test)]
mod tests;
