//! Guard tests on hand-built frames and a virtual clock.

use super::*;

const HOST: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const BCAST: [u8; 6] = [0xff; 6];

/// An Ethernet frame: `tags` are (TPID, VID) pairs before `ethertype`.
fn eth(dst: [u8; 6], tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&HOST);
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    while f.len() < 60 {
        f.push(0); // Ethernet padding past the IP packet
    }
    f
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
    ip[2..4].copy_from_slice(&(20 + payload.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[198, 18, 0, 1, 255, 255, 255, 255]);
    ip.extend_from_slice(payload);
    ip
}

/// IPv6 with `ext` extension headers (each: next header byte filled in)
/// before an upper layer `proto`.
fn ipv6(ext: &[u8], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut next = proto;
    // Build extension headers back to front: each is 8 bytes, no options.
    for &kind in ext.iter().rev() {
        let mut h = vec![next, 0, 0, 0, 0, 0, 0, 0];
        h.extend_from_slice(&body);
        body = h;
        next = kind;
    }
    body.extend_from_slice(payload);
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(body.len() as u16).to_be_bytes());
    ip.push(next);
    ip.push(255);
    ip.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    ip.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    ip.extend_from_slice(&body);
    ip
}

fn icmpv6(kind: u8) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0, 64, 0, 0x07, 0x08];
    m.extend_from_slice(&[0; 8]);
    m
}

fn dhcpv4_offer() -> Vec<u8> {
    eth(BCAST, &[], 0x0800, &ipv4(17, &udp(67, 68, &[2, 1, 6, 0])))
}

fn router_advertisement() -> Vec<u8> {
    eth(
        [0x33, 0x33, 0, 0, 0, 1],
        &[],
        0x86dd,
        &ipv6(&[], 58, &icmpv6(134)),
    )
}

fn dhcpv6_advertise() -> Vec<u8> {
    eth(
        [0x33, 0x33, 0, 1, 0, 2],
        &[],
        0x86dd,
        &ipv6(&[], 17, &udp(547, 546, &[2, 0, 0, 1])),
    )
}

fn bpdu() -> Vec<u8> {
    // 802.3 length + LLC 42 42 03 + a config BPDU start.
    eth(
        threat::STP_DST,
        &[],
        0x0026,
        &[0x42, 0x42, 0x03, 0, 0, 0, 0],
    )
}

fn config(storm_pps: u32, loop_detect: bool, guards: bool, bpdu: BpduPolicy) -> GuardConfig {
    GuardConfig {
        storm_pps,
        loop_detect,
        dhcp_guard: guards,
        ra_guard: guards,
        bpdu,
    }
}

fn guard(c: GuardConfig, now: Instant) -> Guard {
    Guard::new(&c, [1, 2, 3, 4, 5, 6, 7, 8], now)
}

#[test]
fn classifies_server_messages_tagged_and_untagged() {
    let tags: [&[(u16, u16)]; 4] = [
        &[],
        &[(0x8100, 10)],
        &[(0x88a8, 100), (0x8100, 10)],
        &[(0x9100, 7), (0x8100, 8)],
    ];
    for t in tags {
        let v4 = |s, d, p: &[u8]| eth(BCAST, t, 0x0800, &ipv4(17, &udp(s, d, p)));
        let v6 = |s, d, p: &[u8]| eth(BCAST, t, 0x86dd, &ipv6(&[], 17, &udp(s, d, p)));
        assert_eq!(
            Threat::in_frame(&v4(67, 68, &[2])),
            Threat::Dhcpv4Server,
            "{t:?}"
        );
        assert_eq!(
            Threat::in_frame(&v4(67, 67, &[2])),
            Threat::Dhcpv4Server,
            "relay reply {t:?}"
        );
        assert_eq!(
            Threat::in_frame(&v4(67, 67, &[1])),
            Threat::Other,
            "relayed request {t:?}"
        );
        assert_eq!(
            Threat::in_frame(&v4(68, 67, &[1])),
            Threat::Other,
            "client request {t:?}"
        );
        assert_eq!(Threat::in_frame(&v4(67, 53, &[2])), Threat::Other);
        assert_eq!(
            Threat::in_frame(&v6(547, 546, &[7])),
            Threat::Dhcpv6Server,
            "{t:?}"
        );
        assert_eq!(
            Threat::in_frame(&v6(547, 547, &[13])),
            Threat::Dhcpv6Server,
            "relay-repl {t:?}"
        );
        assert_eq!(
            Threat::in_frame(&v6(547, 547, &[12])),
            Threat::Other,
            "relay-forw {t:?}"
        );
        assert_eq!(
            Threat::in_frame(&v6(546, 547, &[1])),
            Threat::Other,
            "solicit {t:?}"
        );
        // DHCPv4 ports inside IPv6 and DHCPv6 ports inside IPv4 are not DHCP.
        assert_eq!(Threat::in_frame(&v6(67, 68, &[2])), Threat::Other);
        assert_eq!(Threat::in_frame(&v4(547, 546, &[2])), Threat::Other);
        let icmp = |k| eth(BCAST, t, 0x86dd, &ipv6(&[], 58, &icmpv6(k)));
        assert_eq!(
            Threat::in_frame(&icmp(134)),
            Threat::RouterAdvertisement,
            "{t:?}"
        );
        for other in [128, 129, 133, 135, 136, 137] {
            assert_eq!(
                Threat::in_frame(&icmp(other)),
                Threat::Other,
                "type {other} {t:?}"
            );
        }
    }
}

