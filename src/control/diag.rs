//! `bridge-ctl diag`: what a link's daemon knows of each peer, and the
//! likely cause of what is wrong in one sentence, from the same [`Status`]
//! that `status --json` prints. Pure: no I/O, no clock (the caller passes
//! the wall-clock time, for "since 10:04:31").
//!
//! The causes are only as sure as what the daemon saw: a peer that never
//! answers may be down, blocked, or hold another key or name; the refusing
//! side's counters (`rx_unknown_key`, a peer's `last_refusal`) narrow it
//! down when the other site's initiations reach this one.

use std::fmt::Write as _;

use super::human::{count, duration};
use super::{PeerStatus, RefusalStatus, Status};

/// How many unanswered initiations make "no answer" the likely cause (the
/// tunnel's log line appears at the same count).
const NO_ANSWER_AFTER: u64 = crate::tunnel::NO_ANSWER_AFTER as u64;

/// The report for link `s`, one `\n`-ended line each: the link, then per
/// peer what is known and the likely cause, then the link's refusals that
/// concern no peer. `now_unix` (seconds since the epoch) dates the
/// "since" times, in UTC.
pub fn report(s: &Status, now_unix: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "link {}: pid {}, up {}, listening on {}",
        s.name,
        s.pid,
        duration(s.uptime_secs),
        s.listen
    );
    for p in &s.peers {
        peer(&mut out, s, p, now_unix);
    }
    let c = &s.counters;
    let _ = writeln!(out, "link-wide:");
    let _ = writeln!(
        out,
        "  initiations refused: {} with a key this site does not have (rx_unknown_key), {} \
         with a name that is no [[peer]] of their key (rx_unknown_peer), {} of an older \
         protocol (rx_old_version)",
        count(c.rx_unknown_key),
        count(c.rx_unknown_peer),
        count(c.rx_old_version)
    );
    let _ = writeln!(
        out,
        "  send errors: {} datagrams the kernel refused (udp_send_errors), {} messages for \
         TCP peers dropped (tcp_dropped)",
        count(c.udp_send_errors),
        count(c.tcp_dropped)
    );
    out
}

/// One peer's lines.
fn peer(out: &mut String, s: &Status, p: &PeerStatus, now_unix: u64) {
    let ago = |t: Option<u64>| {
        t.map(|t| format!("{} ago", duration(t)))
            .unwrap_or_else(|| "never".into())
    };
    let via = if p.transport.is_empty() {
        "udp"
    } else {
        &p.transport
    };
    let _ = writeln!(
        out,
        "peer {}: {}, endpoint {}, {via}, path MTU {}",
        p.name,
        p.state,
        p.endpoint.as_deref().unwrap_or("unknown"),
        if p.path_mtu == 0 {
            "-".to_owned()
        } else {
            p.path_mtu.to_string()
        }
    );
    let _ = writeln!(
        out,
        "  last handshake: {}; last attempt: {}; last answer: {}",
        ago(p.last_handshake_secs),
        ago(p.last_attempt_secs),
        ago(p.last_answer_secs)
    );
    if p.unanswered_handshakes > 0 {
        let _ = writeln!(
            out,
            "  unanswered handshakes: {}{}",
            count(p.unanswered_handshakes),
            since(p.unanswered_secs, now_unix)
        );
    }
    let _ = writeln!(
        out,
        "  refused handshakes: {}{}",
        count(p.refused_handshakes),
        p.last_refusal
            .as_ref()
            .map(|r| format!(" (the last {}: {})", ago(Some(r.secs)), refusal(r)))
            .unwrap_or_default()
    );
    if let Some(e) = &p.last_send_error {
        let _ = writeln!(
            out,
            "  last send error: {} ago, to {}: {}",
            duration(e.secs),
            e.to,
            e.error
        );
    }
    let _ = writeln!(out, "  likely cause: {}", cause(s, p, now_unix));
}

/// ` since 10:04:31 UTC (3m 10s)` for something `secs` ago.
fn since(secs: Option<u64>, now_unix: u64) -> String {
    match secs {
        Some(secs) => {
            let t = now_unix.saturating_sub(secs) % 86_400;
            format!(
                " since {:02}:{:02}:{:02} UTC ({})",
                t / 3600,
                t / 60 % 60,
                t % 60,
                duration(secs)
            )
        }
        None => String::new(),
    }
}

