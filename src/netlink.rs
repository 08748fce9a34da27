//! Netlink programming of links, addresses, routes and bridge membership.
//!
//! This is the only place that changes the host's network configuration. It
//! speaks rtnetlink directly (never runs `ip`) through a small **synchronous**
//! facade, [`Netlink`], which owns a current-thread tokio runtime and the
//! netlink connection task. The daemon calls it only at setup and teardown, so
//! a blocking API is simpler than threading async through the daemon.
//!
//! Promises:
//! - Errors name the interface, address or route concerned and keep the
//!   kernel's cause (the errno text is part of the message and available via
//!   [`NetlinkError::errno`]).
//! - Adding something that already exists is an error ([`NetlinkError::Exists`])
//!   so the caller decides; deleting something that is already gone succeeds,
//!   which makes teardown idempotent.
//! - [`Changes`] records every change a `link up` made, in order, and
//!   [`Changes::undo`] reverts them in reverse order, best effort, collecting
//!   errors and never panicking — so `link down` and a failed `link up` remove
//!   exactly what was added and nothing else.
//!
//! The netlink socket belongs to the network namespace of the thread that
//! called [`Netlink::new`]. The methods block on their own runtime, so they must
//! not be called from inside another tokio runtime.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope,
};
use rtnetlink::{AddressMessageBuilder, LinkBridge, LinkUnspec, RouteMessageBuilder};

/// Errors of the netlink layer. Each is one sentence naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The tokio runtime driving the connection could not be created.
    #[error("cannot start the netlink runtime: {0}")]
    Runtime(io::Error),
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Connect(io::Error),
    /// The kernel refused a request, or the connection failed.
    #[error("cannot {action}: {cause}")]
    Request {
        /// What was being done, naming the interface/address/route.
        action: String,
        /// The kernel's (or the connection's) reason.
        cause: io::Error,
    },
    /// The address, route or link to add already exists.
    #[error("cannot {action}: it already exists")]
    Exists {
        /// What was being done, naming the item.
        action: String,
    },
    /// No link has this name.
    #[error("no network interface is named {name:?}")]
    NoSuchLink {
        /// The interface name looked up.
        name: String,
    },
    /// The named bridge exists but is not a Linux bridge.
    #[error("{name:?} is not a bridge (it is a {kind} device)")]
    NotABridge {
        /// The interface name.
        name: String,
        /// Its kind as the kernel reports it.
        kind: String,
    },
    /// A link we were asked to remove as stale is not a TUN/TAP device.
    #[error("refusing to delete {name:?}: it is a {kind} device, not a TUN/TAP device")]
    NotATap {
        /// The interface name.
        name: String,
        /// Its kind as the kernel reports it.
        kind: String,
    },
    /// A route destination has bits set beyond its prefix (e.g. 198.19.64.1/18).
    #[error(
        "route destination {addr}/{prefix_len} is not a network address (bits are set beyond the prefix)"
    )]
    NotANetwork {
        /// The destination address.
        addr: IpAddr,
        /// The prefix length.
        prefix_len: u8,
    },
    /// The gateway's address family cannot serve the destination.
    #[error("route {dest}/{prefix_len} cannot go via {via}: wrong address family")]
    GatewayFamily {
        /// The destination address.
        dest: IpAddr,
        /// The prefix length.
        prefix_len: u8,
        /// The gateway.
        via: IpAddr,
    },
    /// A route or address could not even be encoded (e.g. prefix too long).
    #[error("invalid prefix {addr}/{prefix_len}")]
    InvalidPrefix {
        /// The address.
        addr: IpAddr,
        /// The prefix length.
        prefix_len: u8,
    },
}

impl NetlinkError {
    /// The kernel's errno behind this error, if there was one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request { cause, .. } => cause.raw_os_error(),
            NetlinkError::Exists { .. } => Some(libc_errno::EEXIST),
            NetlinkError::Runtime(e) | NetlinkError::Connect(e) => e.raw_os_error(),
            _ => None,
        }
    }
}

/// errno values we interpret (from `nix`, to avoid a direct libc dependency).
mod libc_errno {
    use nix::errno::Errno;
    pub const EEXIST: i32 = Errno::EEXIST as i32;
    pub const ENODEV: i32 = Errno::ENODEV as i32;
    pub const ESRCH: i32 = Errno::ESRCH as i32;
    pub const EADDRNOTAVAIL: i32 = Errno::EADDRNOTAVAIL as i32;
    pub const ENOENT: i32 = Errno::ENOENT as i32;
}