#[test]
fn an_ra_behind_extension_headers_is_found() {
    // Hop-by-hop, destination options, routing: RFC 7113's evasion.
    let f = eth(BCAST, &[], 0x86dd, &ipv6(&[0, 60, 43], 58, &icmpv6(134)));
    assert_eq!(Threat::in_frame(&f), Threat::RouterAdvertisement);
    let f = eth(
        BCAST,
        &[(0x8100, 5)],
        0x86dd,
        &ipv6(&[60, 60], 58, &icmpv6(134)),
    );
    assert_eq!(Threat::in_frame(&f), Threat::RouterAdvertisement);
}

#[test]
fn truncated_and_odd_frames_never_panic() {
    let frames = [
        dhcpv4_offer(),
        router_advertisement(),
        dhcpv6_advertise(),
        bpdu(),
        eth(BCAST, &[], 0x0806, &[0; 28]),
        eth(
            BCAST,
            &[(0x8100, 1), (0x8100, 2), (0x8100, 3), (0x8100, 4)],
            0x0800,
            &[],
        ),
    ];
    let mut g = guard(config(100, true, true, BpduPolicy::Drop), Instant::now());
    let now = Instant::now();
    for f in &frames {
        for len in 0..=f.len() {
            let _ = Threat::in_frame(&f[..len]);
            let _ = g.from_peer(&f[..len], PeerId::new(0), now);
            let _ = g.from_local(&f[..len], now);
        }
    }
    // A truncated IPv6 frame cannot be followed: with the RA guard it is
    // dropped rather than let through unexamined.
    let ra = router_advertisement();
    assert_eq!(
        Threat::in_frame(&ra[..14 + 40 + 2]),
        Threat::Ipv6Undecodable
    );
    assert_eq!(Threat::in_frame(&dhcpv4_offer()[..30]), Threat::Other);
    // Truncated in the upper layer (TCP) rather than in the IPv6 headers:
    // not something an RA hides behind.
    let tcp = eth(BCAST, &[], 0x86dd, &ipv6(&[], 6, &[0; 20]));
    assert_eq!(Threat::in_frame(&tcp), Threat::Other);
    assert_eq!(
        Threat::in_frame(&tcp[..tcp.len() - 1]),
        Threat::Ipv6Undecodable,
        "payload length lies"
    );
    let mut bad_offset = tcp.clone();
    bad_offset[14 + 40 + 12] = 0x20; // TCP data offset 2 (< 5)
    assert_eq!(Threat::in_frame(&bad_offset), Threat::Other);
    // An extension header running past the packet.
    let mut ext = eth(BCAST, &[], 0x86dd, &ipv6(&[0], 58, &icmpv6(134)));
    ext[14 + 40 + 1] = 200; // hop-by-hop length far beyond the payload
    assert_eq!(Threat::in_frame(&ext), Threat::Ipv6Undecodable);
}

