#![no_main]
//! Fuzz the guards: a sequence of frames, each raw or a fuzzed body behind a
//! valid Ethernet (optionally 802.1Q-tagged) header with an IPv4 or IPv6
//! ether type, from the local side or a peer, with the clock moving and MAC
//! moves reported. Nothing may panic; the counters only grow. The shared
//! classifier (`wire::ethernet`) sees every frame too: no panic, and its VLAN
//! always agrees with the cheap outer-tag reader the switch uses.

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tapbridge::guard::{BpduPolicy, Guard, GuardConfig};
use tapbridge::peer_id::PeerId;
use tapbridge::wire::ethernet;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let config = GuardConfig {
        storm_pps: u32::from(mode) * 10,
        loop_detect: mode & 1 != 0,
        dhcp_guard: mode & 2 != 0,
        ra_guard: mode & 4 != 0,
        bpdu: if mode & 8 != 0 {
            BpduPolicy::Drop
        } else {
            BpduPolicy::Forward
        },
    };
    let mut now = Instant::now();
    let mut g = Guard::new(&config, [mode; 8], now);
    let mut before = g.counters();
    while let [ctrl, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        // Which of four peers a frame from the tunnel came from.
        let peer = usize::from(*len & 3);
        let (body, next) = tail.split_at(n);
        rest = next;
        let mut frame = vec![0x33, 0x33, 0, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 1];
        if ctrl & 1 != 0 {
            frame.extend_from_slice(&[0x81, 0x00, 0, 42]);
        }
        match ctrl & 6 {
            0 => frame.clear(),
            2 => frame.extend_from_slice(&[0x08, 0x00]),
            4 => frame.extend_from_slice(&[0x86, 0xdd]),
            _ => {}
        }
        frame.extend_from_slice(body);
        assert_eq!(ethernet::classify(&frame).vlan, ethernet::vlan(&frame));
        if ctrl & 8 != 0 {
            let _ = g.from_peer(&frame, PeerId::new(peer), now);
        } else {
            let _ = g.from_local(&frame, now);
            let _ = g.allow_flood(now);
        }
        if ctrl & 16 != 0 {
            g.mac_moved(now);
        }
        if g.poll_probe(now) {
            let p = g.probe_for(PeerId::new(peer)).to_vec();
            if ctrl & 32 != 0 {
                let _ = g.from_local(&p, now);
            }
        }
        g.handle_timeout(now);
        while g.poll_event().is_some() {}
        let c = g.counters();
        assert!(c.storm_dropped >= before.storm_dropped && c.guard_dropped >= before.guard_dropped);
        assert!(c.loops_detected >= before.loops_detected);
        before = c;
        now += Duration::from_millis(u64::from(ctrl >> 6) * 700);
    }
});
