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
//! lease is short (at most [`SHORT_LEASE_SECS`]) until it renews, so a burst
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

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr, EthernetAddress, EthernetFrame,
    EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

use super::{
    DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DhcpSettings, ETH_HEADER_LEN, LocalVerdict,
    ResponderCounters, ResponderError,
};
use crate::leases::{LeaseDb, MAX_KEY_LEN, mac_key};
use crate::mac::MacAddr;

pub mod alloc;
use alloc::{Allocator, ClientRef, Pool, SHORT_LEASE_SECS, prefix_mask};
pub mod conflict;
pub use conflict::{
    CONFLICT_LOG_INTERVAL, ConflictLog, IN_USE_SECS, MAX_CANDIDATES, MAX_HELD, MAX_IN_USE,
    OwnFrame, PROBE_HOLD,
};
use conflict::{Checked, ConflictCheck};

/// Largest DHCP payload we send: 576 (the minimum IP datagram every client
/// accepts) minus IP and UDP headers.
const MAX_DHCP_LEN: usize = 576 - 20 - 8;
/// Smallest BOOTP payload; some clients drop shorter replies.
const MIN_DHCP_LEN: usize = 300;
/// Fixed BOOTP header up to and including the magic cookie.
const BOOTP_FIXED_LEN: usize = 240;
/// Space for the per-reply options: 53 (3), 54 (6), 51/58/59 (18), end (1).
const DYNAMIC_OPTIONS_LEN: usize = 3 + 6 + 18 + 1;
/// Largest pool we scan for a free address.
pub const MAX_POOL_SIZE: u32 = 65_536;

const OPT_SUBNET_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_DOMAIN: u8 = 15;
const OPT_MTU: u8 = 26;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_RENEWAL: u8 = 58;
const OPT_REBINDING: u8 = 59;
const OPT_CLIENT_ID: u8 = 61;
const OPT_CLASSLESS_ROUTES: u8 = 121;
const OPT_NTP: u8 = 42;
const OPT_SEARCH: u8 = 119;

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

/// The fields of a client message we act on.
#[derive(Debug)]
struct ClientMsg<'a> {
    /// `None`: a BOOTP request (no option 53).
    kind: Option<DhcpMessageType>,
    xid: u32,
    broadcast: bool,
    ciaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    chaddr: MacAddr,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    client_id: Option<&'a [u8]>,
}

/// Parse a BOOTREQUEST ourselves: smoltcp's `DhcpRepr::parse` rejects
/// non-Ethernet client identifiers, which dhcpcd (RFC 4361 DUIDs) sends.
fn parse_client(payload: &[u8]) -> Option<ClientMsg<'_>> {
    let p = DhcpPacket::new_checked(payload).ok()?;
    if payload[0] != 1 || payload[1] != 1 || payload[2] != 6 || p.magic_number() != 0x6382_5363 {
        return None;
    }
    let mut kind = None;
    let mut requested = None;
    let mut server_id = None;
    let mut client_id = None;
    let ipv4 = |d: &[u8]| <[u8; 4]>::try_from(d).ok().map(Ipv4Addr::from);
    for (code, data) in options(&payload[BOOTP_FIXED_LEN..]) {
        match code {
            OPT_MESSAGE_TYPE if data.len() == 1 => {
                kind = Some(DhcpMessageType::from(data[0]));
            }
            OPT_REQUESTED_IP => requested = ipv4(data),
            OPT_SERVER_ID => server_id = ipv4(data),
            OPT_CLIENT_ID if data.len() >= 2 && data.len() <= MAX_KEY_LEN => {
                client_id = Some(data);
            }
            _ => {}
        }
    }
    Some(ClientMsg {
        kind,
        xid: p.transaction_id(),
        broadcast: p.flags().contains(smoltcp::wire::DhcpFlags::BROADCAST),
        ciaddr: p.client_ip(),
        giaddr: p.relay_agent_ip(),
        chaddr: MacAddr(p.client_hardware_address().0),
        requested,
        server_id,
        client_id,
    })
}

