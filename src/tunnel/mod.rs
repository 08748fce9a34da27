//! The encrypted tunnel protocol, sans I/O.
//!
//! Everything here takes bytes and `Instant`s and gives back bytes, frames
//! and events; the data path owns the sockets and the clock. This page is the
//! protocol's specification: a reviewer should be able to audit the wire
//! format and key schedule from it alone.
//!
//! # Handshake (protocol version 3)
//!
//! `Noise_NNpsk0_25519_AESGCM_SHA256` (Noise rev. 34): one round trip, both
//! sides ephemeral X25519 (forward secrecy), authenticated by a 32-byte
//! pre-shared key. Each peer has its own key (a link may also give every
//! peer the same one), and both ends' names are bound in: the intended
//! responder's name through the prologue, the key hint and the first MAC,
//! the initiator's name inside the encrypted payload.
//!
//! ```text
//! NNpsk0:
//!   -> psk, e      (initiation)
//!   <- e, ee       (response)
//! ```
//!
//! Notation: `HASH` = SHA-256; `HKDF(ck, ikm)` = RFC 5869 with `ck` as salt,
//! empty info, outputs split in 32-byte pieces; `N(x)` = one length byte,
//! then the bytes of the site name `x` (at most 31); `I`, `R` = the
//! initiator's and the intended responder's link names (each site names its
//! peers by their link names, so both ends know both).
//!
//! ```text
//! prologue = "tapbridge tunnel v3" || N(R)
//! h  = "Noise_NNpsk0_25519_AESGCM_SHA256"      (exactly 32 bytes)
//! ck = h
//! h  = HASH(h || prologue)
//! ck, t, k = HKDF(ck, psk)        ; h = HASH(h || t)         -- psk token
//! initiator e:  h = HASH(h || e_i.pub); ck, k = HKDF(ck, e_i.pub)
//! payload1 = AESGCM(k, n=0, ad=h, timestamp || instance || N(I) padded)
//!                                                   ; h = HASH(h || payload1)
//! responder e:  h = HASH(h || e_r.pub); ck, k = HKDF(ck, e_r.pub)
//! ee:           ck, k = HKDF(ck, X25519(e_i, e_r))   (all-zero result rejected)
//! payload2 = AESGCM(k, n=0, ad=h, timestamp) ; h = HASH(h || payload2)
//! k_i2r, k_r2i = HKDF(ck, "")
//! ```
//!
//! So the session keys come from HKDF-SHA256 over the PSK, the responder's
//! name, the DH secret and both sides' fresh randomness (the ephemerals); a
//! response decrypts only for the site that holds the key *and* was the one
//! meant. A new session is made for every handshake; ephemeral secrets live
//! only until the response is processed, and every key is zeroized when
//! dropped.
//!
//! **Key hint, cheap filter.** An initiation under key `psk` to site `R`
//! carries `hint = HASH("tapbridge hint v3" || psk || N(R))[..8]` in clear.
//! The responder keeps a table from hint to key (built when the link is
//! configured or reloaded), so it finds the key of an initiation with one
//! lookup, whatever its number of peers and keys; a hint in no table is
//! refused there (`rx_auth_failed`, and `rx_unknown_key`) without any MAC. The hint is not
//! authentication: the initiation then carries
//! `mac1 = HMAC-SHA256(HASH("tapbridge mac1 v3" || psk || N(R)),
//! message-before-mac1)[..16]`, and responses carry the same MAC keyed for
//! the initiator; it is compared in constant time before any DH, and the
//! responder checks exactly one (two keys whose hints collide, odds about
//! n² / 2⁶⁵, cost one each). The key names its candidate peers (peers
//! sharing a key share one entry), and the name in the decrypted payload
//! must be one of them, else the initiation is refused (`rx_unknown_peer`).
//! A site holding only its own key therefore cannot pass as another site,
//! and an initiation delivered to the wrong site fails there: its hint and
//! `mac1` belong to the other site's name. Without the key an observer
//! learns from a hint only that two initiations use the same key (as their
//! source address usually tells anyway). A key file may hold two keys
//! during a rotation: each has its own hint, initiations alternate between
//! them on retries (the first key first), and either is accepted, until a
//! handshake under the first key has completed with that peer; from then
//! on the other is retired for the peer (neither used nor accepted) until
//! its keys are set again.
//!
//! **Replays.** The initiation carries a TAI64N wall-clock timestamp (the
//! shell reports the wall clock every batch, and ours never go backwards); a
//! responder accepts an initiation for a peer only if its timestamp is
//! greater than the last one accepted from that peer. The response carries
//! the responder's timestamp too, so an initiator that just restarted (and
//! forgot every timestamp) learns the peer's clock at its first handshake. A
//! replayed response finds no pending handshake. Each tunnel instance puts a
//! random 8-byte instance id in its initiations and refuses its own (a
//! reflection; the responder-name binding already stops it at `mac1`).
//!
//! **Load.** Order of checks on an initiation: the hint (no key: refused,
//! no MAC); the link's budget for unauthenticated work (10,000 initiations
//! with a known hint a second, bursts as many; past it they are dropped
//! unchecked and counted as `handshake_rate_limited`) and the source
//! block's (IPv4 /24, IPv6 /56: 1,000 a second, bursts of 2,000; a keyed
//! hash into 4096 fixed buckets); `mac1`; the cookie (when under load or
//! past the block's budget); payload decryption (no DH); the name against
//! the key's peers; instance id; timestamp. Only then is the DH charged:
//! to the source (20/s, bursts of 40; IPv4 address or IPv6 /64, another
//! 4096 buckets) if the initiation carried a valid cookie or came over TCP
//! (a source proven to receive at its address), else to the authenticated
//! peer's own budget of the same size. A response is charged to its peer.
//! So an initiation someone makes under their own key with another site's
//! address is charged to them, never to that site or its address.
//!
//! A responder that answered 50 initiations in the current or previous
//! second is under load: an initiation must then carry
//! `mac2 = HMAC-SHA256(cookie, bytes 0..132)[..16]` with
//! `cookie = HMAC-SHA256(secret, source IP || port)[..16]` (`secret`
//! random, replaced every 2 minutes; the previous one is still accepted);
//! without it the responder sends a cookie reply instead of doing anything
//! more. The same holds for initiations from a block past its budget. The
//! initiator keeps the cookie for 110 s and sends it with its next retry.
//! A spoofed source never sees its cookie, so a spoofed flood costs no DH,
//! and a site whose block someone floods gets in with a cookie. The cookie
//! reply is sealed with AES-256-GCM under
//! `HASH("tapbridge cookie v3" || psk || N(R))`, a random nonce and the
//! initiation's `mac1` as associated data: only the key holder reads it.
//! Each initiation with a known hint costs the responder at most one
//! `mac1`, a cookie check (up to four HMACs) and a cookie reply or a
//! decryption: a few µs, so garbage costs at most a few percent of a core
//! whatever it carries.
//!
//! Refused handshakes are counted one by one and reported for the log with
//! their source, at most one a second (bursts of 5), and one reason from one
//! address at most once a minute (a misconfigured site that retries forever
//! is a line a minute, not one per retry). An initiation of
//! version 1 or 2 is refused and reported as such, never half answered.
//!
//! **What the refusing side can tell.** The responder stays silent in every
//! case below; only its log and counters differ, and each says no more than
//! the initiation proved:
//! - a hint in no table (`UnknownKey`): the initiator uses a key this site
//!   does not have, *or* calls this site by a name other than its link
//!   name (the hint covers both), or sends garbage. These cannot be told
//!   apart without the key, and nothing else is believed of such a packet.
//! - a known hint whose `mac1` fails (`BadMac`): damaged or forged (a hint
//!   is public once seen on the wire); never blamed on the configuration.
//! - `mac1` and the payload authenticate but the name inside is not a peer
//!   of that key (`UnknownPeer`): only a key holder gets here, so the name
//!   it gives is shown (escaped): this site's `[[peer]] name` for it is
//!   wrong, or a site sharing the key names itself as it should not.
//!
//! The calling side cannot see any of this: it only notices that its
//! initiations go unanswered. After [`NO_ANSWER_AFTER`] in a row with
//! nothing authentic back it reports [`Event::NoAnswer`] (about 15 s with
//! the backoff below), then at most once per [`NO_ANSWER_EVERY`], and
//! [`Event::Answered`] once the peer is heard from again.
//!
//! # Wire format
//!
//! UDP payloads; integers little-endian unless noted; byte 1 of every
//! message is the protocol version, 3; reserved bytes zero. Version 3 is
//! version 2 with the key hint in the initiation (and new labels).
//!
//! ```text
//! Initiation (148 bytes)
//!   0  u8   type = 1
//!   1  u8   version = 3
//!   2  [2]  reserved
//!   4  u32  sender index (initiator's session index)
//!   8  [8]  key hint
//!  16  [32] initiator ephemeral public key
//!  48  [52] encrypted payload: TAI64N timestamp (12, big-endian),
//!           instance id (8), name length (1), name (31, zero padded)
//! 100  [16] AEAD tag of the payload
//! 116  [16] mac1 over bytes 0..116
//! 132  [16] mac2 over bytes 0..132 (zero without a cookie)
//!
//! Response (88 bytes)
//!   0  u8   type = 2
//!   1  u8   version = 3
//!   2  [2]  reserved
//!   4  u32  sender index (responder's session index)
//!   8  u32  receiver index (the initiation's sender index)
//!  12  [32] responder ephemeral public key
//!  44  [12] encrypted payload: responder's TAI64N timestamp
//!  56  [16] AEAD tag of the payload
//!  72  [16] mac1 over bytes 0..72
//!
//! Cookie reply (52 bytes)
//!   0  u8   type = 3
//!   1  u8   version = 3
//!   2  [2]  reserved
//!   4  u32  receiver index (the initiation's sender index)
//!   8  [12] nonce
//!  20  [16] encrypted cookie
//!  36  [16] AEAD tag
//!
//! Data (32 + n bytes) and Fragment (40 + n bytes)
//!   0  u8   type = 4 (whole frame; empty = keepalive) or 5 (fragment)
//!   1  u8   version = 3
//!   2  [2]  reserved
//!   4  u32  receiver index
//!   8  u64  counter
//!  16  [n]  AES-256-GCM ciphertext of the frame, or of an 8-byte fragment
//!           header + a piece of the frame (see [`crate::wire::fragment`])
//! end  [16] tag; associated data = bytes 0..16
//!
//! Probe (32 + n bytes): the data layout with type = 6; the ciphertext is
//! of a probe body (see [`crate::wire::tunnel::probe`]): kind (0 probe,
//! 1 acknowledgement), u32 probe id, u16 outer size probed, then zero
//! padding up to that size (an acknowledgement is not padded). Sealed under
//! the session like data, with the same counter sequence. An
//! acknowledgement goes back to the address the probe came from.
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
//! data message; reassembly is bounded (16 frames per peer), keyed by the
//! receiving session and the fragment id (ids restart with each sender
//! instance), and times out after 2 s.
//!
//! # Path MTU
//!
//! With `wan_mtu = "auto"` each peer's outer packet size is discovered by
//! probes (see `pmtu.rs`): it starts at 1280, probes are answered only when
//! authentic and never count as frames, and a path that shrinks is noticed
//! by lost confirmations while frames flow. Fragmentation follows the size
//! in use per peer.
//!
//! # Timers
//!
//! - **Rekey**: the initiator of a session starts a new handshake once it is
//!   `rekey_after` old (minus a random jitter of up to an eighth of it, so
//!   many peers that came up together do not all rekey at once) or has sent
//!   `rekey_after_packets` packets; the
//!   responder does so 15 s later if the initiator did not. The initiator
//!   switches to the new session when the response arrives (and sends a
//!   keepalive if it has nothing else); the responder switches on the first
//!   packet under it. The previous session stays valid for receiving until
//!   it is `rekey_after` + 75 s old, so no frame in flight is lost.
//! - **Keepalive**: an empty data message after `keepalive` without sending.
//! - **Dead peer**: nothing authentic for 3 × `keepalive` → state `down` and
//!   re-handshake; retries back off 1, 2, 4, 8, 16, 16 … s (+ up to 250 ms).
//! - **Roaming**: any authenticated data packet (keepalives included) from a
//!   new source address moves the peer's endpoint, and so does the response
//!   to our own initiation; an initiation alone never does (anyone on the
//!   path can relay one from elsewhere).
//! - **Uplinks**: a peer configured with several addresses (its site's
//!   uplinks, in order of preference) is not moved between them by roaming
//!   while it is up; instead frames sent with nothing authentic back for
//!   1 s start a round of path probes (the probe message below with an id
//!   that has bit 31 set) to every address, and the peer moves to the most
//!   preferred one that answers within 1 s; a less preferred one in use
//!   has the better ones probed every 5 s. Handshakes of a peer that is not
//!   up cycle through the addresses. See the `paths` module.
//!
//! # What a "frame" is
//!
//! The tunnel carries opaque frames of up to `max_frame` bytes. The daemon's
//! data path hands it, for each Ethernet frame, the 10-byte Linux
//! `virtio_net_hdr` that its offload-enabled TAP puts in front, followed by
//! the frame; with TSO the frame may be a TCP batch of up to 64 KiB that the
//! receiving site's kernel segments. Both ends run the same data path, so
//! the header is always there; the receiving shell checks it
//! ([`crate::wire::virtio::VirtioNetHdr::is_sane`]) before its kernel sees
//! it.
//!
//! # Silence
//!
//! A datagram that does not authenticate produces no output of any kind; it
//! is counted as `rx_auth_failed` (of which `rx_unknown_key`),
//! `rx_replayed`, `rx_malformed`, `rx_unknown_session`, `rx_unknown_peer`
//! or `rx_old_version`. The only
//! answer to a handshake message that is not a response is the cookie reply,
//! and only to an initiation whose `mac1` verified.
//!
//! # Memory per peer
//!
//! Bounded, measured with `size_of` on x86-64: the peer's state with room
//! for five sessions (current, next, three older; 2.7 KiB each, most of it
//! the two expanded AES-GCM keys) is 14 KiB; each of its keys costs 1.3 KiB
//! (and 1.3 KiB in the responder's table per distinct key). On top, used
//! only when needed and then kept: up to 16 reassembly buffers of
//! `max_frame` bytes (1.5 KiB each without TSO, 64 KiB with it) and up to 32
//! frames queued while a first session is set up. So a peer costs about
//! 19 KiB at rest and at most ~40 KiB (plain frames) or ~1.1 MiB (TSO
//! frames, fragmented by a small `wan_mtu`); measured in the 1000-peer
//! simulation (`tests/tunnel_scale.rs`): 19 KiB per peer at the hub when
//! built, 20 KiB after an hour of traffic. Lookups per frame are O(1): the
//! receiver index in a hash map, the peer by position. The timers are
//! partly: [`Tunnel::poll_timeout`] reads a cache of each peer's next
//! deadline, refreshed only for the peers that changed, while
//! [`Tunnel::handle_timeout`] still visits every peer when it runs (about
//! 0.2 ms at 1000 peers, once per due deadline, not per frame).

