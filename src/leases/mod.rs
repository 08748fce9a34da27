//! DHCP leases in one place: the records, their formats on disk, and the
//! store that makes them durable. Which address a client gets is the DHCP
//! server's business ([`crate::responder::dhcp::alloc`]); it keeps what it
//! granted in a [`LeaseDb`] and hands every change out as a [`LeaseChange`],
//! and from there on the lease is this module's.
//!
//! Pure (no files, no threads, no clock):
//! - this module: the records ([`Lease`], [`LeaseDb`], [`LeaseChange`]);
//! - [`file`](mod@file): the lease file's format ([`LeaseDb::load`], [`LeaseDb::to_bytes`]);
//! - [`journal`]: the journal's format, one line per [`LeaseChange`].
//!
//! I/O, the only part with files and threads:
//! - [`store`]: the persister thread behind [`LeaseStore`] (group commit,
//!   replies held until their lease is on disk, compaction);
//! - [`store::disk`]: the files themselves ([`load`] at start-up, atomic
//!   replacement, journals, setting aside what cannot be read).
//!
//! What it promises:
//! - **One client per address**: a [`LeaseDb`] never records an address for
//!   two clients, nor two addresses for one client, whatever it is loaded from.
//! - **Atomic writes**: the lease file is only ever replaced whole (temp
//!   file, fsync, rename, fsync of the directory), so after a crash it holds
//!   the old or the new content, never a mix.
//! - **Journal + compaction, nothing lost**: under load, changes are appended
//!   to a journal beside the file and folded back into it later; a reply that
//!   depends on a change (an ACK) goes out only once the change is on disk
//!   (SPEC §5, RFC 2131 §3.1), and a crash at any step of a compaction, or a
//!   `kill -9`, loses no record that was on disk. (A write that fails is
//!   logged and the replies still go out: see [`store`].)
//! - **A bad file never keeps a link down**: a lease file or journal that
//!   cannot be read is moved aside (`.corrupt-<unix time>`) and logged, and
//!   the link starts with what could be read.
//!
//! A client is named by its client identifier (option 61) when it sends one,
//! else by its hardware address (the key `01 ‖ chaddr`, see [`mac_key`],
//! which is also what most clients send as option 61, so both spellings of
//! an Ethernet client are the same client). Times are wall-clock UNIX
//! seconds, so a lease means the same after a restart.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::mac::MacAddr;

pub mod file;
pub mod journal;
pub mod store;

pub use store::LeaseStore;
pub use store::disk::{LeaseFileError, LoadError, load, write_lease_file_atomic};

/// Why bytes are not a valid lease file or journal line. The JSON parser's
/// complaint is the `source` of [`FormatError::Json`].
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Not JSON, or JSON of the wrong shape (a field missing or unknown).
    #[error("malformed record")]
    Json(#[source] serde_json::Error),
    /// A client identifier that is not hex bytes separated by colons.
    #[error("invalid client identifier {0:?}")]
    ClientId(String),
    /// A MAC address that does not parse.
    #[error("invalid MAC address {0:?}")]
    Mac(String),
    /// A version this build does not read.
    #[error("unsupported lease file version {0} (expected 1 or {latest})", latest = file::FILE_VERSION)]
    Version(u32),
    /// A journal line that is neither a lease nor a removal.
    #[error("a record needs either mac, ip, expires and renewed, or removed")]
    Incomplete,
    /// A journal line that does not parse, by its number (from 1).
    #[error("line {line}")]
    Line {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        #[source]
        error: Box<FormatError>,
    },
}

/// Longest client key (option 61 carries at most 255 bytes).
pub const MAX_KEY_LEN: usize = 255;

/// The key of a client that sent no client identifier: `01 ‖ chaddr`
/// (hardware type Ethernet, as RFC 2132 §9.14 suggests clients spell it).
pub fn mac_key(mac: &MacAddr) -> [u8; 7] {
    let mut k = [1u8; 7];
    k[1..].copy_from_slice(&mac.0);
    k
}

/// A recorded lease: the client (hardware address `mac`) held `ip` until
/// `expires` (UNIX seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The leased address.
    pub ip: Ipv4Addr,
    /// Expiry, UNIX seconds (wall clock, so it means the same after a restart).
    pub expires: u64,
    /// The client's hardware address (chaddr) when it was last granted.
    pub mac: MacAddr,
    /// The client has renewed at least once: it gets the full lease time.
    pub renewed: bool,
}

