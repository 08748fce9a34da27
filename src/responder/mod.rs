//! Local ARP and DHCP responder (pure): answers the local side's ARP and DHCP
//! itself, the way OpenVPN's Windows TAP driver masquerades a DHCP server,
//! so the OS (or a whole bridged LAN behind the TAP) configures itself
//! without broadcasts crossing the tunnel.
//!
//! Pure: frames and time in, reply frames and verdicts out. No sockets, no
//! clock reads, no file I/O: the lease database comes in as a [`LeaseDb`]
//! and goes out as changes ([`Responder::take_lease_changes`]) or file
//! bytes, and [`crate::leases`] reads and writes the files.
//!
//! What it promises:
//! - [`Responder::handle_local`] is called for every frame the TAP gives us.
//!   The common case (not ARP, not DHCP, not addressed to the responder) costs
//!   one pass of the shared classifier ([`crate::wire::ethernet`]: etherparse
//!   slicing the headers, about 0.1 µs) (and, while ARP bindings exist, one
//!   hash lookup of the source MAC: a bound MAC seen locally, in any VLAN,
//!   drops its bindings) and **never allocates**. ARP requests for our own
//!   addresses are answered and never forwarded; with DHCP enabled, no local
//!   DHCP frame (UDP port 67 or 68) is ever forwarded.
//! - [`Responder::handle_remote`] is called for every frame from the tunnel,
//!   with the peer it came from: it learns IP→MAC bindings from ARP and,
//!   with `suppress_nd`, IPv6→MAC bindings from neighbour discovery (for
//!   suppression; refused ones are counted, see [`arp`] and [`nd`]) and drops DHCP when
//!   this site runs its own DHCP responder. It never allocates after
//!   construction. [`Responder::forget_peer`] drops a peer's bindings.
//! - DHCP follows RFC 2131 (see [`dhcp`]); its allocator promises that no
//!   address is ever held by two clients (see [`dhcp::alloc`]).
//! - With `dhcp.conflict_check`, both sides' ARP also feeds a record of
//!   addresses in use, and a DISCOVER is answered later: the shell wakes up
//!   at [`Responder::poll_timeout`] and sends what
//!   [`Responder::poll_transmit`] yields (ARP probes, held OFFERs); see
//!   [`dhcp::conflict`].
//!
//! Only untagged frames are answered or learned from: a tagged ARP request,
//! even for our own address, is forwarded like any frame, and the ARP and
//! ND suppression caches neither answer nor learn from tagged frames. With DHCP
//! enabled, DHCPv4 of any VLAN is kept off the tunnel both ways: a tagged
//! client request from the local side is consumed (counted in
//! `dhcp_ignored`), tagged DHCP from a peer is dropped like untagged.

pub mod arp;
mod bindings;
mod counters;
pub mod dhcp;
pub mod nd;
mod settings;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use dhcp::alloc::{LeaseInfo, PoolUsage};
pub use dhcp::{ConflictLog, OwnFrame};
pub use dhcp::{DhcpPlan, DhcpSettings, DhcpSettingsError};
pub use settings::{ArpSettings, ResponderError, derive_responder_mac};

use crate::leases::{LeaseChange, LeaseDb};
use crate::mac::MacAddr;
use crate::peer_id::PeerId;

use arp::{ArpResponder, Learned};
use counters::Refusals;
pub use counters::{REFUSAL_LOG_INTERVAL, RefusalLog, ResponderCounters};
use dhcp::DhcpServer;
use nd::NdResponder;
use smoltcp::wire::ArpOperation;

/// What to do with a frame the local side (TAP) sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalVerdict {
    /// Not ours: send it through the tunnel as usual.
    Forward,
    /// Write `reply[..n]` back into the TAP; do not forward the frame.
    Reply(usize),
    /// Ours, but no answer: drop it.
    Consumed,
}

