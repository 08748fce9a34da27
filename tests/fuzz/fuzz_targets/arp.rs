#![no_main]
//! Fuzz the ARP responder and suppression: a sequence of frames, each raw or
//! a fuzzed ARP body behind a valid Ethernet header, from the local side or
//! the tunnel, with the clock moving. Nothing may panic; replies are ARP
//! replies that fit the buffer.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use tapbridge::leases::LeaseDb;
use tapbridge::mac::MacAddr;
use tapbridge::peer_id::PeerId;
use tapbridge::responder::{ArpSettings, LocalVerdict, REPLY_BUFFER_LEN, Responder};

fuzz_target!(|data: &[u8]| {
    let arp = ArpSettings {
        respond: vec![Ipv4Addr::new(198, 19, 0, 254), Ipv4Addr::new(198, 19, 0, 1)],
        mac: MacAddr([2, 0, 0, 0, 0, 0xfe]),
        suppress: true,
        binding_timeout: Duration::from_secs(30),
        suppress_nd: false,
    };
    let mut r = Responder::new(Some(arp), None, LeaseDb::default()).expect("valid settings");
    let mut now = Instant::now();
    let mut reply = [0u8; REPLY_BUFFER_LEN];
    let mut rest = data;
    while let [ctrl, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        let frame = if ctrl & 1 != 0 {
            // Broadcast Ethernet header + ARP for IPv4 over Ethernet + fuzz.
            let mut f = vec![
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0x52,
                0x54,
                0,
                0,
                0,
                *ctrl & 0xfe,
            ];
            f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
            f.extend_from_slice(body);
            f
        } else {
            body.to_vec()
        };
        if ctrl & 2 != 0 {
            r.handle_remote(&frame, PeerId::new(0), now);
        } else if let LocalVerdict::Reply(n) =
            r.handle_local(&frame, now, SystemTime::UNIX_EPOCH, &mut reply)
        {
            assert_eq!(n, 42);
            assert_eq!(&reply[12..14], &[0x08, 0x06]);
            assert_eq!(&reply[20..22], &[0, 2], "an ARP reply");
        }
        now += Duration::from_secs(u64::from(ctrl >> 2));
    }
    assert!(r.arp_bindings(now) <= tapbridge::responder::arp::MAX_BINDINGS);
});