#[test]
fn guards_drop_server_messages_from_peers_and_count_them() {
    let now = Instant::now();
    let mut on = guard(config(0, false, true, BpduPolicy::Forward), now);
    let mut off = guard(config(0, false, false, BpduPolicy::Forward), now);
    for f in [dhcpv4_offer(), router_advertisement(), dhcpv6_advertise()] {
        assert_eq!(on.from_peer(&f, PeerId::new(0), now), PeerVerdict::Drop);
        assert_eq!(off.from_peer(&f, PeerId::new(0), now), PeerVerdict::Forward);
        // From the local side the guards do not apply (the local server is
        // the LAN's own business).
        assert_eq!(on.from_local(&f, now), LocalVerdict::Forward);
    }
    let arp = eth(BCAST, &[], 0x0806, &[0; 28]);
    assert_eq!(
        on.from_peer(&arp, PeerId::new(0), now),
        PeerVerdict::Forward
    );
    assert_eq!(on.counters().guard_dropped, 3);
    assert_eq!(off.counters(), GuardCounters::default());

    // Only the DHCPv4 guard.
    let mut dhcp_only = guard(
        GuardConfig {
            ra_guard: false,
            ..config(0, false, true, BpduPolicy::Forward)
        },
        now,
    );
    assert_eq!(
        dhcp_only.from_peer(&dhcpv4_offer(), PeerId::new(0), now),
        PeerVerdict::Drop
    );
    assert_eq!(
        dhcp_only.from_peer(&router_advertisement(), PeerId::new(0), now),
        PeerVerdict::Forward
    );
    assert_eq!(
        dhcp_only.from_peer(&dhcpv6_advertise(), PeerId::new(0), now),
        PeerVerdict::Forward
    );
}

#[test]
fn bpdus_follow_the_policy_both_ways() {
    let now = Instant::now();
    let mut fwd = guard(config(0, false, true, BpduPolicy::Forward), now);
    let mut drop = guard(config(0, false, false, BpduPolicy::Drop), now);
    let pvst = eth(threat::PVST_DST, &[], 0x0032, &[0xaa, 0xaa, 0x03]);
    for f in [bpdu(), pvst] {
        assert_eq!(fwd.from_peer(&f, PeerId::new(0), now), PeerVerdict::Forward);
        assert_eq!(fwd.from_local(&f, now), LocalVerdict::Forward);
        assert_eq!(drop.from_peer(&f, PeerId::new(0), now), PeerVerdict::Drop);
        assert_eq!(drop.from_local(&f, now), LocalVerdict::Drop);
    }
    assert_eq!(drop.counters().guard_dropped, 4);
    assert_eq!(fwd.counters().guard_dropped, 0);
}

#[test]
fn storm_control_passes_the_rate_and_a_bounded_burst() {
    let t0 = Instant::now();
    let pps = 2000;
    let mut g = guard(config(pps, false, false, BpduPolicy::Forward), t0);
    // 50,000 frames per second for 5 s, on a virtual clock.
    let mut passed = 0u64;
    let offered = 250_000u64;
    for i in 0..offered {
        let now = t0 + Duration::from_micros(i * 20);
        if g.allow_flood(now) {
            passed += 1;
        }
    }
    let burst = u64::from(pps / 4);
    let max = 5 * u64::from(pps) + burst;
    assert!(passed <= max, "{passed} > {max}");
    assert!(passed >= 5 * u64::from(pps) - 2, "{passed} too few");
    assert_eq!(g.counters().storm_dropped, offered - passed);

    // After a quiet second the burst is available again, and no more.
    let later = t0 + Duration::from_secs(7);
    let burst_passed = (0..10_000).filter(|_| g.allow_flood(later)).count();
    assert_eq!(burst_passed as u64, burst);
}

#[test]
fn storm_control_off_and_tiny_rates() {
    let t0 = Instant::now();
    let mut off = guard(config(0, false, false, BpduPolicy::Forward), t0);
    assert!((0..100_000).all(|_| off.allow_flood(t0)));
    assert_eq!(off.counters().storm_dropped, 0);
    let mut one = guard(config(1, false, false, BpduPolicy::Forward), t0);
    // The minimum burst of 16, then one per second.
    assert_eq!((0..100).filter(|_| one.allow_flood(t0)).count(), 16);
    let t1 = t0 + Duration::from_millis(999);
    assert!(!one.allow_flood(t1));
    assert!(one.allow_flood(t0 + Duration::from_millis(1000)));
    // A clock that goes backwards refills nothing and does not panic.
    assert!(!one.allow_flood(t0));
}

#[test]
fn reconfigure_swaps_the_settings() {
    let t0 = Instant::now();
    let mut g = guard(config(1, false, false, BpduPolicy::Forward), t0);
    assert_eq!((0..100).filter(|_| g.allow_flood(t0)).count(), 16);
    g.reconfigure(&config(0, false, true, BpduPolicy::Drop), t0);
    assert!(g.allow_flood(t0));
    assert_eq!(
        g.from_peer(&dhcpv4_offer(), PeerId::new(0), t0),
        PeerVerdict::Drop
    );
    assert_eq!(g.from_local(&bpdu(), t0), LocalVerdict::Drop);
    assert_eq!(g.counters().storm_dropped, 84, "counters survive");
    assert_eq!(*g.config(), config(0, false, true, BpduPolicy::Drop));
}

