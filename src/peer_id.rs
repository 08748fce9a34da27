//! [`PeerId`]: how every layer names a peer of the link. The tunnel numbers
//! its peers `0..n` in configuration order (a reload that removes one
//! renumbers those after it); the switch, the guard and the responder key
//! what they learn by it, and the shell indexes its per-peer state with it.
//! Neutral ground, so none of those modules imports another for a number.

use std::fmt;

/// A peer of the link: its position among the link's peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PeerId(usize);

impl PeerId {
    /// The peer at `index` (from 0).
    pub const fn new(index: usize) -> PeerId {
        PeerId(index)
    }

    /// Its position, for indexing per-peer state.
    pub const fn index(self) -> usize {
        self.0
    }

    /// The first `n` peers, in order.
    pub fn all(n: usize) -> impl Iterator<Item = PeerId> + Clone {
        (0..n).map(PeerId)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer #{}", self.0)
    }
}

// Per-peer state is a `Vec` in peer order; these let it be indexed by the
// id itself (`peers[id]`), so a bare number never stands for a peer.
impl<T> std::ops::Index<PeerId> for Vec<T> {
    type Output = T;

    fn index(&self, id: PeerId) -> &T {
        &self[id.0]
    }
}

impl<T> std::ops::IndexMut<PeerId> for Vec<T> {
    fn index_mut(&mut self, id: PeerId) -> &mut T {
        &mut self[id.0]
    }
}
