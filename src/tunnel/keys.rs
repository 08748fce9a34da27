//! Pre-shared keys and what is derived from them, per peer and per link.
//!
//! Each peer has one or two pre-shared keys (two during a rotation: the
//! first initiates, either is accepted). For every key and peer the tunnel
//! precomputes the handshake's starting state, MAC keys in both directions
//! and the key hint, so a handshake costs no key derivation. An initiation
//! carries the hint of its key (and the responder's name): the responder
//! finds the key in one table lookup (see [`IncomingKeys`]) and checks that
//! one key's first MAC. Peers that share a key share one entry.
//!
//! Keys are zeroized when dropped ([`PresharedKey`], and every derived key
//! type). The hash and HKDF states that briefly hold key bytes on the stack
//! while deriving are not all wiped: that is best effort, as in any Rust
//! program that does not control its stack.

use std::collections::HashMap;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::crypto::{CookieKey, HINT_LEN, MacKey, SymmetricState, key_hint};
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
    /// Key hint of the initiations we send the peer.
    pub(super) hint_out: [u8; HINT_LEN],
}

impl KeySlot {
    pub(super) fn new(psk: &PresharedKey, local_name: &str, peer_name: &str) -> Self {
        let (k, peer) = (psk.bytes(), peer_name.as_bytes());
        KeySlot {
            base_out: SymmetricState::initial(k, peer),
            mac_out: MacKey::new(k, peer),
            cookie_out: CookieKey::new(k, peer),
            mac_in: MacKey::new(k, local_name.as_bytes()),
            hint_out: key_hint(k, peer),
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

/// Every distinct key of the link, and a table from key hint to key.
///
/// Cost of finding an initiation's key: one hash-table lookup of the 8-byte
/// hint, then the first MAC of that one key (HMAC-SHA256 over 116 bytes,
/// about 0.3 µs), whatever the number of peers and keys. During a rotation
/// a peer has two keys, so two hints, each found directly. Garbage whose
/// hint is in no table costs the lookup alone; garbage that carries a real
/// hint (seen on the wire) costs one MAC, within the link's budget for
/// unauthenticated work (`exchange.rs`). Two distinct keys whose hints
/// collide (odds about n² / 2⁶⁵ for n keys) share a table entry and cost
/// one MAC each.
#[derive(Default)]
pub(super) struct IncomingKeys {
    keys: Vec<IncomingKey>,
    by_hint: HashMap<[u8; HINT_LEN], Vec<usize>>,
}

impl IncomingKeys {
    /// The table for `local_name`'s peers and their keys.
    pub(super) fn new(local_name: &str, peers: &[PeerParams]) -> Self {
        let mut keys: Vec<IncomingKey> = Vec::new();
        let mut by_hint: HashMap<[u8; HINT_LEN], Vec<usize>> = HashMap::new();
        let me = local_name.as_bytes();
        for (id, peer) in PeerId::all(peers.len()).zip(peers) {
            for (slot, psk) in peer.keys.iter().enumerate() {
                let hint = key_hint(psk.bytes(), me);
                let known = by_hint.get(&hint).and_then(|at| {
                    let mac = MacKey::new(psk.bytes(), me);
                    at.iter().copied().find(|&k| keys[k].mac == mac)
                });
                match known {
                    Some(k) => keys[k].peers.push((id, slot)),
                    None => {
                        by_hint.entry(hint).or_default().push(keys.len());
                        keys.push(IncomingKey {
                            mac: MacKey::new(psk.bytes(), me),
                            base: SymmetricState::initial(psk.bytes(), me),
                            cookie: CookieKey::new(psk.bytes(), me),
                            peers: vec![(id, slot)],
                        });
                    }
                }
            }
        }
        IncomingKeys { keys, by_hint }
    }

    /// The positions of the keys an initiation's hint stands for: one, or
    /// none for garbage.
    pub(super) fn candidates(&self, hint: &[u8; HINT_LEN]) -> &[usize] {
        self.by_hint.get(hint).map_or(&[], Vec::as_slice)
    }

    /// The key at a position [`candidates`](Self::candidates) returned.
    pub(super) fn get(&self, at: usize) -> &IncomingKey {
        &self.keys[at]
    }
}