/// Iterate over (code, data) of a DHCP options field, skipping pads and
/// stopping at the end option or at the first truncated option.
fn options(mut buf: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        loop {
            match *buf {
                [] | [255, ..] => return None,
                [0, ref rest @ ..] => buf = rest,
                [code, len, ref rest @ ..] if rest.len() >= usize::from(len) => {
                    let (data, rest) = rest.split_at(usize::from(len));
                    buf = rest;
                    return Some((code, data));
                }
                _ => return None,
            }
        }
    })
}

/// What to send back.
struct Answer {
    /// `None`: a BOOTREPLY (no DHCP options 53, 54, 51, 58, 59).
    kind: Option<DhcpMessageType>,
    yiaddr: Ipv4Addr,
    /// Lease options (51, 58, 59) and configuration options go in.
    lease: bool,
    config: bool,
    /// Option 51 (T1, T2 derived) when `lease`.
    lease_secs: u32,
}

impl DhcpServer {
    /// Validate `settings` and take over `leases`.
    /// `also_excluded` are further addresses in use on the link (the ARP
    /// responder's) that must never be handed out.
    pub fn new(
        mut settings: DhcpSettings,
        leases: LeaseDb,
        also_excluded: &[Ipv4Addr],
    ) -> Result<DhcpServer, ResponderError> {
        let err = |m: String| Err(ResponderError::InvalidDhcp(m));
        if settings.prefix_len > 30 {
            return err(format!(
                "subnet prefix /{} leaves no room for hosts (at most /30)",
                settings.prefix_len
            ));
        }
        let mask = prefix_mask(settings.prefix_len);
        settings.subnet_addr = Ipv4Addr::from(u32::from(settings.subnet_addr) & mask);
        let pool = Pool {
            subnet: settings.subnet_addr,
            prefix_len: settings.prefix_len,
            start: settings.pool_start,
            end: settings.pool_end,
            server: settings.server_address,
            reservations: settings.reservations.clone(),
            excluded: settings
                .router
                .iter()
                .chain(&settings.dns)
                .chain(also_excluded)
                .copied()
                .collect(),
        };
        let subnet = format!("{}/{}", settings.subnet_addr, settings.prefix_len);
        if !pool.is_host_in_subnet(settings.server_address) {
            return err(format!(
                "server_address {} is not a host address in subnet {subnet}",
                settings.server_address
            ));
        }
        if !settings.server_mac.is_unicast_host() {
            return err(format!(
                "server MAC {} is not a unicast address",
                settings.server_mac
            ));
        }
        let (start, end) = (u32::from(settings.pool_start), u32::from(settings.pool_end));
        if start > end {
            return err(format!(
                "pool start {} is after pool end {}",
                settings.pool_start, settings.pool_end
            ));
        }
        if !pool.is_host_in_subnet(settings.pool_start)
            || !pool.is_host_in_subnet(settings.pool_end)
        {
            return err(format!(
                "pool {}-{} is not inside subnet {subnet}",
                settings.pool_start, settings.pool_end
            ));
        }
        if end - start >= MAX_POOL_SIZE {
            return err(format!("pool is larger than {MAX_POOL_SIZE} addresses"));
        }
        if let Some(r) = settings.router
            && !pool.is_host_in_subnet(r)
        {
            return err(format!(
                "router {r} is not a host address in subnet {subnet}"
            ));
        }
        for (i, (mac, ip)) in settings.reservations.iter().enumerate() {
            if !pool.is_host_in_subnet(*ip)
                || *ip == settings.server_address
                || pool.excluded.contains(ip)
            {
                return err(format!(
                    "reservation {ip} is not a usable host address in subnet {subnet}"
                ));
            }
            if mac.is_group() {
                return err(format!("reservation MAC {mac} is not unicast"));
            }
            if settings.reservations[..i]
                .iter()
                .any(|(m, a)| m == mac || a == ip)
            {
                return err(format!("reservation {mac} = {ip} repeats a MAC or address"));
            }
        }
        let lease = settings.lease_time.as_secs();
        if !(10..u64::from(u32::MAX)).contains(&lease) {
            return err("lease_time must be between 10 seconds and 136 years".into());
        }
        let config_options = config_options(&settings, mask)?;
        let config_len: usize = config_options.iter().map(|(_, d)| 2 + d.len()).sum();
        if BOOTP_FIXED_LEN + DYNAMIC_OPTIONS_LEN + config_len > MAX_DHCP_LEN {
            return err(format!(
                "the configured options take {config_len} bytes; at most {} fit in a DHCP reply",
                MAX_DHCP_LEN - BOOTP_FIXED_LEN - DYNAMIC_OPTIONS_LEN
            ));
        }
        Ok(DhcpServer {
            alloc: Allocator::new(pool, leases),
            config_options,
            lease_secs: lease as u32,
            short_secs: lease.min(SHORT_LEASE_SECS) as u32,
            exhausted_unreported: 0,
            exhausted_reported_at: None,
            conflict: settings.conflict_check.then(ConflictCheck::new),
            lease_log: LogBudget::default(),
            settings,
        })
    }

