//! tapbridge: a site-to-site Layer-2 bridge appliance.
//!
//! The crate is split into a **pure core** that never touches a socket, a file
//! descriptor or the clock, and a thin **I/O shell** around it.
//!
//! Pure core (bytes and `Instant`s in, bytes and actions out):
//! - [`config`]: TOML → validated types that cannot hold invalid values.
//! - [`wire`]: views over byte buffers for the formats that are our own (tunnel
//!   messages, fragment header) or no crate covers (the virtio-net header);
//!   it imports nothing from the modules above it.
//! - [`tunnel`]: the encrypted tunnel protocol (handshake, key schedule,
//!   sessions, replay window, fragmentation, timers).
//! - [`responder`]: the local ARP and DHCP responder (tap_win32-style masquerade).
//! - [`switch`]: MAC learning, flooding and split horizon between peers.
//! - [`guard`]: storm control, loop detection, DHCP/RA guards and the BPDU
//!   policy that keep the bridge from hurting either LAN.
//! - [`mac`]: the Ethernet address type shared by all of the above.
//!
//! I/O shell:
//! - [`datapath`]: TAP and UDP sockets, batched syscalls, the worker loop.
//! - [`netlink`]: link, address, route and bridge programming over rtnetlink.
//! - [`control`]: the control socket protocol shared by daemon and CLI.
//! - [`hooks`]: the operator's up/down scripts, run without a shell, with the
//!   link's settings in the environment and a time limit.
//! - [`metrics`]: the optional Prometheus endpoint, fed by the worker's status.
//! - [`reload`]: re-reading a running link's config and key files.
//! - [`daemon`]: wiring config → netlink → datapath → control, clean shutdown.
//! - [`sd_notify`]: systemd readiness, status lines and the service watchdog.
//!
//! Every layer has its own error type that keeps its causes; [`error::Chain`]
//! renders one with its causes for a person.
//!
//! How a frame flows: the TAP hands the worker an Ethernet frame; the responder
//! may answer it locally (ARP, DHCP); otherwise the switch picks the peer(s);
//! the tunnel seals it into one or more UDP datagrams. In the other direction a
//! datagram is authenticated and replay-checked by the tunnel, the switch learns
//! the source MAC, and the frame is written to the TAP.

pub mod bridge;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod error;
pub mod guard;
pub mod hooks;
pub mod mac;
pub mod metrics;
pub mod netlink;
pub mod reload;
pub mod resolver;
pub mod responder;
pub mod sd_notify;
pub mod switch;
pub mod tunnel;
pub mod wire;
