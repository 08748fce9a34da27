//! What a [`super::Tunnel`] reports about its sessions: the [`Event`]s of
//! the audit log, why a handshake was refused ([`HandshakeRefusal`]), and
//! the name an unknown sender claimed ([`ClaimedName`], printable however
//! hostile its bytes).

use std::net::SocketAddr;
use std::time::Instant;

use crate::peer_id::PeerId;

/// A session event, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A handshake completed (`rekey`: a previous session existed).
    HandshakeCompleted {
        /// Which peer.
        peer: PeerId,
        /// Its endpoint.
        endpoint: SocketAddr,
        /// Whether this replaced a live session.
        rekey: bool,
    },
    /// The peer fell silent.
    PeerDown {
        /// Which peer.
        peer: PeerId,
    },
    /// Our handshakes to a peer went unanswered: nothing authentic came
    /// back after [`NO_ANSWER_AFTER`](super::NO_ANSWER_AFTER) initiations
    /// in a row. Reported then, and at most once every
    /// [`NO_ANSWER_EVERY`](super::NO_ANSWER_EVERY) while it lasts.
    NoAnswer {
        /// Which peer.
        peer: PeerId,
        /// Where the last initiation went.
        to: SocketAddr,
        /// It went over TCP.
        tcp: bool,
        /// Initiations sent since the peer was last heard from.
        handshakes: u32,
        /// When the first of them was sent.
        since: Instant,
    },
    /// A peer whose silence was reported ([`Event::NoAnswer`]) was heard
    /// from again.
    Answered {
        /// Which peer.
        peer: PeerId,
        /// Initiations it had left unanswered.
        after: u32,
    },
    /// A handshake message was refused (at most a few per second are
    /// reported; the counters count all).
    HandshakeRefused {
        /// Where it came from.
        from: SocketAddr,
        /// The peer it concerned, when known.
        peer: Option<PeerId>,
        /// Why.
        reason: HandshakeRefusal,
    },
    /// The outer packet size used for a peer changed (discovered, or a
    /// fallback because the path shrank).
    PathMtuChanged {
        /// Which peer.
        peer: PeerId,
        /// The new size.
        mtu: usize,
        /// The size shrank because larger packets were lost (or the kernel
        /// knows a smaller limit), rather than grew or a new path started.
        lost: bool,
    },
    /// An authenticated packet came from a new address.
    EndpointMoved {
        /// Which peer.
        peer: PeerId,
        /// The previous endpoint.
        from: Option<SocketAddr>,
        /// The new one.
        to: SocketAddr,
    },
    /// The peer's messages now travel over TCP (`tcp`) or UDP
    /// (`tunnel.transport = "auto"`).
    TransportChanged {
        /// Which peer.
        peer: PeerId,
        /// Over TCP now.
        tcp: bool,
    },
}

/// Why a handshake message was refused (reported for the log, rate limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRefusal {
    /// The initiation's key hint names no key of this link: the initiator
    /// uses another key, or calls this site by another name (both are in
    /// the hint), or it is garbage. Which one cannot be told: the hint is
    /// all there is to go by without the key.
    UnknownKey,
    /// The key hint names a key of this link but the first MAC does not
    /// verify: damaged or forged (anyone who saw an initiation knows its
    /// hint), never a configuration mistake.
    BadMac,
    /// The sender speaks an older protocol version (1 or 2).
    OldVersion,
    /// The initiation authenticated under a key of this link, but the name
    /// the initiator gives is not a peer of that key. Only a holder of the
    /// key can get this far, so the name is worth showing: it is what the
    /// other site calls itself.
    UnknownPeer {
        /// The name it gave.
        name: ClaimedName,
    },
    /// The timestamp is not newer than the last accepted: a replay.
    Stale,
    /// A handshake budget was spent: the link's for unauthenticated work,
    /// the peer's, or (for a source a cookie proved) the source's.
    RateLimited,
}

impl HandshakeRefusal {
    /// The reason as the status JSON spells it (`last_refusal.reason`).
    pub fn key(&self) -> &'static str {
        match self {
            HandshakeRefusal::UnknownKey => "unknown_key",
            HandshakeRefusal::BadMac => "bad_mac",
            HandshakeRefusal::OldVersion => "old_version",
            HandshakeRefusal::UnknownPeer { .. } => "unknown_peer",
            HandshakeRefusal::Stale => "replayed",
            HandshakeRefusal::RateLimited => "rate_limited",
        }
    }
}

impl std::fmt::Display for HandshakeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandshakeRefusal::UnknownKey => "its key hint names no key of this link",
            HandshakeRefusal::BadMac => "it does not authenticate (damaged or forged)",
            HandshakeRefusal::OldVersion => {
                "it speaks an older tapbridge protocol version (upgrade that site)"
            }
            HandshakeRefusal::UnknownPeer { .. } => {
                "the name it gives is not the peer of the key it uses"
            }
            HandshakeRefusal::Stale => {
                "its timestamp is not newer than the last accepted (a replay)"
            }
            HandshakeRefusal::RateLimited => {
                "a handshake budget is spent (the link's, its peer's or its source's)"
            }
        })
    }
}

/// The name an authenticated initiation gave for its sender (at most 31
/// bytes, as it came). Shown escaped: it is the other site's text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClaimedName {
    bytes: [u8; 31],
    len: u8,
}

impl ClaimedName {
    /// The name's bytes (cut to 31).
    pub fn new(name: &[u8]) -> Self {
        let mut bytes = [0u8; 31];
        let len = name.len().min(bytes.len());
        bytes[..len].copy_from_slice(&name[..len]);
        ClaimedName {
            bytes,
            len: len as u8,
        }
    }

    /// The bytes as they came.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Display for ClaimedName {
    /// The name, with anything but printable ASCII escaped (`\x07`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for &b in self.as_bytes() {
            if (b.is_ascii_graphic() || b == b' ') && b != b'"' && b != b'\\' {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for ClaimedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}