/// A refusal in words.
fn refusal(r: &RefusalStatus) -> String {
    match r.reason.as_str() {
        "unknown_peer" => format!(
            "from {} under this peer's key, naming itself \"{}\"",
            r.from,
            r.name.as_deref().unwrap_or("?")
        ),
        "replayed" => format!("a replayed initiation from {}", r.from),
        "rate_limited" => format!("over its handshake budget, from {}", r.from),
        other => format!("{other}, from {}", r.from),
    }
}

/// The likely cause of `p`'s state, in one sentence.
fn cause(s: &Status, p: &PeerStatus, now_unix: u64) -> String {
    let proto = if p.transport == "tcp" { "TCP" } else { "UDP" };
    let port = p
        .endpoint
        .as_deref()
        .or(p.endpoints.first().map(String::as_str))
        .and_then(|e| e.rsplit(':').next())
        .unwrap_or("the tunnel port");
    // A site that uses this peer's key and gives another name: the name is
    // wrong on one side, whatever else.
    if let Some(r) = p
        .last_refusal
        .as_ref()
        .filter(|r| r.reason == "unknown_peer" && p.last_answer_secs.is_none_or(|a| a > r.secs))
    {
        let name = r.name.as_deref().unwrap_or("?");
        return format!(
            "{} names itself \"{name}\" with this peer's key, and this site calls it \"{}\": \
             a [[peer]] name must be the other site's link name, so one of the two names is \
             wrong",
            r.from, p.name
        );
    }
    if p.state == "up" {
        let last = p
            .last_handshake_secs
            .map(|t| format!(", last handshake {} ago", duration(t)))
            .unwrap_or_default();
        return match p.unanswered_handshakes {
            n if n >= NO_ANSWER_AFTER => format!(
                "up{last}, but its last {n} rekey handshakes went unanswered{}: if it does not \
                 answer soon it goes down",
                since(p.unanswered_secs, now_unix)
            ),
            _ => format!("up{last}"),
        };
    }
    let unknown_key = s.counters.rx_unknown_key;
    let keys = if unknown_key > 0 {
        format!(
            "; this site refused {} initiations with a key it does not have: if they are this \
             peer's, the two sites' keys differ or it calls this site by another name than \
             \"{}\"",
            count(unknown_key),
            s.name
        )
    } else {
        String::new()
    };
    let sends = if s.counters.udp_send_errors > 0 {
        format!(
            "; the kernel refused {} datagrams (udp_send_errors): check the route to the \
             endpoint",
            count(s.counters.udp_send_errors)
        )
    } else {
        String::new()
    };
    // The kernel refused to send to it since the last answer: this
    // gateway cannot reach it, whatever the other site does.
    if let Some(e) = p
        .last_send_error
        .as_ref()
        .filter(|e| p.last_answer_secs.is_none_or(|a| a > e.secs))
    {
        return format!(
            "this gateway cannot send to {}: the kernel refused {} ago ({}): check its route \
             and firewall towards that address",
            e.to,
            duration(e.secs),
            e.error
        );
    }
    if p.last_attempt_secs.is_none() {
        if p.endpoints.is_empty() && p.endpoint.is_none() {
            return format!(
                "it has no endpoint here and waits to be contacted: the other site must reach \
                 this one at {} ({proto} {}){keys}",
                s.listen,
                s.listen.rsplit(':').next().unwrap_or("?")
            );
        }
        return format!("no handshake sent yet (its endpoint may not be resolved yet){keys}");
    }
    let n = p.unanswered_handshakes;
    if n >= NO_ANSWER_AFTER {
        return format!(
            "no answer to {} handshakes{}: the peer is down, the key or name is wrong, or \
             {proto} {port} is blocked{keys}{sends}",
            count(n),
            since(p.unanswered_secs, now_unix)
                .split(" (")
                .next()
                .unwrap_or_default()
        );
    }
    format!(
        "{} ({} handshake{} sent, none answered yet): wait a few seconds and ask again{sends}",
        p.state,
        count(n),
        if n == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fixtures;

    /// 2026-12-07 10:07:41 UTC.
    const NOW: u64 = 1_796_638_061;

    fn status_with(p: PeerStatus) -> Status {
        let mut s = fixtures::status();
        s.peers = vec![p];
        s.counters = Default::default();
        s
    }

    fn cause_of(s: &Status) -> String {
        cause(s, &s.peers[0], NOW)
    }

    #[test]
    fn an_up_peer_is_up_with_its_last_handshake() {
        let mut p = fixtures::peer("b", "up", Some(40), 0);
        p.last_answer_secs = Some(1);
        assert_eq!(cause_of(&status_with(p)), "up, last handshake 40s ago");
    }

    #[test]
    fn unanswered_handshakes_say_since_when_and_what_to_check() {
        let mut p = fixtures::peer("b", "connecting", None, 0);
        p.last_attempt_secs = Some(2);
        p.unanswered_handshakes = 12;
        p.unanswered_secs = Some(190);
        let s = status_with(p);
        assert_eq!(
            cause_of(&s),
            "no answer to 12 handshakes since 10:04:31 UTC: the peer is down, the key or name \
             is wrong, or UDP 51901 is blocked"
        );
        let r = report(&s, NOW);
        assert!(
            r.contains("  unanswered handshakes: 12 since 10:04:31 UTC (3m 10s)\n"),
            "{r}"
        );
        assert!(
            r.contains("last attempt: 2s ago; last answer: never"),
            "{r}"
        );
    }

    #[test]
    fn initiations_with_an_unknown_key_are_named_as_a_possible_cause() {
        let mut p = fixtures::peer("b", "connecting", None, 0);
        p.last_attempt_secs = Some(2);
        p.unanswered_handshakes = 5;
        p.unanswered_secs = Some(15);
        let mut s = status_with(p);
        s.counters.rx_unknown_key = 3;
        let c = cause_of(&s);
        assert!(
            c.ends_with(
                "; this site refused 3 initiations with a key it does not have: if they are \
                 this peer's, the two sites' keys differ or it calls this site by another name \
                 than \"site-a\""
            ),
            "{c}"
        );
    }

    #[test]
    fn a_refusal_under_the_peers_key_blames_the_names() {
        let mut p = fixtures::peer("b", "connecting", None, 0);
        p.refused_handshakes = 4;
        p.last_refusal = Some(RefusalStatus {
            reason: "unknown_peer".into(),
            from: "198.18.0.2:51901".into(),
            secs: 3,
            name: Some("bee".into()),
        });
        let s = status_with(p);
        assert_eq!(
            cause_of(&s),
            "198.18.0.2:51901 names itself \"bee\" with this peer's key, and this site calls it \
             \"b\": a [[peer]] name must be the other site's link name, so one of the two names \
             is wrong"
        );
        let r = report(&s, NOW);
        assert!(
            r.contains(
                "  refused handshakes: 4 (the last 3s ago: from 198.18.0.2:51901 under this \
                 peer's key, naming itself \"bee\")\n"
            ),
            "{r}"
        );
    }

    #[test]
    fn a_send_error_since_the_last_answer_is_the_cause() {
        let mut p = fixtures::peer("b", "connecting", None, 0);
        p.last_attempt_secs = Some(1);
        p.unanswered_handshakes = 7;
        p.last_send_error = Some(crate::control::SendErrorStatus {
            error: "No route to host (os error 113)".into(),
            to: "198.18.0.2:51901".into(),
            secs: 1,
        });
        let s = status_with(p);
        assert_eq!(
            cause_of(&s),
            "this gateway cannot send to 198.18.0.2:51901: the kernel refused 1s ago (No route \
             to host (os error 113)): check its route and firewall towards that address"
        );
        assert!(report(&s, NOW).contains(
            "  last send error: 1s ago, to 198.18.0.2:51901: No route to host (os error 113)\n"
        ));
    }

    #[test]
    fn a_peer_without_endpoint_waits_to_be_contacted() {
        let mut p = fixtures::peer("b", "connecting", None, 0);
        p.endpoint = None;
        p.endpoints = Vec::new();
        assert_eq!(
            cause_of(&status_with(p)),
            "it has no endpoint here and waits to be contacted: the other site must reach this \
             one at 0.0.0.0:51901 (UDP 51901)"
        );
    }

    #[test]
    fn a_few_unanswered_handshakes_are_not_yet_a_failure() {
        let mut p = fixtures::peer("b", "connecting", None, 0);
        p.last_attempt_secs = Some(1);
        p.unanswered_handshakes = 2;
        assert_eq!(
            cause_of(&status_with(p)),
            "connecting (2 handshakes sent, none answered yet): wait a few seconds and ask again"
        );
    }

    #[test]
    fn the_report_ends_with_the_link_wide_refusals_and_send_errors() {
        let mut s = status_with(fixtures::peer("b", "up", Some(1), 0));
        s.counters.rx_unknown_key = 1234;
        s.counters.udp_send_errors = 2;
        let r = report(&s, NOW);
        assert!(r.starts_with("link site-a: pid 42, up 1m 17s, listening on 0.0.0.0:51901\n"));
        assert!(
            r.contains("1,234 with a key this site does not have"),
            "{r}"
        );
        assert!(
            r.contains("send errors: 2 datagrams the kernel refused"),
            "{r}"
        );
    }
}
