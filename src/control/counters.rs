//! The link-wide counters, each defined once.
//!
//! One entry of the `counters!` table below says everything about a
//! counter: its key in `status --json` (SPEC §6 `counters`; the field name),
//! where its value comes from (the tunnel's, the responder's, the guards' or
//! the worker's own counts, see [`Sources`]), how the Prometheus endpoint
//! exports it ([`Metric`]) and whether the human `bridge-ctl status` shows it
//! ([`Human`]). From the table come the serializable [`CounterStatus`], its
//! filling ([`CounterStatus::collect`]), the list [`COUNTERS`] that
//! [`crate::metrics`] renders, and the human summary line
//! ([`CounterStatus::summary`]). A new counter is one entry here plus its
//! increment in the core.
//!
//! The keys, metric names, labels and help texts are contracts (SPEC §6,
//! docs/operations.md "Monitoring", `appliance/monitoring/`): never rename one.
//! The order of the entries is the order of the keys in `status --json`.

use serde::{Deserialize, Serialize};

use super::status::IoCounters;
use crate::responder::ResponderCounters;

/// What the counters are made of: the core's counts and the worker's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sources {
    /// The tunnel's (authentication, replay, fragments, handshakes).
    pub tunnel: crate::tunnel::Counters,
    /// The ARP/DHCP/ND responder's (zero without one).
    pub responder: ResponderCounters,
    /// The guards' (storm, DHCP/RA/BPDU, loops).
    pub guard: crate::guard::GuardCounters,
    /// The worker's (TAP and socket errors, reloads, TCP).
    pub io: IoCounters,
}

/// A family of counters shared by several entries, one series each,
/// told apart by a label (`tapbridge_rx_dropped_total{reason="replayed"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterFamily {
    /// Datagrams or frames from the tunnel side that were dropped.
    RxDropped,
    /// Frames or datagrams towards the tunnel that were dropped.
    TxDropped,
    /// DHCP messages the responder did not answer.
    DhcpDropped,
    /// Frames the guards kept out.
    GuardDropped,
    /// Configuration reloads.
    Reloads,
}

impl CounterFamily {
    /// Every family, in the order the metrics endpoint lists them.
    pub const ALL: [CounterFamily; 5] = [
        CounterFamily::RxDropped,
        CounterFamily::TxDropped,
        CounterFamily::DhcpDropped,
        CounterFamily::GuardDropped,
        CounterFamily::Reloads,
    ];

    /// The metric name, without the `tapbridge_` prefix and `_total`.
    pub const fn name(self) -> &'static str {
        match self {
            CounterFamily::RxDropped => "rx_dropped",
            CounterFamily::TxDropped => "tx_dropped",
            CounterFamily::DhcpDropped => "dhcp_dropped",
            CounterFamily::GuardDropped => "guard_dropped",
            CounterFamily::Reloads => "reloads",
        }
    }

    /// The label that tells the family's series apart.
    pub const fn label(self) -> &'static str {
        match self {
            CounterFamily::Reloads => "result",
            _ => "reason",
        }
    }

    /// The help text.
    pub const fn help(self) -> &'static str {
        match self {
            CounterFamily::RxDropped => "Tunnel-side datagrams or frames dropped, by reason",
            CounterFamily::TxDropped => "Frames or datagrams towards the tunnel dropped, by reason",
            CounterFamily::DhcpDropped => "DHCP messages the responder did not answer, by reason",
            CounterFamily::GuardDropped => {
                "Frames the guards kept out of a LAN or the tunnel, by reason"
            }
            CounterFamily::Reloads => {
                "Configuration reloads (SIGHUP or bridge-ctl reload), by result"
            }
        }
    }
}

/// How the metrics endpoint exports a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A family of its own: `tapbridge_NAME_total` (name without prefix and
    /// `_total`), with this help text.
    Own(&'static str, &'static str),
    /// The series of a shared family whose label has this value.
    Series(CounterFamily, &'static str),
    /// Not exported: `status --json` only.
    NotExported,
}

