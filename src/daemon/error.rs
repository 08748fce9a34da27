//! [`DaemonError`]: why a link could not be brought up, one variant per step
//! of [`run`](super::run), each keeping its cause.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::control::ClientError;
use crate::control::server::ServerError;
use crate::datapath::tap::TapError;
use crate::datapath::udp::UdpError;
use crate::hooks::HookError;
use crate::metrics::MetricsError;
use crate::netlink::NetlinkError;
use crate::resolver::EndpointError;
use crate::responder::ResponderError;

/// Why a link could not be brought up (or its state not be read). Each
/// variant is one step of [`run`](super::run); a step that adds words to its cause's
/// message has the cause as its `source`, one that does not is transparent.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A daemon already runs this link.
    #[error(
        "link {name} is already up (pid {pid}); take it down first with `bridge-ctl link down {link}`"
    )]
    AlreadyUp {
        /// The link.
        name: String,
        /// How a command line names it ([`Config::command_line_name`](crate::config::Config::command_line_name)).
        link: String,
        /// The running daemon's pid (0 if it did not say).
        pid: u32,
    },
    /// The link's lock file could not be opened, locked or written.
    #[error("cannot lock the link at {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A daemon answers on the link's socket but refused to say who it is.
    #[error("a daemon is answering on {} but refused: {reason}", socket.display())]
    Refused {
        /// The control socket.
        socket: PathBuf,
        /// The daemon's answer.
        reason: String,
    },
    /// The link's control socket could not be asked.
    #[error(transparent)]
    Control(#[from] ClientError),
    /// The configuration or a key file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// SIGTERM, SIGINT and SIGHUP could not be blocked.
    #[error("cannot block signals")]
    BlockSignals(#[source] nix::Error),
    /// No signalfd for the worker.
    #[error("cannot create a signalfd")]
    SignalFd(#[source] nix::Error),
    /// No eventfd to wake the worker.
    #[error("cannot create an eventfd")]
    EventFd(#[source] nix::Error),
    /// No netlink socket (the error says which step failed).
    #[error(transparent)]
    NetlinkSocket(NetlinkError),
    /// A netlink request failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// A peer's endpoint name did not resolve.
    #[error(transparent)]
    Resolve(#[from] EndpointError),
    /// The TAP could not be created (the error names it).
    #[error(transparent)]
    CreateTap(TapError),
    /// The TAP disappeared between its creation and its first netlink query.
    #[error("TAP {name} vanished right after it was created")]
    TapVanished {
        /// `interface.name`.
        name: String,
    },
    /// The TAP has no queue to read (it was created with at least one).
    #[error("the TAP {name} has no queue")]
    NoQueue {
        /// `interface.name`.
        name: String,
    },
    /// The tunnel's UDP port could not be bound.
    #[error("cannot listen on UDP {addr}")]
    ListenUdp {
        /// `tunnel.listen`.
        addr: std::net::SocketAddr,
        /// Why.
        source: UdpError,
    },
    /// The partner channel's UDP port could not be bound.
    #[error("cannot listen on UDP {addr} for the partner channel (ha.partner's port)")]
    Partner {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A further worker's socket could not join the port.
    #[error("cannot open worker {worker}'s UDP socket on {addr} (SO_REUSEPORT)")]
    WorkerUdp {
        /// The worker (from 1).
        worker: usize,
        /// The bound address.
        addr: std::net::SocketAddr,
        /// Why.
        source: UdpError,
    },
    /// The TCP transport's port could not be bound.
    #[error("cannot listen on TCP {addr}")]
    ListenTcp {
        /// The UDP socket's address, whose port TCP uses too.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TCP transport's epoll descriptor could not be duplicated.
    #[error("cannot duplicate the TCP transport's epoll descriptor")]
    DupEpoll(#[source] std::io::Error),
    /// A helper thread could not be started.
    #[error("cannot start the {name} thread")]
    Thread {
        /// `control`, `resolver` or `peer hook`.
        name: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The control socket could not be set up.
    #[error(transparent)]
    ControlSocket(#[from] ServerError),
    /// The ARP/DHCP responder refused its settings.
    #[error(transparent)]
    Responder(#[from] ResponderError),
    /// The lease file's directory could not be created ([`crate::leases::load`]).
    #[error(transparent)]
    Leases(#[from] crate::leases::LoadError),
    /// The metrics endpoint could not be started.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// An up hook failed.
    #[error(transparent)]
    Hook(#[from] HookError),
}

impl DaemonError {
    /// Whether the operator's configuration is at fault (the CLI's exit
    /// status 2) rather than the system.
    pub fn is_config(&self) -> bool {
        matches!(self, DaemonError::Config(_))
    }
}
