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
//!
//! Layout: this file is the API ([`Netlink`] and its errors); `build` turns
//! arguments into rtnetlink messages and replies into [`LinkInfo`] and
//! [`RouteEntry`]; `journal` is the undo record ([`Change`], [`Changes`]).

mod build;
mod journal;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::{LinkBridge, LinkUnspec, RouteMessageBuilder};

use crate::mac::MacAddr;
use build::{RouteFmt, address_message, link_info, prefix_ok, route_entry, route_message};
pub use journal::{Change, Changes};

/// Errors of the netlink layer. Each is one sentence naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The tokio runtime driving the connection could not be created.
    #[error("cannot start the netlink runtime")]
    Runtime(#[source] io::Error),
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket")]
    Connect(#[source] io::Error),
    /// The kernel refused a request, or the connection failed.
    #[error("cannot {action}")]
    Request {
        /// What was being done, naming the interface/address/route.
        action: String,
        /// The kernel's (or the connection's) reason.
        #[source]
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
    pub mac: Option<MacAddr>,
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
    pub fn set_mac(&mut self, index: u32, mac: MacAddr) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index)
            .address(mac.0.to_vec())
            .build();
        self.set_link(msg).map_err(|e| {
            let action = format!("set the MAC of {} to {mac}", self.label(index));
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

    /// Forgets every MAC address the Linux bridge learned on its port `index`
    /// (`ip link set dev X type bridge_slave flush`): after a topology
    /// change behind that port, those entries point the wrong way.
    pub fn flush_bridge_port(&mut self, index: u32) -> Result<(), NetlinkError> {
        use rtnetlink::packet_route::link::{
            InfoBridgePort, InfoPortData, InfoPortKind, LinkAttribute, LinkInfo as NlInfo,
        };
        let mut msg = LinkUnspec::new_with_index(index).build();
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlInfo::PortKind(InfoPortKind::Bridge),
            NlInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Flush])),
        ]));
        // RTM_NEWLINK on the existing link: RTM_SETLINK ignores port data
        // (the kernel accepts it and does nothing).
        let req = self.handle.link().set_port(msg);
        self.rt.block_on(req.execute()).map_err(|e| {
            let action = format!("flush the bridge entries of {}", self.label(index));
            self.request_err(action, e)
        })
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
