//! The I/O data path: TAP, UDP and the worker loop. (The lease store that
//! makes the responder's leases durable off the worker thread is
//! [`crate::leases::store`].)
mod names;
pub mod tap;
pub mod tcp;
pub mod udp;
pub mod worker;