    /// Conflicts to log now (see [`ConflictLog`]).
    pub fn take_conflict_log(&mut self, now: Instant) -> Option<ConflictLog> {
        self.conflict.as_mut().and_then(|c| c.take_log(now))
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

    /// Build the reply frame; `None` if `reply` is too small.
    fn emit(&self, msg: &ClientMsg<'_>, a: &Answer, reply: &mut [u8]) -> Option<usize> {
        let s = &self.settings;
        let Some(kind) = a.kind else {
            return self.emit_bootp(msg, a, reply);
        };
        let (t1, t2) = (a.lease_secs / 2, (u64::from(a.lease_secs) * 7 / 8) as u32);
        let (t1, t2) = (t1.to_be_bytes(), t2.to_be_bytes());
        let mut opts: Vec<DhcpOption<'_>> = Vec::with_capacity(10);
        if a.lease {
            opts.push(DhcpOption {
                kind: OPT_RENEWAL,
                data: &t1,
            });
            opts.push(DhcpOption {
                kind: OPT_REBINDING,
                data: &t2,
            });
        }
        if a.config {
            opts.extend(
                self.config_options
                    .iter()
                    .map(|(kind, data)| DhcpOption { kind: *kind, data }),
            );
        }
        let inform = msg.kind == Some(DhcpMessageType::Inform);
        let mut repr = DhcpRepr {
            message_type: kind,
            transaction_id: msg.xid,
            secs: 0,
            client_hardware_address: EthernetAddress(msg.chaddr.0),
            client_ip: if kind == DhcpMessageType::Ack {
                msg.ciaddr
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            your_ip: a.yiaddr,
            server_ip: Ipv4Addr::UNSPECIFIED,
            router: None,
            subnet_mask: None,
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            broadcast: msg.broadcast,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some(s.server_address),
            parameter_request_list: None,
            dns_servers: None,
            max_size: None,
            lease_duration: a.lease.then_some(a.lease_secs),
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        // Echo the client identifier (RFC 6842) when it fits.
        if let Some(id) = msg.client_id {
            let len = repr.buffer_len() + opts.iter().map(|o| 2 + o.data.len()).sum::<usize>();
            if len + 2 + id.len() <= MAX_DHCP_LEN {
                opts.push(DhcpOption {
                    kind: OPT_CLIENT_ID,
                    data: id,
                });
            }
        }
        repr.additional_options = &opts;

        let dhcp_len = repr.buffer_len().max(MIN_DHCP_LEN);
        let mut emitted = Ok(());
        let total = self.emit_frame(msg, a, inform, dhcp_len, reply, |buf| {
            emitted = repr.emit(&mut DhcpPacket::new_unchecked(buf));
        })?;
        emitted.ok()?;
        Some(total)
    }

    /// Build a BOOTREPLY (RFC 951 with RFC 1497 vendor extensions): the
    /// fixed header, the magic cookie, the configuration options and the end
    /// option, no DHCP options. `None` if `reply` is too small.
    fn emit_bootp(&self, msg: &ClientMsg<'_>, a: &Answer, reply: &mut [u8]) -> Option<usize> {
        let mut payload = [0u8; MAX_DHCP_LEN];
        payload[0] = 2; // BOOTREPLY
        payload[1] = 1; // Ethernet
        payload[2] = 6;
        payload[4..8].copy_from_slice(&msg.xid.to_be_bytes());
        if msg.broadcast {
            payload[10] = 0x80;
        }
        payload[12..16].copy_from_slice(&msg.ciaddr.octets());
        payload[16..20].copy_from_slice(&a.yiaddr.octets());
        payload[20..24].copy_from_slice(&self.settings.server_address.octets());
        payload[28..34].copy_from_slice(&msg.chaddr.0);
        payload[236..240].copy_from_slice(&0x6382_5363u32.to_be_bytes());
        let mut at = BOOTP_FIXED_LEN;
        for (code, data) in &self.config_options {
            // `new` checked that the configuration options fit.
            let opt = payload.get_mut(at..at + 2 + data.len())?;
            opt[0] = *code;
            opt[1] = data.len() as u8;
            opt[2..].copy_from_slice(data);
            at += 2 + data.len();
        }
        *payload.get_mut(at)? = 255;
        let len = (at + 1).max(MIN_DHCP_LEN);
        self.emit_frame(msg, a, false, len, reply, |buf| {
            buf.copy_from_slice(&payload[..len]);
        })
    }

    /// Wrap a `dhcp_len`-byte payload written by `payload` in UDP, IPv4 and
    /// Ethernet headers addressed per RFC 2131 §4.1; the frame's length, or
    /// `None` if `reply` is too small.
    fn emit_frame(
        &self,
        msg: &ClientMsg<'_>,
        a: &Answer,
        inform: bool,
        dhcp_len: usize,
        reply: &mut [u8],
        payload: impl FnOnce(&mut [u8]),
    ) -> Option<usize> {
        let s = &self.settings;
        // RFC 2131 §4.1 (giaddr is always zero here).
        let broadcast = (EthernetAddress::BROADCAST, Ipv4Addr::BROADCAST);
        let (eth_dst, ip_dst) = if a.kind == Some(DhcpMessageType::Nak) {
            broadcast
        } else if !msg.ciaddr.is_unspecified() {
            (EthernetAddress(msg.chaddr.0), msg.ciaddr)
        } else if msg.broadcast || inform {
            broadcast
        } else {
            (EthernetAddress(msg.chaddr.0), a.yiaddr)
        };
        let udp_len = 8 + dhcp_len;
        let total = ETH_HEADER_LEN + 20 + udp_len;
        let out = reply.get_mut(..total)?;
        out.fill(0);
        let caps = ChecksumCapabilities::default();
        EthernetRepr {
            src_addr: EthernetAddress(s.server_mac.0),
            dst_addr: eth_dst,
            ethertype: EthernetProtocol::Ipv4,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut *out));
        let ip_repr = Ipv4Repr {
            src_addr: s.server_address,
            dst_addr: ip_dst,
            next_header: IpProtocol::Udp,
            payload_len: udp_len,
            hop_limit: 64,
        };
        ip_repr.emit(
            &mut Ipv4Packet::new_unchecked(&mut out[ETH_HEADER_LEN..]),
            &caps,
        );
        UdpRepr {
            src_port: DHCP_SERVER_PORT,
            dst_port: DHCP_CLIENT_PORT,
        }
        .emit(
            &mut UdpPacket::new_unchecked(&mut out[ETH_HEADER_LEN + 20..]),
            &s.server_address.into(),
            &ip_dst.into(),
            dhcp_len,
            payload,
            &caps,
        );
        Some(total)
    }
}

/// Split a local frame into (Ethernet dst, IP dst, DHCP message), verifying
/// the IPv4 and UDP checksums.
fn parse_frame(frame: &[u8]) -> Option<(MacAddr, Ipv4Addr, ClientMsg<'_>)> {
    let caps = ChecksumCapabilities::default();
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(frame.get(ETH_HEADER_LEN..)?).ok()?;
    let ip_repr = Ipv4Repr::parse(&ip, &caps).ok()?;
    if ip_repr.next_header != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    UdpRepr::parse(
        &udp,
        &ip_repr.src_addr.into(),
        &ip_repr.dst_addr.into(),
        &caps,
    )
    .ok()?;
    let msg = parse_client(udp.payload())?;
    Some((MacAddr(eth.dst_addr().0), ip_repr.dst_addr, msg))
}

/// Options 1, 3, 6, 15, 26 and 121 from the settings.
fn config_options(s: &DhcpSettings, mask: u32) -> Result<Vec<(u8, Vec<u8>)>, ResponderError> {
    let err = |m: String| Err(ResponderError::InvalidDhcp(m));
    let mut v = vec![(OPT_SUBNET_MASK, mask.to_be_bytes().to_vec())];
    if let Some(r) = s.router {
        v.push((OPT_ROUTER, r.octets().to_vec()));
    }
    if !s.dns.is_empty() {
        v.push((OPT_DNS, s.dns.iter().flat_map(|a| a.octets()).collect()));
    }
    if let Some(d) = &s.domain {
        let valid = !d.is_empty()
            && d.len() <= 253
            && d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return err(format!("domain {d:?} is not a valid DNS name"));
        }
        v.push((OPT_DOMAIN, d.as_bytes().to_vec()));
    }
    if let Some(mtu) = s.mtu {
        if mtu < 68 {
            return err(format!("mtu {mtu} is below the IPv4 minimum of 68"));
        }
        v.push((OPT_MTU, mtu.to_be_bytes().to_vec()));
    }
    if !s.routes.is_empty() {
        let mut data = Vec::new();
        let mut has_default = false;
        for &(net, len, via) in &s.routes {
            if len > 32 {
                return err(format!("route {net}/{len} has an invalid prefix length"));
            }
            if u32::from(net) & !prefix_mask(len) != 0 {
                return err(format!("route {net}/{len} has host bits set"));
            }
            has_default |= len == 0;
            push_classless_route(&mut data, net, len, via);
        }
        if let (Some(r), false) = (s.router, has_default) {
            push_classless_route(&mut data, Ipv4Addr::UNSPECIFIED, 0, r);
        }
        if data.len() > 255 {
            return err("routes do not fit in one option 121 (255 bytes)".into());
        }
        v.push((OPT_CLASSLESS_ROUTES, data));
    }
    if !s.ntp.is_empty() {
        v.push((OPT_NTP, s.ntp.iter().flat_map(|a| a.octets()).collect()));
    }
    if !s.search.is_empty() {
        // RFC 3397: each name as length-prefixed labels and a zero byte
        // (no compression).
        let mut data = Vec::new();
        for name in &s.search {
            for label in name.trim_end_matches('.').split('.') {
                if label.is_empty() || label.len() > 63 {
                    return err(format!("search domain {name:?} is not a valid DNS name"));
                }
                data.push(label.len() as u8);
                data.extend_from_slice(label.as_bytes());
            }
            data.push(0);
        }
        if data.len() > 255 {
            return err("the search list does not fit one option 119 (255 bytes)".into());
        }
        v.push((OPT_SEARCH, data));
    }
    for (code, data) in &s.extra_options {
        if v.iter().any(|(c, _)| c == code) || matches!(*code, 0 | 255) || data.len() > 255 {
            return err(format!("option {code} cannot be passed through"));
        }
        v.push((*code, data.clone()));
    }
    Ok(v)
}

/// RFC 3442 encoding: prefix length, the significant octets of the network,
/// then the router.
fn push_classless_route(out: &mut Vec<u8>, net: Ipv4Addr, len: u8, via: Ipv4Addr) {
    out.push(len);
    out.extend_from_slice(&net.octets()[..usize::from(len).div_ceil(8)]);
    out.extend_from_slice(&via.octets());
}

#[cfg(test)]
mod tests;
