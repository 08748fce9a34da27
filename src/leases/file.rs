//! The lease file's format (pure): [`LeaseDb::load`] and
//! [`LeaseDb::to_bytes`] parse and produce the file's bytes; reading and
//! writing the file itself is the store's job ([`super::store::disk`]).
//!
//! JSON, versioned. Version 2, written:
//! `{"version":2,"leases":[{"client":"01:02:00:00:00:aa:01","mac":"02:00:00:00:aa:01",
//! "ip":"198.19.0.10","expires":1700000000,"renewed":true}]}` where `client`
//! is the key in hex, `expires` is UNIX seconds and `renewed` says the client
//! has renewed once (so it gets the full lease time, see
//! [`SHORT_LEASE_SECS`](crate::responder::dhcp::alloc::SHORT_LEASE_SECS)).
//! Version 1, still read: `{"version":1,"leases":[{"mac":..,"ip":..,"expires":..}]}`;
//! its records are keyed by MAC and count as renewed.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{FormatError, Lease, LeaseDb, hex_key, mac_key, parse_hex_key};
use crate::mac::MacAddr;

/// Version written into the lease file.
pub(super) const FILE_VERSION: u32 = 2;

#[derive(Deserialize)]
struct VersionRepr {
    version: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    #[allow(dead_code)]
    version: u32,
    leases: Vec<RecordV1>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordV1 {
    mac: String,
    ip: Ipv4Addr,
    expires: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV2 {
    version: u32,
    leases: Vec<RecordV2>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordV2 {
    client: String,
    mac: String,
    ip: Ipv4Addr,
    expires: u64,
    renewed: bool,
}
impl LeaseDb {
    /// Parse the bytes of a lease file (version 1 or 2). Empty input is an
    /// empty database.
    ///
    /// If the file names one address or one client twice, the lease that
    /// expires last wins, so a damaged file can never make two clients share
    /// an address.
    pub fn load(bytes: &[u8]) -> Result<LeaseDb, FormatError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(LeaseDb::default());
        }
        let head: VersionRepr = serde_json::from_slice(bytes).map_err(FormatError::Json)?;
        let parse_mac = |m: &str| {
            m.parse::<MacAddr>()
                .map_err(|_| FormatError::Mac(m.to_owned()))
        };
        let mut records: Vec<(Box<[u8]>, Lease)> = Vec::new();
        match head.version {
            1 => {
                let file: FileV1 = serde_json::from_slice(bytes).map_err(FormatError::Json)?;
                for r in file.leases {
                    let mac = parse_mac(&r.mac)?;
                    let lease = Lease {
                        ip: r.ip,
                        expires: r.expires,
                        mac,
                        renewed: true,
                    };
                    records.push((Box::new(mac_key(&mac)), lease));
                }
            }
            2 => {
                let file: FileV2 = serde_json::from_slice(bytes).map_err(FormatError::Json)?;
                for r in file.leases {
                    let key = parse_hex_key(&r.client)
                        .ok_or_else(|| FormatError::ClientId(r.client.clone()))?;
                    let lease = Lease {
                        ip: r.ip,
                        expires: r.expires,
                        mac: parse_mac(&r.mac)?,
                        renewed: r.renewed,
                    };
                    records.push((key, lease));
                }
            }
            v => return Err(FormatError::Version(v)),
        }
        // Latest expiry first, so the first insert for a client or an IP wins.
        records.sort_by_key(|r| std::cmp::Reverse(r.1.expires));
        let mut db = LeaseDb::default();
        for (key, lease) in records {
            if !db.by_key.contains_key(&key) && !db.by_ip.contains_key(&lease.ip) {
                db.insert(&key, lease);
            }
        }
        Ok(db)
    }

    /// Serialize to the lease file format, version 2 (deterministic: sorted
    /// by client key).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut sorted: Vec<(&Box<[u8]>, &Lease)> = self.by_key.iter().collect();
        sorted.sort_unstable_by_key(|(k, _)| *k);
        let file = FileV2 {
            version: FILE_VERSION,
            leases: sorted
                .into_iter()
                .map(|(key, l)| RecordV2 {
                    client: hex_key(key),
                    mac: l.mac.to_string(),
                    ip: l.ip,
                    expires: l.expires,
                    renewed: l.renewed,
                })
                .collect(),
        };
        let mut out = serde_json::to_vec_pretty(&file).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests;