/// Drives the loop detector: a probe every second; `looped(t)` says
/// whether the probe sent at `t` comes back from the LAN side.
fn run_probes(g: &mut Guard, from: Instant, secs: u64, looped: impl Fn(u64) -> bool) {
    for s in 0..secs * 10 {
        let now = from + Duration::from_millis(s * 100);
        if looped(s / 10) {
            // A circulating frame's source shows up on both sides.
            g.mac_moved(now);
        }
        g.handle_timeout(now);
        if g.poll_probe(now) {
            let p = g.probe_for(PeerId::new(0)).to_vec();
            if looped(s / 10) {
                // It went through the tunnel, across the other path and
                // came back through our TAP 5 ms later.
                assert_eq!(
                    g.from_local(&p, now + Duration::from_millis(5)),
                    LocalVerdict::Drop
                );
            }
        }
    }
}

#[test]
fn a_returning_probe_is_a_loop_that_ends_after_the_hold_down() {
    let t0 = Instant::now();
    let mut g = guard(config(0, true, false, BpduPolicy::Forward), t0);
    let arp = eth(BCAST, &[], 0x0806, &[0; 28]);
    let unicast = eth([0x52, 0x54, 0, 0, 0, 9], &[], 0x0800, &ipv4(6, &[0; 20]));
    // A healthy link probes nothing.
    assert_eq!(g.poll_timeout(), None);
    assert!(!g.poll_probe(t0));
    // A MAC moved: the first probe is due at once, well formed and ours.
    g.mac_moved(t0);
    assert_eq!(g.poll_timeout(), Some(t0));
    assert!(g.poll_probe(t0), "first probe is due at once");
    let probe = g.probe_for(PeerId::new(0)).to_vec();
    assert!(is_probe(&probe) && probe.len() == PROBE_LEN);
    assert_eq!(probe[..6], PROBE_DST);
    assert_eq!(probe[6] & 0x03, 0x02, "locally administered unicast source");
    assert!(!g.poll_probe(t0), "one per interval");
    assert_eq!(g.poll_timeout(), Some(t0 + PROBE_INTERVAL));

    // No loop for 5 s: everything passes, and probing stops after the
    // suspect window (no timer left: the worker sleeps).
    run_probes(&mut g, t0, 5, |_| false);
    assert!(!g.looped());
    assert_eq!(g.poll_timeout(), None);
    assert_eq!(g.from_local(&arp, t0), LocalVerdict::Forward);

    // A loop from second 5 to second 15.
    let t5 = t0 + Duration::from_secs(5);
    run_probes(&mut g, t5, 10, |_| true);
    assert!(g.looped());
    assert_eq!(g.counters().loops_detected, 1);
    assert_eq!(
        g.poll_event(),
        Some(LoopEvent::LoopStarted {
            peer: PeerId::new(0),
            hold: LOOP_HOLD
        })
    );
    assert_eq!(g.poll_event(), None);
    let t15 = t0 + Duration::from_secs(15);
    // Nothing but probes crosses meanwhile, either way, unicast included:
    // local frames still reach the switch, which may send them to no peer
    // the loop runs through.
    assert!(g.peer_looped(PeerId::new(0)));
    assert_eq!(g.from_local(&arp, t15), LocalVerdict::Forward);
    assert!(!g.allow_to_peer(PeerId::new(0)));
    assert_eq!(g.from_peer(&arp, PeerId::new(0), t15), PeerVerdict::Drop);
    assert_eq!(
        g.from_peer(&unicast, PeerId::new(0), t15),
        PeerVerdict::Drop
    );
    assert_eq!(g.from_peer(&probe, PeerId::new(0), t15), PeerVerdict::Probe);
    assert_eq!(g.counters().loop_dropped, 3);

    // The other path goes away: forwarding resumes after the hold-down.
    run_probes(&mut g, t15, 10, |_| false);
    assert!(!g.looped());
    match g.poll_event() {
        Some(LoopEvent::LoopEnded { lasted, .. }) => {
            assert!(lasted >= Duration::from_secs(12) && lasted <= Duration::from_secs(14));
        }
        other => panic!("expected the loop's end, got {other:?}"),
    }
    assert_eq!(g.from_peer(&arp, PeerId::new(0), t15), PeerVerdict::Forward);
    assert_eq!(g.counters().loops_detected, 1);
}

