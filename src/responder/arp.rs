//! Local ARP answers and ARP suppression (pure).
//!
//! - Requests from the local side for our own addresses (`[arp] respond` and
//!   the DHCP server address) are answered with the responder's MAC.
//! - With suppression on, IP→MAC bindings learned from ARP arriving through
//!   the tunnel (requests, replies, gratuitous ARP) answer local requests for
//!   those remote hosts until the binding times out; unknown targets are
//!   forwarded (flooded) as usual.
//!
//! Suppression never lies; a binding only answers while nothing says it is
//! wrong:
//! - only **broadcast** requests are answered from a binding; a unicast
//!   request is the asker re-verifying its neighbour and goes to the host;
//! - each binding remembers the peer it came from and is dropped when that
//!   peer's session goes down or the peer is removed ([`ArpResponder::forget_peer`]);
//! - a binding is dropped as soon as its IP or MAC shows up on the local side:
//!   any local ARP with that sender IP or MAC, a RARP announcement (what
//!   QEMU/libvirt send for a migrated VM), or any local frame from that MAC
//!   (one hash lookup per frame, see [`ArpResponder::saw_local_source`]);
//! - a binding is refused (and counted) when it claims one of the responder's
//!   own addresses, the DHCP router, an address the local DHCP responder has
//!   leased to another MAC (expired leases included: the holder may still use
//!   it), or when its ARP sender MAC is not the frame's Ethernet source.
//!
//! Promises: never answers a request whose target is the asker's own address
//! (gratuitous ARP, announcements) or a duplicate-address probe (sender
//! 0.0.0.0) from a learned binding — only for our own addresses, which we
//! rightly defend. The binding table is bounded ([`MAX_BINDINGS`]) and
//! allocated once, so learning never allocates on the hot path.

use std::net::Ipv4Addr;
use std::time::Instant;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};

pub use super::bindings::MAX_BINDINGS;
use super::bindings::{Binding, Bindings};
use super::{ArpSettings, ETH_HEADER_LEN, LocalVerdict, ResponderError};
use crate::mac::MacAddr;
use crate::peer_id::PeerId;

/// Length of an ARP reply frame we write (Ethernet header + ARP for IPv4).
pub(super) const ARP_FRAME_LEN: usize = ETH_HEADER_LEN + 28;

/// The RARP ethertype.
const ETHERTYPE_RARP: [u8; 2] = [0x80, 0x35];

type Suppression = Bindings<Ipv4Addr>;

/// What [`ArpResponder::learn_remote`] did with an ARP frame from the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Nothing to learn (suppression off, not ARP for IPv4, a probe, ...).
    Nothing,
    /// A binding was learned or refreshed.
    Binding,
    /// The frame claimed a binding that cannot be true (see [`BindingRefusal`]).
    Refused(BindingRefusal),
}

/// Why a binding from the tunnel was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingRefusal {
    /// The ARP sender MAC is not the Ethernet source.
    SenderMismatch,
    /// The address is one the responder answers for itself.
    OwnAddress,
    /// The address is the DHCP router's or leased locally to another MAC.
    LocalAddress,
    /// The MAC is one of the responder's own (ND).
    OwnMac,
}

impl BindingRefusal {
    /// Why, in a few words (for the log).
    pub fn reason(self) -> &'static str {
        match self {
            BindingRefusal::SenderMismatch => {
                "the ARP sender MAC or ND link-layer option differs from the Ethernet source"
            }
            BindingRefusal::OwnAddress => "the address is the responder's own",
            BindingRefusal::LocalAddress => {
                "the address is the DHCP router's or leased locally to another MAC"
            }
            BindingRefusal::OwnMac => "the MAC is the responder's own",
        }
    }
}

/// The ARP half of the responder.
#[derive(Debug)]
pub struct ArpResponder {
    /// Our own addresses and the MAC each is answered with.
    answers: Vec<(Ipv4Addr, MacAddr)>,
    suppression: Option<Suppression>,
}

/// A parsed Ethernet/IPv4 ARP message.
pub(super) struct Arp {
    pub op: ArpOperation,
    pub eth_dst: MacAddr,
    pub eth_src: MacAddr,
    pub sha: MacAddr,
    pub spa: Ipv4Addr,
    pub tpa: Ipv4Addr,
}

