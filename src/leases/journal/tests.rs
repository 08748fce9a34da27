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
    assert_eq!(replay(&mut db, &bytes).expect("replays"), 5);
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
    assert_eq!(replay(&mut db, &bytes).expect("replays"), 5);
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
    assert_eq!(replay(&mut db, &bytes[..whole + 10]).expect("replays"), 1);
    assert_eq!(replay(&mut db, b"").expect("replays"), 0);
    assert_eq!(replay(&mut db, b"{\"client\"").expect("replays"), 0);
    let err = replay(&mut db, b"\n{\"client\":\"zz\",\"removed\":true}\n").expect_err("bad");
    let text = crate::error::Chain(&err).to_string();
    assert_eq!(text, r#"line 2: invalid client identifier "zz""#);
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
