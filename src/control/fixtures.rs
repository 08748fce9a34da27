//! A status as a running link reports it, shared by the tests of its
//! renderings (the human table, the metrics endpoint).

use crate::control::{DhcpPoolStatus, InterfaceStatus, LeaseEntry, PeerStatus, Status};
use crate::mac::MacAddr;

/// A peer whose counters are `base` + 1..=7 (handshakes, tx frames, rx
/// frames, tx bytes, rx bytes, endpoint changes, MACs).
pub(crate) fn peer(name: &str, state: &str, last: Option<u64>, base: u64) -> PeerStatus {
    PeerStatus {
        name: name.into(),
        endpoint: Some("198.18.0.2:51901".into()),
        endpoints: vec!["198.18.0.2:51901".into()],
        state: state.into(),
        path_mtu: 1500,
        transport: "udp".into(),
        last_handshake_secs: last,
        handshakes: base + 1,
        tx_frames: base + 2,
        rx_frames: base + 3,
        tx_bytes: base + 4,
        rx_bytes: base + 5,
        endpoint_changes: base + 6,
        macs: base + 7,
        ..PeerStatus::default()
    }
}

/// Link site-a with peers b (up) and c (connecting), two leases and a
/// pool of 100.
pub(crate) fn status() -> Status {
    Status {
        version: "0.1.0".into(),
        name: "site-a".into(),
        pid: 42,
        uptime_secs: 77,
        interface: InterfaceStatus {
            name: "tb0".into(),
            mtu: 1500,
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            addresses: vec!["198.19.0.1/24".into()],
            bridge: None,
        },
        listen: "0.0.0.0:51901".into(),
        peers: vec![
            peer("b", "up", Some(3), 100),
            peer("c", "connecting", None, 200),
        ],
        // As the status JSON carries them; a counter not named here is 0.
        counters: serde_json::from_str(
            r#"{
                "rx_auth_failed":11, "rx_replayed":12, "rx_malformed":13, "arp_replies":14,
                "dhcp_replies":15, "fragmented":16, "reassembled":17, "handshake_rate_limited":18,
                "reassembly_dropped":19, "tx_dropped":20, "rx_unknown_peer":21,
                "rx_old_version":25, "cookie_replies":26, "rx_unknown_session":24,
                "tap_write_errors":22, "udp_send_errors":23, "dhcp_naks":31,
                "dhcp_pool_exhausted":32, "dhcp_malformed":33, "dhcp_ignored":34,
                "remote_dhcp_dropped":35, "arp_bindings_learned":36, "arp_bindings_refused":39,
                "nd_replies":40, "reloads":37, "reloads_refused":38, "storm_dropped":27,
                "guard_dropped":28, "loops_detected":29, "loop_dropped":30, "tcp_accepted":45,
                "tcp_refused":46, "tcp_dropped":47, "nd_bindings_learned":41,
                "nd_bindings_refused":42, "dhcp_conflicts":43, "dhcp_probes":44, "policy_dropped":48,
                "rx_unknown_key":49
            }"#,
        )
        .expect("counters"),
        leases: vec![
            LeaseEntry {
                mac: MacAddr([2, 0, 0, 0, 0xaa, 1]),
                ip: "198.19.0.100".into(),
                expires_in_secs: 100,
                client_id: None,
            },
            LeaseEntry {
                mac: MacAddr([2, 0, 0, 0, 0xaa, 2]),
                ip: "198.19.0.101".into(),
                expires_in_secs: 200,
                client_id: None,
            },
        ],
        rekey_after_secs: 120,
        dhcp: Some(DhcpPoolStatus {
            pool_size: 100,
            pool_in_use: 2,
        }),
        role: crate::role::Role::Active,
        partner: None,
    }
}
