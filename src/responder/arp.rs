//! Local ARP answers and ARP suppression (pure).
//!
//! - Requests from the local side for our own addresses (`[arp] respond` and
//!   the DHCP server address) are answered with the responder's MAC.
//! - With suppression on, IP→MAC bindings learned from ARP arriving through
//!   the tunnel (requests, replies, gratuitous ARP) answer local requests for
//!   those remote hosts until the binding times out; unknown targets are
//!   forwarded (flooded) as usual.
//!
//! Promises: never answers a request whose target is the asker's own address
//! (gratuitous ARP, announcements) or a duplicate-address probe (sender
//! 0.0.0.0) from a learned binding — only for our own addresses, which we
//! rightly defend. The binding table is bounded ([`MAX_BINDINGS`]) and
//! allocated once, so learning never allocates on the hot path.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};

use super::{ArpSettings, ETH_HEADER_LEN, LocalVerdict, ResponderError};
use crate::mac::MacAddr;

/// Most bindings kept; when full, expired ones go first, then the oldest.
pub const MAX_BINDINGS: usize = 4096;

/// Length of an ARP reply frame we write (Ethernet header + ARP for IPv4).
const ARP_FRAME_LEN: usize = ETH_HEADER_LEN + 28;

#[derive(Debug, Clone, Copy)]
struct Binding {
    mac: MacAddr,
    seen: Instant,
}

#[derive(Debug)]
struct Suppression {
    timeout: Duration,
    bindings: HashMap<Ipv4Addr, Binding>,
}

/// The ARP half of the responder.
#[derive(Debug)]
pub struct ArpResponder {
    /// Our own addresses and the MAC each is answered with.
    answers: Vec<(Ipv4Addr, MacAddr)>,
    suppression: Option<Suppression>,
}

/// A parsed Ethernet/IPv4 ARP message.
struct Arp {
    op: ArpOperation,
    eth_src: MacAddr,
    sha: MacAddr,
    spa: Ipv4Addr,
    tpa: Ipv4Addr,
}

fn parse(frame: &[u8]) -> Option<Arp> {
    let eth_src = MacAddr::from_slice(frame.get(6..12)?)?;
    let packet = ArpPacket::new_checked(frame.get(ETH_HEADER_LEN..)?).ok()?;
    match ArpRepr::parse(&packet).ok()? {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } => Some(Arp {
            op: operation,
            eth_src,
            sha: MacAddr(source_hardware_addr.0),
            spa: source_protocol_addr,
            tpa: target_protocol_addr,
        }),
        _ => None,
    }
}

