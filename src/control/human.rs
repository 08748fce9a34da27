//! The human `bridge-ctl status` of one link: a few lines for a person at a
//! terminal, from the same [`Status`] that `status --json` prints.
//!
//! Which counters the line of counters shows, and under which words, is the
//! counter table's to say ([`crate::control::counters`]). Pure: no I/O.

use std::fmt::Write as _;

use super::Status;

/// The table `bridge-ctl status` prints for `s`, one `\n`-ended line each:
/// the link, its addresses, the peers, the counters, the pool and leases.
pub fn status_table(s: &Status) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail: the results are ignored.
    let _ = writeln!(
        out,
        "link {}  pid {}  up {}s  interface {} mtu {} mac {}{}",
        s.name,
        s.pid,
        s.uptime_secs,
        s.interface.name,
        s.interface.mtu,
        s.interface.mac,
        s.interface
            .bridge
            .as_deref()
            .map(|b| format!(" bridge {b}"))
            .unwrap_or_default()
    );
    if !s.interface.addresses.is_empty() {
        let _ = writeln!(out, "  addresses: {}", s.interface.addresses.join(", "));
    }
    let _ = writeln!(out, "  listening on {}", s.listen);
    let _ = writeln!(
        out,
        "  {:<16} {:<28} {:<10} {:>10} {:>10} {:>12} {:>10} {:>12}",
        "PEER", "ENDPOINT", "STATE", "HANDSHAKE", "TX FRAMES", "TX BYTES", "RX FRAMES", "RX BYTES"
    );
    for p in &s.peers {
        let _ = writeln!(
            out,
            "  {:<16} {:<28} {:<10} {:>10} {:>10} {:>12} {:>10} {:>12}",
            p.name,
            p.endpoint.as_deref().unwrap_or("-"),
            p.state,
            p.last_handshake_secs
                .map(|t| format!("{t}s ago"))
                .unwrap_or_else(|| "never".into()),
            p.tx_frames,
            p.tx_bytes,
            p.rx_frames,
            p.rx_bytes
        );
    }
    let _ = writeln!(out, "  {}", s.counters.summary());
    if let Some(pool) = s.dhcp {
        let _ = writeln!(
            out,
            "  DHCP pool: {} of {} addresses in use",
            pool.pool_in_use, pool.pool_size
        );
    }
    if !s.leases.is_empty() {
        let _ = writeln!(
            out,
            "  {} DHCP lease(s); see `bridge-ctl leases {}`",
            s.leases.len(),
            s.name
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::PeerStatus;
    use crate::control::fixtures::status;

    /// What `bridge-ctl status` has printed since before the counter table.
    #[test]
    fn the_table_is_unchanged() {
        let mut s = status();
        s.interface.bridge = Some("br-lan".into());
        let want = "\
link site-a  pid 42  up 77s  interface tb0 mtu 1500 mac 02:00:00:00:00:01 bridge br-lan
  addresses: 198.19.0.1/24
  listening on 0.0.0.0:51901
  PEER             ENDPOINT                     STATE       HANDSHAKE  TX FRAMES     TX BYTES  RX FRAMES     RX BYTES
  b                198.18.0.2:51901             up             3s ago        102          104        103          105
  c                198.18.0.2:51901             connecting      never        202          204        203          205
  dropped: auth 11 replay 12 malformed 13   local answers: arp 14 dhcp 15   fragmented 16 reassembled 17
  DHCP pool: 2 of 100 addresses in use
  2 DHCP lease(s); see `bridge-ctl leases site-a`
";
        assert_eq!(status_table(&s), want);
    }

    #[test]
    fn a_bare_status_leaves_out_addresses_pool_and_leases() {
        let s = Status {
            peers: vec![PeerStatus::default()],
            ..Status::default()
        };
        let text = status_table(&s);
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.contains("never"), "{text}");
        assert!(
            !text.contains("addresses") && !text.contains("DHCP"),
            "{text}"
        );
    }
}
