//! The human `bridge-ctl status` of one link: a few lines for a person at a
//! terminal, from the same [`Status`] that `status --json` prints.
//!
//! Which counters the line of counters shows, and under which words, is the
//! counter table's to say ([`crate::control::counters`]). Pure: no I/O.

use std::fmt::Write as _;

use super::Status;

/// The table `bridge-ctl status` prints for `s`, one `\n`-ended line each:
/// the link, its addresses, the peers, the counters, the pool and leases.
/// `link_args` is how the command line named the link (`site-a`, or
/// `--config /etc/x/site-a.toml`), repeated in hints to other commands.
pub fn status_table(s: &Status, link_args: &str) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail: the results are ignored.
    let _ = writeln!(
        out,
        "link {}  pid {}  up {}  interface {} mtu {} mac {}{}",
        s.name,
        s.pid,
        duration(s.uptime_secs),
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
    if let Some(p) = &s.partner {
        let _ = writeln!(
            out,
            "  role: {}  partner {} ({}, {} lease{} in sync)",
            s.role,
            p.endpoint.as_deref().unwrap_or("-"),
            p.state,
            p.leases_synced,
            if p.leases_synced == 1 { "" } else { "s" }
        );
    } else if s.role != crate::role::Role::Active {
        let _ = writeln!(out, "  role: {}", s.role);
    }
    let mut rows = vec![
        [
            "PEER",
            "ENDPOINT",
            "STATE",
            "HANDSHAKE",
            "PATH MTU",
            "VIA",
            "TX FRAMES",
            "TX",
            "RX FRAMES",
            "RX",
        ]
        .map(str::to_owned),
    ];
    for p in &s.peers {
        rows.push([
            p.name.clone(),
            p.endpoint.clone().unwrap_or_else(|| "-".into()),
            p.state.clone(),
            p.last_handshake_secs
                .map(|t| format!("{} ago", duration(t)))
                .unwrap_or_else(|| "never".into()),
            if p.path_mtu == 0 {
                "-".into()
            } else {
                p.path_mtu.to_string()
            },
            if p.transport.is_empty() {
                "-".into()
            } else {
                p.transport.clone()
            },
            count(p.tx_frames),
            bytes(p.tx_bytes),
            count(p.rx_frames),
            bytes(p.rx_bytes),
        ]);
    }
    // Text columns to the left, numbers to the right; each as wide as its
    // widest cell.
    const RIGHT: [bool; 10] = [
        false, false, false, true, true, false, true, true, true, true,
    ];
    let widths: Vec<usize> = (0..RIGHT.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            line.push_str("  ");
            if RIGHT[c] {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
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
            "  {} DHCP lease{}; see `bridge-ctl leases {link_args}`",
            s.leases.len(),
            if s.leases.len() == 1 { "" } else { "s" },
        );
    }
    let not_up = s.peers.iter().filter(|p| p.state != "up").count();
    if not_up > 0 {
        let _ = writeln!(
            out,
            "  {not_up} peer{} not up; see `bridge-ctl diag {link_args}` for why",
            if not_up == 1 { " is" } else { "s are" },
        );
    }
    out
}

/// Seconds as a person reads them: `45s`, `3m 20s`, `2h 5m`, `3d 4h`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) if m == 0 => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        _ if h == 0 => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

/// Bytes in binary units with three significant digits: `512 B`,
/// `1.50 KiB`, `20.3 MiB`, `3.00 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1023.5 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let digits = if v < 9.995 {
        2
    } else if v < 99.95 {
        1
    } else {
        0
    };
    format!("{v:.digits$} {}", UNITS[unit])
}

/// A count with thousands separated: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::PeerStatus;
    use crate::control::fixtures::status;

    /// The link, its peers in columns as wide as their contents, in units
    /// a person reads, the counters, the pool and a hint naming the link as
    /// the command line did.
    #[test]
    fn the_table() {
        let mut s = status();
        s.interface.bridge = Some("br-lan".into());
        s.uptime_secs = 3725;
        s.peers[0].tx_bytes = 1_572_864;
        s.peers[0].rx_frames = 1_234_567;
        s.peers[0].path_mtu = 1500;
        s.peers[0].transport = "udp".into();
        s.peers[1].name = "a-much-longer-peer-name".into();
        s.peers[1].endpoint = Some("[2001:2::2]:51901".into());
        s.peers[1].path_mtu = 0;
        s.peers[1].transport = String::new();
        let want = "\
link site-a  pid 42  up 1h 2m  interface tb0 mtu 1500 mac 02:00:00:00:00:01 bridge br-lan
  addresses: 198.19.0.1/24
  listening on 0.0.0.0:51901
  PEER                     ENDPOINT           STATE       HANDSHAKE  PATH MTU  VIA  TX FRAMES        TX  RX FRAMES     RX
  b                        198.18.0.2:51901   up             3s ago      1500  udp        102  1.50 MiB  1,234,567  105 B
  a-much-longer-peer-name  [2001:2::2]:51901  connecting      never         -  -          202     204 B        203  205 B
  dropped: auth 11 replay 12 malformed 13   local answers: arp 14 dhcp 15   fragmented 16 reassembled 17
  DHCP pool: 2 of 100 addresses in use
  2 DHCP leases; see `bridge-ctl leases --config /etc/x/site-a.toml`
  1 peer is not up; see `bridge-ctl diag --config /etc/x/site-a.toml` for why
";
        assert_eq!(status_table(&s, "--config /etc/x/site-a.toml"), want);
    }

    #[test]
    fn a_box_of_a_pair_shows_its_role_and_partner() {
        let mut s = status();
        assert!(!status_table(&s, "x").contains("role"), "no [ha]: no line");
        s.role = crate::role::Role::Standby;
        s.partner = Some(crate::control::PartnerStatus {
            endpoint: Some("198.18.0.6:51903".into()),
            state: "up".into(),
            leases_synced: 1,
        });
        assert!(
            status_table(&s, "x")
                .contains("\n  role: standby  partner 198.18.0.6:51903 (up, 1 lease in sync)\n")
        );
    }

    #[test]
    fn units_a_person_reads() {
        assert_eq!(
            [0, 59, 60, 61, 3600, 3660, 86_400, 90_000].map(duration),
            ["0s", "59s", "1m", "1m 1s", "1h", "1h 1m", "1d", "1d 1h"]
        );
        assert_eq!(
            [0, 1023, 1024, 1536, 10_240, 1_048_064, 1_048_576, u64::MAX].map(bytes),
            [
                "0 B", "1023 B", "1.00 KiB", "1.50 KiB", "10.0 KiB", "1.00 MiB", "1.00 MiB",
                "16.0 EiB"
            ]
        );
        assert_eq!(
            [0, 999, 1000, 1_234_567].map(count),
            ["0", "999", "1,000", "1,234,567"]
        );
    }

    #[test]
    fn a_bare_status_leaves_out_addresses_pool_and_leases() {
        let s = Status {
            peers: vec![PeerStatus::default()],
            ..Status::default()
        };
        let text = status_table(&s, "site");
        assert_eq!(text.lines().count(), 6, "{text}");
        assert!(text.contains("never"), "{text}");
        assert!(
            !text.contains("addresses") && !text.contains("DHCP"),
            "{text}"
        );
    }
}
