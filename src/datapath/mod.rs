//! The I/O data path: TAP, UDP and the worker loop. (The lease store that
//! makes the responder's leases durable off the worker thread is
//! [`crate::leases::store`].)
mod names;
pub mod tap;
pub mod tcp;
pub mod udp;
pub mod worker;

use crate::config::Transport;
use crate::tunnel::TransportMode;

/// `tunnel.transport` as the tunnel runs it. Mapped here, in the shell that
/// hands the config to the core, so that neither imports the other.
impl From<Transport> for TransportMode {
    fn from(t: Transport) -> TransportMode {
        match t {
            Transport::Udp => TransportMode::Udp,
            Transport::Tcp => TransportMode::Tcp,
            Transport::Auto => TransportMode::Auto,
        }
    }
}