pub(super) fn parse(frame: &[u8]) -> Option<Arp> {
    let eth_dst = MacAddr::from_slice(frame.get(..6)?)?;
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
            eth_dst,
            eth_src,
            sha: MacAddr(source_hardware_addr.0),
            spa: source_protocol_addr,
            tpa: target_protocol_addr,
        }),
        _ => None,
    }
}

/// The sender hardware address of a RARP frame (Ethernet, IPv4 sizes), as
/// QEMU/libvirt announce a migrated VM: `None` for anything else.
fn rarp_sender(frame: &[u8]) -> Option<MacAddr> {
    if frame.get(12..14)? != ETHERTYPE_RARP {
        return None;
    }
    let p = frame.get(ETH_HEADER_LEN..ETH_HEADER_LEN + 14)?;
    // htype 1 (Ethernet), ptype 0x0800, hlen 6, plen 4.
    if p[..6] != [0, 1, 0x08, 0x00, 6, 4] {
        return None;
    }
    MacAddr::from_slice(&p[8..14]).filter(|m| m.is_unicast_host())
}

/// The (sender IP, sender MAC) of an Ethernet/IPv4 ARP frame.
pub(crate) fn sender(frame: &[u8]) -> Option<(Ipv4Addr, MacAddr)> {
    parse(frame).map(|a| (a.spa, a.sha))
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
                suppression = Some(Suppression::new(s.binding_timeout));
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

    /// The addresses answered as the responder's own, with their MAC.
    pub fn own_addresses(&self) -> &[(Ipv4Addr, MacAddr)] {
        &self.answers
    }

    fn own(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.answers.iter().find(|(a, _)| *a == ip).map(|(_, m)| *m)
    }

    /// Any frame from the local side: a host using a bound MAC here is not
    /// behind the tunnel (any more), so its bindings go. One hash lookup,
    /// skipped while nothing is bound; never allocates.
    pub fn saw_local_source(&mut self, frame: &[u8]) {
        let Some(s) = &mut self.suppression else {
            return;
        };
        if s.is_empty() {
            return;
        }
        if let Some(src) = frame.get(6..12).and_then(MacAddr::from_slice) {
            s.remove_mac(src);
        }
        if let Some(mac) = rarp_sender(frame) {
            s.remove_mac(mac);
        }
    }

    /// An ARP frame from the local side: answer it into `reply`, or forward it.
    /// (Call [`saw_local_source`](Self::saw_local_source) for it first.)
    pub fn handle_local(&mut self, frame: &[u8], now: Instant, reply: &mut [u8]) -> LocalVerdict {
        let Some(arp) = parse(frame) else {
            return LocalVerdict::Forward;
        };
        // A local host speaking for an address or a MAC: it lives here, not
        // remotely.
        if let Some(s) = &mut self.suppression {
            if !arp.spa.is_unspecified() {
                s.remove_ip(arp.spa);
            }
            s.remove_mac(arp.sha);
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
        // Probes (sender 0.0.0.0) go to the real owner, who must defend
        // itself; so do unicast requests (the asker re-verifying a neighbour:
        // only the neighbour itself can confirm it).
        if arp.spa.is_unspecified() || arp.eth_dst != MacAddr::BROADCAST {
            return LocalVerdict::Forward;
        }
        let Some(s) = &self.suppression else {
            return LocalVerdict::Forward;
        };
        match s.live(&arp.tpa, now) {
            Some(b) if b.mac != arp.sha && b.mac != arp.eth_src => {
                match emit_reply(&arp, b.mac, reply) {
                    Some(n) => LocalVerdict::Reply(n),
                    None => LocalVerdict::Forward,
                }
            }
            _ => LocalVerdict::Forward,
        }
    }

    /// An ARP frame from the tunnel, sent by `peer`: learn the sender's
    /// binding, unless `local(ip, mac)` says the address belongs to the local
    /// side (the DHCP router, or leased here to a MAC other than `mac`).
    pub fn learn_remote(
        &mut self,
        frame: &[u8],
        peer: PeerId,
        now: Instant,
        local: impl Fn(Ipv4Addr, MacAddr) -> bool,
    ) -> Learned {
        if self.suppression.is_none() {
            return Learned::Nothing;
        }
        let Some(arp) = parse(frame) else {
            return Learned::Nothing;
        };
        if !matches!(arp.op, ArpOperation::Request | ArpOperation::Reply)
            || !is_host_ip(arp.spa)
            || !arp.sha.is_unicast_host()
        {
            return Learned::Nothing;
        }
        if arp.sha != arp.eth_src {
            return Learned::Refused(BindingRefusal::SenderMismatch);
        }
        if self.own(arp.spa).is_some() {
            return Learned::Refused(BindingRefusal::OwnAddress);
        }
        if local(arp.spa, arp.sha) {
            return Learned::Refused(BindingRefusal::LocalAddress);
        }
        let Some(s) = &mut self.suppression else {
            return Learned::Nothing;
        };
        let binding = Binding {
            mac: arp.sha,
            seen: now,
            peer,
            router: false,
        };
        s.insert(arp.spa, binding, now);
        Learned::Binding
    }

    /// The live bindings learned through the tunnel: (address, MAC, the
    /// peer that taught it). For the partner of a high-availability pair.
    pub fn remote_bindings(&self, now: Instant) -> Vec<(Ipv4Addr, MacAddr, PeerId)> {
        self.suppression
            .as_ref()
            .map_or_else(Vec::new, |s| s.live_hosts(now))
    }

    /// A binding the active partner of a high-availability pair learned
    /// through the tunnel: recorded as if learned here (so a promoted box
    /// answers ARP for remote hosts at once), unless the address is one
    /// this box answers for itself or `local` claims it, as for
    /// [`ArpResponder::learn_remote`]. Nothing without suppression.
    pub fn learn_replicated(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        peer: PeerId,
        now: Instant,
        local: impl Fn(Ipv4Addr, MacAddr) -> bool,
    ) -> bool {
        if !is_host_ip(ip) || !mac.is_unicast_host() || self.own(ip).is_some() || local(ip, mac) {
            return false;
        }
        let Some(s) = &mut self.suppression else {
            return false;
        };
        s.insert_host(ip, mac, peer, now);
        true
    }

    /// Drops every binding learned from `peer` (its session went down, or
    /// it was removed).
    pub fn forget_peer(&mut self, peer: PeerId) {
        if let Some(s) = &mut self.suppression {
            s.retain(|b| b.peer != peer);
        }
    }

    /// Number of unexpired learned bindings.
    pub fn live_bindings(&self, now: Instant) -> usize {
        self.suppression.as_ref().map_or(0, |s| s.live_count(now))
    }
}

/// Writes a gratuitous ARP request ("who has `ip`? tell `ip` at `mac`",
/// broadcast) into `buf`: how a host that takes over an address tells the
/// LAN (RFC 5227 §3 announcement). `None` if `buf` is too small.
pub fn gratuitous(ip: Ipv4Addr, mac: MacAddr, buf: &mut [u8]) -> Option<usize> {
    broadcast_request(mac, ip, ip, buf)
}

/// Writes a broadcast ARP request from `mac` ("who has `target`? tell
/// `sender`") into `buf`: an announcement when `sender` is `target`, an
/// RFC 5227 probe when it is 0.0.0.0. `None` if `buf` is too small.
pub(super) fn broadcast_request(
    mac: MacAddr,
    sender: Ipv4Addr,
    target: Ipv4Addr,
    buf: &mut [u8],
) -> Option<usize> {
    let out = buf.get_mut(..ARP_FRAME_LEN)?;
    let mut frame = EthernetFrame::new_unchecked(&mut *out);
    EthernetRepr {
        src_addr: EthernetAddress(mac.0),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut frame);
    ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(mac.0),
        source_protocol_addr: sender,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    }
    .emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    Some(ARP_FRAME_LEN)
}