/// What to do with a frame that arrived through the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteVerdict {
    /// Write it into the TAP.
    Deliver,
    /// Drop it (DHCP from another site's DHCP domain).
    Drop,
}

/// Required size of the `reply` buffer passed to [`Responder::handle_local`].
pub const REPLY_BUFFER_LEN: usize = 1600;

/// The local ARP + DHCP responder. One per link, owned by the worker that
/// reads the TAP.
#[derive(Debug)]
pub struct Responder {
    arp: Option<ArpResponder>,
    /// IPv6 ND suppression (`arp.suppress_nd`).
    nd: Option<NdResponder>,
    dhcp: Option<DhcpServer>,
    /// MACs whose frames are the responder's (ARP mac, DHCP server mac).
    own_macs: [MacAddr; 2],
    counters: ResponderCounters,
    /// What the ARP half was built from (settings, DHCP server address and
    /// MAC), to tell whether a reconfiguration changes it.
    arp_inputs: (Option<ArpSettings>, Option<(Ipv4Addr, MacAddr)>),
    /// `arp.respond` (the DHCP half excludes those addresses).
    respond: Option<Vec<Ipv4Addr>>,
    refusals: Refusals,
}

impl Responder {
    /// Build a responder. `None` disables that half; `dhcp` was checked
    /// ([`DhcpSettings::check`]) with `arp.respond` among its excluded
    /// addresses. `leases` is the database read at start (by the shell, from
    /// the lease file); records the settings no longer allow are dropped.
    /// Fails when the ARP settings cannot work.
    pub fn new(
        arp: Option<ArpSettings>,
        dhcp: Option<DhcpPlan>,
        leases: LeaseDb,
    ) -> Result<Responder, ResponderError> {
        let dhcp = dhcp.map(|d| DhcpServer::new(d, leases));
        let server = dhcp
            .as_ref()
            .map(|d| (d.settings().server_address, d.settings().server_mac));
        let own_arp_mac = arp.as_ref().map(|a| a.mac);
        let nd_timeout = arp
            .as_ref()
            .filter(|a| a.suppress_nd)
            .map(|a| a.binding_timeout);
        let arp_inputs = (arp.clone(), server);
        let respond = arp.as_ref().map(|a| a.respond.clone());
        let arp = match (arp, server) {
            (None, None) => None,
            (a, s) => Some(ArpResponder::new(a, s)?),
        };
        let first = own_arp_mac.or(server.map(|s| s.1)).unwrap_or(MacAddr::ZERO);
        let second = server.map(|s| s.1).unwrap_or(first);
        let nd = nd_timeout
            .map(|t| NdResponder::new(t, [first, second]))
            .transpose()?;
        Ok(Responder {
            arp,
            nd,
            dhcp,
            own_macs: [first, second],
            counters: ResponderCounters::default(),
            arp_inputs,
            respond,
            refusals: Refusals::default(),
        })
    }

    /// The addresses the responder answers ARP for, with the MAC it
    /// answers with (`arp.respond`, the DHCP server's): what a box that
    /// becomes active announces with gratuitous ARP.
    pub fn own_addresses(&self) -> &[(Ipv4Addr, MacAddr)] {
        self.arp.as_ref().map_or(&[], |a| a.own_addresses())
    }

    /// The ARP and ND bindings learned through the tunnel that are live
    /// now: (address, MAC, peer). What the active box of a pair lists to its
    /// partner.
    pub fn remote_bindings(&self, now: Instant) -> Vec<(IpAddr, MacAddr, PeerId)> {
        let arp = self
            .arp
            .as_ref()
            .map_or_else(Vec::new, |a| a.remote_bindings(now));
        let nd = self
            .nd
            .as_ref()
            .map_or_else(Vec::new, |n| n.remote_bindings(now));
        arp.into_iter()
            .map(|(ip, mac, p)| (IpAddr::V4(ip), mac, p))
            .chain(nd.into_iter().map(|(ip, mac, p)| (IpAddr::V6(ip), mac, p)))
            .collect()
    }

