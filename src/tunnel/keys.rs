//! Pre-shared keys and what is derived from them, per peer and per link.
//!
//! Each peer has one or two pre-shared keys (two during a rotation: the
//! first initiates, either is accepted). For every key and peer the tunnel
//! precomputes the handshake's starting state and MAC keys in both
//! directions, so a handshake costs no key derivation. An initiation does
//! not say who sent it: the responder finds the key by trying the first MAC
//! of each distinct key (see [`IncomingKeys`]); peers that share a key share
//! one entry, so a link where every peer uses `tunnel.psk_file` costs one
//! trial, as before.
//!
//! Keys are zeroized when dropped ([`PresharedKey`], and every derived key
//! type). The hash and HKDF states that briefly hold key bytes on the stack
//! while deriving are not all wiped: that is best effort, as in any Rust
//! program that does not control its stack.

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::crypto::{CookieKey, MacKey, SymmetricState};
use super::peer::PeerParams;
use super::tunnel::PeerId;

/// A 32-byte pre-shared key; zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PresharedKey([u8; 32]);

impl PresharedKey {
    /// Wraps key bytes (which the caller should wipe afterwards).
    pub fn new(bytes: [u8; 32]) -> Self {
        PresharedKey(bytes)
    }

    pub(super) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresharedKey(..)")
    }
}

/// One key as used with one peer.
pub(super) struct KeySlot {
    /// Starting state of handshakes we initiate (prologue names the peer).
    pub(super) base_out: SymmetricState,
    /// First MAC of messages we send to the peer.
    pub(super) mac_out: MacKey,
    /// Opens cookie replies the peer sends us.
    pub(super) cookie_out: CookieKey,
    /// First MAC of messages the peer sends us (its responses).
    pub(super) mac_in: MacKey,
}

impl KeySlot {
    pub(super) fn new(psk: &PresharedKey, local_name: &str, peer_name: &str) -> Self {
        let (k, peer) = (psk.bytes(), peer_name.as_bytes());
        KeySlot {
            base_out: SymmetricState::initial(k, peer),
            mac_out: MacKey::new(k, peer),
            cookie_out: CookieKey::new(k, peer),
            mac_in: MacKey::new(k, local_name.as_bytes()),
        }
    }
}

/// One distinct key as seen by the responder.
pub(super) struct IncomingKey {
    /// First MAC of initiations sent to us under this key.
    pub(super) mac: MacKey,
    /// Starting state of handshakes sent to us under this key.
    pub(super) base: SymmetricState,
    /// Seals cookie replies to initiators that use this key.
    pub(super) cookie: CookieKey,
    /// The peers (and which of their keys) that use it.
    pub(super) peers: Vec<(PeerId, usize)>,
}

/// Every distinct key of the link, for finding the key of an initiation.
///
/// Cost: one HMAC-SHA256 over 108 bytes per distinct key until one
/// verifies; each comparison is constant time. Measured on the build
/// machine (SHA extensions; `initiation_key_lookup_worst_case` in
/// `tests/benches/tunnel.rs`): 0.29 µs per key, so finding the key of an
/// initiation costs at most 29 µs at 100 peers with their own keys and
/// 0.33 ms at 1000, against ~100 µs for the X25519 work of a response. Garbage that matches no key costs the full
/// scan; the per-source rate limit and the cookie only start after a MAC
/// verified, so this scan is what an unauthenticated flood can make the
/// responder do.
#[derive(Default)]
pub(super) struct IncomingKeys {
    keys: Vec<IncomingKey>,
}

impl IncomingKeys {
    /// The table for `local_name`'s peers and their keys.
    pub(super) fn new(local_name: &str, peers: &[PeerParams]) -> Self {
        let mut keys: Vec<IncomingKey> = Vec::new();
        let me = local_name.as_bytes();
        for (id, peer) in PeerId::all(peers.len()).zip(peers) {
            for (slot, psk) in peer.keys.iter().enumerate() {
                let mac = MacKey::new(psk.bytes(), me);
                match keys.iter_mut().find(|k| k.mac == mac) {
                    Some(k) => k.peers.push((id, slot)),
                    None => keys.push(IncomingKey {
                        mac,
                        base: SymmetricState::initial(psk.bytes(), me),
                        cookie: CookieKey::new(psk.bytes(), me),
                        peers: vec![(id, slot)],
                    }),
                }
            }
        }
        IncomingKeys { keys }
    }

    /// The position of the key whose first MAC verifies `mac1` over `input`.
    pub(super) fn find(&self, input: &[u8], mac1: &[u8]) -> Option<usize> {
        self.keys.iter().position(|k| k.mac.verify(input, mac1))
    }

    /// The key at a position [`find`](Self::find) returned.
    pub(super) fn get(&self, at: usize) -> &IncomingKey {
        &self.keys[at]
    }
}
