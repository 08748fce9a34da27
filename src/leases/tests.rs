use std::net::Ipv4Addr;

use super::{Lease, LeaseChange, LeaseDb, mac_key};
use crate::mac::MacAddr;

fn lease(host: u8, ip: u8) -> (Vec<u8>, Lease) {
    let mac = MacAddr([2, 0, 0, 0, 0, host]);
    let lease = Lease {
        ip: Ipv4Addr::new(198, 18, 0, ip),
        expires: 1_000 + u64::from(host),
        mac,
        renewed: host % 2 == 0,
    };
    (mac_key(&mac).to_vec(), lease)
}

fn db(records: &[(u8, u8)]) -> LeaseDb {
    let mut db = LeaseDb::default();
    for &(host, ip) in records {
        let (key, l) = lease(host, ip);
        db.insert(&key, l);
    }
    db
}

#[test]
fn changes_to_turns_one_table_into_the_other() {
    // Kept, removed, added, moved to another address, two clients swapping
    // addresses, and an address passing from a removed client to a new one.
    let from = db(&[(1, 10), (2, 20), (3, 30), (4, 40), (5, 50), (6, 60)]);
    let to = db(&[(1, 10), (3, 31), (4, 50), (5, 40), (7, 60), (8, 80)]);
    let mut changes = Vec::new();
    from.changes_to(&to, &mut changes);
    let mut caught_up = from.clone();
    for c in &changes {
        c.apply(&mut caught_up);
    }
    assert_eq!(caught_up, to);
    // Only what differs: host 1 is the same in both.
    assert!(
        !changes
            .iter()
            .any(|c| c.key == lease(1, 10).0.into_boxed_slice())
    );
    let removals: Vec<&LeaseChange> = changes.iter().filter(|c| c.lease.is_none()).collect();
    assert_eq!(removals.len(), 2, "hosts 2 and 6: {changes:?}");
    let mut none = Vec::new();
    to.changes_to(&to, &mut none);
    assert!(none.is_empty());
}
