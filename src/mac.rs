//! [`MacAddr`]: the one type for an Ethernet (EUI-48) address everywhere
//! outside the byte-level hot path — config, responder, switch, netlink,
//! control and daemon.
//!
//! Promises:
//! - Text form, both ways: [`fmt::Display`] writes `02:00:00:00:aa:01`
//!   (lower case, colons); [`FromStr`] accepts exactly six two-digit hex
//!   groups of either case separated all by `:` or all by `-`, which is what
//!   the config file has always accepted.
//! - Serde uses that text form, so JSON (status, lease file) reads
//!   `"02:00:00:00:aa:01"`.
//! - It is `Copy` and six bytes: the data path turns frame bytes into one with
//!   [`MacAddr::from_slice`] without allocating, and formatting never
//!   allocates either.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An Ethernet address. The bytes are public: `MacAddr([2, 0, 0, 0, 0, 1])`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`, which no station may use.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The six bytes.
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// The address in the first six bytes of `bytes`, if there are six.
    /// Call it on `&frame[0..6]` (destination) or `&frame[6..12]` (source).
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        Some(MacAddr(bytes.get(..6)?.try_into().ok()?))
    }

    /// A group (multicast or broadcast) address: the I/G bit is set.
    pub const fn is_group(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// All zeros.
    pub fn is_zero(self) -> bool {
        self == MacAddr::ZERO
    }

    /// An address a station may have as its own: neither group nor zero.
    pub fn is_unicast_host(self) -> bool {
        !self.is_group() && !self.is_zero()
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(bytes: [u8; 6]) -> MacAddr {
        MacAddr(bytes)
    }
}

impl TryFrom<&[u8]> for MacAddr {
    type Error = std::array::TryFromSliceError;

    /// Exactly six bytes, e.g. `frame[..6].try_into()`.
    fn try_from(bytes: &[u8]) -> Result<MacAddr, Self::Error> {
        <[u8; 6]>::try_from(bytes).map(MacAddr)
    }
}

impl From<MacAddr> for [u8; 6] {
    fn from(mac: MacAddr) -> [u8; 6] {
        mac.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [b':'; 17];
        for (i, b) in self.0.iter().enumerate() {
            text[3 * i] = HEX[usize::from(b >> 4)];
            text[3 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        // Only ASCII hex digits and colons were written.
        let text = std::str::from_utf8(&text).map_err(|_| fmt::Error)?;
        // `pad`, so `{:<18}` in tables lines up.
        f.pad(text)
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

/// The text is not a MAC address (see [`MacAddr`]'s `FromStr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address like \"02:00:00:00:00:01\"")]
pub struct MacParseError;

impl FromStr for MacAddr {
    type Err = MacParseError;

    /// `02:00:00:00:00:01` or `02-00-00-00-00-01`, either case; nothing else
    /// (no spaces, no single-digit groups, no mixed separators).
    fn from_str(text: &str) -> Result<MacAddr, MacParseError> {
        let mut out = [0u8; 6];
        let sep = if text.contains('-') { '-' } else { ':' };
        let mut parts = text.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or(MacParseError)?;
            if part.len() != 2 || !part.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(MacParseError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacParseError)?;
        }
        if parts.next().is_some() {
            return Err(MacParseError);
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MacAddr, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = MacAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a MAC address like \"02:00:00:00:00:01\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MacAddr, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: MacAddr = MacAddr([2, 0, 0, 0, 0xaa, 1]);

    fn parse(s: &str) -> Option<MacAddr> {
        s.parse().ok()
    }

    #[test]
    fn text_round_trip() {
        assert_eq!(M1.to_string(), "02:00:00:00:aa:01");
        assert_eq!(
            MacAddr([0xff, 0xfe, 0x0a, 0xb0, 0, 0x10]).to_string(),
            "ff:fe:0a:b0:00:10"
        );
        assert_eq!(format!("[{M1:<18}]"), "[02:00:00:00:aa:01 ]");
        assert_eq!(format!("{M1:?}"), "MacAddr(02:00:00:00:aa:01)");
        assert_eq!(parse("02:00:00:00:aa:01"), Some(M1));
        assert_eq!(parse("02:00:00:00:AA:01"), Some(M1));
        assert_eq!(parse("02-00-00-00-aa-01"), Some(M1));
        assert_eq!(parse("02-00-00-00-AA-01"), Some(M1));
        for bad in [
            "",
            "02:00:00:00:aa",
            "02:00:00:00:00",
            "02:00:00:00:aa:01:02",
            "02:00:00:00:aa:1",
            "2:0:0:0:0:1",
            "02:00:00:00:aa:zz",
            "zz:00:00:00:00:01",
            "+2:00:00:00:00:01",
            "02:00-00:00:aa:01",
            " 02:00:00:00:aa:01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?} accepted");
        }
    }

    #[test]
    fn classes() {
        assert!(M1.is_unicast_host());
        assert!(MacAddr::BROADCAST.is_group());
        assert!(MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_group());
        assert!(!MacAddr::ZERO.is_unicast_host());
        assert!(MacAddr::ZERO.is_zero());
        assert_eq!(
            MacAddr::from_slice(&[2, 0, 0, 0, 0xaa, 1, 9]),
            Some(M1),
            "first six bytes"
        );
        assert_eq!(MacAddr::from_slice(&[2, 0, 0]), None);
        assert_eq!(MacAddr::try_from(&[2, 0, 0, 0, 0xaa, 1][..]).ok(), Some(M1));
        assert!(MacAddr::try_from(&[2, 0, 0, 0, 0xaa, 1, 9][..]).is_err());
        assert_eq!(<[u8; 6]>::from(M1), M1.octets());
        assert_eq!(MacAddr::from(M1.octets()), M1);
    }

    #[test]
    fn serde_as_text() {
        assert_eq!(
            serde_json::to_string(&M1).expect("json"),
            "\"02:00:00:00:aa:01\""
        );
        assert_eq!(
            serde_json::from_str::<MacAddr>("\"02-00-00-00-AA-01\"").expect("json"),
            M1
        );
        assert!(serde_json::from_str::<MacAddr>("\"02:00\"").is_err());
        assert!(serde_json::from_str::<MacAddr>("[2,0,0,0,170,1]").is_err());
    }
}