/// A hub with three peers, one of whose LANs also reaches ours: only that
/// peer is cut off; the others keep exchanging frames, and the loop through
/// it ends by itself once its probes stop coming back.
#[test]
fn a_loop_through_one_peer_leaves_the_others_alone() {
    let t0 = Instant::now();
    let mut g = guard(config(0, true, false, BpduPolicy::Forward), t0);
    g.set_peer_count(3);
    let arp = eth(BCAST, &[], 0x0806, &[0; 28]);
    let mut t = t0;
    for s in 0..10 {
        g.mac_moved(t);
        g.handle_timeout(t);
        if g.poll_probe(t) {
            for peer in 0..3 {
                let probe = g.probe_for(PeerId::new(peer)).to_vec();
                assert!(is_probe(&probe));
                // Peer 1's LAN is joined to ours for the first 5 s.
                if peer == 1 && s < 5 {
                    g.from_local(&probe, t);
                }
            }
        }
        if s == 0 {
            assert!(g.peer_looped(PeerId::new(1)) && g.looped());
            assert_eq!(
                g.poll_event(),
                Some(LoopEvent::LoopStarted {
                    peer: PeerId::new(1),
                    hold: LOOP_HOLD
                })
            );
        }
        if s < 5 {
            assert!(!g.peer_looped(PeerId::new(0)) && !g.peer_looped(PeerId::new(2)));
            assert!(
                g.allow_to_peer(PeerId::new(0))
                    && g.allow_to_peer(PeerId::new(2))
                    && !g.allow_to_peer(PeerId::new(1))
            );
            assert_eq!(g.from_peer(&arp, PeerId::new(2), t), PeerVerdict::Forward);
            assert_eq!(g.from_peer(&arp, PeerId::new(1), t), PeerVerdict::Drop);
        }
        t += Duration::from_secs(1);
    }
    assert!(!g.looped(), "ended after the hold-down");
    assert!(matches!(
        g.poll_event(),
        Some(LoopEvent::LoopEnded { peer, .. }) if peer == PeerId::new(1)
    ));
    assert!(g.allow_to_peer(PeerId::new(1)));
    assert_eq!(g.counters().loops_detected, 1);
    assert_eq!(g.counters().loop_dropped, 10);
}

/// A probe with our nonce naming a peer we do not have (forged on the LAN)
/// starts nothing; removing a looped peer ends its loop.
#[test]
fn probes_name_only_our_peers_and_a_removed_peer_loops_no_more() {
    let t0 = Instant::now();
    let mut g = guard(config(0, true, false, BpduPolicy::Forward), t0);
    g.set_peer_count(2);
    g.mac_moved(t0);
    assert!(g.poll_probe(t0));
    let beyond = g.probe_for(PeerId::new(2)).to_vec();
    assert_eq!(g.from_local(&beyond, t0), LocalVerdict::Drop);
    assert!(!g.looped());
    let ours = g.probe_for(PeerId::new(1)).to_vec();
    g.from_local(&ours, t0);
    assert!(g.peer_looped(PeerId::new(1)));
    g.forget_peer(PeerId::new(1), t0);
    assert!(!g.looped() && !g.peer_looped(PeerId::new(1)));
    assert!(matches!(
        g.poll_event(),
        Some(LoopEvent::LoopStarted { peer, .. }) if peer == PeerId::new(1)
    ));
    assert!(matches!(
        g.poll_event(),
        Some(LoopEvent::LoopEnded { peer, .. }) if peer == PeerId::new(1)
    ));
}

#[test]
fn detection_and_recovery_times() {
    let t0 = Instant::now();
    let mut g = guard(config(0, true, false, BpduPolicy::Forward), t0);
    run_probes(&mut g, t0, 3, |_| false);
    // The loop forms at 3.05 s; the next probe (at 4 s) returns at once.
    let formed = t0 + Duration::from_millis(3050);
    let mut detected = None;
    let mut ended = None;
    for ms in (3100..20_000).step_by(50) {
        let now = t0 + Duration::from_millis(ms);
        if ms < 10_000 {
            g.mac_moved(now);
        }
        g.handle_timeout(now);
        if g.poll_probe(now) {
            let p = g.probe_for(PeerId::new(0)).to_vec();
            if ms < 10_000 {
                g.from_local(&p, now);
            }
        }
        if g.looped() && detected.is_none() {
            detected = Some(now - formed);
        }
        if detected.is_some() && !g.looped() && ended.is_none() {
            ended = Some(now - (t0 + Duration::from_secs(10)));
        }
    }
    let detected = detected.expect("the loop was detected");
    assert!(detected <= PROBE_INTERVAL, "{detected:?}");
    let ended = ended.expect("the loop ended");
    assert!(ended <= LOOP_HOLD, "{ended:?}");
}

