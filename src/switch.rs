//! MAC learning switch with split horizon (pure).
