//! The I/O data path: TAP, UDP, worker loop, and the lease file the worker
//! keeps up to date.
pub mod lease_file;
pub mod lease_store;
mod names;
pub mod tap;
pub mod udp;
pub mod worker;