/// What the kernel says about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU in bytes.
    pub mtu: u32,
    /// Hardware address, if it is a 6-byte Ethernet address.
    pub mac: Option<[u8; 6]>,
    /// Link kind ("tun" for TUN and TAP, "bridge", "veth", ...); `None` for
    /// devices without one (e.g. `lo`, physical NICs).
    pub kind: Option<String>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Index of the bridge (or other controller) this link is enslaved to.
    pub controller: Option<u32>,
}

/// One route as dumped from the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// Destination network address.
    pub dest: IpAddr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Gateway, if any.
    pub via: Option<IpAddr>,
    /// Output interface index, if any.
    pub oif: Option<u32>,
}

/// A synchronous rtnetlink client. See the module docs.
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
}

/// Converts an rtnetlink error into an `io::Error`, keeping the errno when the
/// kernel sent one and the whole rtnetlink error otherwise.
fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other),
    }
}

fn is_errno(e: &rtnetlink::Error, codes: &[i32]) -> bool {
    match e {
        rtnetlink::Error::NetlinkError(msg) => codes.contains(&msg.raw_code().abs()),
        _ => false,
    }
}

fn prefix_ok(addr: IpAddr, prefix_len: u8) -> Result<(), NetlinkError> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(NetlinkError::InvalidPrefix { addr, prefix_len });
    }
    Ok(())
}

