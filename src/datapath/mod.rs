//! The I/O data path: TAP, UDP, worker loop, and the lease store that makes
//! the responder's leases durable off the worker thread.
pub mod lease_file;
pub mod lease_store;
mod names;
pub mod tap;
pub mod tcp;
pub mod udp;
pub mod worker;