/// Whether the human `bridge-ctl status` shows a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Human {
    /// In the counters line, as `LABEL N`, after the heading `GROUP:` that
    /// it shares with the entries next to it (`""`: no heading).
    Shown(&'static str, &'static str),
    /// Only in `status --json` and the metrics.
    Hidden,
}

/// One counter of the table, as [`COUNTERS`] lists it.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    /// The key in `status --json`.
    pub key: &'static str,
    /// How the metrics endpoint exports it.
    pub metric: Metric,
    /// Whether `bridge-ctl status` shows it.
    pub human: Human,
    /// Its value in a status.
    pub get: fn(&CounterStatus) -> u64,
}

/// Defines [`CounterStatus`] (one `u64` field per entry, documented by the
/// entry's doc comment), [`COUNTERS`] and [`CounterStatus::collect`].
/// An entry is `key: |s| value from Sources s, Metric, Human;`.
macro_rules! counters {
    ($( $(#[doc = $doc:literal])+ $key:ident: $source:expr, $metric:expr, $human:expr; )+) => {
        /// Link-wide counters (SPEC §6 `counters`). A key an older daemon
        /// does not send reads as 0; unknown keys are ignored.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct CounterStatus {
            $( $(#[doc = $doc])+ pub $key: u64, )+
        }

        /// Every counter, in the order of the keys in `status --json`.
        pub const COUNTERS: &[Counter] = &[$(
            Counter {
                key: stringify!($key),
                metric: $metric,
                human: $human,
                get: |c| c.$key,
            },
        )+];

        impl CounterStatus {
            /// The counters, from what the core and the worker counted.
            pub fn collect(s: &Sources) -> CounterStatus {
                CounterStatus {$(
                    $key: {
                        let source: fn(&Sources) -> u64 = $source;
                        source(s)
                    },
                )+}
            }
        }
    };
}

use CounterFamily::{DhcpDropped, GuardDropped, Reloads, RxDropped, TxDropped};
use Human::{Hidden, Shown};
use Metric::{NotExported, Own, Series};

counters! {
    /// Datagrams that did not authenticate.
    rx_auth_failed: |s| s.tunnel.rx_auth_failed,
        Series(RxDropped, "auth_failed"), Shown("dropped", "auth");
    /// Replayed datagrams dropped.
    rx_replayed: |s| s.tunnel.rx_replayed,
        Series(RxDropped, "replayed"), Shown("dropped", "replay");
    /// Datagrams that are not tunnel messages (and authenticated frames
    /// whose virtio-net header was refused).
    rx_malformed: |s| s.tunnel.rx_malformed + s.io.rx_bad_vnet_hdr,
        Series(RxDropped, "malformed"), Shown("dropped", "malformed");
    /// ARP requests answered locally.
    arp_replies: |s| s.responder.arp_replies,
        Own("arp_replies", "ARP requests answered locally"), Shown("local answers", "arp");
    /// DHCP messages answered locally.
    dhcp_replies: |s| s.responder.dhcp_replies,
        Own("dhcp_replies", "DHCP replies (OFFER, ACK, NAK) sent to the local side"),
        Shown("local answers", "dhcp");
    /// Frames sent in fragments.
    fragmented: |s| s.tunnel.fragmented,
        Own("fragmented_frames", "Frames sent to the tunnel in fragments"),
        Shown("", "fragmented");
    /// Frames reassembled from fragments.
    reassembled: |s| s.tunnel.reassembled,
        Own("reassembled_frames", "Frames reassembled from fragments"),
        Shown("", "reassembled");
    /// Handshake messages dropped by the rate limit.
    handshake_rate_limited: |s| s.tunnel.handshake_rate_limited,
        Series(RxDropped, "handshake_rate_limited"), Hidden;
    /// Incomplete fragmented frames dropped.
    reassembly_dropped: |s| s.tunnel.reassembly_dropped,
        Series(RxDropped, "reassembly_incomplete"), Hidden;
    /// Frames dropped for want of a session or endpoint.
    tx_dropped: |s| s.tunnel.tx_dropped,
        Series(TxDropped, "no_session"), Hidden;
    /// Initiations under a known key whose name is not that key's peer.
    rx_unknown_peer: |s| s.tunnel.rx_unknown_peer,
        Series(RxDropped, "unknown_peer"), Hidden;
    /// Of `rx_auth_failed`, the handshake initiations whose key hint names
    /// no key of this link: another key, a sender that calls this site by
    /// another name, or garbage.
    rx_unknown_key: |s| s.tunnel.rx_unknown_key,
        Own(
            "handshake_unknown_key",
            "Handshake initiations under a key this link does not have (also in rx_dropped auth_failed)",
        ),
        Hidden;
    /// Initiations of an older tapbridge protocol version (a peer to upgrade).
    rx_old_version: |s| s.tunnel.rx_old_version,
        Series(RxDropped, "old_version"), Hidden;
    /// Cookie replies sent while under handshake load.
    cookie_replies: |s| s.tunnel.cookie_replies,
        Own("handshake_cookie_replies", "Cookie replies sent while under handshake load"),
        Hidden;
    /// Data or responses for a session this link does not have.
    rx_unknown_session: |s| s.tunnel.rx_unknown_session,
        Series(RxDropped, "unknown_session"), Hidden;
    /// Messages for one peer on a TCP connection bound to another.
    rx_other_stream: |s| s.tunnel.rx_other_stream,
        Series(RxDropped, "other_stream"), Hidden;
    /// Frames that could not be written to the TAP.
    tap_write_errors: |s| s.io.tap_write_errors,
        Series(RxDropped, "tap_write_failed"), Hidden;
    /// Datagrams the kernel refused to send.
    udp_send_errors: |s| s.io.udp_send_errors,
        Series(TxDropped, "send_failed"), Hidden;
    /// Of `dhcp_replies`, how many were NAKs.
    dhcp_naks: |s| s.responder.dhcp_naks,
        Own("dhcp_naks", "Of the DHCP replies, how many were NAKs"), Hidden;
    /// DISCOVERs left unanswered because the pool had no free address.
    dhcp_pool_exhausted: |s| s.responder.dhcp_pool_exhausted,
        Series(DhcpDropped, "pool_exhausted"), Hidden;
    /// Local DHCP frames that could not be parsed.
    dhcp_malformed: |s| s.responder.dhcp_malformed,
        Series(DhcpDropped, "malformed"), Hidden;
    /// Local DHCP frames consumed without an answer (RELEASE, another
    /// server's, ...).
    dhcp_ignored: |s| s.responder.dhcp_ignored,
        Series(DhcpDropped, "ignored"), Hidden;
    /// DHCP frames from the tunnel dropped (another site's DHCP domain).
    remote_dhcp_dropped: |s| s.responder.remote_dhcp_dropped,
        Series(DhcpDropped, "from_tunnel"), Hidden;
    /// ARP bindings learned or refreshed from the tunnel.
    arp_bindings_learned: |s| s.responder.arp_bindings_learned,
        Own("arp_bindings_learned", "ARP bindings learned or refreshed from the tunnel"),
        Hidden;
    /// Neighbour solicitations answered locally (ND suppression).
    nd_replies: |s| s.responder.nd_replies,
        Own("nd_replies", "IPv6 neighbour solicitations answered locally (ND suppression)"),
        Hidden;
    /// ARP bindings from the tunnel refused (claimed a local address, or
    /// ARP sender and Ethernet source differ).
    arp_bindings_refused: |s| s.responder.arp_bindings_refused,
        Own(
            "arp_bindings_refused",
            "ARP bindings from the tunnel refused (they contradict what is known here)",
        ),
        Hidden;
    /// Reloads applied (SIGHUP or `bridge-ctl reload`), `no change` included.
    reloads: |s| s.io.reloads,
        Series(Reloads, "applied"), Hidden;
    /// Reloads refused (invalid file, or a change that needs a restart).
    reloads_refused: |s| s.io.reloads_refused,
        Series(Reloads, "refused"), Hidden;
    /// Flooded frames refused by storm control (`guard.storm_pps`).
    storm_dropped: |s| s.guard.storm_dropped,
        Series(GuardDropped, "storm"), Hidden;
    /// Frames from peers refused by the DHCP and RA guards, and BPDUs
    /// refused by `guard.bpdu = "drop"`.
    guard_dropped: |s| s.guard.guard_dropped,
        Series(GuardDropped, "dhcp_ra_bpdu"), Hidden;
    /// Forwarding loops detected (events).
    loops_detected: |s| s.guard.loops_detected,
        Own("loops_detected", "Forwarding loops detected"), Hidden;
    /// Frames not carried because a loop was present.
    loop_dropped: |s| s.guard.loop_dropped,
        Series(GuardDropped, "loop"), Hidden;
    /// Frames from peers refused by their hub policy (`[[peer]]` `macs`,
    /// `vlans`, `max_macs`, a MAC another port owns, `isolate`).
    policy_dropped: |s| s.guard.policy_dropped,
        Series(GuardDropped, "policy"), Hidden;
    /// TCP connections accepted (`tunnel.transport` tcp or auto).
    tcp_accepted: |s| s.io.tcp_accepted,
        NotExported, Hidden;
    /// TCP connections closed without an answer: their first record was not
    /// authentic, they were not a record stream, or they proved nothing in
    /// time.
    tcp_refused: |s| s.io.tcp_refused,
        NotExported, Hidden;
    /// Messages for TCP peers dropped: the connection's queue was full, or
    /// no connection could be opened.
    tcp_dropped: |s| s.io.tcp_dropped,
        Series(TxDropped, "tcp_queue_full"), Hidden;
    /// ND bindings learned or refreshed from the tunnel (`arp.suppress_nd`).
    nd_bindings_learned: |s| s.responder.nd_bindings_learned,
        Own("nd_bindings_learned", "IPv6 ND bindings learned or refreshed from the tunnel"),
        Hidden;
    /// ND bindings from the tunnel refused (they contradict what is known here).
    nd_bindings_refused: |s| s.responder.nd_bindings_refused,
        Own(
            "nd_bindings_refused",
            "IPv6 ND bindings from the tunnel refused (they contradict what is known here)",
        ),
        Hidden;
    /// DHCP addresses not offered, or REQUESTs NAKed, because another MAC
    /// was seen using the address (`dhcp.conflict_check`).
    dhcp_conflicts: |s| s.responder.dhcp_conflicts,
        Own(
            "dhcp_conflicts",
            "DHCP addresses not offered or confirmed because another MAC was seen using them",
        ),
        Hidden;
    /// ARP probes sent before offering (`dhcp.conflict_check`).
    dhcp_probes: |s| s.responder.dhcp_probes,
        Own("dhcp_probes", "ARP probes sent before a DHCP offer (conflict_check)"), Hidden;
    /// DHCP offers sent before their probe's hold ended because the held
    /// offers reached their bound (`dhcp.conflict_check`).
    dhcp_offers_early: |s| s.responder.dhcp_offers_early,
        Own(
            "dhcp_offers_early",
            "DHCP offers sent before their conflict probe's hold ended, the held offers being at their bound",
        ),
        Hidden;
}

impl CounterStatus {
    /// The counters line of the human `bridge-ctl status`: the entries
    /// [`Human::Shown`], in table order, grouped under their headings, e.g.
    /// `dropped: auth 0 replay 0 malformed 0   local answers: arp 1 dhcp 2`.
    pub fn summary(&self) -> String {
        let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
        for c in COUNTERS {
            let Human::Shown(heading, label) = c.human else {
                continue;
            };
            let item = format!("{label} {}", (c.get)(self));
            match groups.last_mut() {
                Some((h, items)) if *h == heading => items.push(item),
                _ => groups.push((heading, vec![item])),
            }
        }
        let groups: Vec<String> = groups
            .into_iter()
            .map(|(heading, items)| match heading {
                "" => items.join(" "),
                h => format!("{h}: {}", items.join(" ")),
            })
            .collect();
        groups.join("   ")
    }
}

#[cfg(test)]
pub(crate) mod tests;