    /// ARP and ND bindings the active partner of a pair learned through the
    /// tunnel, recorded as if learned here (the same checks: never the
    /// responder's own addresses or MACs, the router, or an address leased
    /// here to another MAC). Returns how many were taken.
    pub fn learn_replicated_bindings(
        &mut self,
        bindings: &[(IpAddr, MacAddr, PeerId)],
        now: Instant,
    ) -> usize {
        let mut taken = 0;
        if let Some(nd) = &mut self.nd {
            taken += bindings
                .iter()
                .filter_map(|&(ip, mac, peer)| match ip {
                    IpAddr::V6(ip) => Some((ip, mac, peer)),
                    IpAddr::V4(_) => None,
                })
                .filter(|&(ip, mac, peer)| nd.learn_replicated(ip, mac, peer, now))
                .count();
        }
        let Some(arp) = &mut self.arp else {
            return taken;
        };
        let dhcp = self.dhcp.as_ref();
        let local = |ip: Ipv4Addr, mac: MacAddr| {
            dhcp.is_some_and(|d| {
                d.settings().router == Some(ip)
                    || d.allocator().db().owner(ip).is_some_and(|m| m != mac)
            })
        };
        taken
            + bindings
                .iter()
                .filter_map(|&(ip, mac, peer)| match ip {
                    IpAddr::V4(ip) => Some((ip, mac, peer)),
                    IpAddr::V6(_) => None,
                })
                .filter(|&(ip, mac, peer)| arp.learn_replicated(ip, mac, peer, now, local))
                .count()
    }

    /// The lease records as they are now, without a copy (`None` without
    /// DHCP).
    pub fn lease_records(&self) -> Option<&LeaseDb> {
        self.dhcp.as_ref().map(|d| d.allocator().db())
    }

    /// Records lease changes the active partner of a high-availability
    /// pair made ([`crate::partner`]); they are taken with the next
    /// [`Responder::take_lease_changes`] and persisted as this box's own.
    /// Returns how many were taken (none without DHCP).
    pub fn apply_replicated(&mut self, changes: &[LeaseChange]) -> usize {
        let Some(d) = self.dhcp.as_mut() else {
            return 0;
        };
        let a = d.allocator_mut();
        changes.iter().filter(|c| a.apply_replicated(c)).count()
    }

    /// The lease database as it is now (empty without DHCP): what a
    /// responder built for new settings starts from (a reload).
    pub fn lease_db(&self) -> LeaseDb {
        self.dhcp
            .as_ref()
            .map(|d| d.allocator().db().clone())
            .unwrap_or_default()
    }

    /// Takes over the state of `old`, the responder this one replaces (a
    /// reload): its counters, and each half whose settings did not change
    /// (pending offers and quarantined addresses of the DHCP half, learned
    /// bindings of the ARP half). Build `self` with [`Responder::new`] from
    /// `old`'s [`lease_db`](Self::lease_db) first: leases the new settings
    /// still allow are kept, the others are dropped (the same rule as at
    /// start-up), so those clients' next renewal is NAKed and they get an
    /// address that fits.
    pub fn take_over(&mut self, mut old: Responder) {
        let same_dhcp = match (&old.dhcp, &self.dhcp) {
            (Some(o), Some(n)) => o.settings() == n.settings() && old.respond == self.respond,
            _ => false,
        };
        if same_dhcp {
            self.dhcp = old.dhcp.take();
        } else if let (Some(new), Some(old)) = (&mut self.dhcp, &mut old.dhcp) {
            new.adopt_in_use(old);
        }
        if old.arp_inputs == self.arp_inputs {
            self.arp = old.arp.take();
            self.nd = old.nd.take();
        }
        self.counters = old.counters;
        self.refusals = old.refusals;
    }

