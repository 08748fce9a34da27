//! The lease journal's format (pure): one line per [`LeaseChange`], so the
//! shell can make a batch of changes durable with one append and one
//! `fdatasync` instead of rewriting the whole lease file
//! ([`super::store`] does the I/O).
//!
//! A line is a JSON object: `{"client":"01:02:00:00:00:aa:01","mac":"02:00:00:00:aa:01",
//! "ip":"198.19.0.10","expires":1700000000,"renewed":true}` records the
//! client's lease from now on (the fields mean what they mean in the lease
//! file, see [`super::file`]); `{"client":"01:02:00:00:00:aa:01","removed":true}`
//! says its record is gone. Replaying the lines in order over the lease
//! file the journal started from gives the records as they were after the
//! last line. A last line without its newline is a write a crash cut short:
//! it was never reported durable, so it is skipped.

use std::io::Write;
use std::net::Ipv4Addr;

use serde::Deserialize;

use super::{FormatError, Lease, LeaseChange, LeaseDb, hex_key, parse_hex_key};
use crate::mac::MacAddr;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    client: String,
    mac: Option<String>,
    ip: Option<Ipv4Addr>,
    expires: Option<u64>,
    renewed: Option<bool>,
    removed: Option<bool>,
}

/// Append `change` to `out` as one journal line (with its newline).
pub fn encode(change: &LeaseChange, out: &mut Vec<u8>) {
    let client = hex_key(&change.key);
    // Writing to a Vec cannot fail.
    let _ = match change.lease {
        Some(l) => writeln!(
            out,
            r#"{{"client":"{client}","mac":"{}","ip":"{}","expires":{},"renewed":{}}}"#,
            l.mac, l.ip, l.expires, l.renewed
        ),
        None => writeln!(out, r#"{{"client":"{client}","removed":true}}"#),
    };
}

/// Parse one line (without its newline).
pub fn decode(line: &[u8]) -> Result<LeaseChange, FormatError> {
    let l: Line = serde_json::from_slice(line).map_err(FormatError::Json)?;
    let key = parse_hex_key(&l.client).ok_or_else(|| FormatError::ClientId(l.client.clone()))?;
    let lease = match (l.removed, l.mac, l.ip, l.expires, l.renewed) {
        (Some(true), None, None, None, None) => None,
        (None, Some(mac), Some(ip), Some(expires), Some(renewed)) => Some(Lease {
            ip,
            expires,
            mac: mac
                .parse::<MacAddr>()
                .map_err(|_| FormatError::Mac(mac.clone()))?,
            renewed,
        }),
        _ => return Err(FormatError::Incomplete),
    };
    Ok(LeaseChange { key, lease })
}

/// Apply the journal `bytes` to `db`, line by line. Returns how many
/// changes were applied. A complete line that does not parse is an error
/// naming its number (`db` then holds the lines before it); an unfinished
/// last line is skipped.
pub fn replay(db: &mut LeaseDb, bytes: &[u8]) -> Result<usize, FormatError> {
    let mut applied = 0;
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => &bytes[..end],
        None => return Ok(0),
    };
    for (n, line) in complete.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        decode(line)
            .map_err(|e| FormatError::Line {
                line: n + 1,
                error: Box::new(e),
            })?
            .apply(db);
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests;
