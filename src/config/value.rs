//! Parsers for the string-typed values of the config file. Each parser is
//! pure and returns the value or a [`ValueError`], whose message completes
//! the sentence `FILE:LINE:COL: KEY: <message>`; they never panic.
//!
//! This file holds the parsers for durations, MAC addresses, names (of
//! interfaces, links, peers, groups and DNS domains) and DHCP option data.
//! Those for addresses (IPv4, prefixes, routes, pools, socket addresses and
//! endpoints) are in the `addr` submodule, the error types in `error`.

use std::time::Duration;

use crate::mac::MacAddr;

mod addr;
mod error;
pub(super) use addr::{endpoint, host_cidr, ipv4, ipv4_net, ipv4_route, listen_addr, pool, route};
pub use error::{HostNameError, ValueError};

/// Longest duration accepted anywhere, so that `Instant + d` cannot overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Linux `IFNAMSIZ - 1`.
pub(super) const MAX_IFNAME: usize = 15;
/// Longest peer name: the handshake carries 31 bytes of it, and a peer must
/// be named exactly as the other site names its link. (Link names themselves
/// stop at [`MAX_LINK_NAME`].)
pub(super) const MAX_SITE_NAME: usize = 31;

/// Parses `"90s"`, `"12h"`, `"500ms"`, `"1d"`, `"1h30m"`.
pub(super) fn duration(text: &str) -> Result<Duration, ValueError> {
    let bad = || ValueError::NotADuration {
        text: text.to_owned(),
    };
    let too_long = || ValueError::DurationTooLong {
        text: text.to_owned(),
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total_ms: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (number, after) = rest.split_at(digits);
        let letters = after.len()
            - after
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, after) = after.split_at(letters);
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total_ms = n
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(too_long)?;
        rest = after;
    }
    let d = Duration::from_millis(total_ms);
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

/// Parses `"02:00:00:00:00:01"` (also with `-` separators).
pub(super) fn mac(text: &str) -> Result<MacAddr, ValueError> {
    text.parse().map_err(|_| ValueError::NotAMac {
        text: text.to_owned(),
    })
}

/// Parses a MAC that may be used as a station's own address: not multicast
/// or broadcast, not all zeros.
pub(super) fn unicast_mac(text: &str) -> Result<MacAddr, ValueError> {
    let m = mac(text)?;
    if m.is_group() {
        return Err(ValueError::MulticastMac {
            text: text.to_owned(),
        });
    }
    if m.is_zero() {
        return Err(ValueError::ZeroMac);
    }
    Ok(m)
}

/// Checks a Linux network interface name (TAP or bridge).
pub(super) fn ifname(name: &str) -> Result<(), ValueError> {
    if name.is_empty() {
        return Err(ValueError::EmptyIfname);
    }
    if name.len() > MAX_IFNAME {
        return Err(ValueError::IfnameTooLong {
            name: name.to_owned(),
        });
    }
    if name == "." || name == ".." {
        return Err(ValueError::IfnameDots {
            name: name.to_owned(),
        });
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ValueError::IfnameChar {
            name: name.to_owned(),
            c,
        });
    }
    Ok(())
}

/// The longest link NAME: the NAT hooks name iptables chains
/// `TB-NAME-FWD`, and iptables allows 28 characters.
pub(super) const MAX_LINK_NAME: usize = 21;

/// Checks a link NAME (the config file stem): it becomes part of file paths,
/// of the default interface name and of the NAT hooks' nftables table and
/// iptables chain names. The rule is the one `appliance/hooks/lib/nat.sh`
/// (`tb_valid_linkname`) applies: a letter or digit, then up to 20 letters,
/// digits, '-' or '_'.
pub(super) fn link_name(name: &str) -> Result<(), ValueError> {
    if name.is_empty() {
        return Err(ValueError::EmptyLinkName);
    }
    if name.len() > MAX_LINK_NAME {
        return Err(ValueError::LinkNameTooLong);
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(ValueError::LinkNameStart);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(ValueError::LinkNameChar(c));
    }
    Ok(())
}

/// Checks a Unix group name (`control.group`, `control.admin_group`); whether
/// the group exists is checked by `bridge-ctl check` and at `link up`.
pub(super) fn group_name(name: &str) -> Result<String, ValueError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
    {
        return Err(ValueError::NotAGroup {
            name: name.to_owned(),
        });
    }
    Ok(name.to_owned())
}

/// Checks a peer name: shown in logs and status output.
pub(super) fn peer_name(name: &str) -> Result<(), ValueError> {
    if name.is_empty() {
        return Err(ValueError::EmptyPeerName);
    }
    if name.len() > MAX_SITE_NAME {
        return Err(ValueError::PeerNameTooLong {
            name: name.to_owned(),
        });
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValueError::PeerNameChar {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Checks a DNS domain name for DHCP option 15 (`dhcp.domain`) or 119 (each
/// `dhcp.search` entry).
pub(super) fn domain(name: &str) -> Result<(), ValueError> {
    let bad = || ValueError::NotADomain {
        name: name.to_owned(),
    };
    if name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(bad());
        }
    }
    Ok(())
}

/// Bytes from hex digits (pairs; `:` and spaces between pairs allowed).
pub(super) fn hex_bytes(text: &str) -> Result<Vec<u8>, ValueError> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':' && *b != b' ').collect();
    if digits.len() % 2 != 0 {
        return Err(ValueError::OddHex {
            text: text.to_owned(),
        });
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| ValueError::NotHex {
                    text: text.to_owned(),
                })
        })
        .collect()
}

/// The config key that sets DHCP option `code`, if the responder sets it
/// itself (such codes cannot be given in `[[dhcp.option]]`).
pub(super) fn dhcp_option_key(code: u8) -> Option<&'static str> {
    Some(match code {
        1 => "dhcp.subnet",
        3 => "dhcp.router",
        6 => "dhcp.dns",
        15 => "dhcp.domain",
        26 => "dhcp.mtu",
        42 => "dhcp.ntp",
        51 | 58 | 59 => "dhcp.lease_time",
        54 => "dhcp.server_address",
        119 => "dhcp.search",
        121 => "dhcp.routes",
        50 | 53 | 55 | 57 | 61 | 82 => "part of the DHCP exchange",
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;
