//! Invitations (`bridge-ctl invite` and `bridge-ctl join`, SPEC §3): one line
//! a hub hands to a new branch that carries everything the branch needs to
//! write a working configuration, its key included. Pure: bytes in, bytes
//! out; the CLI writes the files.
//!
//! # Format, version 1
//!
//! ```text
//! token   = "tapbridge-invite:1:" base64url-nopad(payload || check)
//! check   = the first 4 bytes of SHA-256(payload)
//! payload = str hub            the hub's tunnel.name (its [[peer]] name at the branch)
//!           str site           the branch's name at the hub (its tunnel.name)
//!           u8  n              1..=8 endpoints, then n times:
//!           str endpoint       "HOST:PORT" as the hub's operator wrote it
//!           [32] key           the branch's own pre-shared key
//!           u16 mtu            the hub's interface.mtu
//!           u16 wan_mtu        the hub's tunnel.wan_mtu, 0 for "auto"
//!           u8  transport      0 udp, 1 tcp, 2 auto
//!           u32 keepalive_ms   the hub's tunnel.keepalive
//!           u32 rekey_after_ms the hub's tunnel.rekey_after
//! str     = u8 length, then that many bytes of UTF-8 (1..=255)
//! ```
//!
//! Integers are big-endian. Nothing may follow the last field. The checksum
//! is not a security measure (the token is a secret, like the key it holds);
//! it turns a line cut short or mistyped in a paste into a clear error
//! instead of a configuration with a wrong key. A later version changes the
//! number after `tapbridge-invite:`; this one refuses any other.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// What every invitation starts with, up to the version.
pub const SCHEME: &str = "tapbridge-invite:";

/// The version this program writes and reads.
pub const VERSION: u32 = 1;

/// The most endpoints an invitation carries (as `peer.endpoint` allows).
pub const MAX_ENDPOINTS: usize = 8;

/// Length of a pre-shared key.
pub const KEY_LEN: usize = 32;

const CHECK_LEN: usize = 4;

/// How the branch reaches the hub: `tunnel.transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP only.
    Udp,
    /// TCP only.
    Tcp,
    /// UDP falling back to TCP.
    Auto,
}

impl Transport {
    /// The configuration's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Auto => "auto",
        }
    }
}

/// What an invitation says.
#[derive(Clone, PartialEq, Eq)]
pub struct Invitation {
    /// The hub's name in handshakes (`tunnel.name`).
    pub hub: String,
    /// The name the hub gave the branch: its `tunnel.name`.
    pub site: String,
    /// Where the hub is reached, most preferred first (`HOST:PORT`).
    pub endpoints: Vec<String>,
    /// The branch's own key, shared with the hub only.
    pub key: Zeroizing<[u8; KEY_LEN]>,
    /// The hub's `interface.mtu` (the largest frame both LANs carry).
    pub mtu: u16,
    /// The hub's `tunnel.wan_mtu`; `None` for `"auto"`.
    pub wan_mtu: Option<u16>,
    /// The hub's `tunnel.transport`.
    pub transport: Transport,
    /// The hub's `tunnel.keepalive`, in milliseconds.
    pub keepalive_ms: u32,
    /// The hub's `tunnel.rekey_after`, in milliseconds.
    pub rekey_after_ms: u32,
}

impl fmt::Debug for Invitation {
    /// Everything but the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invitation")
            .field("hub", &self.hub)
            .field("site", &self.site)
            .field("endpoints", &self.endpoints)
            .field("key", &"(secret)")
            .field("mtu", &self.mtu)
            .field("wan_mtu", &self.wan_mtu)
            .field("transport", &self.transport)
            .field("keepalive_ms", &self.keepalive_ms)
            .field("rekey_after_ms", &self.rekey_after_ms)
            .finish()
    }
}

