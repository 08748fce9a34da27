//! tapbridge: a site-to-site Layer-2 bridge appliance.
//!
//! The crate is split into a **pure core** that never touches a socket, a file
//! descriptor or the clock, and a thin **I/O shell** around it. Imports point
//! down: shell → core → wire.
//!
//! Pure core (bytes and `Instant`s in, bytes and actions out):
//! - [`config`]: TOML → validated types that cannot hold invalid values; it
//!   produces the settings the core modules own.
//! - [`wire`]: views over byte buffers: the one Ethernet classifier, our
//!   tunnel messages and fragment header, the virtio-net header; it imports
//!   nothing from the modules above it.
//! - [`tunnel`]: the encrypted tunnel protocol (handshake, key schedule,
//!   sessions, replay window, fragmentation, timers).
//! - [`bridge`]: the layer-2 pipeline between the TAP and the peers, both
//!   ways: it ties the three below together and says through a sink what to
//!   write where.
//! - [`responder`]: the local ARP, ND and DHCP responder (tap_win32-style).
//! - [`leases`]: DHCP lease records and the formats of the lease file and
//!   its journal; its [`leases::store`] is the I/O part (below).
//! - [`switch`]: MAC learning, flooding and split horizon between peers.
//! - [`guard`]: storm control, loop detection, DHCP/RA guards and the BPDU
//!   policy that keep the bridge from hurting either LAN.
//! - [`invite`]: the invitation a hub gives a new branch (`bridge-ctl
//!   invite` / `join`): its one-line format, encoded and decoded.
//! - [`role`]: active or standby, a box's role in a high-availability pair;
//!   [`partner`]: the channel that hands the active box's leases to the
//!   standby.
//! - [`mac`]: the Ethernet address type shared by all of the above, and
//!   [`peer_id`]: the [`PeerId`](peer_id::PeerId) they all name peers by.
//!
//! I/O shell:
//! - [`datapath`]: TAP and UDP sockets, batched syscalls, the workers (which
//!   carry out what the tunnel and the bridge decide).
//! - [`leases::store`]: makes lease changes durable off the worker thread
//!   (atomic writes, journal and compaction, replies held until on disk).
//! - [`netlink`]: link, address, route and bridge programming over rtnetlink.
//! - [`control`]: the control socket protocol shared by daemon and CLI.
//! - [`hooks`]: the operator's up/down scripts, run without a shell, with the
//!   link's settings in the environment and a time limit.
//! - [`metrics`]: the optional Prometheus endpoint, fed by the worker's status.
//! - [`reload`]: re-reading a running link's config and key files.
//! - [`resolver`]: peers' endpoint names, resolved off the data path.
//! - [`daemon`]: wiring config → netlink → datapath → control, clean shutdown.
//! - [`sd_notify`]: systemd readiness, status lines and the service watchdog.
//!
//! Every layer has its own error type that keeps its causes; [`error::Chain`]
//! renders one with its causes for a person.
//!
//! How a frame flows: a worker reads an Ethernet frame from the TAP and hands
//! it to the bridge, which classifies it once; the responder may answer it
//! (ARP, ND, DHCP), the guards may refuse it, the switch learns its source and
//! picks the peer(s); the tunnel seals it into one or more UDP datagrams. In
//! the other direction a datagram is authenticated and replay-checked by the
//! tunnel, and the bridge checks the frame (guards, responder), learns its
//! source and writes it to the TAP, or at a hub sends it on to other peers.

pub mod bridge;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod error;
pub mod guard;
pub mod hooks;
pub mod invite;
pub mod leases;
pub mod mac;
pub mod metrics;
pub mod netlink;
pub mod partner;
pub mod peer_id;
pub mod reload;
pub mod resolver;
pub mod responder;
pub mod role;
pub mod sd_notify;
pub mod switch;
#[cfg(test)]
mod test_dir;
pub mod tunnel;
pub mod wire;