impl Netlink {
    /// Opens a netlink connection in the calling thread's network namespace.
    pub fn new() -> Result<Self, NetlinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(NetlinkError::Runtime)?;
        let (conn, handle, _) = {
            // The connection registers its socket with the runtime's reactor.
            let _guard = rt.enter();
            rtnetlink::new_connection().map_err(NetlinkError::Connect)?
        };
        rt.spawn(conn);
        Ok(Netlink { rt, handle })
    }

    /// A human label for an interface index in error messages: its name when
    /// it can be found, else "interface #N".
    fn label(&mut self, index: u32) -> String {
        match self.link_by_index(index) {
            Ok(Some(l)) => format!("{} (#{index})", l.name),
            _ => format!("interface #{index}"),
        }
    }

    fn request_err(&mut self, action: String, e: rtnetlink::Error) -> NetlinkError {
        if is_errno(&e, &[libc_errno::EEXIST]) {
            NetlinkError::Exists { action }
        } else {
            NetlinkError::Request {
                action,
                cause: to_io(e),
            }
        }
    }

    fn get_link(
        &mut self,
        req: rtnetlink::LinkGetRequest,
    ) -> Result<Option<LinkInfo>, rtnetlink::Error> {
        let res: Result<Vec<LinkMessage>, _> =
            self.rt.block_on(req.execute().try_collect::<Vec<_>>());
        match res {
            Ok(msgs) => Ok(msgs.into_iter().next().map(link_info)),
            Err(e) if is_errno(&e, &[libc_errno::ENODEV, libc_errno::ENOENT]) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks a link up by name; `Ok(None)` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let req = self.handle.link().get().match_name(name);
        self.get_link(req).map_err(|e| NetlinkError::Request {
            action: format!("look up interface {name:?}"),
            cause: to_io(e),
        })
    }

    /// Looks a link up by index; `Ok(None)` if there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        let req = self.handle.link().get().match_index(index);
        self.get_link(req).map_err(|e| NetlinkError::Request {
            action: format!("look up interface #{index}"),
            cause: to_io(e),
        })
    }

    fn set_link(&mut self, msg: LinkMessage) -> Result<(), rtnetlink::Error> {
        let req = self.handle.link().set(msg);
        self.rt.block_on(req.execute())
    }

    /// Sets a link's MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.set_link(msg).map_err(|e| {
            let action = format!("set the MTU of {} to {mtu}", self.label(index));
            self.request_err(action, e)
        })
    }

    /// Sets a link's Ethernet address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index)
            .address(mac.to_vec())
            .build();
        self.set_link(msg).map_err(|e| {
            let action = format!("set the MAC of {} to {}", self.label(index), MacFmt(mac));
            self.request_err(action, e)
        })
    }

    /// Brings a link administratively up.
    pub fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.set_link(msg).map_err(|e| {
            let action = format!("bring {} up", self.label(index));
            self.request_err(action, e)
        })
    }

    /// Brings a link administratively down. A link that is gone is fine.
    pub fn set_down(&mut self, index: u32) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).down().build();
        match self.set_link(msg) {
            Err(e) if is_errno(&e, &[libc_errno::ENODEV]) => Ok(()),
            Err(e) => {
                let action = format!("bring {} down", self.label(index));
                Err(self.request_err(action, e))
            }
            Ok(()) => Ok(()),
        }
    }

    /// Adds an address to a link. EEXIST becomes [`NetlinkError::Exists`].
    pub fn add_address(
        &mut self,
        index: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        prefix_ok(addr, prefix_len)?;
        let req = self.handle.address().add(index, addr, prefix_len);
        self.rt.block_on(req.execute()).map_err(|e| {
            let action = format!("add address {addr}/{prefix_len} to {}", self.label(index));
            self.request_err(action, e)
        })
    }

    /// Removes an address from a link. An address (or link) already gone is fine.
    pub fn del_address(
        &mut self,
        index: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        prefix_ok(addr, prefix_len)?;
        let msg = address_message(index, addr, prefix_len);
        let req = self.handle.address().del(msg);
        match self.rt.block_on(req.execute()) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, &[libc_errno::EADDRNOTAVAIL, libc_errno::ENODEV]) => Ok(()),
            Err(e) => {
                let action = format!(
                    "remove address {addr}/{prefix_len} from {}",
                    self.label(index)
                );
                Err(self.request_err(action, e))
            }
        }
    }

    /// Lists the addresses (with prefix lengths) on a link, IPv4 and IPv6,
    /// including kernel-assigned link-local ones.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<(IpAddr, u8)>, NetlinkError> {
        let req = self.handle.address().get().set_link_index_filter(index);
        let msgs: Vec<AddressMessage> = self
            .rt
            .block_on(req.execute().try_collect::<Vec<_>>())
            .map_err(|e| NetlinkError::Request {
                action: format!("list the addresses of interface #{index}"),
                cause: to_io(e),
            })?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                // IPv4 carries the interface's own address in IFA_LOCAL
                // (IFA_ADDRESS is the peer on point-to-point links).
                let local = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let addr = local.or_else(|| {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                })?;
                Some((addr, m.header.prefix_len))
            })
            .collect())
    }

    /// Adds a route in the main table: `dest/prefix_len` out of link `oif`,
    /// optionally via a gateway. EEXIST becomes [`NetlinkError::Exists`].
    pub fn add_route(
        &mut self,
        dest: IpAddr,
        prefix_len: u8,
        via: Option<IpAddr>,
        oif: u32,
    ) -> Result<(), NetlinkError> {
        let msg = route_message(dest, prefix_len, via, oif)?;
        let req = self.handle.route().add(msg);
        self.rt.block_on(req.execute()).map_err(|e| {
            let action = format!(
                "add route {} on {}",
                RouteFmt(dest, prefix_len, via),
                self.label(oif)
            );
            self.request_err(action, e)
        })
    }

    /// Deletes a route added by [`Netlink::add_route`] with the same arguments.
    /// A route (or link) already gone is fine.
    pub fn del_route(
        &mut self,
        dest: IpAddr,
        prefix_len: u8,
        via: Option<IpAddr>,
        oif: u32,
    ) -> Result<(), NetlinkError> {
        let msg = route_message(dest, prefix_len, via, oif)?;
        let req = self.handle.route().del(msg);
        match self.rt.block_on(req.execute()) {
            Ok(()) => Ok(()),
            Err(e)
                if is_errno(
                    &e,
                    &[libc_errno::ESRCH, libc_errno::ENODEV, libc_errno::ENOENT],
                ) =>
            {
                Ok(())
            }
            Err(e) => {
                let action = format!(
                    "delete route {} on {}",
                    RouteFmt(dest, prefix_len, via),
                    self.label(oif)
                );
                Err(self.request_err(action, e))
            }
        }
    }

    /// Lists the main-table routes (IPv4 and IPv6) whose output interface is `oif`.
    pub fn routes(&mut self, oif: u32) -> Result<Vec<RouteEntry>, NetlinkError> {
        let mut out = Vec::new();
        for msg in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let req = self.handle.route().get(msg);
            let msgs: Vec<RouteMessage> = self
                .rt
                .block_on(req.execute().try_collect::<Vec<_>>())
                .map_err(|e| NetlinkError::Request {
                action: format!("list the routes of interface #{oif}"),
                cause: to_io(e),
            })?;
            out.extend(
                msgs.iter()
                    .filter_map(route_entry)
                    .filter(|r| r.oif == Some(oif)),
            );
        }
        Ok(out)
    }

    /// Enslaves link `index` to the existing Linux bridge `bridge`. Errors if
    /// the bridge does not exist or is not a bridge. Returns the bridge's index.
    pub fn enslave(&mut self, index: u32, bridge: &str) -> Result<u32, NetlinkError> {
        let br = self
            .link_by_name(bridge)?
            .ok_or_else(|| NetlinkError::NoSuchLink {
                name: bridge.to_owned(),
            })?;
        if br.kind.as_deref() != Some("bridge") {
            return Err(NetlinkError::NotABridge {
                name: bridge.to_owned(),
                kind: br.kind.unwrap_or_else(|| "non-virtual".to_owned()),
            });
        }
        let msg = LinkUnspec::new_with_index(index)
            .controller(br.index)
            .build();
        self.set_link(msg).map_err(|e| {
            let action = format!("enslave {} to bridge {bridge:?}", self.label(index));
            self.request_err(action, e)
        })?;
        Ok(br.index)
    }

    /// Removes link `index` from whatever bridge it is enslaved to. A link
    /// that is gone is fine.
    pub fn release(&mut self, index: u32) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).nocontroller().build();
        match self.set_link(msg) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, &[libc_errno::ENODEV]) => Ok(()),
            Err(e) => {
                let action = format!("release {} from its bridge", self.label(index));
                Err(self.request_err(action, e))
            }
        }
    }

    /// Creates a Linux bridge (up). Meant for tests and labs; the daemon only
    /// enslaves to bridges the operator made.
    pub fn add_bridge(&mut self, name: &str) -> Result<u32, NetlinkError> {
        let msg = LinkBridge::new(name).build();
        let req = self.handle.link().add(msg);
        self.rt
            .block_on(req.execute())
            .map_err(|e| self.request_err(format!("create bridge {name:?}"), e))?;
        self.link_by_name(name)?
            .map(|l| l.index)
            .ok_or_else(|| NetlinkError::NoSuchLink {
                name: name.to_owned(),
            })
    }

    /// Deletes a link. A link that is already gone is fine.
    pub fn delete_link(&mut self, index: u32) -> Result<(), NetlinkError> {
        let req = self.handle.link().del(index);
        match self.rt.block_on(req.execute()) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, &[libc_errno::ENODEV]) => Ok(()),
            Err(e) => {
                let action = format!("delete {}", self.label(index));
                Err(self.request_err(action, e))
            }
        }
    }

    /// Crash recovery: if a link named `name` exists and is a TUN/TAP device,
    /// delete it (its addresses and routes vanish with it) and return `true`;
    /// return `false` if there is no such link. Refuses, with
    /// [`NetlinkError::NotATap`], if the name belongs to any other kind of
    /// device. The caller must first make sure no live instance owns it.
    pub fn remove_stale_tap(&mut self, name: &str) -> Result<bool, NetlinkError> {
        let Some(link) = self.link_by_name(name)? else {
            return Ok(false);
        };
        if link.kind.as_deref() != Some("tun") {
            return Err(NetlinkError::NotATap {
                name: name.to_owned(),
                kind: link.kind.unwrap_or_else(|| "non-virtual".to_owned()),
            });
        }
        self.delete_link(link.index)?;
        Ok(true)
    }
}

