use super::disk::{load_at, read_lease_file, write_lease_file_atomic};
use super::*;
use crate::leases::Lease;
use crate::mac::MacAddr;
use crate::responder::Responder;
use crate::test_dir::TempDir;
use std::net::Ipv4Addr;

fn change(n: u32, expires: u64) -> LeaseChange {
    let b = n.to_be_bytes();
    LeaseChange {
        key: vec![1, 2, 0, b[0], b[1], b[2], b[3]].into(),
        lease: Some(Lease {
            ip: Ipv4Addr::new(198, 18, b[2], b[3]),
            expires,
            mac: MacAddr([2, 0, b[0], b[1], b[2], b[3]]),
            renewed: true,
        }),
    }
}

fn waker() -> Arc<EventFd> {
    Arc::new(
        EventFd::from_value_and_flags(0, nix::sys::eventfd::EfdFlags::EFD_NONBLOCK)
            .expect("eventfd"),
    )
}

/// Drive the store the way the worker does, without a responder:
/// stage changes for a "reply", commit, and wait for the release.
fn submit(store: &mut LeaseStore, changes: Vec<LeaseChange>, reply: &[u8]) {
    let inner = store.inner.as_mut().expect("open");
    inner.staged.extend(changes);
    let mut buf = Box::new([0; HELD_FRAME]);
    buf[..reply.len()].copy_from_slice(reply);
    inner
        .held
        .queue
        .push_back((inner.submitted + 1, reply.len(), buf));
    store.commit(&mut Vec::new());
}

fn wait_sent(store: &mut LeaseStore, path: &Path) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store
        .inner
        .as_ref()
        .is_some_and(|i| !i.held.queue.is_empty())
    {
        store.send_durable(|f| {
            // The moment a reply goes out, its lease must be readable.
            let (db, aside, warn) = load_at(path, 0);
            assert!(aside.is_none() && warn.is_empty(), "{warn:?}");
            let n = u32::from_be_bytes(f[..4].try_into().expect("4 bytes"));
            assert_eq!(
                db.get(&change(n, 0).key).map(|l| l.ip),
                change(n, 0).lease.map(|l| l.ip)
            );
            sent.push(f.to_vec());
            Ok(f.len())
        });
        assert!(Instant::now() < deadline, "never durable");
        std::thread::sleep(Duration::from_millis(1));
    }
    sent
}

#[test]
fn small_tables_rewrite_the_lease_file_before_the_reply_goes_out() {
    let dir = TempDir::new("store-small");
    let path = dir.0.join("site.leases");
    let mut store = LeaseStore::open(Some(&path), LeaseDb::default(), waker()).expect("open");
    for n in 0..20u32 {
        submit(&mut store, vec![change(n, 1000)], &n.to_be_bytes());
        assert_eq!(wait_sent(&mut store, &path).len(), 1);
        // The lease file alone holds it: no journal while small.
        let db = read_lease_file(&path).expect("valid");
        assert_eq!(db.len(), n as usize + 1);
        assert!(journals(&path).is_empty());
    }
    store.close();
}

