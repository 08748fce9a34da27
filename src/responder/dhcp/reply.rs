//! Writing the answer: the DHCP or BOOTP payload with its options, wrapped
//! in UDP, IPv4 and Ethernet and addressed per RFC 2131 §4.1; and the
//! configuration options, encoded once from the settings.

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr, EthernetAddress, EthernetFrame,
    EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

use super::super::{DHCP_CLIENT_PORT, DHCP_SERVER_PORT, ETH_HEADER_LEN};
use super::DhcpServer;
use super::alloc::prefix_mask;
use super::message::{
    BOOTP_FIXED_LEN, ClientMsg, MAX_DHCP_LEN, MIN_DHCP_LEN, OPT_CLASSLESS_ROUTES, OPT_CLIENT_ID,
    OPT_DNS, OPT_DOMAIN, OPT_MTU, OPT_NTP, OPT_REBINDING, OPT_RENEWAL, OPT_ROUTER, OPT_SEARCH,
    OPT_SUBNET_MASK,
};
use super::settings::{DhcpSettings, DhcpSettingsError};

/// What to send back.
pub(super) struct Answer {
    /// `None`: a BOOTREPLY (no DHCP options 53, 54, 51, 58, 59).
    pub(super) kind: Option<DhcpMessageType>,
    pub(super) yiaddr: Ipv4Addr,
    /// Lease options (51, 58, 59) and configuration options go in.
    pub(super) lease: bool,
    pub(super) config: bool,
    /// Option 51 (T1, T2 derived) when `lease`.
    pub(super) lease_secs: u32,
}

impl DhcpServer {
    /// Build the reply frame; `None` if `reply` is too small.
    pub(super) fn emit(&self, msg: &ClientMsg<'_>, a: &Answer, reply: &mut [u8]) -> Option<usize> {
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

/// Options 1, 3, 6, 15, 26, 42, 119, 121 and the passed-through ones, from
/// the settings: what must hold for each to be encoded is checked here.
pub(super) fn config_options(
    s: &DhcpSettings,
    mask: u32,
) -> Result<Vec<(u8, Vec<u8>)>, DhcpSettingsError> {
    let err = |key, index, message: String| {
        Err(DhcpSettingsError {
            key,
            index,
            message,
        })
    };
    let mut v = vec![(OPT_SUBNET_MASK, mask.to_be_bytes().to_vec())];
    if let Some(r) = s.router {
        v.push((OPT_ROUTER, r.octets().to_vec()));
    }
    if !s.dns.is_empty() {
        v.push((OPT_DNS, s.dns.iter().flat_map(|a| a.octets()).collect()));
    }
    if let Some(d) = &s.domain {
        // The configuration checked the name; what matters here is that
        // it fits the option.
        if d.is_empty() || d.len() > 253 {
            return err(
                "dhcp.domain",
                None,
                format!("{d:?} does not fit option 15 (1 to 253 bytes)"),
            );
        }
        v.push((OPT_DOMAIN, d.as_bytes().to_vec()));
    }
    if let Some(mtu) = s.mtu {
        if mtu < 68 {
            return err(
                "dhcp.mtu",
                None,
                format!("{mtu} is below the IPv4 minimum of 68"),
            );
        }
        v.push((OPT_MTU, mtu.to_be_bytes().to_vec()));
    }
    if !s.routes.is_empty() {
        let mut data = Vec::new();
        let mut has_default = false;
        for (i, &(net, len, via)) in s.routes.iter().enumerate() {
            if len > 32 {
                return err(
                    "dhcp.routes",
                    Some(i),
                    format!("route {net}/{len} has an invalid prefix length"),
                );
            }
            if u32::from(net) & !prefix_mask(len) != 0 {
                return err(
                    "dhcp.routes",
                    Some(i),
                    format!("route {net}/{len} has host bits set"),
                );
            }
            has_default |= len == 0;
            push_classless_route(&mut data, net, len, via);
        }
        if let (Some(r), false) = (s.router, has_default) {
            push_classless_route(&mut data, Ipv4Addr::UNSPECIFIED, 0, r);
        }
        if data.len() > 255 {
            return err(
                "dhcp.routes",
                None,
                "the routes do not fit in one option 121 (255 bytes)".into(),
            );
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
        for (i, name) in s.search.iter().enumerate() {
            for label in name.trim_end_matches('.').split('.') {
                if label.is_empty() || label.len() > 63 {
                    return err(
                        "dhcp.search",
                        Some(i),
                        format!("{name:?} is not a valid DNS name"),
                    );
                }
                data.push(label.len() as u8);
                data.extend_from_slice(label.as_bytes());
            }
            data.push(0);
        }
        if data.len() > 255 {
            return err(
                "dhcp.search",
                None,
                "the search list does not fit one option 119 (255 bytes)".into(),
            );
        }
        v.push((OPT_SEARCH, data));
    }
    for (i, (code, data)) in s.extra_options.iter().enumerate() {
        let why = if matches!(*code, 0 | 255) {
            "is padding or the end marker"
        } else if data.len() > 255 {
            "has more than 255 bytes of data"
        } else if s.extra_options[..i].iter().any(|(c, _)| c == code) {
            "is given twice"
        } else if v.iter().any(|(c, _)| c == code) {
            "is one the responder sets from its own settings"
        } else {
            ""
        };
        if !why.is_empty() {
            return err("dhcp.option", Some(i), format!("option {code} {why}"));
        }
        v.push((*code, data.clone()));
    }
    Ok(v)
}

/// RFC 3442 encoding: prefix length, the significant octets of the network,
/// then the router.
pub(super) fn push_classless_route(out: &mut Vec<u8>, net: Ipv4Addr, len: u8, via: Ipv4Addr) {
    out.push(len);
    out.extend_from_slice(&net.octets()[..usize::from(len).div_ceil(8)]);
    out.extend_from_slice(&via.octets());
}