pub mod admission;
mod crypto;
mod deferred;
#[cfg(test)]
mod diagnosis_tests;
mod dispatch;
mod event;
mod exchange;
pub mod fragment;
mod handshake;
#[cfg(test)]
mod identity_tests;
mod keys;
mod paths;
mod peer;
mod pmtu;
pub mod ratelimit;
mod reconfigure;
mod refusals;
pub mod replay;
mod standby;
#[cfg(test)]
mod standby_tests;
#[cfg(test)]
mod tests;
mod timers;
mod transport;
#[cfg(test)]
mod transport_tests;
#[cfg(test)]
mod uplink_tests;
// The file is named after the type it holds, `Tunnel`.
#[allow(clippy::module_inception)]
mod tunnel;

pub use crate::wire::tunnel::TAG_LEN;
pub(crate) use crypto::{TransportKey, partner_key};
pub use deferred::{HandshakeJob, MAX_JOBS};
pub use handshake::HandshakeError;
pub use keys::PresharedKey;
pub use peer::{
    DATA_OVERHEAD, IPV4_UDP_OVERHEAD, IPV6_UDP_OVERHEAD, PeerParams, PeerSnapshot, PeerState,
    PeerStats,
};
pub use pmtu::{BASE_MTU, MAX_MTU};
pub use timers::{NO_ANSWER_AFTER, NO_ANSWER_EVERY};
pub use transport::{SWITCH_AFTER, TransportMode, UDP_RETRY};
pub use tunnel::{
    ClaimedName, Counters, Entropy, Event, HandshakeRefusal, Incoming, OsEntropy, PeerId,
    SendOutcome, Transmit, Tunnel, TunnelParams,
};
