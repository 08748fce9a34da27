//! The I/O data path: TAP, UDP, worker loop.
/// The TAP device and its queues.
pub mod tap;
/// The tunnel UDP socket with batched syscalls.
pub mod udp;
