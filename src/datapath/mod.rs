//! The I/O data path: TAP, UDP, worker loop.
