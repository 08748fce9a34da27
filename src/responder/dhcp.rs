//! Local DHCP server (pure, RFC 2131), answering as `server_address` from
//! `server_mac`.
//!
//! | client message | answer |
//! |---|---|
//! | DISCOVER | OFFER of the reservation / previous / requested / a free address, held briefly; nothing if the pool is full (counted, see [`DhcpServer::take_pool_exhausted`]). With `conflict_check`, addresses seen in use by another MAC are skipped and the OFFER waits for an ARP probe (see [`conflict`]) |
//! | REQUEST naming another server (option 54) | nothing (the client chose someone else; our offer is withdrawn) |
//! | REQUEST (SELECTING, INIT-REBOOT, RENEWING, REBINDING) from a client we know | ACK if the client may have the address, NAK if it is wrong, foreign or taken (with `conflict_check`: also when another MAC was seen using it) |
//! | REQUEST from a client we have no record of (no lease, offer or reservation) | never an ACK (RFC 2131 §4.3.2): NAK when SELECTING, for an address outside the subnet, or when RENEWING/REBINDING an address it may not have; otherwise (INIT-REBOOT, a free address) nothing |
//! | BOOTREQUEST without option 53 (BOOTP, RFC 951) | BOOTREPLY with the reservation of a reserved MAC; nothing for others |
//! | DECLINE | nothing; the address is quarantined |
//! | RELEASE | nothing; the lease ends (the address stays remembered for that MAC) |
//! | INFORM | ACK with configuration but no lease |
//!
//! Clients are keyed by their client identifier (option 61) when they send
//! one, else by `chaddr`; reservations are by `chaddr`. A client's first
//! lease is short (at most [`SHORT_LEASE_SECS`](alloc::SHORT_LEASE_SECS)) until it renews, so a burst
//! of clients that never come back (random MACs) cannot pin the pool for
//! `lease_time`.
//!
//! Replies carry options 1, 3, 6, 15, 26, 51, 54, 58 (T1 = 50 %), 59 (T2 =
//! 87.5 %) and 121 (with a default route added when a router is set, since
//! RFC 3442 clients ignore option 3 when 121 is present), and echo the client
//! identifier (RFC 6842). Addressing follows RFC 2131 §4.1: NAK is broadcast;
//! otherwise unicast to `ciaddr` if set, broadcast if the client set the
//! BROADCAST flag, else unicast to `yiaddr` at `chaddr`. Relayed messages
//! (`giaddr` ≠ 0) and messages unicast to another server are ignored; a
//! message to `server_address` is ours whatever its Ethernet destination (a
//! renewal sent to the server MAC of before a restart).
//! Replies never exceed the 576-byte minimum every client must accept.

use std::net::Ipv4Addr;
use std::time::Instant;

use smoltcp::wire::DhcpMessageType;

use super::{LocalVerdict, ResponderCounters};
use crate::leases::{LeaseDb, mac_key};
use crate::mac::MacAddr;

pub mod alloc;
use alloc::{Allocator, ClientRef};
pub mod conflict;
mod message;
use message::{ClientMsg, parse_frame};
mod reply;
pub use conflict::{
    CONFLICT_LOG_INTERVAL, ConflictLog, IN_USE_SECS, MAX_CANDIDATES, MAX_HELD, MAX_IN_USE,
    OwnFrame, PROBE_HOLD, PROBE_SLACK,
};
use conflict::{Checked, ConflictCheck};
use reply::Answer;
mod settings;
pub use settings::{DhcpPlan, DhcpSettings, DhcpSettingsError, MAX_POOL_SIZE};

/// The DHCP half of the responder.
#[derive(Debug)]
pub struct DhcpServer {
    settings: DhcpSettings,
    alloc: Allocator,
    /// Options 1, 3, 6, 15, 26, 121 as (kind, data), computed once.
    config_options: Vec<(u8, Vec<u8>)>,
    lease_secs: u32,
    /// First leases: `min(lease_secs, SHORT_LEASE_SECS)`.
    short_secs: u32,
    /// DISCOVERs left unanswered for a full pool since the last report.
    exhausted_unreported: u64,
    /// When the last report was taken (UNIX seconds).
    exhausted_reported_at: Option<u64>,
    /// `conflict_check`: the in-use record and the offers held for probes.
    conflict: Option<ConflictCheck>,
    /// "Lease granted/released" lines left in the current second.
    lease_log: LogBudget,
}