#[test]
fn a_flapping_loop_backs_off() {
    let t0 = Instant::now();
    let mut g = guard(config(0, true, false, BpduPolicy::Forward), t0);
    let mut holds = Vec::new();
    let mut t = t0;
    for _ in 0..6 {
        // Loop for 2 s, then gone until the loop ends; then again.
        run_probes(&mut g, t, 2, |_| true);
        t += Duration::from_secs(2);
        while g.looped() {
            run_probes(&mut g, t, 1, |_| false);
            t += Duration::from_secs(1);
        }
        while let Some(ev) = g.poll_event() {
            if let LoopEvent::LoopStarted { hold, .. } = ev {
                holds.push(hold.as_secs());
            }
        }
    }
    assert_eq!(holds, vec![3, 6, 12, 24, 48, 60]);
    assert_eq!(g.counters().loops_detected, 6);
    // A minute and more of quiet resets the hold-down.
    t += FLAP_WINDOW;
    run_probes(&mut g, t, 1, |_| true);
    assert_eq!(
        g.poll_event(),
        Some(LoopEvent::LoopStarted {
            peer: PeerId::new(0),
            hold: LOOP_HOLD
        })
    );
}

#[test]
fn probes_of_other_sites_are_not_ours_and_sent_back_once() {
    let t0 = Instant::now();
    let mut a = guard(config(0, true, false, BpduPolicy::Forward), t0);
    let mut b = Guard::new(&config(0, true, false, BpduPolicy::Forward), [9; 8], t0);
    b.mac_moved(t0);
    assert!(b.poll_probe(t0), "due");
    let theirs = b.probe_for(PeerId::new(0)).to_vec();
    // Not our loop: sent back, marked, once; a marked one goes nowhere.
    assert_eq!(a.from_local(&theirs, t0), LocalVerdict::Return);
    assert!(!a.looped(), "another site's probe is not our loop");
    let mut marked = theirs.clone();
    mark_returned(&mut marked);
    assert_eq!(a.from_local(&marked, t0), LocalVerdict::Drop);
    assert_eq!(a.from_peer(&marked, PeerId::new(0), t0), PeerVerdict::Drop);
    assert!(!a.looped() && a.poll_event().is_none());
    // With loop detection off a probe-looking frame is an ordinary frame.
    let mut off = guard(config(0, false, false, BpduPolicy::Forward), t0);
    off.mac_moved(t0);
    assert!(!off.watches_moves());
    assert_eq!(off.from_local(&theirs, t0), LocalVerdict::Forward);
    assert_eq!(
        off.from_peer(&theirs, PeerId::new(0), t0),
        PeerVerdict::Forward
    );
    assert!(!off.poll_probe(t0) && off.poll_timeout().is_none());
}

#[test]
fn turning_loop_detection_off_ends_a_loop() {
    let t0 = Instant::now();
    let mut g = guard(config(0, true, false, BpduPolicy::Forward), t0);
    g.mac_moved(t0);
    assert!(g.poll_probe(t0), "due");
    let p = g.probe_for(PeerId::new(0)).to_vec();
    g.from_local(&p, t0);
    assert!(g.looped());
    g.reconfigure(&config(0, false, false, BpduPolicy::Forward), t0);
    assert!(!g.looped());
    assert!(matches!(
        g.poll_event(),
        Some(LoopEvent::LoopStarted { .. })
    ));
    assert!(matches!(g.poll_event(), Some(LoopEvent::LoopEnded { .. })));
}

#[test]
fn a_moved_mac_probes_once_a_second_for_the_window_then_stops() {
    let t0 = Instant::now();
    let mut g = guard(config(0, true, false, BpduPolicy::Forward), t0);
    assert!(g.watches_moves());
    let mut sent = Vec::new();
    let mut t = t0;
    // A host moved once at t0 (a migrated VM), then nothing.
    g.mac_moved(t0);
    while t < t0 + Duration::from_secs(10) {
        // The worker runs the guard's timers when they are due.
        if g.poll_timeout().is_some_and(|d| d <= t) {
            g.handle_timeout(t);
            if g.poll_probe(t) {
                sent.push((t - t0).as_millis());
            }
        }
        t += Duration::from_millis(10);
    }
    assert_eq!(
        sent,
        vec![0, 1000, 2000],
        "one probe a second for the window"
    );
    assert_eq!(g.poll_timeout(), None, "then no timer at all");
    assert!(!g.looped());
    // Many moves in a burst still mean one probe a second.
    let t1 = t0 + Duration::from_secs(20);
    for i in 0..1000 {
        g.mac_moved(t1 + Duration::from_micros(i));
    }
    assert!(g.poll_probe(t1 + Duration::from_millis(1)));
    assert!(!g.poll_probe(t1 + Duration::from_millis(999)));
}

