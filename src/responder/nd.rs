//! IPv6 neighbour discovery suppression (pure): RFC 9161's proxy ND for a
//! bridge. IPv6→MAC bindings learned from neighbour advertisements and
//! solicitations arriving **through the tunnel** answer the local side's
//! multicast neighbour solicitations for those remote hosts, so address
//! resolution does not cross the tunnel; unknown targets are forwarded
//! (flooded) as usual.
//!
//! What is learned, from untagged frames sent by a peer (hop limit 255,
//! ICMPv6 code 0, correct checksum, well-formed options):
//! - a neighbour advertisement binds its target address to the MAC in its
//!   target link-layer address option, which must be the Ethernet source
//!   (an NA without the option teaches nothing); its R flag is kept, so an
//!   answer for a router still says it is one;
//! - a neighbour solicitation binds its source address (not `::`) to the
//!   MAC in its source link-layer address option, which must be the
//!   Ethernet source.
//!
//! The same freshness rules as ARP suppression ([`super::arp`]): a binding
//! remembers its peer and goes when that peer goes down or is removed; it
//! times out after `binding_timeout`; it is dropped as soon as its address
//! or MAC shows up on the local side (any local frame from the MAC, a local
//! NA for the address, a local NS from it or probing it (DAD), a local
//! option naming the MAC). Refused, and counted: a link-layer option that
//! is not the Ethernet source, and a claim of the responder's own MAC.
//!
//! What is answered: a local NS sent to the target's solicited-node
//! multicast group (Ethernet and IPv6), from a unicast address with a
//! source link-layer option equal to the Ethernet source, for an address
//! with a live binding. The answer is an NA from the bound MAC, IPv6 source
//! the target, carrying the target link-layer option, Solicited set and
//! **Override clear**: RFC 4861 §7.2.8 asks proxies to clear it so that
//! the owner's own answer, should it come, wins over ours; for a cache
//! entry still being resolved the flag makes no difference. Never answered
//! (forwarded instead): duplicate address detection (source `::`), unicast
//! solicitations (the asker re-verifying its neighbour: only the neighbour
//! can confirm it), addresses not bound, tagged frames (the caller passes
//! untagged ND only). An answered NS is not forwarded.
//!
//! Never allocates after construction, never panics on any input.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use super::bindings::{Binding, Bindings};
use super::{ETH_HEADER_LEN, LocalVerdict, ResponderError};
use crate::mac::MacAddr;
use crate::peer_id::PeerId;

use super::arp::{BindingRefusal, Learned};

/// ICMPv6 neighbour solicitation (RFC 4861 §4.3).
const NS: u8 = 135;
/// ICMPv6 neighbour advertisement (RFC 4861 §4.4).
const NA: u8 = 136;
/// Source link-layer address option.
const OPT_SLLA: u8 = 1;
/// Target link-layer address option.
const OPT_TLLA: u8 = 2;
/// NA flags.
const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
/// IPv6 next header: ICMPv6.
const NEXT_ICMPV6: u8 = 58;
const IPV6_HEADER_LEN: usize = 40;
/// NS/NA without options: type, code, checksum, flags/reserved, target.
const ND_LEN: usize = 24;
/// The NA we write: Ethernet + IPv6 + NA + one 8-byte TLLA option.
pub const NA_FRAME_LEN: usize = ETH_HEADER_LEN + IPV6_HEADER_LEN + ND_LEN + 8;

/// A parsed NS or NA.
#[derive(Debug, Clone, Copy)]
struct Nd {
    icmp_type: u8,
    eth_dst: MacAddr,
    eth_src: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    /// NA flags (R, S, O) in the high bits; 0 for an NS.
    flags: u8,
    target: Ipv6Addr,
    /// The SLLA option of an NS, the TLLA option of an NA.
    lla: Option<MacAddr>,
}

fn ipv6_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let a: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(a))
}