/// Least time between two "pool exhausted" reports.
pub const POOL_EXHAUSTED_REPORT_SECS: u64 = 60;

/// Lease grants and releases logged one by one per wall-clock second; the
/// rest of a burst is counted and reported in one line (see
/// [`DhcpServer::take_unlogged_leases`]). A burst of thousands of clients
/// would otherwise cost a formatted line each, and push the journal past
/// journald's default rate limit, which then drops lines of every kind.
pub const LEASE_LOG_PER_SEC: u32 = 50;

/// At most [`LEASE_LOG_PER_SEC`] lines per second (`now` in UNIX seconds);
/// the events beyond are counted.
#[derive(Debug, Default)]
struct LogBudget {
    second: u64,
    used: u32,
    unlogged: u64,
    /// The second of the oldest event in `unlogged`.
    unlogged_since: u64,
}

impl LogBudget {
    /// Whether one more line may be logged in second `now`.
    fn allow(&mut self, now: u64) -> bool {
        if now != self.second {
            self.second = now;
            self.used = 0;
        }
        if self.used < LEASE_LOG_PER_SEC {
            self.used += 1;
            true
        } else {
            if self.unlogged == 0 {
                self.unlogged_since = now;
            }
            self.unlogged += 1;
            false
        }
    }

    /// The events not logged, once the second of the oldest is over: at
    /// most one count a second, also while a burst goes on.
    fn take_unlogged(&mut self, now: u64) -> Option<u64> {
        (self.unlogged > 0 && now != self.unlogged_since)
            .then(|| std::mem::take(&mut self.unlogged))
    }
}

impl DhcpServer {
    /// A server for checked settings, taking over `leases`.
    pub fn new(plan: DhcpPlan, leases: LeaseDb) -> DhcpServer {
        let DhcpPlan {
            settings,
            pool,
            config_options,
            lease_secs,
            short_secs,
        } = plan;
        DhcpServer {
            alloc: Allocator::new(pool, leases),
            config_options,
            lease_secs,
            short_secs,
            exhausted_unreported: 0,
            exhausted_reported_at: None,
            conflict: settings.conflict_check.then(ConflictCheck::new),
            lease_log: LogBudget::default(),
            settings,
        }
    }

    /// Conflicts to log now (see [`ConflictLog`]).
    pub fn take_conflict_log(&mut self, now: Instant) -> Option<ConflictLog> {
        self.conflict.as_mut().and_then(|c| c.take_log(now))
    }

    /// See [`Responder::take_early_offers`](super::Responder::take_early_offers).
    pub fn take_early_offers(&mut self, now: Instant) -> Option<u64> {
        self.conflict.as_mut().and_then(|c| c.take_early_log(now))
    }

    /// The validated settings (subnet address normalized).
    pub fn settings(&self) -> &DhcpSettings {
        &self.settings
    }

    /// The address allocator and its lease records.
    pub fn allocator(&self) -> &Allocator {
        &self.alloc
    }

    /// Mutable access to the allocator (snapshots).
    pub fn allocator_mut(&mut self) -> &mut Allocator {
        &mut self.alloc
    }

    /// DISCOVERs left unanswered because the pool was full since the last
    /// report, at most once per [`POOL_EXHAUSTED_REPORT_SECS`] (`now` in UNIX
    /// seconds). The shell logs the count: one line, not one per DISCOVER.
    pub fn take_pool_exhausted(&mut self, now: u64) -> Option<u64> {
        if self.exhausted_unreported == 0
            || self
                .exhausted_reported_at
                .is_some_and(|t| now < t.saturating_add(POOL_EXHAUSTED_REPORT_SECS))
        {
            return None;
        }
        self.exhausted_reported_at = Some(now);
        Some(std::mem::take(&mut self.exhausted_unreported))
    }

    /// Lease grants and releases that were not logged one by one (beyond
    /// [`LEASE_LOG_PER_SEC`] in a second), once that second is over (`now`
    /// in UNIX seconds). The shell logs the count in one line.
    pub fn take_unlogged_leases(&mut self, now: u64) -> Option<u64> {
        self.lease_log.take_unlogged(now)
    }