    /// Handle a frame the local side (TAP) sent. `reply` must hold at least
    /// [`REPLY_BUFFER_LEN`] bytes; on [`LocalVerdict::Reply`] the answer is in
    /// `reply[..n]`. `now` drives ARP binding expiry, `wall` the DHCP leases.
    pub fn handle_local(
        &mut self,
        frame: &[u8],
        now: Instant,
        wall: SystemTime,
        reply: &mut [u8],
    ) -> LocalVerdict {
        let class = crate::wire::ethernet::classify(frame);
        self.handle_local_classified(frame, &class, now, wall, reply)
    }

    /// [`Responder::handle_local`] for a frame the caller classified
    /// already (the bridge classifies each frame once).
    pub fn handle_local_classified(
        &mut self,
        frame: &[u8],
        class: &crate::wire::ethernet::Class,
        now: Instant,
        wall: SystemTime,
        reply: &mut [u8],
    ) -> LocalVerdict {
        if let Some(arp) = &mut self.arp {
            arp.saw_local_source(frame);
        }
        if let Some(nd) = &mut self.nd {
            nd.saw_local_source(frame);
        }
        // An answer to an RFC 5227 probe (target IP 0.0.0.0) addressed to our
        // MAC may answer another site's probe: sites often share one
        // configured `arp.mac`, so it is forwarded, not consumed.
        let mut probe_answer = false;
        match Concern::of(class) {
            Concern::Arp => {
                if let Some(a) = arp::parse(frame) {
                    probe_answer = a.op == ArpOperation::Reply && a.tpa.is_unspecified();
                    if let Some(dhcp) = &mut self.dhcp {
                        dhcp.observe_arp(&a, false, now, &mut self.counters);
                    }
                }
                if let Some(arp) = &mut self.arp {
                    let v = arp.handle_local(frame, now, reply);
                    if let LocalVerdict::Reply(_) = v {
                        self.counters.arp_replies += 1;
                    }
                    if v != LocalVerdict::Forward {
                        return v;
                    }
                }
            }
            Concern::Nd => {
                if let Some(nd) = &mut self.nd {
                    let v = nd.handle_local(frame, now, reply);
                    if let LocalVerdict::Reply(_) = v {
                        self.counters.nd_replies += 1;
                        return v;
                    }
                }
            }
            Concern::DhcpToServer => {
                if let Some(dhcp) = &mut self.dhcp {
                    return dhcp.handle(frame, unix_secs(wall), now, reply, &mut self.counters);
                }
            }
            Concern::DhcpOther => {
                if self.dhcp.is_some() {
                    self.counters.dhcp_ignored += 1;
                    return LocalVerdict::Consumed;
                }
            }
            Concern::Other => {}
        }
        if self.is_own_mac(frame) && !probe_answer {
            return LocalVerdict::Consumed;
        }
        LocalVerdict::Forward
    }

    /// Handle a frame that arrived through the tunnel from `peer`: learn ARP
    /// and ND bindings (for suppression) and say whether to write it into the TAP.
    pub fn handle_remote(&mut self, frame: &[u8], peer: PeerId, now: Instant) -> RemoteVerdict {
        let class = crate::wire::ethernet::classify(frame);
        self.handle_remote_classified(frame, &class, peer, now)
    }

