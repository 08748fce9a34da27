#![no_main]
//! Fuzz the partner channel of a high-availability pair
//! (`tapbridge::partner`): a sequence of datagrams to one box, each raw
//! bytes, or a fuzzed payload sealed by the partner (one of two boots of it,
//! so the parser behind the authentication is reached), optionally with a
//! byte flipped after sealing, with the clock moving and the box switching
//! between standby and active. Nothing may panic; `dropped` only grows; what
//! the box is told to apply are records a lease table takes; the bindings
//! and MACs it keeps stay within their bounds; what it sends in return fits
//! a datagram and comes to an end.

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tapbridge::leases::{LeaseDb, MAX_KEY_LEN};
use tapbridge::partner::{MAX_DATAGRAM, MAX_MACS, Partner};
use tapbridge::role::Role;

/// Sealing adds the header (25 bytes) and the tag (16).
const SEALED_EXTRA: usize = 41;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let psk = [0x5a; 32];
    let mut now = Instant::now();
    let mut role = if mode & 1 == 0 {
        Role::Standby
    } else {
        Role::Active
    };
    let mut me = Partner::new(&psk, [1; 16], role, now);
    let mut partner = [
        Partner::new(&psk, [2; 16], Role::Active, now),
        Partner::new(&psk, [3; 16], Role::Active, now),
    ];
    let mut db = LeaseDb::default();
    let mut apply = Vec::new();
    let mut bindings = Vec::new();
    let mut buf = vec![0u8; MAX_DATAGRAM + SEALED_EXTRA];
    let mut dropped = me.dropped;
    while let [ctrl, hi, lo, tail @ ..] = rest {
        let n = (usize::from(*hi) << 8 | usize::from(*lo))
            .min(tail.len())
            .min(MAX_DATAGRAM);
        let (body, next) = tail.split_at(n);
        rest = next;
        now += Duration::from_millis(u64::from(ctrl >> 5) * 700);
        let mut datagram = match ctrl & 3 {
            0 => body.to_vec(),
            k => {
                let len = partner[usize::from(k & 1)].seal_payload(body, &mut buf);
                buf[..len].to_vec()
            }
        };
        let at = usize::from(*lo) % datagram.len().max(1);
        if ctrl & 4 != 0
            && let Some(b) = datagram.get_mut(at)
        {
            *b ^= 0x80;
        }
        me.handle_datagram(&mut datagram, now, &db, &mut apply);
        assert!(me.dropped >= dropped, "dropped went back");
        dropped = me.dropped;
        for c in apply.drain(..) {
            assert!(
                (2..=MAX_KEY_LEN).contains(&c.key.len()),
                "a client key of {} bytes",
                c.key.len()
            );
            c.apply(&mut db);
        }
        me.take_bindings(&mut bindings);
        assert!(bindings.len() <= MAX_MACS, "{} bindings", bindings.len());
        bindings.clear();
        assert!(me.partner_macs(now).len() <= 2 * MAX_MACS);
        if ctrl & 8 != 0 {
            role = if role == Role::Active {
                Role::Standby
            } else {
                Role::Active
            };
            me.set_role(role);
        }
        let mut sent = 0usize;
        while let Some(len) = me.poll_transmit(now, &db, &mut buf[..MAX_DATAGRAM]) {
            assert!(len <= MAX_DATAGRAM);
            sent += 1;
            assert!(sent <= 100_000, "poll_transmit never stops");
        }
    }
});
