use std::net::Ipv4Addr;

use super::*;

const M1: MacAddr = MacAddr([2, 0, 0, 0, 0xaa, 1]);
const M2: MacAddr = MacAddr([2, 0, 0, 0, 0xaa, 2]);
const T0: u64 = 1_700_000_000;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, last)
}

#[test]
fn load_rejects_garbage_and_resolves_duplicates() {
    assert!(LeaseDb::load(b"").expect("empty ok").is_empty());
    assert!(LeaseDb::load(b"{").is_err());
    assert!(LeaseDb::load(br#"{"version":3,"leases":[]}"#).is_err());
    let bad_id = br#"{"version":2,"leases":[{"client":"1:2","mac":"02:00:00:00:aa:01",
        "ip":"198.19.0.100","expires":5,"renewed":false}]}"#;
    assert!(LeaseDb::load(bad_id).is_err());
    assert!(
        LeaseDb::load(br#"{"version":1,"leases":[{"mac":"zz","ip":"1.2.3.4","expires":1}]}"#)
            .is_err()
    );
    let dup = br#"{"version":1,"leases":[
        {"mac":"02:00:00:00:aa:01","ip":"198.19.0.100","expires":5},
        {"mac":"02:00:00:00:aa:02","ip":"198.19.0.100","expires":9},
        {"mac":"02:00:00:00:aa:02","ip":"198.19.0.101","expires":7}]}"#;
    let db = LeaseDb::load(dup).expect("valid");
    assert_eq!(db.len(), 1);
    assert_eq!(db.owner(ip(100)), Some(M2));
}

/// A file exactly as version 1 wrote it: its records are keyed by MAC,
/// count as renewed, and are written back as version 2.
#[test]
fn reads_version_1_files() {
    let v1 = br#"{
  "version": 1,
  "leases": [
{
  "mac": "02:00:00:00:aa:01",
  "ip": "198.19.0.100",
  "expires": 1700003600
}
  ]
}
"#;
    let db = LeaseDb::load(v1).expect("version 1 reads");
    let want = Lease {
        ip: ip(100),
        expires: T0 + 3600,
        mac: M1,
        renewed: true,
    };
    assert_eq!(db.get(&[1, 2, 0, 0, 0, 0xaa, 1]), Some(want));
    assert_eq!(LeaseDb::load(&db.to_bytes()).expect("v2 reads"), db);
}