/// Writes a RARP announcement for `mac` (broadcast, sent from `mac`; the
/// frame QEMU sends for a migrated VM) into `buf`, with an 802.1Q tag when
/// `vlan` is `Some`: LAN switches learn that `mac` is behind this port now.
/// `None` if `buf` is too small.
pub fn rarp_announcement(mac: MacAddr, vlan: Option<u16>, buf: &mut [u8]) -> Option<usize> {
    let tag = if vlan.is_some() { 4 } else { 0 };
    let len = ARP_FRAME_LEN + tag;
    let out = buf.get_mut(..len)?;
    out[..6].fill(0xff);
    out[6..12].copy_from_slice(&mac.0);
    let mut at = 12;
    if let Some(vid) = vlan {
        out[12..14].copy_from_slice(&[0x81, 0x00]);
        out[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
        at = 16;
    }
    out[at..at + 2].copy_from_slice(&ETHERTYPE_RARP);
    let p = &mut out[at + 2..];
    // Ethernet/IPv4, op 3 (reverse request), sender = target = `mac`, no
    // protocol addresses.
    p[..8].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 3]);
    p[8..14].copy_from_slice(&mac.0);
    p[14..18].fill(0);
    p[18..24].copy_from_slice(&mac.0);
    p[24..28].fill(0);
    Some(len)
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
    use super::super::fixtures::{arp_frame, arp_request, rarp_announce};
    use super::super::{RemoteVerdict, Responder};
    use super::*;
    use crate::leases::{Lease, LeaseDb, mac_key};
    use crate::responder::{DhcpSettings, REFUSAL_LOG_INTERVAL};
    use std::time::{Duration, SystemTime};

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
                suppress_nd: false,
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
    fn announcements_are_well_formed() {
        let mac = MacAddr(OUR_MAC);
        let mut buf = [0u8; 64];
        let n = gratuitous(Ipv4Addr::new(198, 19, 0, 254), mac, &mut buf).expect("room");
        let a = parse(&buf[..n]).expect("an ARP frame");
        assert_eq!((a.spa, a.tpa), (Ipv4Addr::new(198, 19, 0, 254), a.spa));
        assert_eq!(a.sha, mac);
        assert_eq!(buf[..6], [0xff; 6]);
        let n = rarp_announcement(mac, None, &mut buf).expect("room");
        assert_eq!(rarp_sender(&buf[..n]), Some(mac));
        assert_eq!(buf[..n], rarp_announce(OUR_MAC)[..n], "QEMU's form");
        let n = rarp_announcement(mac, Some(20), &mut buf).expect("room");
        assert_eq!(n, ARP_FRAME_LEN + 4);
        assert_eq!(buf[12..16], [0x81, 0, 0, 20]);
        assert!(rarp_announcement(mac, None, &mut [0u8; 10]).is_none());
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
        assert_eq!(
            r.handle_remote(&rep, PeerId::new(0), t0),
            RemoteVerdict::Deliver
        );
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
        assert_eq!(
            r.handle_remote(&garp, PeerId::new(0), late),
            RemoteVerdict::Deliver
        );
        assert!(matches!(
            local(&mut r, &req, late).0,
            LocalVerdict::Reply(_)
        ));
        assert_eq!(r.counters().arp_bindings_learned, 2);
    }

    #[test]
    fn replicated_bindings_answer_like_learned_ones() {
        let t0 = Instant::now();
        let mut active = responder(true);
        let rep = arp_frame(ArpOperation::Reply, REMOTE, REMOTE_IP, LOCAL, LOCAL_IP);
        active.handle_remote(&rep, PeerId::new(1), t0);
        let listed = active.remote_bindings(t0);
        assert_eq!(
            listed,
            vec![(
                Ipv4Addr::from(REMOTE_IP).into(),
                MacAddr(REMOTE),
                PeerId::new(1)
            )]
        );
        // The standby records them (never one for its own address) and
        // answers for the remote host once it is the active box.
        let mut standby = responder(true);
        let own = (Ipv4Addr::from(GW).into(), MacAddr(REMOTE), PeerId::new(1));
        assert_eq!(standby.learn_replicated_bindings(&[listed[0], own], t0), 1);
        let req = arp_request(LOCAL, LOCAL_IP, REMOTE_IP);
        let (v, out) = local(&mut standby, &req, t0);
        assert_eq!(v, LocalVerdict::Reply(42));
        assert_reply(&out, REMOTE, REMOTE_IP, LOCAL, LOCAL_IP);
        // Its peer's session going down forgets them, as learned ones.
        standby.forget_peer(PeerId::new(1));
        assert_eq!(standby.arp_bindings(t0), 0);
        // Without suppression nothing is recorded.
        assert_eq!(responder(false).learn_replicated_bindings(&listed, t0), 0);
    }

    #[test]
    fn suppression_ignores_bogus_and_yields_to_local_hosts() {
        let mut r = responder(true);
        let now = Instant::now();
        // Remote probes, claims on our own address, group MACs: not learned.
        r.handle_remote(&arp_request(REMOTE, [0; 4], REMOTE_IP), PeerId::new(0), now);
        r.handle_remote(&arp_request(REMOTE, GW, LOCAL_IP), PeerId::new(0), now);
        r.handle_remote(
            &arp_request([0x01, 0, 0x5e, 0, 0, 1], REMOTE_IP, LOCAL_IP),
            PeerId::new(0),
            now,
        );
        assert_eq!(r.arp_bindings(now), 0);
        // Learned, then a local host announces the same address: forget it.
        r.handle_remote(
            &arp_request(REMOTE, REMOTE_IP, LOCAL_IP),
            PeerId::new(0),
            now,
        );
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

    /// Learns REMOTE_IP → REMOTE from `peer` and checks it answers.
    fn learn(r: &mut Responder, ip: [u8; 4], mac: [u8; 6], peer: PeerId, now: Instant) {
        let rep = arp_frame(ArpOperation::Reply, mac, ip, LOCAL, LOCAL_IP);
        assert_eq!(r.handle_remote(&rep, peer, now), RemoteVerdict::Deliver);
        assert!(answers(r, ip, now), "{ip:?} learned");
    }

    /// Whether a broadcast request from the local host for `ip` is answered.
    fn answers(r: &mut Responder, ip: [u8; 4], now: Instant) -> bool {
        matches!(
            local(r, &arp_request(LOCAL, LOCAL_IP, ip), now).0,
            LocalVerdict::Reply(_)
        )
    }

    #[test]
    fn unicast_requests_reach_the_host() {
        let mut r = responder(true);
        let now = Instant::now();
        learn(&mut r, REMOTE_IP, REMOTE, PeerId::new(0), now);
        // The asker re-verifies its neighbour with a unicast request: only
        // the neighbour can confirm it, so it goes through.
        let mut unicast = arp_request(LOCAL, LOCAL_IP, REMOTE_IP);
        unicast[..6].copy_from_slice(&REMOTE);
        assert_eq!(local(&mut r, &unicast, now).0, LocalVerdict::Forward);
        // The binding itself stays.
        assert!(answers(&mut r, REMOTE_IP, now));
        assert_eq!(r.counters().arp_replies, 2);
    }

    #[test]
    fn bindings_go_with_their_peer() {
        let mut r = responder(true);
        let now = Instant::now();
        let other_ip = [198, 19, 0, 78];
        let other = [0x52, 0x54, 0, 0, 0, 3];
        learn(&mut r, REMOTE_IP, REMOTE, PeerId::new(0), now);
        learn(&mut r, other_ip, other, PeerId::new(1), now);
        // Refreshed from another peer: it now belongs to that one.
        let third_ip = [198, 19, 0, 79];
        learn(&mut r, third_ip, other, PeerId::new(0), now);
        learn(&mut r, third_ip, other, PeerId::new(1), now);
        r.forget_peer(PeerId::new(0));
        assert!(!answers(&mut r, REMOTE_IP, now), "peer 0's binding is gone");
        assert!(answers(&mut r, other_ip, now), "peer 1's binding stays");
        assert!(answers(&mut r, third_ip, now), "moved to peer 1 before");
        assert_eq!(r.arp_bindings(now), 2);
        r.forget_peer(PeerId::new(1));
        assert_eq!(r.arp_bindings(now), 0);
        r.forget_peer(PeerId::new(7)); // unknown peer: nothing happens
        // Relearned after the peer is back.
        learn(&mut r, REMOTE_IP, REMOTE, PeerId::new(0), now);
    }

    #[test]
    fn a_host_showing_up_locally_loses_its_binding() {
        let now = Instant::now();
        let other_ip = [198, 19, 0, 78];
        let other = [0x52, 0x54, 0, 0, 0, 3];
        let fresh = || {
            let mut r = responder(true);
            learn(&mut r, REMOTE_IP, REMOTE, PeerId::new(0), now);
            learn(&mut r, other_ip, other, PeerId::new(0), now);
            r
        };
        // A gratuitous ARP from the moved host.
        let mut r = fresh();
        local(&mut r, &arp_request(REMOTE, REMOTE_IP, REMOTE_IP), now);
        assert!(!answers(&mut r, REMOTE_IP, now));
        assert!(answers(&mut r, other_ip, now), "other bindings stay");
        // An ARP from the local side with that sender MAC, another address.
        let mut r = fresh();
        local(
            &mut r,
            &arp_request(REMOTE, [198, 19, 0, 99], LOCAL_IP),
            now,
        );
        assert!(!answers(&mut r, REMOTE_IP, now));
        assert!(answers(&mut r, other_ip, now));
        // An ARP reply naming the MAC as sender, sent through a proxy.
        let mut r = fresh();
        let mut proxied = arp_frame(ArpOperation::Reply, REMOTE, REMOTE_IP, LOCAL, LOCAL_IP);
        proxied[6..12].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 0x55]);
        local(&mut r, &proxied, now);
        assert!(!answers(&mut r, REMOTE_IP, now));
        // Another local host announcing the address with its own MAC.
        let mut r = fresh();
        local(&mut r, &arp_request(LOCAL, REMOTE_IP, REMOTE_IP), now);
        assert!(!answers(&mut r, REMOTE_IP, now));
        // A RARP announcement (a migrated VM), even relayed from another MAC.
        let mut r = fresh();
        let mut rarp = rarp_announce(REMOTE);
        rarp[6..12].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 0x55]);
        assert_eq!(local(&mut r, &rarp, now).0, LocalVerdict::Forward);
        assert!(!answers(&mut r, REMOTE_IP, now));
        assert!(answers(&mut r, other_ip, now));
        // Any frame from the MAC (IPv6 here).
        let mut r = fresh();
        let mut v6 = vec![0x33, 0x33, 0, 0, 0, 1];
        v6.extend_from_slice(&REMOTE);
        v6.extend_from_slice(&[0x86, 0xdd]);
        v6.extend_from_slice(&[0x60; 40]);
        assert_eq!(local(&mut r, &v6, now).0, LocalVerdict::Forward);
        assert!(!answers(&mut r, REMOTE_IP, now));
        assert!(answers(&mut r, other_ip, now));
        assert_eq!(r.arp_bindings(now), 1);
        // A MAC with several addresses loses all of them.
        let mut r = fresh();
        learn(&mut r, [198, 19, 0, 80], REMOTE, PeerId::new(0), now);
        local(&mut r, &v6, now);
        assert!(!answers(&mut r, REMOTE_IP, now));
        assert!(!answers(&mut r, [198, 19, 0, 80], now));
        assert_eq!(r.arp_bindings(now), 1);
    }

    #[test]
    fn an_address_that_changed_mac_follows_the_new_one() {
        let mut r = responder(true);
        let now = Instant::now();
        learn(&mut r, REMOTE_IP, REMOTE, PeerId::new(0), now);
        let new_mac = [0x52, 0x54, 0, 0, 0, 3];
        learn(&mut r, REMOTE_IP, new_mac, PeerId::new(0), now);
        // The old MAC is no longer bound: seeing it here changes nothing.
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&REMOTE);
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&[0x45; 40]);
        local(&mut r, &frame, now);
        let (v, out) = local(&mut r, &arp_request(LOCAL, LOCAL_IP, REMOTE_IP), now);
        assert_eq!(v, LocalVerdict::Reply(42));
        assert_reply(&out, new_mac, REMOTE_IP, LOCAL, LOCAL_IP);
        // The new one is.
        frame[6..12].copy_from_slice(&new_mac);
        local(&mut r, &frame, now);
        assert!(!answers(&mut r, REMOTE_IP, now));
    }

    fn with_dhcp(leases: LeaseDb) -> Responder {
        let ip = |d| Ipv4Addr::new(198, 19, 0, d);
        let dhcp = DhcpSettings {
            server_address: ip(253),
            server_mac: MacAddr(OUR_MAC),
            pool_start: ip(100),
            pool_end: ip(199),
            subnet_addr: ip(0),
            prefix_len: 24,
            router: Some(ip(1)),
            dns: vec![],
            domain: None,
            lease_time: Duration::from_secs(3600),
            first_lease: Duration::from_secs(300),
            routes: vec![],
            mtu: None,
            reservations: vec![],
            search: Vec::new(),
            ntp: Vec::new(),
            extra_options: Vec::new(),
            conflict_check: false,
        };
        let arp = ArpSettings {
            respond: vec![Ipv4Addr::from(GW)],
            mac: MacAddr(OUR_MAC),
            suppress: true,
            binding_timeout: Duration::from_secs(300),
            suppress_nd: false,
        };
        let dhcp = dhcp.check(&arp.respond).expect("valid DHCP settings");
        Responder::new(Some(arp), Some(dhcp), leases).expect("valid settings")
    }

    #[test]
    fn refuses_bindings_that_cannot_be_true() {
        let leased = [198, 19, 0, 100];
        let mut db = LeaseDb::default();
        for (mac, ip) in [
            (LOCAL, Ipv4Addr::from(leased)),
            (REMOTE, Ipv4Addr::new(198, 19, 0, 101)),
        ] {
            let mac = MacAddr(mac);
            let lease = Lease {
                ip,
                expires: 1,
                mac,
                renewed: true,
            };
            db.insert(&mac_key(&mac), lease);
        }
        let mut r = with_dhcp(db);
        let t0 = Instant::now();
        let claim = |ip: [u8; 4]| arp_frame(ArpOperation::Reply, REMOTE, ip, LOCAL, LOCAL_IP);
        // The arp.respond address, the DHCP server, the router, an address
        // leased here to another MAC (expired or not).
        for ip in [GW, [198, 19, 0, 253], [198, 19, 0, 1], leased] {
            assert_eq!(
                r.handle_remote(&claim(ip), PeerId::new(0), t0),
                RemoteVerdict::Deliver
            );
            let (_, out) = local(&mut r, &arp_request(LOCAL, LOCAL_IP, ip), t0);
            assert_ne!(
                out.get(6..12),
                Some(&REMOTE[..]),
                "{ip:?} must not be bound"
            );
        }
        // ARP sender MAC and Ethernet source differ.
        let mut spoof = claim(REMOTE_IP);
        spoof[6..12].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 0x66]);
        r.handle_remote(&spoof, PeerId::new(0), t0);
        assert!(!answers(&mut r, REMOTE_IP, t0));
        assert_eq!(r.counters().arp_bindings_refused, 5);
        assert_eq!(r.counters().arp_bindings_learned, 0);
        assert_eq!(r.arp_bindings(t0), 0);
        // Probes and group MACs are not bindings at all: not counted.
        r.handle_remote(&arp_request(REMOTE, [0; 4], LOCAL_IP), PeerId::new(0), t0);
        assert_eq!(r.counters().arp_bindings_refused, 5);
        // Its own lease is fine: a host leased here that moved away.
        learn(&mut r, [198, 19, 0, 101], REMOTE, PeerId::new(0), t0);
        learn(&mut r, REMOTE_IP, REMOTE, PeerId::new(0), t0);
        assert_eq!(r.counters().arp_bindings_refused, 5);

        // Logged at most once per interval, with the count and the last one.
        let log = r.take_refusal_log(t0).expect("refusals to log");
        assert_eq!(log.count, 5);
        assert_eq!(log.ip, std::net::IpAddr::from(REMOTE_IP));
        assert_eq!(log.mac, MacAddr(REMOTE));
        assert_eq!(log.reason, BindingRefusal::SenderMismatch.reason());
        assert_eq!(r.take_refusal_log(t0), None, "nothing new");
        r.handle_remote(&claim(GW), PeerId::new(3), t0);
        r.handle_remote(&claim(GW), PeerId::new(3), t0);
        assert_eq!(r.take_refusal_log(t0 + Duration::from_secs(1)), None);
        let log = r
            .take_refusal_log(t0 + REFUSAL_LOG_INTERVAL)
            .expect("after the interval");
        assert_eq!((log.count, log.peer), (2, PeerId::new(3)));
        assert_eq!(log.ip, std::net::IpAddr::from(GW));
        assert_eq!(log.reason, BindingRefusal::OwnAddress.reason());
        assert_eq!(r.counters().arp_bindings_refused, 7);
    }

    #[test]
    fn binding_table_is_bounded() {
        let mut r = responder(true);
        let t0 = Instant::now();
        for i in 0..(MAX_BINDINGS as u32 + 100) {
            let ip = Ipv4Addr::from(0x0a00_0001 + i).octets();
            let t = t0 + Duration::from_millis(u64::from(i));
            r.handle_remote(&arp_request(REMOTE, ip, LOCAL_IP), PeerId::new(0), t);
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
            suppress_nd: false,
        };
        assert!(ArpResponder::new(Some(bad_mac), None).is_err());
        let bad_ip = ArpSettings {
            respond: vec![Ipv4Addr::BROADCAST],
            mac: MacAddr(OUR_MAC),
            suppress: false,
            binding_timeout: Duration::from_secs(1),
            suppress_nd: false,
        };
        assert!(ArpResponder::new(Some(bad_ip), None).is_err());
        let zero = ArpSettings {
            respond: vec![],
            mac: MacAddr(OUR_MAC),
            suppress: true,
            binding_timeout: Duration::ZERO,
            suppress_nd: false,
        };
        assert!(ArpResponder::new(Some(zero), None).is_err());
    }
}
