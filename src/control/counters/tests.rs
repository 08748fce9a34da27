//! The counter table against the status JSON and the human line; the
//! metrics side is checked in `metrics/tests.rs`, where the renderer is.

use super::*;

/// A status whose counters all differ: the `i`-th entry is `1000 + i`.
pub(crate) fn distinct() -> CounterStatus {
    let json: serde_json::Map<String, serde_json::Value> = COUNTERS
        .iter()
        .zip(1000u64..)
        .map(|(c, v)| (c.key.to_string(), v.into()))
        .collect();
    serde_json::from_value(json.into()).expect("the table's keys are the struct's")
}

#[test]
fn every_entry_reads_its_own_key() {
    let c = distinct();
    for (entry, want) in COUNTERS.iter().zip(1000u64..) {
        assert_eq!((entry.get)(&c), want, "{}", entry.key);
    }
}

#[test]
fn json_keys_are_the_table_in_order() {
    let want: Vec<String> = COUNTERS
        .iter()
        .zip(1000u64..)
        .map(|(c, v)| format!("\"{}\":{v}", c.key))
        .collect();
    assert_eq!(
        serde_json::to_string(&distinct()).expect("json"),
        format!("{{{}}}", want.join(","))
    );
}

#[test]
fn missing_keys_read_as_zero_and_unknown_ones_are_ignored() {
    let c: CounterStatus =
        serde_json::from_str(r#"{"rx_replayed":3,"future_counter":9}"#).expect("json");
    assert_eq!(
        c,
        CounterStatus {
            rx_replayed: 3,
            ..CounterStatus::default()
        }
    );
}

#[test]
fn human_line_is_the_shown_entries_by_group() {
    let c = CounterStatus {
        rx_auth_failed: 1,
        rx_replayed: 2,
        rx_malformed: 3,
        arp_replies: 4,
        dhcp_replies: 5,
        fragmented: 6,
        reassembled: 7,
        tx_dropped: 8,
        ..CounterStatus::default()
    };
    // What `bridge-ctl status` has always printed.
    assert_eq!(
        c.summary(),
        "dropped: auth 1 replay 2 malformed 3   local answers: arp 4 dhcp 5   \
         fragmented 6 reassembled 7"
    );
}

#[test]
fn every_shown_entry_is_in_the_human_line_and_no_hidden_one() {
    let c = distinct();
    let line = c.summary();
    for entry in COUNTERS {
        // Values are 1000..: no one is a part of another.
        let value = (entry.get)(&c).to_string();
        match entry.human {
            Human::Shown(heading, label) => {
                let at = line
                    .find(&format!("{label} {value}"))
                    .unwrap_or_else(|| panic!("{} missing from {line:?}", entry.key));
                assert!(
                    heading.is_empty() || line[..at].contains(&format!("{heading}:")),
                    "{} not under {heading:?} in {line:?}",
                    entry.key
                );
            }
            Human::Hidden => assert!(
                !line.contains(&value),
                "{} is hidden but in {line:?}",
                entry.key
            ),
        }
    }
}

#[test]
fn collect_takes_each_counter_from_its_source() {
    let mut s = Sources::default();
    s.tunnel.rx_malformed = 2;
    s.io.rx_bad_vnet_hdr = 3;
    s.tunnel.rx_replayed = 5;
    s.responder.dhcp_probes = 7;
    s.guard.loop_dropped = 11;
    s.io.tcp_refused = 13;
    let c = CounterStatus::collect(&s);
    assert_eq!(
        c,
        CounterStatus {
            rx_malformed: 5,
            rx_replayed: 5,
            dhcp_probes: 7,
            loop_dropped: 11,
            tcp_refused: 13,
            ..CounterStatus::default()
        }
    );
}

#[test]
fn metric_series_are_unique_and_described() {
    let mut seen = std::collections::HashSet::new();
    for c in COUNTERS {
        let series = match c.metric {
            Metric::Own(name, help) => {
                assert!(!help.is_empty() && !help.ends_with('.'), "{}", c.key);
                assert!(
                    CounterFamily::ALL.iter().all(|f| f.name() != name),
                    "{}: {name} is a shared family",
                    c.key
                );
                name.to_string()
            }
            Metric::Series(family, value) => format!("{}{{{value}}}", family.name()),
            Metric::NotExported => continue,
        };
        assert!(seen.insert(series.clone()), "{} repeats {series}", c.key);
    }
    for family in CounterFamily::ALL {
        assert!(
            COUNTERS
                .iter()
                .any(|c| matches!(c.metric, Metric::Series(f, _) if f == family)),
            "{family:?} has no series"
        );
    }
}