fn link_info(msg: LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        mtu: 0,
        mac: None,
        kind: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        controller: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => info.name = n,
            LinkAttribute::Mtu(m) => info.mtu = m,
            LinkAttribute::Address(a) => info.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::Controller(c) => info.controller = Some(c),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(k) = i {
                        info.kind = Some(match k {
                            InfoKind::Tun => "tun".to_owned(),
                            InfoKind::Bridge => "bridge".to_owned(),
                            other => other.to_string(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    info
}

fn address_message(index: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    match addr {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(a, prefix_len)
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(a, prefix_len)
            .build(),
    }
}

fn route_message(
    dest: IpAddr,
    prefix_len: u8,
    via: Option<IpAddr>,
    oif: u32,
) -> Result<RouteMessage, NetlinkError> {
    prefix_ok(dest, prefix_len)?;
    let host_bits = match dest {
        IpAddr::V4(a) => u128::from(u32::from(a)) & (u128::from(u32::MAX) >> prefix_len),
        IpAddr::V6(a) => u128::from(a)
            .checked_shl(u32::from(prefix_len))
            .unwrap_or(0),
    };
    if host_bits != 0 {
        return Err(NetlinkError::NotANetwork {
            addr: dest,
            prefix_len,
        });
    }
    // prefix_ok ruled out the builder's only failure (length/family).
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dest, prefix_len)
        .map_err(|_| NetlinkError::InvalidPrefix {
            addr: dest,
            prefix_len,
        })?
        .output_interface(oif);
    match via {
        // An IPv4 route via an IPv6 gateway is valid (RTA_VIA); the reverse is not.
        Some(gw) => {
            b = b.gateway(gw).map_err(|_| NetlinkError::GatewayFamily {
                dest,
                prefix_len,
                via: gw,
            })?;
        }
        // What `ip route add PREFIX dev X` does: a directly connected route.
        None if dest.is_ipv4() => b = b.scope(RouteScope::Link),
        None => {}
    }
    Ok(b.build())
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn route_entry(m: &RouteMessage) -> Option<RouteEntry> {
    if m.header.table != RouteHeader::RT_TABLE_MAIN {
        return None;
    }
    let mut dest = None;
    let mut via = None;
    let mut oif = None;
    let mut table_ok = true;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dest = route_addr(d),
            RouteAttribute::Gateway(g) => via = route_addr(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Table(t) => table_ok = *t == u32::from(RouteHeader::RT_TABLE_MAIN),
            _ => {}
        }
    }
    if !table_ok {
        return None;
    }
    let dest = dest.unwrap_or(match m.header.address_family {
        rtnetlink::packet_route::AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    Some(RouteEntry {
        dest,
        prefix_len: m.header.destination_prefix_length,
        via,
        oif,
    })
}

struct MacFmt([u8; 6]);

impl fmt::Display for MacFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

struct RouteFmt(IpAddr, u8, Option<IpAddr>);

impl fmt::Display for RouteFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0, self.1)?;
        if let Some(gw) = self.2 {
            write!(f, " via {gw}")?;
        }
        Ok(())
    }
}

/// One change a `link up` made to the system, with what is needed to revert it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A link was created (the TAP). Undo: delete it.
    Created {
        /// Link index.
        index: u32,
        /// Link name, for messages.
        name: String,
    },
    /// The MTU was changed. Undo: restore the previous one.
    Mtu {
        /// Link index.
        index: u32,
        /// MTU before the change.
        previous: u32,
    },
    /// The MAC was changed. Undo: restore the previous one.
    Mac {
        /// Link index.
        index: u32,
        /// MAC before the change.
        previous: [u8; 6],
    },
    /// The link was brought up. Undo: bring it down.
    LinkUp {
        /// Link index.
        index: u32,
    },
    /// An address was added. Undo: remove it.
    Address {
        /// Link index.
        index: u32,
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        prefix_len: u8,
    },
    /// A route was added. Undo: delete it.
    Route {
        /// Destination network.
        dest: IpAddr,
        /// Destination prefix length.
        prefix_len: u8,
        /// Gateway, if any.
        via: Option<IpAddr>,
        /// Output interface index.
        oif: u32,
    },
    /// The link was enslaved to a bridge. Undo: release it.
    Enslaved {
        /// Link index.
        index: u32,
        /// Bridge name, for messages.
        bridge: String,
    },
}

impl Change {
    fn undo(&self, nl: &mut Netlink) -> Result<(), NetlinkError> {
        match self {
            Change::Created { index, .. } => nl.delete_link(*index),
            Change::Mtu { index, previous } => match nl.set_mtu(*index, *previous) {
                Err(e) if e.errno() == Some(libc_errno::ENODEV) => Ok(()),
                r => r,
            },
            Change::Mac { index, previous } => match nl.set_mac(*index, *previous) {
                Err(e) if e.errno() == Some(libc_errno::ENODEV) => Ok(()),
                r => r,
            },
            Change::LinkUp { index } => nl.set_down(*index),
            Change::Address {
                index,
                addr,
                prefix_len,
            } => nl.del_address(*index, *addr, *prefix_len),
            Change::Route {
                dest,
                prefix_len,
                via,
                oif,
            } => nl.del_route(*dest, *prefix_len, *via, *oif),
            Change::Enslaved { index, .. } => nl.release(*index),
        }
    }
}

/// Everything one `link up` changed, in order. See the module docs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    done: Vec<Change>,
}

impl Changes {
    /// An empty record.
    pub fn new() -> Self {
        Changes::default()
    }

    /// Records a change right after it succeeded.
    pub fn record(&mut self, change: Change) {
        self.done.push(change);
    }

    /// The recorded changes, oldest first.
    pub fn as_slice(&self) -> &[Change] {
        &self.done
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Reverts every recorded change, newest first. Never stops early and
    /// never panics: every failure is collected and returned (empty = all
    /// reverted). Things already gone count as reverted.
    pub fn undo(mut self, nl: &mut Netlink) -> Vec<NetlinkError> {
        let mut errors = Vec::new();
        while let Some(change) = self.done.pop() {
            if let Err(e) = change.undo(nl) {
                errors.push(e);
            }
        }
        errors
    }
}
