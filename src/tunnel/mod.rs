//! The encrypted tunnel protocol, sans I/O.
//!
//! Everything here takes bytes and `Instant`s and gives back bytes, frames
//! and events; the data path owns the sockets and the clock. This page is the
//! protocol's specification: a reviewer should be able to audit the wire
//! format and key schedule from it alone.
//!
//! # Handshake
//!
//! `Noise_NNpsk0_25519_AESGCM_SHA256` (Noise rev. 34): one round trip, both
//! sides ephemeral X25519 (forward secrecy), authenticated by the 32-byte
//! pre-shared key of the link. Prologue: `"tapbridge tunnel v1"`.
//!
//! ```text
//! NNpsk0:
//!   -> psk, e      (initiation)
//!   <- e, ee       (response)
//! ```
//!
//! Symmetric state (`HASH` = SHA-256, `HKDF(ck, ikm)` = RFC 5869 with `ck` as
//! salt, empty info, outputs split in 32-byte pieces):
//!
//! ```text
//! h  = "Noise_NNpsk0_25519_AESGCM_SHA256"      (exactly 32 bytes)
//! ck = h
//! h  = HASH(h || prologue)
//! ck, t, k = HKDF(ck, psk)        ; h = HASH(h || t)         -- psk token
//! initiator e:  h = HASH(h || e_i.pub); ck, k = HKDF(ck, e_i.pub)
//! payload1 = AESGCM(k, n=0, ad=h, timestamp || instance || name)
//!                                                   ; h = HASH(h || payload1)
//! responder e:  h = HASH(h || e_r.pub); ck, k = HKDF(ck, e_r.pub)
//! ee:           ck, k = HKDF(ck, X25519(e_i, e_r))   (all-zero result rejected)
//! payload2 = AESGCM(k, n=0, ad=h, timestamp) ; h = HASH(h || payload2)
//! k_i2r, k_r2i = HKDF(ck, "")
//! ```
//!
//! So the session keys come from HKDF-SHA256 over the PSK, the DH secret and
//! both sides' fresh randomness (the ephemerals). A new session is made for
//! every handshake; ephemeral secrets live only until the response is
//! processed, and every key is zeroized when dropped.
//!
//! Replay protection of handshakes: the initiation carries a TAI64N wall-clock
//! timestamp; a responder accepts an initiation for a peer only if its
//! timestamp is greater than the last one accepted from that peer. The
//! response carries the responder's timestamp too, so an initiator that just
//! restarted (and forgot every timestamp) learns the peer's clock at its first
//! handshake and refuses initiations recorded before. A replayed response
//! finds no pending handshake. Since both ends hold the same PSK, an
//! attacker could reflect an endpoint's own initiation back at it; each
//! tunnel instance puts a random 8-byte instance id in its initiations and
//! refuses initiations that carry its own. Handshake processing is rate limited
//! per source IP (20/s, bursts of 40).
//!
//! Cheap garbage filter: both handshake messages end in
//! `mac = HMAC-SHA256(HASH("tapbridge mac1" || psk), message-before-mac)[..16]`,
//! compared in constant time before any DH is computed.
//!
//! Peer identification: all peers of a link share its PSK (one trust domain).
//! The initiation's encrypted payload carries the initiator's link name; the
//! responder picks the configured peer with that name, else the one whose
//! endpoint matches the source, else one that waits to be contacted.
//!
//! # Wire format
//!
//! UDP payloads; integers little-endian unless noted; reserved bytes zero.
//!
//! ```text
//! Initiation (124 bytes)
//!   0  u8   type = 1
//!   1  [3]  reserved
//!   4  u32  sender index (initiator's session index)
//!   8  [32] initiator ephemeral public key
//!  40  [52] encrypted payload: TAI64N timestamp (12, big-endian),
//!           instance id (8), name length (1), name (31, zero padded)
//!  92  [16] AEAD tag of the payload
//! 108  [16] mac over bytes 0..108
//!
//! Response (88 bytes)
//!   0  u8   type = 2
//!   1  [3]  reserved
//!   4  u32  sender index (responder's session index)
//!   8  u32  receiver index (the initiation's sender index)
//!  12  [32] responder ephemeral public key
//!  44  [12] encrypted payload: responder's TAI64N timestamp
//!  56  [16] AEAD tag of the payload
//!  72  [16] mac over bytes 0..72
//!
//! Data (32 + n bytes) and Fragment (40 + n bytes)
//!   0  u8   type = 4 (whole frame; empty = keepalive) or 5 (fragment)
//!   1  [3]  reserved
//!   4  u32  receiver index
//!   8  u64  counter
//!  16  [n]  AES-256-GCM ciphertext of the frame, or of an 8-byte fragment
//!           header + a piece of the frame (see [`crate::wire::fragment`])
//! end  [16] tag; associated data = bytes 0..16
//! ```
//!
//! Transport nonce: 4 zero bytes, then the counter big-endian (Noise AESGCM).
//! Each session's counter starts at 0 and is never reused. A rekey is due
//! at 2^30 packets; a session stops sending at 2^31 and refuses received
//! counters from 2^31 on (before the replay window sees them), far below
//! the 2^32 messages per key that AES-GCM's usage limits are written around.
//! Per-frame overhead: 32 bytes of tunnel data plus 28 (IPv4) or 48 (IPv6)
//! of outer headers: 60 / 80 bytes in all.
//!
//! Receiving: the receiver index finds the session; the counter is checked
//! against a 4032-packet sliding window ([`replay`]), the tag verified, and
//! only then the window is advanced. Frames whose encapsulation exceeds
//! `wan_mtu` are split before encryption into 2–64 fragments, each its own
//! data message; reassembly is bounded (16 frames per peer) and times out
//! after 2 s.
//!
//! # Timers
//!
//! - **Rekey**: the initiator of a session starts a new handshake once it is
//!   `rekey_after` old or has sent `rekey_after_packets` packets; the
//!   responder does so 15 s later if the initiator did not. The initiator
//!   switches to the new session when the response arrives (and sends a
//!   keepalive if it has nothing else); the responder switches on the first
//!   packet under it. The previous session stays valid for receiving until
//!   it is `rekey_after` + 75 s old, so no frame in flight is lost.
//! - **Keepalive**: an empty data message after `keepalive` without sending.
//! - **Dead peer**: nothing authentic for 3 × `keepalive` → state `down` and
//!   re-handshake; retries back off 1, 2, 4, 8, 16, 16 … s (+ up to 250 ms).
//! - **Roaming**: any authenticated packet from a new source address moves
//!   the peer's endpoint.
//!
//! # What a "frame" is
//!
//! The tunnel carries opaque frames of up to `max_frame` bytes. The daemon's
//! data path hands it, for each Ethernet frame, the 10-byte Linux
//! `virtio_net_hdr` that its offload-enabled TAP puts in front, followed by
//! the frame; with TSO the frame may be a TCP batch of up to 64 KiB that the
//! receiving site's kernel segments. Both ends run the same data path, so
//! the header is always there.
//!
//! # Silence
//!
//! A datagram that does not authenticate produces no output of any kind; it
//! is counted as `rx_auth_failed`, `rx_replayed` or `rx_malformed`.

mod crypto;
mod exchange;
pub mod fragment;
mod handshake;
#[cfg(test)]
mod identity_tests;
mod keys;
mod peer;
pub mod ratelimit;
pub mod replay;
#[cfg(test)]
mod tests;
// The file is named after the type it holds, `Tunnel`.
#[allow(clippy::module_inception)]
mod tunnel;

pub use crate::wire::tunnel::TAG_LEN;
pub use handshake::HandshakeError;
pub use keys::PresharedKey;
pub use peer::{
    DATA_OVERHEAD, IPV4_UDP_OVERHEAD, IPV6_UDP_OVERHEAD, PeerParams, PeerSnapshot, PeerState,
    PeerStats,
};
pub use tunnel::{
    Counters, Entropy, Event, Incoming, OsEntropy, PeerId, Refusal, SendOutcome, Transmit, Tunnel,
    TunnelParams,
};