    /// A local frame to UDP port 67: answer it into `reply` or consume it.
    /// Never forwards. `now` is wall-clock UNIX seconds, `at` the monotonic
    /// clock (offers held for the conflict check).
    pub fn handle(
        &mut self,
        frame: &[u8],
        now: u64,
        at: Instant,
        reply: &mut [u8],
        counters: &mut ResponderCounters,
    ) -> LocalVerdict {
        let Some((eth_dst, ip_dst, msg)) = parse_frame(frame) else {
            counters.dhcp_malformed += 1;
            return LocalVerdict::Consumed;
        };
        // A unicast to the server address is ours whatever its Ethernet
        // destination: after a restart with a new TAP MAC (hence a new derived
        // server MAC), clients still renew towards the MAC in their ARP cache;
        // the bridge floods that unknown unicast into the TAP, and refusing it
        // would push every client to REBINDING (T2) before its lease is extended.
        let to_server = ip_dst == self.settings.server_address;
        let ours =
            to_server || eth_dst == MacAddr::BROADCAST || eth_dst == self.settings.server_mac;
        let to_us = to_server || ip_dst == Ipv4Addr::BROADCAST;
        let valid_chaddr = msg.chaddr.is_unicast_host();
        if !ours || !to_us || !msg.giaddr.is_unspecified() || !valid_chaddr {
            counters.dhcp_ignored += 1;
            return LocalVerdict::Consumed;
        }
        let answer = match self.discover_under_check(&msg, now, at, counters) {
            // Answered later, by `poll_transmit`.
            Some(Checked::Held) => return LocalVerdict::Consumed,
            Some(Checked::Answer(a)) => Some(a),
            Some(Checked::Nothing) => None,
            None => self.decide(&msg, now, at, counters),
        };
        let Some(answer) = answer else {
            counters.dhcp_ignored += 1;
            return LocalVerdict::Consumed;
        };
        match self.emit(&msg, &answer, reply) {
            Some(n) => {
                counters.dhcp_replies += 1;
                if answer.kind == Some(DhcpMessageType::Nak) {
                    counters.dhcp_naks += 1;
                }
                LocalVerdict::Reply(n)
            }
            None => {
                counters.dhcp_ignored += 1;
                LocalVerdict::Consumed
            }
        }
    }

    /// A DISCOVER while `conflict_check` is on (see [`conflict`]); `None`
    /// for anything else.
    fn discover_under_check(
        &mut self,
        msg: &ClientMsg<'_>,
        now: u64,
        at: Instant,
        counters: &mut ResponderCounters,
    ) -> Option<Checked> {
        if self.conflict.is_none() || msg.kind != Some(DhcpMessageType::Discover) {
            return None;
        }
        let chaddr_key = mac_key(&msg.chaddr);
        let client = ClientRef {
            key: msg.client_id.unwrap_or(&chaddr_key),
            mac: msg.chaddr,
        };
        Some(self.discover_checked(msg, client, now, at, counters))
    }