/// An address a host may really have.
fn is_host_ip(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

impl ArpResponder {
    /// Build from the `[arp]` settings and/or the DHCP server's (address, MAC),
    /// which is always answered so DHCP clients can reach the server.
    pub fn new(
        settings: Option<ArpSettings>,
        dhcp_server: Option<(Ipv4Addr, MacAddr)>,
    ) -> Result<ArpResponder, ResponderError> {
        let mut answers = Vec::new();
        let mut suppression = None;
        if let Some(s) = settings {
            if !s.mac.is_unicast_host() {
                return Err(ResponderError::InvalidArp(format!(
                    "mac {} is not a unicast address",
                    s.mac
                )));
            }
            for ip in s.respond {
                if !is_host_ip(ip) {
                    return Err(ResponderError::InvalidArp(format!(
                        "respond address {ip} cannot belong to a host"
                    )));
                }
                answers.push((ip, s.mac));
            }
            if s.suppress {
                if s.binding_timeout.is_zero() {
                    return Err(ResponderError::InvalidArp(
                        "binding_timeout must be longer than zero".into(),
                    ));
                }
                // Twice the maximum, so deletions plus inserts never make the
                // table grow (and reallocate) on the hot path.
                suppression = Some(Suppression {
                    timeout: s.binding_timeout,
                    bindings: HashMap::with_capacity(2 * MAX_BINDINGS),
                });
            }
        }
        if let Some((ip, mac)) = dhcp_server
            && !answers.iter().any(|(a, _)| *a == ip)
        {
            answers.push((ip, mac));
        }
        Ok(ArpResponder {
            answers,
            suppression,
        })
    }

    fn own(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.answers.iter().find(|(a, _)| *a == ip).map(|(_, m)| *m)
    }

    /// An ARP frame from the local side: answer it into `reply`, or forward it.
    pub fn handle_local(&mut self, frame: &[u8], now: Instant, reply: &mut [u8]) -> LocalVerdict {
        let Some(arp) = parse(frame) else {
            return LocalVerdict::Forward;
        };
        // A local host speaking for an address: it lives here, not remotely.
        if let Some(s) = &mut self.suppression
            && !arp.spa.is_unspecified()
        {
            s.bindings.remove(&arp.spa);
        }
        if arp.op != ArpOperation::Request
            || arp.spa == arp.tpa
            || !arp.sha.is_unicast_host()
            || !arp.eth_src.is_unicast_host()
        {
            return LocalVerdict::Forward;
        }
        if let Some(mac) = self.own(arp.tpa) {
            return match emit_reply(&arp, mac, reply) {
                Some(n) => LocalVerdict::Reply(n),
                None => LocalVerdict::Consumed,
            };
        }
        // Probes (sender 0.0.0.0) go to the real owner, who must defend itself.
        if arp.spa.is_unspecified() {
            return LocalVerdict::Forward;
        }
        let Some(s) = &self.suppression else {
            return LocalVerdict::Forward;
        };
        match s.bindings.get(&arp.tpa) {
            Some(b)
                if now.saturating_duration_since(b.seen) < s.timeout
                    && b.mac != arp.sha
                    && b.mac != arp.eth_src =>
            {
                match emit_reply(&arp, b.mac, reply) {
                    Some(n) => LocalVerdict::Reply(n),
                    None => LocalVerdict::Forward,
                }
            }
            _ => LocalVerdict::Forward,
        }
    }

    /// An ARP frame from the tunnel: learn the sender's binding. Returns true
    /// if a binding was learned or refreshed.
    pub fn learn_remote(&mut self, frame: &[u8], now: Instant) -> bool {
        if self.suppression.is_none() {
            return false;
        }
        let Some(arp) = parse(frame) else {
            return false;
        };
        if !matches!(arp.op, ArpOperation::Request | ArpOperation::Reply)
            || !is_host_ip(arp.spa)
            || !arp.sha.is_unicast_host()
            || self.own(arp.spa).is_some()
        {
            return false;
        }
        let Some(s) = &mut self.suppression else {
            return false;
        };
        let binding = Binding {
            mac: arp.sha,
            seen: now,
        };
        if let Some(b) = s.bindings.get_mut(&arp.spa) {
            *b = binding;
            return true;
        }
        if s.bindings.len() >= MAX_BINDINGS {
            let timeout = s.timeout;
            s.bindings
                .retain(|_, b| now.saturating_duration_since(b.seen) < timeout);
            if s.bindings.len() >= MAX_BINDINGS
                && let Some(oldest) = s
                    .bindings
                    .iter()
                    .min_by_key(|(_, b)| b.seen)
                    .map(|(ip, _)| *ip)
            {
                s.bindings.remove(&oldest);
            }
        }
        s.bindings.insert(arp.spa, binding);
        true
    }

    /// Number of unexpired learned bindings.
    pub fn live_bindings(&self, now: Instant) -> usize {
        self.suppression.as_ref().map_or(0, |s| {
            s.bindings
                .values()
                .filter(|b| now.saturating_duration_since(b.seen) < s.timeout)
                .count()
        })
    }
}

/// Write "`arp.tpa` is at `mac`" back to the asker. `None` if `reply` is too small.
fn emit_reply(arp: &Arp, mac: MacAddr, reply: &mut [u8]) -> Option<usize> {
    let out = reply.get_mut(..ARP_FRAME_LEN)?;
    let mut frame = EthernetFrame::new_unchecked(&mut *out);
    EthernetRepr {
        src_addr: EthernetAddress(mac.0),
        dst_addr: EthernetAddress(arp.eth_src.0),
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut frame);
    ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(mac.0),
        source_protocol_addr: arp.tpa,
        target_hardware_addr: EthernetAddress(arp.sha.0),
        target_protocol_addr: arp.spa,
    }
    .emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    Some(ARP_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{arp_frame, arp_request};
    use super::super::{RemoteVerdict, Responder};
    use super::*;
    use crate::responder::LeaseDb;
    use std::time::SystemTime;

    const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
    const LOCAL: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
    const REMOTE: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
    const LOCAL_IP: [u8; 4] = [198, 19, 0, 20];
    const REMOTE_IP: [u8; 4] = [198, 19, 0, 77];
    const GW: [u8; 4] = [198, 19, 0, 254];

    fn responder(suppress: bool) -> Responder {
        Responder::new(
            Some(ArpSettings {
                respond: vec![Ipv4Addr::from(GW)],
                mac: MacAddr(OUR_MAC),
                suppress,
                binding_timeout: Duration::from_secs(300),
            }),
            None,
            LeaseDb::default(),
        )
        .expect("valid settings")
    }

    fn local(r: &mut Responder, f: &[u8], now: Instant) -> (LocalVerdict, Vec<u8>) {
        let mut buf = [0u8; 1600];
        let v = r.handle_local(f, now, SystemTime::UNIX_EPOCH, &mut buf);
        let n = if let LocalVerdict::Reply(n) = v { n } else { 0 };
        (v, buf[..n].to_vec())
    }

    fn assert_reply(frame: &[u8], from_mac: [u8; 6], ip: [u8; 4], to_mac: [u8; 6], to_ip: [u8; 4]) {
        let eth = EthernetFrame::new_checked(frame).expect("eth");
        assert_eq!(eth.src_addr().0, from_mac);
        assert_eq!(eth.dst_addr().0, to_mac);
        assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
        let repr =
            ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).expect("arp")).expect("arp repr");
        assert_eq!(
            repr,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(from_mac),
                source_protocol_addr: Ipv4Addr::from(ip),
                target_hardware_addr: EthernetAddress(to_mac),
                target_protocol_addr: Ipv4Addr::from(to_ip),
            }
        );
    }

    #[test]
    fn answers_requests_for_own_addresses() {
        let mut r = responder(false);
        let now = Instant::now();
        let (v, out) = local(&mut r, &arp_request(LOCAL, LOCAL_IP, GW), now);
        assert_eq!(v, LocalVerdict::Reply(42));
        assert_reply(&out, OUR_MAC, GW, LOCAL, LOCAL_IP);
        assert_eq!(r.counters().arp_replies, 1);
        // Linux re-verifies its neighbour with a unicast request to our MAC.
        let mut unicast = arp_request(LOCAL, LOCAL_IP, GW);
        unicast[..6].copy_from_slice(&OUR_MAC);
        assert!(matches!(
            local(&mut r, &unicast, now).0,
            LocalVerdict::Reply(_)
        ));
        // A duplicate-address probe for our address is defended.
        let (v, out) = local(&mut r, &arp_request(LOCAL, [0; 4], GW), now);
        assert_eq!(v, LocalVerdict::Reply(42));
        assert_reply(&out, OUR_MAC, GW, LOCAL, [0; 4]);
    }

    #[test]
    fn other_arp_is_forwarded_or_consumed() {
        let mut r = responder(false);
        let now = Instant::now();
        // Unknown target.
        assert_eq!(
            local(&mut r, &arp_request(LOCAL, LOCAL_IP, REMOTE_IP), now).0,
            LocalVerdict::Forward
        );
        // Gratuitous ARP / announcement.
        assert_eq!(
            local(&mut r, &arp_request(LOCAL, GW, GW), now).0,
            LocalVerdict::Forward
        );
        // A reply to someone else.
        let rep = arp_frame(ArpOperation::Reply, LOCAL, LOCAL_IP, REMOTE, REMOTE_IP);
        assert_eq!(local(&mut r, &rep, now).0, LocalVerdict::Forward);
        // A reply addressed to the responder's MAC is the responder's.
        let rep = arp_frame(ArpOperation::Reply, LOCAL, LOCAL_IP, OUR_MAC, GW);
        assert_eq!(local(&mut r, &rep, now).0, LocalVerdict::Consumed);
        // Garbage ARP.
        let mut bad = arp_request(LOCAL, LOCAL_IP, GW);
        bad[14 + 4] = 8; // hardware length 8
        assert_eq!(local(&mut r, &bad, now).0, LocalVerdict::Forward);
        assert_eq!(local(&mut r, &bad[..20], now).0, LocalVerdict::Forward);
        // Requests from a group MAC are not answered.
        let mut group = arp_request(LOCAL, LOCAL_IP, GW);
        group[6] = 0x01;
        assert_eq!(local(&mut r, &group, now).0, LocalVerdict::Forward);
        assert_eq!(r.counters().arp_replies, 0);
    }

    #[test]
    fn suppression_learns_from_tunnel_and_expires() {
        let mut r = responder(true);
        let t0 = Instant::now();
        let req = arp_request(LOCAL, LOCAL_IP, REMOTE_IP);
        assert_eq!(
            local(&mut r, &req, t0).0,
            LocalVerdict::Forward,
            "unknown yet"
        );
        // The remote host answers through the tunnel.
        let rep = arp_frame(ArpOperation::Reply, REMOTE, REMOTE_IP, LOCAL, LOCAL_IP);
        assert_eq!(r.handle_remote(&rep, t0), RemoteVerdict::Deliver);
        assert_eq!(r.arp_bindings(t0), 1);
        let (v, out) = local(&mut r, &req, t0 + Duration::from_secs(10));
        assert_eq!(v, LocalVerdict::Reply(42));
        assert_reply(&out, REMOTE, REMOTE_IP, LOCAL, LOCAL_IP);
        // Probes are not answered from learned bindings.
        assert_eq!(
            local(&mut r, &arp_request(LOCAL, [0; 4], REMOTE_IP), t0).0,
            LocalVerdict::Forward
        );
        // After the timeout the binding no longer answers.
        let late = t0 + Duration::from_secs(300);
        assert_eq!(local(&mut r, &req, late).0, LocalVerdict::Forward);
        assert_eq!(r.arp_bindings(late), 0);
        // A gratuitous ARP from the tunnel refreshes it.
        let garp = arp_request(REMOTE, REMOTE_IP, REMOTE_IP);
        assert_eq!(r.handle_remote(&garp, late), RemoteVerdict::Deliver);
        assert!(matches!(
            local(&mut r, &req, late).0,
            LocalVerdict::Reply(_)
        ));
        assert_eq!(r.counters().arp_bindings_learned, 2);
    }

    #[test]
    fn suppression_ignores_bogus_and_yields_to_local_hosts() {
        let mut r = responder(true);
        let now = Instant::now();
        // Remote probes, claims on our own address, group MACs: not learned.
        r.handle_remote(&arp_request(REMOTE, [0; 4], REMOTE_IP), now);
        r.handle_remote(&arp_request(REMOTE, GW, LOCAL_IP), now);
        r.handle_remote(
            &arp_request([0x01, 0, 0x5e, 0, 0, 1], REMOTE_IP, LOCAL_IP),
            now,
        );
        assert_eq!(r.arp_bindings(now), 0);
        // Learned, then a local host announces the same address: forget it.
        r.handle_remote(&arp_request(REMOTE, REMOTE_IP, LOCAL_IP), now);
        assert_eq!(r.arp_bindings(now), 1);
        let asked_by_owner = arp_request(REMOTE, LOCAL_IP, REMOTE_IP);
        assert_eq!(local(&mut r, &asked_by_owner, now).0, LocalVerdict::Forward);
        assert_eq!(
            local(&mut r, &arp_request(LOCAL, REMOTE_IP, REMOTE_IP), now).0,
            LocalVerdict::Forward
        );
        assert_eq!(r.arp_bindings(now), 0);
        assert_eq!(
            local(&mut r, &arp_request(LOCAL, LOCAL_IP, REMOTE_IP), now).0,
            LocalVerdict::Forward
        );
    }

    #[test]
    fn binding_table_is_bounded() {
        let mut r = responder(true);
        let t0 = Instant::now();
        for i in 0..(MAX_BINDINGS as u32 + 100) {
            let ip = Ipv4Addr::from(0x0a00_0001 + i).octets();
            let t = t0 + Duration::from_millis(u64::from(i));
            r.handle_remote(&arp_request(REMOTE, ip, LOCAL_IP), t);
        }
        let end = t0 + Duration::from_secs(5);
        assert_eq!(r.arp_bindings(end), MAX_BINDINGS);
        // The oldest were evicted, the newest kept.
        let first = Ipv4Addr::from(0x0a00_0001).octets();
        let last = Ipv4Addr::from(0x0a00_0001 + MAX_BINDINGS as u32 + 99).octets();
        assert_eq!(
            local(&mut r, &arp_request(LOCAL, LOCAL_IP, first), end).0,
            LocalVerdict::Forward
        );
        assert!(matches!(
            local(&mut r, &arp_request(LOCAL, LOCAL_IP, last), end).0,
            LocalVerdict::Reply(_)
        ));
    }

    #[test]
    fn rejects_unusable_settings() {
        let bad_mac = ArpSettings {
            respond: vec![],
            mac: MacAddr([0x01, 0, 0, 0, 0, 1]),
            suppress: false,
            binding_timeout: Duration::from_secs(1),
        };
        assert!(ArpResponder::new(Some(bad_mac), None).is_err());
        let bad_ip = ArpSettings {
            respond: vec![Ipv4Addr::BROADCAST],
            mac: MacAddr(OUR_MAC),
            suppress: false,
            binding_timeout: Duration::from_secs(1),
        };
        assert!(ArpResponder::new(Some(bad_ip), None).is_err());
        let zero = ArpSettings {
            respond: vec![],
            mac: MacAddr(OUR_MAC),
            suppress: true,
            binding_timeout: Duration::ZERO,
        };
        assert!(ArpResponder::new(Some(zero), None).is_err());
    }
}