/// The one's-complement sum of the ICMPv6 pseudo-header and `icmp`,
/// folded to 16 bits (not inverted).
fn icmpv6_sum(src: &Ipv6Addr, dst: &Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let hi = u64::from(c[0]) << 8;
            let lo = c.get(1).map_or(0, |&l| u64::from(l));
            sum += hi | lo;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    let len = icmp.len() as u32;
    add(&len.to_be_bytes());
    add(&[0, 0, 0, NEXT_ICMPV6]);
    add(icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// An untagged Ethernet/IPv6 NS or NA that RFC 4861 §7.1 would accept
/// (no extension headers), or `None`.
fn parse(frame: &[u8]) -> Option<Nd> {
    let eth_dst = MacAddr::from_slice(frame.get(..6)?)?;
    let eth_src = MacAddr::from_slice(frame.get(6..12)?)?;
    if frame.get(12..14)? != [0x86, 0xdd] {
        return None;
    }
    let ip = frame.get(ETH_HEADER_LEN..ETH_HEADER_LEN + IPV6_HEADER_LEN)?;
    if ip[0] >> 4 != 6 || ip[6] != NEXT_ICMPV6 || ip[7] != 255 {
        return None;
    }
    let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let start = ETH_HEADER_LEN + IPV6_HEADER_LEN;
    // Bytes past the payload length are Ethernet padding.
    let icmp = frame.get(start..start + payload)?;
    if icmp.len() < ND_LEN || !matches!(icmp[0], NS | NA) || icmp[1] != 0 {
        return None;
    }
    let src = ipv6_at(ip, 8)?;
    let dst = ipv6_at(ip, 24)?;
    if icmpv6_sum(&src, &dst, icmp) != 0xffff {
        return None;
    }
    let target = ipv6_at(icmp, 8)?;
    if target.is_multicast() {
        return None;
    }
    let wanted = if icmp[0] == NS { OPT_SLLA } else { OPT_TLLA };
    let mut lla = None;
    let mut rest = &icmp[ND_LEN..];
    while !rest.is_empty() {
        let len = usize::from(*rest.get(1)?) * 8;
        if len == 0 || len > rest.len() {
            return None; // RFC 4861 §4.6: a zero length means discard
        }
        if rest[0] == wanted && lla.is_none() {
            lla = MacAddr::from_slice(&rest[2..8]);
        }
        rest = &rest[len..];
    }
    Some(Nd {
        icmp_type: icmp[0],
        eth_dst,
        eth_src,
        src,
        dst,
        flags: if icmp[0] == NA { icmp[4] } else { 0 },
        target,
        lla,
    })
}

/// An address a host may really have (not `::`, multicast or loopback).
fn is_host_ip(ip: &Ipv6Addr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_loopback())
}

/// `ff02::1:ffXX:XXXX` for `target` (RFC 4291 §2.7.1).
fn solicited_node(target: &Ipv6Addr) -> Ipv6Addr {
    let t = target.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    )
}

/// The ND half of the responder: exists only with `arp.suppress_nd`.
#[derive(Debug)]
pub struct NdResponder {
    table: Bindings<Ipv6Addr>,
    /// The responder's MACs: no peer may claim them.
    own_macs: [MacAddr; 2],
}

impl NdResponder {
    /// Bindings answer for `timeout` (non-zero); `own_macs` are the
    /// responder's.
    pub fn new(timeout: Duration, own_macs: [MacAddr; 2]) -> Result<NdResponder, ResponderError> {
        if timeout.is_zero() {
            return Err(ResponderError::InvalidArp(
                "binding_timeout must be longer than zero".into(),
            ));
        }
        Ok(NdResponder {
            table: Bindings::new(timeout),
            own_macs,
        })
    }

    /// Any frame from the local side: a bound MAC seen here drops its
    /// bindings. One hash lookup, skipped while nothing is bound.
    pub fn saw_local_source(&mut self, frame: &[u8]) {
        if self.table.is_empty() {
            return;
        }
        if let Some(src) = frame.get(6..12).and_then(MacAddr::from_slice) {
            self.table.remove_mac(src);
        }
    }

    /// An untagged ICMPv6 NS/NA from the local side: answer it into
    /// `reply`, or forward it. (Call
    /// [`saw_local_source`](Self::saw_local_source) for it first.)
    pub fn handle_local(&mut self, frame: &[u8], now: Instant, reply: &mut [u8]) -> LocalVerdict {
        let Some(nd) = parse(frame) else {
            return LocalVerdict::Forward;
        };
        // A local host speaking for an address or a MAC: it lives here.
        if !self.table.is_empty() {
            if nd.icmp_type == NA {
                self.table.remove_ip(nd.target);
            } else if nd.src.is_unspecified() {
                self.table.remove_ip(nd.target); // DAD: about to use it here
            } else {
                self.table.remove_ip(nd.src);
            }
            if let Some(mac) = nd.lla {
                self.table.remove_mac(mac);
            }
        }
        if nd.icmp_type != NS
            || nd.src.is_unspecified()
            || nd.src == nd.target
            || !nd.eth_src.is_unicast_host()
            || nd.lla != Some(nd.eth_src)
        {
            return LocalVerdict::Forward;
        }
        // Only solicitations to the target's solicited-node group, on the
        // wire and in IPv6: a unicast one goes to the neighbour itself.
        let group = solicited_node(&nd.target);
        let g = group.octets();
        if nd.dst != group || nd.eth_dst.0 != [0x33, 0x33, g[12], g[13], g[14], g[15]] {
            return LocalVerdict::Forward;
        }
        match self.table.live(&nd.target, now) {
            Some(b) if b.mac != nd.eth_src => match emit_na(&nd, b, reply) {
                Some(n) => LocalVerdict::Reply(n),
                None => LocalVerdict::Forward,
            },
            _ => LocalVerdict::Forward,
        }
    }