    fn decide(
        &mut self,
        msg: &ClientMsg<'_>,
        now: u64,
        at: Instant,
        counters: &mut ResponderCounters,
    ) -> Option<Answer> {
        let server = self.settings.server_address;
        let mac = msg.chaddr;
        let chaddr_key = mac_key(&mac);
        let client = ClientRef {
            key: msg.client_id.unwrap_or(&chaddr_key),
            mac,
        };
        let for_other_server = msg.server_id.is_some_and(|s| s != server);
        let ack = |yiaddr, lease_secs| Answer {
            kind: Some(DhcpMessageType::Ack),
            yiaddr,
            lease: true,
            config: true,
            lease_secs,
        };
        let nak = Answer {
            kind: Some(DhcpMessageType::Nak),
            yiaddr: Ipv4Addr::UNSPECIFIED,
            lease: false,
            config: false,
            lease_secs: 0,
        };
        let Some(kind) = msg.kind else {
            // BOOTP (RFC 951): a permanent binding, so only for reserved MACs.
            let ip = self.alloc.reservation(&mac)?;
            return self.alloc.usable_by(client, ip, now).then_some(Answer {
                kind: None,
                yiaddr: ip,
                lease: false,
                config: true,
                lease_secs: 0,
            });
        };
        if kind != DhcpMessageType::Discover {
            self.drop_held(client.key);
        }
        match kind {
            DhcpMessageType::Discover => match self.alloc.offer(client, msg.requested, now) {
                Some(ip) => Some(Answer {
                    kind: Some(DhcpMessageType::Offer),
                    yiaddr: ip,
                    lease: true,
                    config: true,
                    lease_secs: self.grant_secs(client, ip, now).0,
                }),
                None => {
                    counters.dhcp_pool_exhausted += 1;
                    self.exhausted_unreported += 1;
                    None
                }
            },
            DhcpMessageType::Request => {
                if for_other_server {
                    self.alloc.cancel_offer(client.key);
                    return None;
                }
                let selecting = msg.server_id.is_some();
                let ip = if !msg.ciaddr.is_unspecified() {
                    // RENEWING / REBINDING (or a SELECTING client that filled ciaddr).
                    msg.requested.filter(|_| selecting).unwrap_or(msg.ciaddr)
                } else {
                    // SELECTING or INIT-REBOOT: the address is in option 50.
                    msg.requested?
                };
                // RFC 2131 §4.3.2: no ACK from nothing. A client we have no
                // record of is told no when it selected us (SELECTING), names
                // an address off this network, or renews/rebinds an address
                // it cannot have (the server "SHOULD check ciaddr"); otherwise
                // silence (INIT-REBOOT: "MUST remain silent").
                if !self.alloc.knows(client, now) {
                    let off_net = !self.alloc.pool().contains(ip);
                    let bad_ciaddr =
                        !msg.ciaddr.is_unspecified() && !self.alloc.usable_by(client, ip, now);
                    tracing::debug!(mac = %mac, %ip, "DHCP request from an unknown client");
                    return (selecting || off_net || bad_ciaddr).then_some(nak);
                }
                if let Some(user) = self.used_by_other(client, ip, at) {
                    // Someone else uses it: keep it out, so the commit below
                    // fails and the client is told no.
                    self.set_aside(ip, user, now, counters);
                    tracing::debug!(mac = %mac, %ip, %user, "DHCP request for an address in use");
                }
                let previous = self.alloc.db().get(client.key);
                let (secs, renewed) = self.grant_secs(client, ip, now);
                if self.alloc.commit(client, ip, u64::from(secs), renewed, now) {
                    if previous.is_none_or(|l| l.ip != ip || l.expires <= now)
                        && self.lease_log.allow(now)
                    {
                        tracing::info!(mac = %mac, %ip, lease_secs = secs, "DHCP lease granted");
                    }
                    Some(ack(ip, secs))
                } else {
                    tracing::debug!(mac = %mac, %ip, "DHCP request refused");
                    Some(nak)
                }
            }
            DhcpMessageType::Decline => {
                if !for_other_server
                    && let Some(ip) = msg.requested
                    && self.alloc.decline(client.key, ip, now)
                {
                    tracing::warn!(mac = %mac, %ip, "DHCP address declined (in use), quarantined");
                }
                None
            }
            DhcpMessageType::Release => {
                if !for_other_server
                    && self.alloc.release(client.key, msg.ciaddr, now)
                    && self.lease_log.allow(now)
                {
                    tracing::info!(mac = %mac, ip = %msg.ciaddr, "DHCP lease released");
                }
                None
            }
            DhcpMessageType::Inform => Some(Answer {
                kind: Some(DhcpMessageType::Ack),
                yiaddr: Ipv4Addr::UNSPECIFIED,
                lease: false,
                config: true,
                lease_secs: 0,
            }),
            _ => None,
        }
    }

    /// The lease time to grant `client` for `ip` now, and whether it counts
    /// as renewed: the full time once the client has renewed (it holds an
    /// unexpired lease on `ip` that has run at least a quarter of the short
    /// time, so a retransmitted first REQUEST is not a renewal) or is
    /// reserved; the short time for a first lease.
    fn grant_secs(&self, client: ClientRef<'_>, ip: Ipv4Addr, now: u64) -> (u32, bool) {
        let short = u64::from(self.short_secs);
        let renewed = self.alloc.reservation(&client.mac).is_some()
            || self.alloc.db().get(client.key).is_some_and(|l| {
                l.renewed
                    || (l.ip == ip
                        && l.expires > now
                        && now >= l.expires.saturating_sub(short) + short / 4)
            });
        if renewed {
            (self.lease_secs, true)
        } else {
            (self.short_secs, false)
        }
    }
}

#[cfg(test)]
mod tests;
