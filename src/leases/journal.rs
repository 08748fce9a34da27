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

use super::{Lease, LeaseChange, LeaseDb, hex_key, parse_hex_key};
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
pub fn decode(line: &[u8]) -> Result<LeaseChange, String> {
    let l: Line = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let key = parse_hex_key(&l.client)
        .ok_or_else(|| format!("invalid client identifier {:?}", l.client))?;
    let lease = match (l.removed, l.mac, l.ip, l.expires, l.renewed) {
        (Some(true), None, None, None, None) => None,
        (None, Some(mac), Some(ip), Some(expires), Some(renewed)) => Some(Lease {
            ip,
            expires,
            mac: mac
                .parse::<MacAddr>()
                .map_err(|_| format!("invalid MAC address {mac:?}"))?,
            renewed,
        }),
        _ => return Err("a record needs either mac, ip, expires and renewed, or removed".into()),
    };
    Ok(LeaseChange { key, lease })
}

/// Apply the journal `bytes` to `db`, line by line. Returns how many
/// changes were applied. A complete line that does not parse is an error
/// naming its number (`db` then holds the lines before it); an unfinished
/// last line is skipped.
pub fn replay(db: &mut LeaseDb, bytes: &[u8]) -> Result<usize, String> {
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
            .map_err(|e| format!("line {}: {e}", n + 1))?
            .apply(db);
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(last: u8, expires: u64) -> Lease {
        Lease {
            ip: Ipv4Addr::new(198, 19, 0, last),
            expires,
            mac: MacAddr([2, 0, 0, 0, 0xaa, last]),
            renewed: last % 2 == 0,
        }
    }

    #[test]
    fn lines_round_trip_and_replay_in_order() {
        let duid: Box<[u8]> = vec![0xff, 0, 0, 0, 1, 0, 2].into();
        let mac_key: Box<[u8]> = vec![1, 2, 0, 0, 0, 0xaa, 7].into();
        let changes = [
            LeaseChange {
                key: duid.clone(),
                lease: Some(lease(10, 100)),
            },
            LeaseChange {
                key: mac_key.clone(),
                lease: Some(lease(11, 200)),
            },
            // Takes .10 over: the DUID client's record goes.
            LeaseChange {
                key: mac_key.clone(),
                lease: Some(lease(10, 300)),
            },
            LeaseChange {
                key: duid.clone(),
                lease: Some(lease(12, 400)),
            },
            LeaseChange {
                key: duid.clone(),
                lease: None,
            },
        ];
        let mut bytes = Vec::new();
        let mut want = LeaseDb::default();
        for c in &changes {
            encode(c, &mut bytes);
            c.apply(&mut want);
            let line = bytes.rsplit(|&b| b == b'\n').nth(1).expect("a line");
            assert_eq!(&decode(line).expect("parses"), c);
        }
        let mut db = LeaseDb::default();
        assert_eq!(replay(&mut db, &bytes), Ok(5));
        assert_eq!(db, want);
        assert_eq!(db.len(), 1);
        assert_eq!(db.get(&mac_key), Some(lease(10, 300)));
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert!(
            text.starts_with(r#"{"client":"ff:00:00:00:01:00:02","mac":"02:00:00:00:aa:0a","ip":"198.19.0.10","expires":100,"renewed":true}"#),
            "{text}"
        );
        // Replaying again over the result changes nothing (a journal the
        // snapshot already covers).
        assert_eq!(replay(&mut db, &bytes), Ok(5));
        assert_eq!(db, want);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_bad_line_is_an_error() {
        let mut bytes = Vec::new();
        let c = LeaseChange {
            key: vec![1, 2, 3].into(),
            lease: Some(lease(20, 5)),
        };
        encode(&c, &mut bytes);
        let whole = bytes.len();
        encode(&c, &mut bytes);
        let mut db = LeaseDb::default();
        assert_eq!(replay(&mut db, &bytes[..whole + 10]), Ok(1));
        assert_eq!(replay(&mut db, b""), Ok(0));
        assert_eq!(replay(&mut db, b"{\"client\""), Ok(0));
        let err = replay(&mut db, b"\n{\"client\":\"zz\",\"removed\":true}\n").expect_err("bad");
        assert!(err.starts_with("line 2:"), "{err}");
        for bad in [
            &br#"{"client":"01:02","removed":false}"#[..],
            br#"{"client":"01:02","mac":"02:00:00:00:00:01","ip":"198.19.0.1","expires":1}"#,
            br#"{"client":"01:02","removed":true,"ip":"198.19.0.1"}"#,
            br#"{"client":"01:02","removed":true,"extra":1}"#,
            b"\xff\x00",
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
