//! The undo journal of a `link up`: every change made to the system, in
//! order, with what is needed to revert it. [`Changes::undo`] reverts them
//! newest first, best effort, never stopping early and never panicking.

use std::net::IpAddr;

use super::{Netlink, NetlinkError, libc_errno};
use crate::mac::MacAddr;

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
        previous: MacAddr,
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