#[test]
fn large_tables_journal_compact_and_read_back() {
    let dir = TempDir::new("store-large");
    let path = dir.0.join("site.leases");
    let mut db = LeaseDb::default();
    for n in 0..(SMALL_TABLE as u32 + 10) {
        change(n, 500).apply(&mut db);
    }
    let mut store = LeaseStore::open(Some(&path), db.clone(), waker()).expect("open");
    let mut want = db;
    // Enough changes for two compactions (each line ~120 bytes).
    let mut n = 0u32;
    for round in 0..20u64 {
        let batch: Vec<LeaseChange> = (0..3600)
            .map(|_| {
                n += 1;
                change(n % 5000, 1000 + round)
            })
            .collect();
        for c in &batch {
            c.apply(&mut want);
        }
        let reply = (n % 5000).to_be_bytes();
        submit(&mut store, batch, &reply);
        if round % 5 == 0 {
            wait_sent(&mut store, &path);
        }
    }
    wait_sent(&mut store, &path);
    // A compaction removed the first journal generation.
    let deadline = Instant::now() + Duration::from_secs(20);
    while journals(&path).first().is_none_or(|(g, _)| *g < 2) {
        assert!(
            Instant::now() < deadline,
            "no compaction: {:?}",
            journals(&path)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // What a restart after `kill -9` now would read.
    let (read, aside, warnings) = load_at(&path, 0);
    assert!(aside.is_none() && warnings.is_empty(), "{warnings:?}");
    assert_eq!(read, want);
    store.close();
    // Closed: everything is in the lease file, no journal is left.
    assert!(journals(&path).is_empty());
    assert_eq!(read_lease_file(&path).expect("valid"), want);
}

#[test]
fn a_crash_between_compaction_steps_loses_nothing() {
    let dir = TempDir::new("store-crash");
    let path = dir.0.join("site.leases");
    // An old snapshot, a journal it does not cover, one it does not
    // either, and a torn last line.
    let mut old = LeaseDb::default();
    change(1, 10).apply(&mut old);
    write_lease_file_atomic(&path, &old.to_bytes()).expect("write");
    let mut j1 = Vec::new();
    journal::encode(&change(1, 20), &mut j1);
    journal::encode(&change(2, 20), &mut j1);
    fs::write(journal_path(&path, 4), &j1).expect("write");
    let mut j2 = Vec::new();
    journal::encode(&change(2, 30), &mut j2);
    journal::encode(&change(3, 30), &mut j2);
    j2.extend_from_slice(b"{\"client\":\"01:02");
    fs::write(journal_path(&path, 5), &j2).expect("write");
    let mut want = LeaseDb::default();
    for c in [change(1, 20), change(2, 30), change(3, 30)] {
        c.apply(&mut want);
    }
    let (db, _, warnings) = load_at(&path, 0);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(db, want);
    // The compaction of generation 4 wrote its snapshot, then crashed
    // before deleting the journal: replaying it again changes nothing.
    let mut through_4 = old.clone();
    for c in [change(1, 20), change(2, 20)] {
        c.apply(&mut through_4);
    }
    write_lease_file_atomic(&path, &through_4.to_bytes()).expect("write");
    assert_eq!(load_at(&path, 0).0, want);
    // A bad line in the middle of a journal: the lines before it count,
    // the journal is set aside, later journals still apply.
    fs::write(journal_path(&path, 4), b"not json\n").expect("write");
    let (db, _, warnings) = load_at(&path, 77);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("journal.4"), "{}", warnings[0]);
    assert!(dir.0.join("site.leases.journal.4.corrupt-77").exists());
    assert_eq!(db, want);
    // Opening compacts it all into the lease file.
    let store = LeaseStore::open(Some(&path), db, waker()).expect("open");
    assert!(journals(&path).is_empty());
    assert_eq!(read_lease_file(&path).expect("valid"), want);
    drop(store);
}

#[test]
fn the_ack_is_held_until_its_lease_is_on_disk() {
    use crate::responder::fixtures::{Client, dhcp_settings, parse_reply};
    use crate::responder::{DhcpSettings, LocalVerdict, REPLY_BUFFER_LEN};
    use smoltcp::wire::DhcpMessageType;
    use std::time::SystemTime;

    let dir = TempDir::new("store-ack");
    let path = dir.0.join("leases");
    let net = |last| Ipv4Addr::new(198, 19, 0, last);
    let settings = DhcpSettings {
        router: None,
        dns: vec![],
        ..dhcp_settings([0x02, 0, 0, 0, 0, 0xfe])
    };
    let mut r = Responder::new(
        None,
        Some(settings.check(&[]).expect("valid")),
        LeaseDb::default(),
    )
    .expect("settings");
    let mut store = LeaseStore::open(Some(&path), r.lease_db(), waker()).expect("open");
    let mac = [0x52, 0x54, 0, 0, 1, 1];
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut buf = [0u8; REPLY_BUFFER_LEN];
    let ask = |r: &mut Responder, c: &Client, buf: &mut [u8]| match r.handle_local(
        &c.frame(),
        now,
        wall,
        buf,
    ) {
        LocalVerdict::Reply(n) => n,
        v => panic!("no reply to {:?}: {v:?}", c.kind),
    };
    let n = ask(
        &mut r,
        &Client::new(DhcpMessageType::Discover, mac),
        &mut buf,
    );
    let offered = parse_reply(&buf[..n]).yiaddr;
    let mut changes = Vec::new();
    r.take_lease_changes(&mut changes);
    assert!(
        !store.hold_reply(&mut changes, &buf[..n]),
        "an OFFER goes out at once"
    );
    let mut request = Client::new(DhcpMessageType::Request, mac);
    request.server_id = Some(net(254));
    request.requested = Some(offered);
    let n = ask(&mut r, &request, &mut buf);
    assert_eq!(parse_reply(&buf[..n]).message_type, DhcpMessageType::Ack);
    r.take_lease_changes(&mut changes);
    assert!(store.hold_reply(&mut changes, &buf[..n]), "the ACK waits");
    assert!(changes.is_empty(), "the store took the changes");
    assert_eq!(store.send_durable(|_| panic!("not committed yet")), 0);
    r.take_lease_changes(&mut changes);
    store.commit(&mut changes);
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent == 0 {
        store.send_durable(|frame| {
            // The moment the ACK goes out, the lease must be on disk.
            let (db, _, _) = load_at(&path, 0);
            let lease = db
                .get_mac(&MacAddr(mac))
                .expect("the ACKed lease is on disk");
            assert_eq!(lease.ip, offered);
            assert_eq!(frame, &buf[..n]);
            sent += 1;
            Ok(frame.len())
        });
        assert!(Instant::now() < deadline, "never durable");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn without_a_lease_file_nothing_is_held() {
    let mut store = LeaseStore::open(None, LeaseDb::default(), waker()).expect("open");
    store.commit(&mut Vec::new());
    assert_eq!(store.send_durable(|_| panic!("nothing held")), 0);
    assert!(store.path().is_none());
}