    /// [`Responder::handle_remote`] for a frame the caller classified
    /// already.
    pub fn handle_remote_classified(
        &mut self,
        frame: &[u8],
        class: &crate::wire::ethernet::Class,
        peer: PeerId,
        now: Instant,
    ) -> RemoteVerdict {
        match Concern::of(class) {
            Concern::Arp => {
                if let (Some(dhcp), Some(a)) = (&mut self.dhcp, arp::parse(frame)) {
                    dhcp.observe_arp(&a, true, now, &mut self.counters);
                }
                if let Some(arp) = &mut self.arp {
                    let dhcp = self.dhcp.as_ref();
                    // The router, or an address leased here to another MAC
                    // (expired or not: its holder may still use it).
                    let local = |ip: Ipv4Addr, mac: MacAddr| {
                        dhcp.is_some_and(|d| {
                            d.settings().router == Some(ip)
                                || d.allocator().db().owner(ip).is_some_and(|m| m != mac)
                        })
                    };
                    match arp.learn_remote(frame, peer, now, local) {
                        Learned::Nothing => {}
                        Learned::Binding => self.counters.arp_bindings_learned += 1,
                        Learned::Refused(why) => {
                            self.counters.arp_bindings_refused += 1;
                            self.refusals.unlogged += 1;
                            if let Some((ip, mac)) = arp::sender(frame) {
                                self.refusals.last = Some((why, ip.into(), mac, peer));
                            }
                        }
                    }
                }
                RemoteVerdict::Deliver
            }
            Concern::Nd => {
                if let Some(nd) = &mut self.nd {
                    match nd.learn_remote(frame, peer, now) {
                        (Learned::Nothing, _) => {}
                        (Learned::Binding, _) => self.counters.nd_bindings_learned += 1,
                        (Learned::Refused(why), claim) => {
                            self.counters.nd_bindings_refused += 1;
                            self.refusals.unlogged += 1;
                            if let Some((ip, mac)) = claim {
                                self.refusals.last = Some((why, ip.into(), mac, peer));
                            }
                        }
                    }
                }
                RemoteVerdict::Deliver
            }
            Concern::DhcpToServer | Concern::DhcpOther if self.dhcp.is_some() => {
                self.counters.remote_dhcp_dropped += 1;
                RemoteVerdict::Drop
            }
            _ => RemoteVerdict::Deliver,
        }
    }

    /// Drops the ARP and ND bindings learned from `peer` (its session went
    /// down, or it was removed).
    pub fn forget_peer(&mut self, peer: PeerId) {
        if let Some(arp) = &mut self.arp {
            arp.forget_peer(peer);
        }
        if let Some(nd) = &mut self.nd {
            nd.forget_peer(peer);
        }
    }

    /// Refused ARP bindings to log now, if any and the previous line is at
    /// least [`REFUSAL_LOG_INTERVAL`] old (the worker logs it).
    pub fn take_refusal_log(&mut self, now: Instant) -> Option<RefusalLog> {
        let r = &mut self.refusals;
        if r.unlogged == 0
            || r.logged_at
                .is_some_and(|t| now.saturating_duration_since(t) < REFUSAL_LOG_INTERVAL)
        {
            return None;
        }
        let (why, ip, mac, peer) = r.last?;
        let log = RefusalLog {
            count: r.unlogged,
            reason: why.reason(),
            ip,
            mac,
            peer,
        };
        r.unlogged = 0;
        r.logged_at = Some(now);
        Some(log)
    }