/// The persisted lease table: at most one lease per client and one client
/// per address.
///
/// Build it empty with [`LeaseDb::default`] or from a file's bytes with
/// [`LeaseDb::load`]; hand it to the responder, which owns it from then on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseDb {
    // Hashed, not ordered: a lookup in a 65k-lease table is one hash
    // instead of ~16 key comparisons. SipHash with per-process keys:
    // clients choose their keys. `to_bytes` sorts.
    by_key: HashMap<Box<[u8]>, Lease>,
    by_ip: HashMap<Ipv4Addr, Box<[u8]>>,
}

pub(crate) fn hex_key(key: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(key.len() * 3);
    for (i, b) in key.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

pub(crate) fn parse_hex_key(s: &str) -> Option<Box<[u8]>> {
    let key: Option<Vec<u8>> = s
        .split(':')
        .map(|b| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect();
    key.filter(|k| (2..=MAX_KEY_LEN).contains(&k.len()))
        .map(Vec::into_boxed_slice)
}
impl LeaseDb {
    /// An empty table with room for `n` leases before it grows.
    pub fn with_capacity(n: usize) -> LeaseDb {
        LeaseDb {
            by_key: HashMap::with_capacity(n),
            by_ip: HashMap::with_capacity(n),
        }
    }

    /// How many leases fit before the table grows (and is rehashed).
    pub fn capacity(&self) -> usize {
        self.by_key.capacity().min(self.by_ip.capacity())
    }

    /// The lease recorded for the client `key`, expired or not.
    pub fn get(&self, key: &[u8]) -> Option<Lease> {
        self.by_key.get(key).copied()
    }

    /// The lease recorded for a client keyed by its hardware address.
    pub fn get_mac(&self, mac: &MacAddr) -> Option<Lease> {
        self.get(&mac_key(mac))
    }

    /// The key of the client recorded for `ip`, expired or not.
    pub fn owner_key(&self, ip: Ipv4Addr) -> Option<&[u8]> {
        self.by_ip.get(&ip).map(|k| &**k)
    }

    /// The hardware address of the client recorded for `ip`, expired or not.
    pub fn owner(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.owner_key(ip)
            .and_then(|k| self.by_key.get(k))
            .map(|l| l.mac)
    }

    /// Number of recorded leases (expired ones included).
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Iterate over all records, expired ones included, in no set order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Lease)> + '_ {
        self.by_key.iter().map(|(k, l)| (&**k, *l))
    }

    /// Record `lease` for the client `key`, dropping the client's previous
    /// record and any other client's record for the address. Callers decide
    /// whether that is allowed.
    pub fn insert(&mut self, key: &[u8], lease: Lease) {
        // A renewal or an extension: the same client keeps the same address.
        if let Some(l) = self.by_key.get_mut(key)
            && l.ip == lease.ip
        {
            *l = lease;
            return;
        }
        self.remove(key);
        if let Some(other) = self.by_ip.remove(&lease.ip) {
            self.by_key.remove(&other);
        }
        let key: Box<[u8]> = key.into();
        self.by_ip.insert(lease.ip, key.clone());
        self.by_key.insert(key, lease);
    }

    /// Forget the client's record entirely.
    pub fn remove(&mut self, key: &[u8]) -> Option<Lease> {
        let old = self.by_key.remove(key)?;
        self.by_ip.remove(&old.ip);
        Some(old)
    }

    /// Appends to `out` the changes that turn `self` into `to`: a removal
    /// for each client `to` has no record of, then each record of `to` that
    /// `self` lacks or holds differently. (A store opened on an older copy
    /// of the records catches up with them this way.)
    pub fn changes_to(&self, to: &LeaseDb, out: &mut Vec<LeaseChange>) {
        for key in self.by_key.keys().filter(|k| !to.by_key.contains_key(*k)) {
            out.push(LeaseChange {
                key: key.clone(),
                lease: None,
            });
        }
        for (key, lease) in &to.by_key {
            if self.by_key.get(key) != Some(lease) {
                out.push(LeaseChange {
                    key: key.clone(),
                    lease: Some(*lease),
                });
            }
        }
    }
}

/// One change of the lease records, in the order it happened: what the
/// lease store journals (see [`store`]).
/// Applying a run of changes with [`LeaseChange::apply`] to the records as
/// they were before it gives the records as they are after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseChange {
    /// The client the change is about.
    pub key: Box<[u8]>,
    /// Its record from now on (this also ends any other client's record
    /// for that address), or `None`: the record is gone.
    pub lease: Option<Lease>,
}

impl LeaseChange {
    /// Apply the change to `db`.
    pub fn apply(&self, db: &mut LeaseDb) {
        match self.lease {
            Some(l) => db.insert(&self.key, l),
            None => {
                db.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests;