#[test]
fn a_storm_starts_probing_and_leaves_detection_working() {
    // Issue 28: a storm refused by storm control must not leave the loop
    // detector blind. Refusals count as a sign of a loop (probing starts
    // without any MAC move), and a probe that comes back during or after
    // the storm is a loop like any other.
    let t0 = Instant::now();
    let mut g = guard(config(2000, true, false, BpduPolicy::Forward), t0);
    assert_eq!(g.poll_timeout(), None, "idle: no timer");
    let mut dropped = 0;
    // 4 s at 20,000 floods a second.
    for i in 0..80_000u64 {
        if !g.allow_flood(t0 + Duration::from_micros(50 * i)) {
            dropped += 1;
        }
    }
    assert!(
        dropped > 70_000,
        "storm control refused the excess: {dropped}"
    );
    assert_eq!(g.counters().storm_dropped, dropped);
    let storm_end = t0 + Duration::from_secs(4);
    assert!(
        g.poll_timeout().is_some(),
        "the storm made the guard probe (no MAC move needed)"
    );
    // Probing goes on for the window after the last refusal; a loop formed
    // 2 s after the storm is found by the next probe.
    let t = storm_end + Duration::from_secs(2);
    g.handle_timeout(t);
    assert!(g.poll_probe(t), "a probe round is due after the storm");
    let probe = g.probe_for(PeerId::new(0)).to_vec();
    assert_eq!(g.from_local(&probe, t), LocalVerdict::Drop);
    assert!(
        g.peer_looped(PeerId::new(0)),
        "the returning probe is a loop"
    );
    assert_eq!(g.counters().loops_detected, 1);
    assert!(matches!(
        g.poll_event(),
        Some(LoopEvent::LoopStarted { peer, .. }) if peer == PeerId::new(0)
    ));
    // Without storm control nothing is refused and nothing probes.
    let mut quiet = guard(config(0, true, false, BpduPolicy::Forward), t0);
    for i in 0..1000u64 {
        assert!(quiet.allow_flood(t0 + Duration::from_micros(i)));
    }
    assert_eq!(quiet.poll_timeout(), None);
}

proptest::proptest! {
    /// Any bytes, behind an untagged or tagged IPv4/IPv6 header or raw:
    /// classification and verdicts never panic, and a frame the classifier
    /// calls harmless is never dropped by the DHCP/RA guards.
    #[test]
    fn any_frame_is_classified_without_panic(
        tag in proptest::bool::ANY,
        ethertype in proptest::sample::select(vec![0x0800u16, 0x86dd, 0x0806, 0x88b5]),
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
    ) {
        let tags: &[(u16, u16)] = if tag { &[(0x8100, 42)] } else { &[] };
        let frame = eth(BCAST, tags, ethertype, &body);
        let now = Instant::now();
        let mut g = guard(config(10, true, true, BpduPolicy::Drop), now);
        let kind = Threat::in_frame(&frame);
        let verdict = g.from_peer(&frame, PeerId::new(0), now);
        if kind == Threat::Other {
            proptest::prop_assert_eq!(verdict, PeerVerdict::Forward);
        } else {
            proptest::prop_assert_eq!(verdict, PeerVerdict::Drop);
        }
        let _ = g.from_local(&frame, now);
        for len in 0..frame.len() {
            let _ = Threat::in_frame(&frame[..len]);
        }
    }
}

#[test]
fn a_loop_event_is_due_at_once_until_polled() {
    // The worker flushes the MAC tables when it polls the event: that must
    // not wait for the next probe a second later.
    let t0 = Instant::now();
    let mut g = guard(config(0, true, false, BpduPolicy::Forward), t0);
    g.mac_moved(t0);
    assert!(g.poll_probe(t0), "first probe");
    let probe = g.probe_for(PeerId::new(0)).to_vec();
    let back = t0 + Duration::from_millis(5);
    assert_eq!(g.from_local(&probe, back), LocalVerdict::Drop);
    assert!(g.looped());
    assert_eq!(
        g.poll_timeout(),
        Some(back),
        "the start is due when it happened"
    );
    assert_eq!(
        g.poll_event(),
        Some(LoopEvent::LoopStarted {
            peer: PeerId::new(0),
            hold: LOOP_HOLD
        })
    );
    assert!(
        g.poll_timeout().is_some_and(|t| t > back),
        "then only the next probe or the hold-down"
    );

    // The end: due at once too, however far the next probe is.
    let gone = back + LOOP_HOLD;
    g.handle_timeout(gone);
    assert!(!g.looped());
    assert_eq!(g.poll_timeout(), Some(gone));
    assert!(matches!(g.poll_event(), Some(LoopEvent::LoopEnded { .. })));
    assert_ne!(g.poll_timeout(), Some(gone));
}

