//! The tunnel protocol (pure).
