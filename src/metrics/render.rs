//! Rendering a status as metrics: an OpenMetrics exposition built with the
//! `prometheus-client` crate ([`render`]), and its rewrite into the
//! Prometheus text format 0.0.4 ([`to_prometheus_text`]).
//!
//! The link-wide counters are rendered from the counter table
//! ([`crate::control::counters`]), which names each one's metric, label and
//! help text; this file adds the per-peer series, the gauges and the build
//! info. Pure: a status and a time in, text out.

use std::borrow::Cow;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{self, Registry, Unit};

use crate::control::counters::{COUNTERS, CounterFamily, Metric};
use crate::control::{CounterStatus, PeerStatus, Status};

/// The peer states of SPEC §6; each gets a `tapbridge_peer_state` series.
const PEER_STATES: [&str; 3] = ["connecting", "up", "down"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    peer: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

type PeerField = fn(&PeerStatus) -> u64;

/// Per-peer counters: name (before the unit and `_total`), help, unit, value.
const PEER_COUNTERS: [(&str, &str, Option<Unit>, PeerField); 6] = [
    (
        "peer_tx_frames",
        "Ethernet frames sent to the peer",
        None,
        |p| p.tx_frames,
    ),
    (
        "peer_rx_frames",
        "Ethernet frames received from the peer",
        None,
        |p| p.rx_frames,
    ),
    (
        "peer_tx",
        "Ethernet frame bytes sent to the peer",
        Some(Unit::Bytes),
        |p| p.tx_bytes,
    ),
    (
        "peer_rx",
        "Ethernet frame bytes received from the peer",
        Some(Unit::Bytes),
        |p| p.rx_bytes,
    ),
    (
        "peer_handshakes",
        "Completed handshakes with the peer, rekeys included",
        None,
        |p| p.handshakes,
    ),
    (
        "peer_endpoint_changes",
        "Times an authenticated packet from a new address moved the peer's endpoint",
        None,
        |p| p.endpoint_changes,
    ),
];

fn register(
    reg: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    m: impl registry::Metric,
) {
    match unit {
        Some(u) => reg.register_with_unit(name, help, u, m),
        None => reg.register(name, help, m),
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn gauge(v: u64) -> Gauge {
    let g = Gauge::<i64>::default();
    g.set(gauge_value(v));
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    c
}

/// The label set of a shared counter family's series: one label.
type FamilyLabel = [(&'static str, &'static str); 1];

/// The link-wide counters, as the counter table says: the shared families
/// first, then the counters with a family of their own.
fn register_counters(reg: &mut Registry, c: &CounterStatus) {
    for family in CounterFamily::ALL {
        let series = Family::<FamilyLabel, Counter>::default();
        for entry in COUNTERS {
            if let Metric::Series(f, value) = entry.metric
                && f == family
            {
                series
                    .get_or_create(&[(family.label(), value)])
                    .inc_by((entry.get)(c));
            }
        }
        reg.register(family.name(), family.help(), series);
    }
    for entry in COUNTERS {
        if let Metric::Own(name, help) = entry.metric {
            reg.register(name, help, counter((entry.get)(c)));
        }
    }
}

/// Renders a status snapshot, taken at `now_unix` (wall clock, UNIX
/// seconds; timestamps are derived from the status' ages), as an
/// OpenMetrics text exposition (ending in `# EOF`). Called once per scrape;
/// allocation here is fine. docs/operations.md, "Monitoring", lists every family.
pub fn render(status: &Status, now_unix: u64) -> Result<String, std::fmt::Error> {
    let link = (Cow::Borrowed("link"), Cow::Owned(status.name.clone()));
    let mut reg = Registry::with_prefix_and_labels("tapbridge", std::iter::once(link));
    let peer = |p: &PeerStatus| PeerLabels {
        peer: p.name.clone(),
    };

    reg.register(
        "build",
        "The daemon's version",
        Info::new(VersionLabels {
            version: status.version.clone(),
        }),
    );
    for (name, help, unit, get) in PEER_COUNTERS {
        let family = Family::<PeerLabels, Counter>::default();
        for p in &status.peers {
            family.get_or_create(&peer(p)).inc_by(get(p));
        }
        register(&mut reg, name, help, unit, family);
    }
    let states = Family::<StateLabels, Gauge>::default();
    for p in &status.peers {
        // One series per state; one more if the daemon reports a state this
        // build does not know, so it is never hidden.
        let known = PEER_STATES.contains(&p.state.as_str());
        let extra = (!known).then_some(p.state.as_str());
        for s in PEER_STATES.into_iter().chain(extra) {
            let labels = StateLabels {
                peer: p.name.clone(),
                state: s.to_string(),
            };
            states.get_or_create(&labels).set(i64::from(p.state == s));
        }
    }
    register(
        &mut reg,
        "peer_state",
        "The peer's tunnel state: 1 for the current one",
        None,
        states,
    );
    let last = Family::<PeerLabels, Gauge>::default();
    for p in &status.peers {
        if let Some(age) = p.last_handshake_secs {
            last.get_or_create(&peer(p))
                .set(gauge_value(now_unix.saturating_sub(age)));
        }
    }
    register(
        &mut reg,
        "peer_last_handshake_timestamp",
        "When the last handshake with the peer completed, UNIX time (absent before the first)",
        Some(Unit::Seconds),
        last,
    );
    let mtu = Family::<PeerLabels, Gauge>::default();
    for p in &status.peers {
        mtu.get_or_create(&peer(p)).set(i64::from(p.path_mtu));
    }
    register(
        &mut reg,
        "peer_path_mtu",
        "The largest outer IP packet sent to the peer",
        Some(Unit::Bytes),
        mtu,
    );
    let macs = Family::<PeerLabels, Gauge>::default();
    for p in &status.peers {
        macs.get_or_create(&peer(p)).set(gauge_value(p.macs));
    }
    register(
        &mut reg,
        "peer_macs",
        "Source MACs learned behind the peer that are live in the MAC table",
        None,
        macs,
    );

    register_counters(&mut reg, &status.counters);

    reg.register(
        "dhcp_leases",
        "Unexpired DHCP leases, reservations included",
        gauge(status.leases.len() as u64),
    );
    if let Some(pool) = status.dhcp {
        reg.register(
            "dhcp_pool_addresses",
            "Addresses the DHCP pool can hand out",
            gauge(pool.pool_size),
        );
        reg.register(
            "dhcp_pool_addresses_in_use",
            "Pool addresses leased, offered or quarantined",
            gauge(pool.pool_in_use),
        );
    }
    reg.register(
        "role_active",
        "1 while this box forwards (always without [ha]), 0 on the standby box of a pair",
        gauge(u64::from(status.role == crate::role::Role::Active)),
    );
    if let Some(p) = &status.partner {
        reg.register(
            "partner_up",
            "1 while the HA partner channel hears the other box, 0 otherwise",
            gauge(u64::from(p.state == "up")),
        );
        reg.register(
            "partner_leases_synced",
            "DHCP leases held in sync with the HA partner",
            gauge(p.leases_synced),
        );
    }
    reg.register_with_unit(
        "rekey_after",
        "Session lifetime before a rekey (tunnel.rekey_after)",
        Unit::Seconds,
        gauge(status.rekey_after_secs),
    );
    reg.register_with_unit(
        "start_timestamp",
        "When the link came up, UNIX time",
        Unit::Seconds,
        gauge(now_unix.saturating_sub(status.uptime_secs)),
    );

    let mut out = String::with_capacity(8192);
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

/// Rewrites an OpenMetrics exposition from [`render`] into the Prometheus
/// text format 0.0.4, for clients that do not ask for OpenMetrics (curl,
/// `promtool check metrics`): counter families are named with their
/// `_total`, info families become gauges named `_info`, and the `# UNIT`
/// and `# EOF` lines go. Samples are the same in both formats.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    use std::collections::HashMap;
    let mut rename: HashMap<&str, (String, &str)> = HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            let to = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                other => (name.to_string(), other),
            };
            rename.insert(name, to);
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let (to, kind) = rename
                    .get(name)
                    .map(|(n, k)| (n.as_str(), *k))
                    .unwrap_or((name, text));
                let text = if prefix == "# TYPE " { kind } else { text };
                out.push_str(prefix);
                out.push_str(to);
                out.push(' ');
                out.push_str(text);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}
