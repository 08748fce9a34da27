//! What the tunnel tells the operator when a peer does not come up, on the
//! virtual clock of `identity_tests`: the caller's unanswered handshakes
//! (reported after five, then at most once a minute, and once more when
//! the peer answers) and the refusing side's reasons (a key it does not
//! have, a name that is not a peer of the key, a forged initiation), each
//! with its own counter.

use std::time::Duration;

use super::identity_tests::{Mesh, addr, link, peer};
use super::*;

/// Every event node `n` has, oldest first.
fn events(m: &mut Mesh, n: usize) -> Vec<Event> {
    std::iter::from_fn(|| m.nodes[n].t.poll_event()).collect()
}

fn no_answers(evs: &[Event]) -> Vec<(u32, std::net::SocketAddr)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::NoAnswer { handshakes, to, .. } => Some((*handshakes, *to)),
            _ => None,
        })
        .collect()
}

fn refusals(evs: &[Event]) -> Vec<HandshakeRefusal> {
    evs.iter()
        .filter_map(|e| match e {
            Event::HandshakeRefused { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

/// Site b calls a hub nobody answers for: one report at the fifth
/// initiation, then at most one a minute however many follow; when the
/// hub appears, one report that it answers, and the count starts over.
#[test]
fn unanswered_handshakes_are_reported_sparingly_and_so_is_the_answer() {
    let mut m = Mesh::new();
    m.add(
        "198.18.0.2:51901",
        link("b", vec![peer("hub", Some("198.18.0.1:51901"), &[2])]),
    );
    let hub = PeerId::new(0);
    // Four initiations (at 0, 1, 3, 7 s and jitter): not yet.
    m.run_for(Duration::from_secs(10));
    assert!(no_answers(&events(&mut m, 0)).is_empty());
    let st = m.nodes[0].t.peer_status(hub).expect("hub");
    assert_eq!(st.unanswered, 4);
    assert!(st.last_attempt.is_some() && st.last_heard.is_none());
    // The fifth (about 15 s): reported once, with where it went.
    m.run_for(Duration::from_secs(10));
    assert_eq!(
        no_answers(&events(&mut m, 0)),
        vec![(5, addr("198.18.0.1:51901"))]
    );
    // Ten minutes of retries every 16 s (~37 initiations): reported at
    // most once a minute, never per initiation.
    let mut reports = Vec::new();
    for _ in 0..600 {
        m.run_for(Duration::from_secs(1));
        for (n, _) in no_answers(&events(&mut m, 0)) {
            reports.push((m.now, n));
        }
    }
    assert!((8..=10).contains(&reports.len()), "{reports:?}");
    for w in reports.windows(2) {
        assert!(w[1].0 - w[0].0 >= NO_ANSWER_EVERY, "{reports:?}");
        assert!(w[1].1 > w[0].1);
    }
    let unanswered = m.nodes[0].t.peer_status(hub).expect("hub").unanswered;
    assert!(unanswered > 30, "{unanswered}");
    // The hub comes up: the next initiation is answered.
    m.add("198.18.0.1:51901", link("hub", vec![peer("b", None, &[2])]));
    m.run_for(Duration::from_secs(20));
    assert_eq!(m.state(0, hub), PeerState::Up);
    let evs = events(&mut m, 0);
    let answered: Vec<&Event> = evs
        .iter()
        .filter(|e| matches!(e, Event::Answered { .. }))
        .collect();
    assert_eq!(answered.len(), 1, "{evs:?}");
    assert!(
        matches!(answered[0], Event::Answered { peer, after } if *peer == hub && *after >= unanswered)
    );
    let st = m.nodes[0].t.peer_status(hub).expect("hub");
    assert_eq!((st.unanswered, st.unanswered_since), (0, None));
    assert!(st.last_heard.is_some());
    // Up, with traffic and rekeys: nothing more to report.
    m.run_for(Duration::from_secs(300));
    let evs = events(&mut m, 0);
    assert!(no_answers(&evs).is_empty(), "{evs:?}");
    assert!(!evs.iter().any(|e| matches!(e, Event::Answered { .. })));
}

/// A peer whose answers stop after it was up (the path died) is reported
/// like one that never answered: after five unanswered initiations.
#[test]
fn a_peer_that_falls_silent_is_reported_after_five_initiations() {
    let mut m = Mesh::new();
    m.add("198.18.0.1:51901", link("hub", vec![peer("b", None, &[2])]));
    m.add(
        "198.18.0.2:51901",
        link("b", vec![peer("hub", Some("198.18.0.1:51901"), &[2])]),
    );
    m.run_for(Duration::from_secs(5));
    assert_eq!(m.state(1, PeerId::new(0)), PeerState::Up);
    events(&mut m, 1);
    // The hub vanishes: its address now belongs to nobody.
    m.nodes.remove(0);
    m.run_for(Duration::from_secs(30 + 15 + 5));
    let evs = events(&mut m, 0);
    assert!(evs.iter().any(|e| matches!(e, Event::PeerDown { .. })));
    assert_eq!(no_answers(&evs).len(), 1, "{evs:?}");
    assert_eq!(no_answers(&evs)[0].0, NO_ANSWER_AFTER);
}

/// b holds another key than the hub has for it: the hub finds no key for
/// the hint (`rx_unknown_key`, within `rx_auth_failed`), never an unknown
/// name; b reports its handshakes unanswered.
#[test]
fn a_wrong_key_is_an_unknown_key_at_the_responder() {
    let mut m = Mesh::new();
    m.add("198.18.0.1:51901", link("hub", vec![peer("b", None, &[2])]));
    m.add(
        "198.18.0.2:51901",
        link("b", vec![peer("hub", Some("198.18.0.1:51901"), &[9])]),
    );
    m.run_for(Duration::from_secs(20));
    let c = m.nodes[0].t.counters();
    assert!(c.rx_unknown_key >= 5, "{c:?}");
    assert_eq!(c.rx_auth_failed, c.rx_unknown_key);
    assert_eq!(c.rx_unknown_peer, 0);
    let r = refusals(&events(&mut m, 0));
    assert!(!r.is_empty() && r.iter().all(|r| *r == HandshakeRefusal::UnknownKey));
    assert_eq!(no_answers(&events(&mut m, 1)).len(), 1);
}

/// The hub's [[peer]] for b is named "bee": b's initiations authenticate
/// under the key, and the hub says b named itself "b" (`rx_unknown_peer`),
/// naming the peer whose key it was. The other way round (b calls the hub
/// "hubx"), the name is in the hint: the hub sees an unknown key.
#[test]
fn a_wrong_peer_name_is_told_apart_where_the_key_proves_it() {
    let mut m = Mesh::new();
    m.add(
        "198.18.0.1:51901",
        link("hub", vec![peer("bee", None, &[2])]),
    );
    m.add(
        "198.18.0.2:51901",
        link("b", vec![peer("hub", Some("198.18.0.1:51901"), &[2])]),
    );
    m.run_for(Duration::from_secs(20));
    let c = m.nodes[0].t.counters();
    assert!(c.rx_unknown_peer >= 5, "{c:?}");
    assert_eq!((c.rx_auth_failed, c.rx_unknown_key), (0, 0));
    let evs = events(&mut m, 0);
    let want = Event::HandshakeRefused {
        from: addr("198.18.0.2:51901"),
        peer: Some(PeerId::new(0)),
        reason: HandshakeRefusal::UnknownPeer {
            name: ClaimedName::new(b"b"),
        },
    };
    assert!(evs.contains(&want), "{evs:?}");

    let mut m = Mesh::new();
    m.add("198.18.0.1:51901", link("hub", vec![peer("b", None, &[2])]));
    m.add(
        "198.18.0.2:51901",
        link("b", vec![peer("hubx", Some("198.18.0.1:51901"), &[2])]),
    );
    m.run_for(Duration::from_secs(20));
    let c = m.nodes[0].t.counters();
    assert!(c.rx_unknown_key >= 5, "{c:?}");
    assert_eq!(c.rx_unknown_peer, 0);
}

/// An initiation with a real hint but a damaged MAC is garbage, not a
/// configuration mistake: `rx_auth_failed` only, reported as such.
#[test]
fn a_known_hint_with_a_bad_mac_is_not_an_unknown_key() {
    let mut m = Mesh::new();
    m.add("198.18.0.1:51901", link("hub", vec![peer("b", None, &[2])]));
    let mut b = Tunnel::new(
        link("b", vec![peer("hub", Some("198.18.0.1:51901"), &[2])]),
        Box::new(super::tests::TestEntropy(5)),
        m.now,
        std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    let mut out = super::tests::Out::default();
    b.handle_timeout(m.now, &mut out);
    let mut init = out.sent[0].1.clone();
    init[crate::wire::tunnel::field::INIT_MAC1.start] ^= 1;
    let reply = m.inject(0, addr("198.18.0.2:51901"), &init);
    assert!(reply.sent.is_empty());
    let c = m.nodes[0].t.counters();
    assert_eq!((c.rx_auth_failed, c.rx_unknown_key), (1, 0));
    assert_eq!(refusals(&events(&mut m, 0)), vec![HandshakeRefusal::BadMac]);
}

/// A claimed name is shown as text, anything unprintable escaped.
#[test]
fn claimed_names_are_escaped_for_the_log() {
    assert_eq!(ClaimedName::new(b"site-b").to_string(), "site-b");
    assert_eq!(
        ClaimedName::new(b"a\"b\n\x1b[31m\\").to_string(),
        "a\\x22b\\x0a\\x1b[31m\\x5c"
    );
    assert_eq!(ClaimedName::new(&[b'x'; 40]).as_bytes().len(), 31);
}
