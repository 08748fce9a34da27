//! The I/O data path: TAP, UDP, worker loop.
pub mod tap;
pub mod udp;
pub mod worker;