    /// An untagged ICMPv6 NS/NA from the tunnel, sent by `peer`: learn the
    /// binding it states. Returns the address and MAC claimed with what was
    /// done.
    pub fn learn_remote(
        &mut self,
        frame: &[u8],
        peer: PeerId,
        now: Instant,
    ) -> (Learned, Option<(Ipv6Addr, MacAddr)>) {
        let Some(nd) = parse(frame) else {
            return (Learned::Nothing, None);
        };
        let ip = if nd.icmp_type == NA {
            nd.target
        } else {
            nd.src
        };
        let Some(mac) = nd.lla else {
            return (Learned::Nothing, None);
        };
        if !is_host_ip(&ip) || !mac.is_unicast_host() {
            return (Learned::Nothing, None);
        }
        let claim = Some((ip, mac));
        if mac != nd.eth_src {
            return (Learned::Refused(BindingRefusal::SenderMismatch), claim);
        }
        if self.own_macs.contains(&mac) {
            return (Learned::Refused(BindingRefusal::OwnMac), claim);
        }
        let router = if nd.icmp_type == NA {
            nd.flags & FLAG_ROUTER != 0
        } else {
            // An NS says nothing about routing: keep what an NA said.
            self.table
                .get(&ip)
                .is_some_and(|b| b.mac == mac && b.router)
        };
        let binding = Binding {
            mac,
            seen: now,
            peer,
            router,
        };
        self.table.insert(ip, binding, now);
        (Learned::Binding, claim)
    }

    /// The live bindings learned through the tunnel, routers' excepted:
    /// (address, MAC, the peer that taught it). For the partner of a
    /// high-availability pair.
    pub fn remote_bindings(&self, now: Instant) -> Vec<(Ipv6Addr, MacAddr, PeerId)> {
        self.table.live_hosts(now)
    }

    /// A binding the active partner of a high-availability pair learned
    /// through the tunnel: recorded as if learned here, with the checks of
    /// [`NdResponder::learn_remote`] that need no frame (a host address, a
    /// unicast MAC, not one of ours). Returns whether it was taken.
    pub fn learn_replicated(
        &mut self,
        ip: Ipv6Addr,
        mac: MacAddr,
        peer: PeerId,
        now: Instant,
    ) -> bool {
        if !is_host_ip(&ip) || !mac.is_unicast_host() || self.own_macs.contains(&mac) {
            return false;
        }
        self.table.insert_host(ip, mac, peer, now);
        true
    }

    /// Drops every binding learned from `peer`.
    pub fn forget_peer(&mut self, peer: PeerId) {
        self.table.retain(|b| b.peer != peer);
    }

    /// Number of unexpired bindings.
    pub fn live_bindings(&self, now: Instant) -> usize {
        self.table.live_count(now)
    }
}

/// Write "`nd.target` is at `b.mac`" back to the asker. `None` if `reply`
/// is too small.
fn emit_na(nd: &Nd, b: &Binding, reply: &mut [u8]) -> Option<usize> {
    let out = reply.get_mut(..NA_FRAME_LEN)?;
    out[..6].copy_from_slice(&nd.eth_src.0);
    out[6..12].copy_from_slice(&b.mac.0);
    out[12..14].copy_from_slice(&[0x86, 0xdd]);
    let payload = (ND_LEN + 8) as u16;
    let ip = &mut out[ETH_HEADER_LEN..ETH_HEADER_LEN + IPV6_HEADER_LEN];
    ip[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&payload.to_be_bytes());
    ip[6] = NEXT_ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&nd.target.octets());
    ip[24..40].copy_from_slice(&nd.src.octets());
    let icmp = &mut out[ETH_HEADER_LEN + IPV6_HEADER_LEN..];
    icmp[..4].copy_from_slice(&[NA, 0, 0, 0]);
    let router = if b.router { FLAG_ROUTER } else { 0 };
    icmp[4..8].copy_from_slice(&[FLAG_SOLICITED | router, 0, 0, 0]);
    icmp[8..24].copy_from_slice(&nd.target.octets());
    icmp[24..26].copy_from_slice(&[OPT_TLLA, 1]);
    icmp[26..32].copy_from_slice(&b.mac.0);
    let sum = !icmpv6_sum(&nd.target, &nd.src, icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(NA_FRAME_LEN)
}

#[cfg(test)]
mod tests;