/// A hub's probe sent to spoke 1 comes back marked from spoke 2: their
/// LANs are joined behind the hub. Relaying between 1 and 2 stops (both
/// ways), every other pair and the spokes' own traffic flow, and the loop
/// ends after the hold-down once the probes stop coming back.
#[test]
fn a_loop_between_two_spokes_cuts_only_their_relay() {
    let t0 = Instant::now();
    let mut g = guard(config(0, true, false, BpduPolicy::Forward), t0);
    g.set_peer_count(3);
    let (p0, p1, p2) = (PeerId::new(0), PeerId::new(1), PeerId::new(2));
    let arp = eth(BCAST, &[], 0x0806, &[0; 28]);
    let mut t = t0;
    for s in 0..10 {
        g.mac_moved(t);
        g.handle_timeout(t);
        if g.poll_probe(t) && s < 5 {
            // Spoke 2 read our probe for spoke 1 from its LAN.
            let mut back = g.probe_for(p1).to_vec();
            mark_returned(&mut back);
            assert_eq!(g.from_peer(&back, p2, t), PeerVerdict::Drop);
        }
        if s == 0 {
            assert_eq!(
                g.poll_event(),
                Some(LoopEvent::PairLoopStarted {
                    a: p1,
                    b: p2,
                    hold: LOOP_HOLD
                })
            );
        }
        if s < 5 {
            assert!(g.looped());
            assert!(!g.allow_relay(p1, p2) && !g.allow_relay(p2, p1));
            assert!(g.allow_relay(p0, p1) && g.allow_relay(p2, p0));
            assert!(g.allow_to_peer(p1) && g.allow_to_peer(p2));
            assert_eq!(g.from_peer(&arp, p1, t), PeerVerdict::Forward);
        }
        t += Duration::from_secs(1);
    }
    assert!(!g.looped(), "ended after the hold-down");
    assert!(matches!(
        g.poll_event(),
        Some(LoopEvent::PairLoopEnded { a, b, .. }) if a == p1 && b == p2
    ));
    assert!(g.allow_relay(p1, p2));
    assert_eq!(g.counters().loops_detected, 1);
    assert_eq!(g.counters().loop_dropped, 10);
}

/// Our probe to a peer comes back marked from that same peer: its LAN is
/// bridged in twice (an HA pair with both boxes active). Reported once a
/// minute, nothing cut. Another site's marked probe, or one naming a peer
/// we do not have, changes nothing.
#[test]
fn a_peer_bridged_in_twice_is_reported_not_cut() {
    let t0 = Instant::now();
    let mut g = guard(config(0, true, false, BpduPolicy::Forward), t0);
    g.set_peer_count(2);
    let p0 = PeerId::new(0);
    let mut t = t0;
    let mut events = 0;
    for _ in 0..90 {
        g.mac_moved(t);
        g.handle_timeout(t);
        if g.poll_probe(t) {
            let mut back = g.probe_for(p0).to_vec();
            mark_returned(&mut back);
            assert_eq!(g.from_peer(&back, p0, t), PeerVerdict::Drop);
        }
        while let Some(e) = g.poll_event() {
            assert_eq!(e, LoopEvent::BridgedTwice { peer: p0 });
            events += 1;
        }
        assert!(!g.looped() && g.allow_to_peer(p0) && g.allow_relay(PeerId::new(1), p0));
        t += Duration::from_secs(1);
    }
    assert_eq!(events, 2, "at 0 s and 60 s");
    assert_eq!(g.counters().loops_detected, 2);
    let mut other = Guard::new(&config(0, true, false, BpduPolicy::Forward), [9; 8], t0);
    other.mac_moved(t0);
    assert!(other.poll_probe(t0));
    let mut theirs = other.probe_for(p0).to_vec();
    mark_returned(&mut theirs);
    assert_eq!(g.from_peer(&theirs, PeerId::new(1), t), PeerVerdict::Drop);
    let mut beyond = g.probe_for(PeerId::new(7)).to_vec();
    mark_returned(&mut beyond);
    assert_eq!(g.from_peer(&beyond, PeerId::new(1), t), PeerVerdict::Drop);
    assert!(g.poll_event().is_none() && !g.looped());
}
