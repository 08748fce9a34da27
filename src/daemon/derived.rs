//! What the daemon derives from a link's configuration before it brings
//! the link up: the TAP's stable MAC, the ARP/DHCP responder (with the
//! leases on disk), and the nonce that marks this link's loop probes; and
//! the same responder check `bridge-ctl check` runs without touching the
//! system.

use super::DaemonError;
use crate::config::{Config, ConfigError};
use crate::mac::MacAddr;
use crate::responder::Responder;

/// A locally administered unicast MAC derived from this machine's identity
/// and the link's settings: stable across restarts, different per box and
/// per link (the two ends of one link have different listen addresses even
/// when they share the link name).
pub fn stable_mac(cfg: &Config) -> MacAddr {
    let machine = std::fs::read_to_string("/etc/machine-id")
        .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname"))
        .unwrap_or_default();
    let addresses = cfg.interface.address_texts();
    let seed = format!(
        "tapbridge tap mac\0{}\0{}\0{}\0{}\0{}",
        machine.trim(),
        cfg.name,
        cfg.interface.name,
        cfg.tunnel.listen,
        addresses.join(",")
    );
    let digest = <sha2::Sha256 as sha2::Digest>::digest(seed.as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] | 0x02) & !0x01;
    MacAddr(mac)
}

pub(super) fn build_responder(
    cfg: &Config,
    tap_mac: MacAddr,
) -> Result<Option<Responder>, DaemonError> {
    let Some((arp, dhcp)) = cfg.responder_settings(tap_mac) else {
        return Ok(None);
    };
    let leases = match &cfg.dhcp {
        Some(d) => crate::leases::load(&d.lease_file)?,
        None => Default::default(),
    };
    Ok(Some(Responder::new(arp, dhcp, leases)?))
}

/// Builds the ARP/DHCP responder exactly as `link up` does, with an empty
/// lease table and without touching the system, for `bridge-ctl check`.
/// (`[dhcp]` was checked as the file was loaded; what is left is `[arp]`
/// with the MAC it answers from.) Refusals are reported at `[arp]`.
pub fn check_responder(cfg: &Config) -> Result<(), ConfigError> {
    let mac = cfg.interface.mac.unwrap_or_else(|| stable_mac(cfg));
    let Some((arp, dhcp)) = cfg.responder_settings(mac) else {
        return Ok(());
    };
    match Responder::new(arp, dhcp, Default::default()) {
        Ok(_) => Ok(()),
        Err(e) => Err(cfg.error_at("arp", 0, e)),
    }
}

/// A random nonce that tells this link's loop probes from everyone else's.
pub(super) fn loop_nonce() -> [u8; 8] {
    let mut n = [0u8; 8];
    if getrandom::fill(&mut n).is_err() {
        // Unique enough for telling our probes apart on one LAN.
        n = u64::from(std::process::id())
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .to_be_bytes();
    }
    n
}