    /// When [`poll_transmit`](Self::poll_transmit) has work: an offer held
    /// for `dhcp.conflict_check` falls due (`None`: nothing held). The shell
    /// wakes up by then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dhcp.as_ref().and_then(|d| d.poll_timeout())
    }

    /// The next frame the responder sends on its own at `now`: an ARP probe
    /// for a candidate address or a held DHCP OFFER whose probe met no
    /// answer (see [`OwnFrame`] for where each goes), written into `out`
    /// (at least [`REPLY_BUFFER_LEN`] bytes). Call after each batch of
    /// frames and at [`poll_timeout`](Self::poll_timeout), until `None`.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        wall: SystemTime,
        out: &mut [u8],
    ) -> Option<OwnFrame> {
        let dhcp = self.dhcp.as_mut()?;
        dhcp.poll_transmit(unix_secs(wall), now, out, &mut self.counters)
    }

    /// Addresses found in use to log now, at most one line per
    /// [`dhcp::CONFLICT_LOG_INTERVAL`] (the shell logs it).
    pub fn take_conflict_log(&mut self, now: Instant) -> Option<ConflictLog> {
        self.dhcp.as_mut().and_then(|d| d.take_conflict_log(now))
    }

    /// OFFERs answered before their probe's hold ended since the last
    /// report (the held offers were at their bound), at most once per
    /// [`dhcp::CONFLICT_LOG_INTERVAL`]; the shell logs the count.
    pub fn take_early_offers(&mut self, now: Instant) -> Option<u64> {
        self.dhcp.as_mut().and_then(|d| d.take_early_offers(now))
    }

    /// The unexpired DHCP leases, sorted by address (empty without DHCP).
    pub fn leases(&self, wall: SystemTime) -> Vec<LeaseInfo> {
        self.dhcp
            .as_ref()
            .map(|d| d.allocator().leases(unix_secs(wall)))
            .unwrap_or_default()
    }

    /// The DHCP pool's size and use at `wall` (`None` without DHCP).
    pub fn pool_usage(&self, wall: SystemTime) -> Option<PoolUsage> {
        self.dhcp
            .as_ref()
            .map(|d| d.allocator().usage(unix_secs(wall)))
    }

    /// The counters so far.
    pub fn counters(&self) -> ResponderCounters {
        self.counters
    }

    /// Number of live ARP bindings learned from the tunnel.
    pub fn arp_bindings(&self, now: Instant) -> usize {
        self.arp.as_ref().map_or(0, |a| a.live_bindings(now))
    }

    /// Number of live ND bindings learned from the tunnel.
    pub fn nd_bindings(&self, now: Instant) -> usize {
        self.nd.as_ref().map_or(0, |n| n.live_bindings(now))
    }

    /// `Some(file bytes)` when the lease database changed since the last call;
    /// the shell then writes it to the lease file. Call it after
    /// each batch of frames (it is cheap when nothing changed).
    pub fn take_lease_snapshot(&mut self) -> Option<Vec<u8>> {
        self.dhcp
            .as_mut()
            .and_then(|d| d.allocator_mut().take_snapshot())
    }

    /// Move the lease record changes made since the last call to `out`,
    /// oldest first: what the shell's lease store makes durable. Call it
    /// after each reply (a reply after which this finds changes depends on
    /// them: an ACK waits until they are on disk) and after each batch.
    pub fn take_lease_changes(&mut self, out: &mut Vec<LeaseChange>) {
        if let Some(d) = self.dhcp.as_mut() {
            d.allocator_mut().take_changes(out);
        }
    }

    /// How many DISCOVERs went unanswered for a full pool since the last
    /// report, at most once a minute (see `DhcpServer::take_pool_exhausted`):
    /// the shell logs one line with the count instead of one per DISCOVER.
    pub fn take_pool_exhausted(&mut self, wall: SystemTime) -> Option<u64> {
        self.dhcp
            .as_mut()
            .and_then(|d| d.take_pool_exhausted(unix_secs(wall)))
    }

    /// Lease grants and releases not logged one by one since the last call
    /// (a burst beyond `dhcp::LEASE_LOG_PER_SEC` a second), once their
    /// second is over: the shell logs the count in one line.
    pub fn take_unlogged_leases(&mut self, wall: SystemTime) -> Option<u64> {
        self.dhcp
            .as_mut()
            .and_then(|d| d.take_unlogged_leases(unix_secs(wall)))
    }

    /// The whole lease database in file form, changed or not (for shutdown).
    pub fn lease_snapshot(&self) -> Option<Vec<u8>> {
        self.dhcp.as_ref().map(|d| d.allocator().db().to_bytes())
    }

    fn is_own_mac(&self, frame: &[u8]) -> bool {
        (self.arp.is_some() || self.dhcp.is_some())
            && MacAddr::from_slice(frame)
                .is_some_and(|dst| dst == self.own_macs[0] || dst == self.own_macs[1])
    }
}