/// Why a text is not a usable invitation. The messages never quote the
/// token (it holds a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// It does not start with [`SCHEME`].
    #[error(
        "this is not a tapbridge invitation (one starts with \"tapbridge-invite:\"; \
         `bridge-ctl invite` on the hub prints it)"
    )]
    NotAnInvitation,
    /// Another version than [`VERSION`].
    #[error(
        "this invitation is of version {0}, and this bridge-ctl reads version 1 only; \
         use the same tapbridge version on the hub and the branch"
    )]
    Version(String),
    /// Not base64url, or the checksum does not match: cut short or changed.
    #[error(
        "the invitation is incomplete or damaged ({0}); paste the whole line, \
         exactly as `bridge-ctl invite` printed it"
    )]
    Damaged(&'static str),
    /// The checksum matches but a field is not valid: made by something else.
    #[error("the invitation is malformed: {0}")]
    Malformed(&'static str),
    /// A value cannot be written into an invitation.
    #[error("cannot make an invitation: {0}")]
    Unencodable(&'static str),
}

impl Invitation {
    /// The invitation as one line (no newline), `tapbridge-invite:1:...`.
    pub fn encode(&self) -> Result<Zeroizing<String>, InviteError> {
        let mut p = Zeroizing::new(Vec::with_capacity(160));
        put_str(&mut p, &self.hub, "the hub's name")?;
        put_str(&mut p, &self.site, "the site's name")?;
        if self.endpoints.is_empty() || self.endpoints.len() > MAX_ENDPOINTS {
            return Err(InviteError::Unencodable("it needs 1 to 8 endpoints"));
        }
        p.push(self.endpoints.len() as u8);
        for e in &self.endpoints {
            put_str(&mut p, e, "an endpoint")?;
        }
        p.extend_from_slice(&self.key[..]);
        p.extend_from_slice(&self.mtu.to_be_bytes());
        p.extend_from_slice(&self.wan_mtu.unwrap_or(0).to_be_bytes());
        p.push(match self.transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
            Transport::Auto => 2,
        });
        p.extend_from_slice(&self.keepalive_ms.to_be_bytes());
        p.extend_from_slice(&self.rekey_after_ms.to_be_bytes());
        let check = Sha256::digest(&p[..]);
        p.extend_from_slice(&check[..CHECK_LEN]);
        let mut out = Zeroizing::new(format!("{SCHEME}{VERSION}:"));
        URL_SAFE_NO_PAD.encode_string(&p[..], &mut out);
        Ok(out)
    }

    /// Reads an invitation; surrounding white space is ignored. Never
    /// panics, whatever the text.
    pub fn decode(text: &str) -> Result<Invitation, InviteError> {
        let rest = text
            .trim()
            .strip_prefix(SCHEME)
            .ok_or(InviteError::NotAnInvitation)?;
        let (version, body) = rest
            .split_once(':')
            .ok_or(InviteError::Damaged("nothing follows the version number"))?;
        if version != VERSION.to_string() {
            // Quoted in the message only when it is a number: the text is
            // whatever was pasted.
            if (1..=8).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InviteError::Version(version.to_owned()));
            }
            return Err(InviteError::Damaged("its version is not a number"));
        }
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|_| InviteError::Damaged("it is not base64url"))?,
        );
        if bytes.len() <= CHECK_LEN {
            return Err(InviteError::Damaged("it is too short"));
        }
        let (payload, check) = bytes.split_at(bytes.len() - CHECK_LEN);
        if Sha256::digest(payload)[..CHECK_LEN] != *check {
            return Err(InviteError::Damaged("its checksum does not match"));
        }
        let mut r = Reader(payload);
        let hub = r.str("the hub's name")?;
        let site = r.str("the site's name")?;
        let n = r.u8()? as usize;
        if n == 0 || n > MAX_ENDPOINTS {
            return Err(InviteError::Malformed("it must list 1 to 8 endpoints"));
        }
        let mut endpoints = Vec::with_capacity(n);
        for _ in 0..n {
            endpoints.push(r.str("an endpoint")?);
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(r.take(KEY_LEN)?);
        let mtu = r.u16()?;
        let wan_mtu = Some(r.u16()?).filter(|&m| m != 0);
        let transport = match r.u8()? {
            0 => Transport::Udp,
            1 => Transport::Tcp,
            2 => Transport::Auto,
            _ => return Err(InviteError::Malformed("unknown transport")),
        };
        let keepalive_ms = r.u32()?;
        let rekey_after_ms = r.u32()?;
        if !r.0.is_empty() {
            return Err(InviteError::Malformed("bytes follow the last field"));
        }
        Ok(Invitation {
            hub,
            site,
            endpoints,
            key,
            mtu,
            wan_mtu,
            transport,
            keepalive_ms,
            rekey_after_ms,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), InviteError> {
    let len = u8::try_from(s.len())
        .ok()
        .filter(|&l| l > 0)
        .ok_or(InviteError::Unencodable(what))?;
    out.push(len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// The payload, read from the front.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], InviteError> {
        if self.0.len() < n {
            return Err(InviteError::Malformed("it ends before its last field"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, InviteError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, InviteError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, InviteError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn str(&mut self, what: &'static str) -> Result<String, InviteError> {
        let len = self.u8()? as usize;
        if len == 0 {
            return Err(InviteError::Malformed(what));
        }
        let b = self.take(len)?;
        let s = std::str::from_utf8(b).map_err(|_| InviteError::Malformed(what))?;
        if s.chars().any(char::is_control) {
            return Err(InviteError::Malformed(what));
        }
        Ok(s.to_owned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn sample() -> Invitation {
        Invitation {
            hub: "hq".into(),
            site: "branch7".into(),
            endpoints: vec!["198.18.0.1:51901".into(), "hq.example.net:51901".into()],
            key: Zeroizing::new(core::array::from_fn(|i| i as u8)),
            mtu: 1500,
            wan_mtu: None,
            transport: Transport::Auto,
            keepalive_ms: 10_000,
            rekey_after_ms: 120_000,
        }
    }

    #[test]
    fn round_trip_and_known_bytes() {
        let inv = sample();
        let token = inv.encode().unwrap();
        assert!(token.starts_with("tapbridge-invite:1:"), "{}", *token);
        assert!(
            !token.contains(['=', '+', '/', '\n']),
            "base64url without padding"
        );
        assert_eq!(Invitation::decode(&token).unwrap(), inv);
        // White space around a pasted line is fine.
        assert_eq!(Invitation::decode(&format!("  {}\n", *token)).unwrap(), inv);
        // The layout: hub, site, endpoints, key, mtu, wan_mtu, transport, timers.
        let body = URL_SAFE_NO_PAD
            .decode(token.rsplit(':').next().unwrap())
            .unwrap();
        assert_eq!(&body[..11], b"\x02hq\x07branch7");
        assert_eq!(body[11], 2, "two endpoints");
        assert_eq!(body.len(), 11 + 1 + 17 + 21 + 32 + 2 + 2 + 1 + 4 + 4 + 4);
        let fixed = Invitation {
            endpoints: vec!["198.18.0.1:51901".into()],
            wan_mtu: Some(1400),
            transport: Transport::Udp,
            ..sample()
        };
        assert_eq!(Invitation::decode(&fixed.encode().unwrap()).unwrap(), fixed);
        // The key never shows in a debug rendering.
        assert!(!format!("{inv:?}").contains("[0, 1, 2"), "{inv:?}");
    }

    #[test]
    fn a_cut_or_changed_line_is_said_to_be_damaged() {
        let token = sample().encode().unwrap();
        for cut in [token.len() - 1, token.len() - 5, 40, 25, 20] {
            let err = Invitation::decode(&token[..cut]).unwrap_err();
            assert!(matches!(err, InviteError::Damaged(_)), "{cut}: {err}");
            assert!(err.to_string().contains("paste the whole line"), "{err}");
        }
        // One character changed.
        let mut changed = token.to_string();
        let i = changed.len() - 10;
        let c = if &changed[i..=i] == "A" { "B" } else { "A" };
        changed.replace_range(i..=i, c);
        assert!(matches!(
            Invitation::decode(&changed),
            Err(InviteError::Damaged(_))
        ));
        assert_eq!(
            Invitation::decode("tapbridge-invite:2:AAAA"),
            Err(InviteError::Version("2".into()))
        );
        // Whatever follows the scheme, the message stays one line.
        assert_eq!(
            Invitation::decode("tapbridge-invite:x\ny:AAAA"),
            Err(InviteError::Damaged("its version is not a number"))
        );
        assert_eq!(
            Invitation::decode("hello"),
            Err(InviteError::NotAnInvitation)
        );
        assert!(matches!(
            Invitation::decode("tapbridge-invite:1:!!!"),
            Err(InviteError::Damaged(_))
        ));
    }

    #[test]
    fn malformed_payloads_with_a_good_checksum_are_refused() {
        let wrap = |payload: &[u8]| {
            let mut p = payload.to_vec();
            p.extend_from_slice(&Sha256::digest(payload)[..CHECK_LEN]);
            format!("{SCHEME}1:{}", URL_SAFE_NO_PAD.encode(&p))
        };
        assert!(matches!(
            Invitation::decode(&wrap(b"\x02hq")),
            Err(InviteError::Malformed(_))
        ));
        assert!(matches!(
            Invitation::decode(&wrap(b"\x02hq\x01b\x00")),
            Err(InviteError::Malformed(_))
        ));
        let mut good = URL_SAFE_NO_PAD
            .decode(sample().encode().unwrap().rsplit(':').next().unwrap())
            .unwrap();
        good.truncate(good.len() - CHECK_LEN);
        good.push(0);
        assert_eq!(
            Invitation::decode(&wrap(&good)),
            Err(InviteError::Malformed("bytes follow the last field"))
        );
        // Arbitrary bytes never panic.
        for n in 0..200u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            let _ = Invitation::decode(&wrap(&junk));
        }
    }

    #[test]
    fn what_cannot_be_encoded_is_refused() {
        let long = Invitation {
            hub: "h".repeat(256),
            ..sample()
        };
        assert!(matches!(long.encode(), Err(InviteError::Unencodable(_))));
        let none = Invitation {
            endpoints: Vec::new(),
            ..sample()
        };
        assert!(matches!(none.encode(), Err(InviteError::Unencodable(_))));
    }
}