/// Wall clock → UNIX seconds (0 before the epoch).
fn unix_secs(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) const ETH_HEADER_LEN: usize = 14;
pub(crate) use crate::wire::ethernet::{
    DHCPV4_CLIENT_PORT as DHCP_CLIENT_PORT, DHCPV4_SERVER_PORT as DHCP_SERVER_PORT,
};

/// What a frame is to the responder (its own reading of the shared
/// classifier's [`Class`](crate::wire::ethernet::Class)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Concern {
    /// Untagged ARP: the only ARP answered or learned from.
    Arp,
    /// Untagged IPv4/UDP to port 67 (client → server).
    DhcpToServer,
    /// Any other DHCPv4 (server → client, odd ports), and DHCPv4 in any
    /// VLAN: the responder serves untagged clients only, yet no local DHCP
    /// may cross the tunnel while it is on.
    DhcpOther,
    /// Untagged ICMPv6 neighbour solicitation or advertisement.
    Nd,
    Other,
}

/// [`Concern::of`] for raw bytes.
#[cfg(test)]
fn concern(frame: &[u8]) -> Concern {
    Concern::of(&crate::wire::ethernet::classify(frame))
}

impl Concern {
    /// The shared classifier's view ([`crate::wire::ethernet`]), reduced to
    /// what the responder acts on.
    fn of(c: &crate::wire::ethernet::Class) -> Concern {
        let untagged = c.untagged();
        if c.kind == crate::wire::ethernet::Kind::Arp {
            return if untagged {
                Concern::Arp
            } else {
                Concern::Other
            };
        }
        if untagged && matches!(c.kind, crate::wire::ethernet::Kind::Icmpv6(135 | 136)) {
            return Concern::Nd;
        }
        if untagged && c.is_dhcpv4_to_server() {
            Concern::DhcpToServer
        } else if c.is_dhcpv4() {
            Concern::DhcpOther
        } else {
            Concern::Other
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn derived_mac_is_local_unicast_and_differs() {
        for tap in [
            [0x02, 0, 0, 0, 0, 1],
            [0x00, 0x16, 0x3e, 1, 2, 3],
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            [0x01, 0, 0, 0, 0, 0],
        ] {
            let m = derive_responder_mac(MacAddr(tap)).0;
            assert_ne!(m, tap);
            assert_eq!(m[0] & 0x01, 0, "unicast");
            assert_eq!(m[0] & 0x02, 0x02, "locally administered");
            assert_eq!(&m[3..], &tap[3..]);
        }
        assert_eq!(
            derive_responder_mac(MacAddr([0x02, 0, 0xff, 0, 0, 1])),
            MacAddr([0x02, 0, 0, 0, 0, 1])
        );
    }

    #[test]
    fn classifies_with_the_shared_classifier() {
        let f = fixtures::dhclient_discover();
        assert_eq!(concern(&f), Concern::DhcpToServer);
        let arp = fixtures::arp_request([2; 6], [1, 1, 1, 1], [2, 2, 2, 2]);
        assert_eq!(concern(&arp), Concern::Arp);
        assert_eq!(concern(&fixtures::udp_frame(5353, 5353)), Concern::Other);
        assert_eq!(concern(&fixtures::udp_frame(67, 68)), Concern::DhcpOther);
        assert_eq!(concern(&fixtures::udp_frame(68, 999)), Concern::DhcpOther);
        assert_eq!(concern(&f[..30]), Concern::Other, "truncated IP header");
        assert_eq!(
            concern(&f[..200]),
            Concern::DhcpToServer,
            "truncated BOOTP is still DHCP"
        );
        assert_eq!(concern(&f[..10]), Concern::Other);
        assert_eq!(concern(&[]), Concern::Other);
        let mut frag = f.clone();
        frag[ETH_HEADER_LEN + 7] = 1; // fragment offset 8
        assert_eq!(concern(&frag), Concern::Other);
        let mut first_fragment = f.clone();
        first_fragment[ETH_HEADER_LEN + 6] = 0x20; // more fragments, offset 0
        assert_eq!(concern(&first_fragment), Concern::DhcpToServer);
        let mut bad_ihl = f.clone();
        bad_ihl[ETH_HEADER_LEN] = 0x41;
        assert_eq!(concern(&bad_ihl), Concern::Other);
        // Tagged: ARP is not ours; DHCP is still DHCP (kept off the tunnel)
        // but never served.
        for tags in [
            &[(0x8100, 10)][..],
            &[(0x88a8, 100), (0x8100, 10)],
            &[(0x8100, 0)],
        ] {
            let t = |f: &[u8]| fixtures::tagged(f, tags);
            assert_eq!(concern(&t(&arp)), Concern::Other, "{tags:?}");
            assert_eq!(concern(&t(&f)), Concern::DhcpOther, "{tags:?}");
            assert_eq!(
                concern(&t(&fixtures::udp_frame(67, 68))),
                Concern::DhcpOther
            );
            assert_eq!(concern(&t(&fixtures::udp_frame(53, 53))), Concern::Other);
        }
    }

    fn arp_responder() -> Responder {
        let arp = ArpSettings {
            respond: vec![Ipv4Addr::new(198, 19, 0, 254)],
            mac: MacAddr([2, 0, 0, 0, 0, 0xfe]),
            suppress: true,
            binding_timeout: Duration::from_secs(300),
            suppress_nd: false,
        };
        Responder::new(Some(arp), None, LeaseDb::default()).expect("valid")
    }

    #[test]
    fn tagged_arp_is_neither_answered_nor_learned() {
        let mut r = arp_responder();
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut reply = [0u8; REPLY_BUFFER_LEN];
        let asker = [2, 0, 0, 0, 0, 1];
        let req = fixtures::arp_request(asker, [198, 19, 0, 7], [198, 19, 0, 254]);
        let tagged = fixtures::tagged(&req, &[(0x8100, 10)]);
        assert_eq!(
            r.handle_local(&tagged, now, wall, &mut reply),
            LocalVerdict::Forward,
            "forwarded as any frame"
        );
        let qinq = fixtures::tagged(&req, &[(0x88a8, 5), (0x8100, 10)]);
        assert_eq!(
            r.handle_local(&qinq, now, wall, &mut reply),
            LocalVerdict::Forward
        );
        assert_eq!(r.counters().arp_replies, 0);
        assert!(matches!(
            r.handle_local(&req, now, wall, &mut reply),
            LocalVerdict::Reply(_)
        ));
        // A binding announced by a peer in a VLAN is not learned ...
        let remote = [2, 0, 0, 0, 0, 0x99];
        let announce = fixtures::arp_request(remote, [198, 19, 0, 50], [198, 19, 0, 50]);
        let announce_10 = fixtures::tagged(&announce, &[(0x8100, 10)]);
        assert_eq!(
            r.handle_remote(&announce_10, PeerId::new(0), now),
            RemoteVerdict::Deliver
        );
        assert_eq!(r.arp_bindings(now), 0);
        // ... untagged it is, and answers untagged requests only.
        assert_eq!(
            r.handle_remote(&announce, PeerId::new(0), now),
            RemoteVerdict::Deliver
        );
        assert_eq!(r.arp_bindings(now), 1);
        let ask = fixtures::arp_request(asker, [198, 19, 0, 7], [198, 19, 0, 50]);
        let ask_10 = fixtures::tagged(&ask, &[(0x8100, 10)]);
        assert_eq!(
            r.handle_local(&ask_10, now, wall, &mut reply),
            LocalVerdict::Forward
        );
        assert!(matches!(
            r.handle_local(&ask, now, wall, &mut reply),
            LocalVerdict::Reply(_)
        ));
    }
}
