//! The command line: clap definitions of every command and argument (their
//! help texts are the man pages), and loading the configuration they name.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tapbridge::config::{self, Config};

/// Site-to-site Layer-2 bridge: TAP + encrypted UDP tunnel with local ARP/DHCP.
///
/// bridge-ctl brings links up and down, shows their state and DHCP leases, checks
/// configurations and makes pre-shared keys. A link NAME is configured by
/// /etc/tapbridge/NAME.toml; every command that takes NAME also accepts --config FILE
/// instead (NAME is then the file's stem). Under systemd, each link is the unit
/// tapbridge@NAME.service, which runs `bridge-ctl link up NAME --foreground`.
#[derive(Parser)]
#[command(
    name = "bridge-ctl",
    version,
    after_long_help = concat!(
        "Examples:\n  bridge-ctl genpsk --out /etc/tapbridge/hq.psk\n  bridge-ctl check hq\n  \
         bridge-ctl link up hq\n  bridge-ctl status\n  systemctl enable --now tapbridge@hq\n\n\
         Files:\n  /etc/tapbridge/NAME.toml   the configuration of link NAME\n  \
         /run/tapbridge/NAME.sock   its control socket\n  \
         /var/lib/tapbridge/NAME.leases   its DHCP lease database\n",
        exit_status!()
    )
)]
pub(crate) struct Cli {
    /// Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter;
    /// default: RUST_LOG, else info.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Bring a link up or take it down.
    #[command(after_long_help = concat!(
        "Examples:\n  bridge-ctl link up hq\n  bridge-ctl link down hq\n",
        exit_status!()
    ))]
    Link {
        #[command(subcommand)]
        action: LinkAction,
    },
    /// Show the state of one link, or of every running link.
    ///
    /// Asks the running daemon over its control socket: interface, peers (endpoint,
    /// state, last handshake, traffic), counters and leases. Without NAME, every link
    /// whose control socket exists in /run/tapbridge.
    #[command(after_long_help = concat!(
        "Examples:\n  bridge-ctl status\n  bridge-ctl status hq --json\n",
        exit_status!()
    ))]
    Status {
        #[command(flatten)]
        link: OptionalLink,
        #[command(flatten)]
        socket: SocketArg,
        /// Print the JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a link's DHCP lease table.
    ///
    /// The leases the link's local DHCP responder has granted: MAC, IP address and the
    /// time left.
    #[command(after_long_help = concat!(
        "Examples:\n  bridge-ctl leases hq\n  bridge-ctl leases hq --json\n",
        exit_status!()
    ))]
    Leases {
        #[command(flatten)]
        link: LinkArgs,
        #[command(flatten)]
        socket: SocketArg,
        /// Print `{"leases": [...]}` instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Say what a running link knows of each peer, and the likely cause of what is wrong.
    ///
    /// Per peer: its state, endpoint, transport and path MTU; when the last handshake
    /// completed, when this site last sent it a handshake and last heard from it; the
    /// handshakes it left unanswered and since when; the handshakes refused that concerned
    /// it; and the likely cause in one sentence ("no answer to 12 handshakes since
    /// 10:04:31 UTC: the peer is down, the key or name is wrong, or UDP 51901 is blocked").
    /// Then the link's refused initiations that name no peer (a key this site does not
    /// have) and its send errors. The same facts are in `status --json`.
    #[command(after_long_help = concat!(
        "Examples:\n  bridge-ctl diag hq\n  bridge-ctl diag --config ./lab.toml\n  \
         bridge-ctl diag hq --socket /run/lab/hq.sock\n",
        exit_status!()
    ))]
    Diag {
        #[command(flatten)]
        link: LinkArgs,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Validate a link's config and PSK file without touching the system.
    ///
    /// Parses the configuration as `link up` would, reads the pre-shared key files,
    /// builds the DHCP/ARP responder as `link up` builds it, and checks the hooks
    /// (present, executable, not writable by others) and the control groups;
    /// errors name the file, line, column and key. Nothing is created or changed.
    #[command(after_long_help = concat!(
        "Examples:\n  bridge-ctl check hq\n  bridge-ctl check --config ./site-b.toml\n",
        exit_status!()
    ))]
    Check {
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Print a fresh random 32-byte pre-shared key, base64.
    ///
    /// 44 characters of base64, from the operating system's random source, like
    /// `wg genpsk`. Give both ends of a link the same key.
    #[command(after_long_help = concat!(
        "Examples:\n  bridge-ctl genpsk --out /etc/tapbridge/hq.psk\n  \
         bridge-ctl genpsk > key.txt\n",
        exit_status!()
    ))]
    Genpsk {
        /// Write the key to FILE instead, created with mode 0600; an
        /// existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the version (also `"version"` in `status --json`).
    #[command(after_long_help = concat!("Example:\n  bridge-ctl version\n", exit_status!()))]
    Version,
    /// Re-read a running link's config and key files and apply the difference:
    /// peers, endpoints, keys, timers, guards, and the dhcp, arp, hooks and metrics sections.
    ///
    /// Peers whose settings did not change keep their sessions. Prints one line per
    /// change, or `no change`. A change that needs a restart, or an invalid file, is
    /// refused with exit status 2 and nothing changes. SIGHUP to the daemon and
    /// `systemctl reload tapbridge@NAME` do the same.
    #[command(after_long_help = concat!(
        "Examples:\n  bridge-ctl reload hq\n  systemctl reload tapbridge@hq\n",
        exit_status!()
    ))]
    Reload {
        #[command(flatten)]
        link: LinkArgs,
    },
    /// On a hub: add a new branch PEER and print the invitation it joins with.
    ///
    /// Creates PEER's own pre-shared key, NAME.d/PEER.psk (mode 0600), and the peer
    /// drop-in NAME.d/PEER.toml beside the hub's configuration, then reloads the running
    /// link (a link that is not up uses PEER from its next link up). Prints one line,
    /// tapbridge-invite:1:..., that `bridge-ctl join` on the branch turns into a working
    /// configuration: the hub's name and endpoints, PEER's key and the tunnel settings
    /// the branch must share. The line holds PEER's key and is a secret: it alone goes
    /// to standard output (everything else to standard error), and it is never logged;
    /// hand it over privately. Refused if PEER exists. To revoke PEER, delete
    /// NAME.d/PEER.toml and reload.
    #[command(after_long_help = concat!(
        "Examples:\n  bridge-ctl invite hq branch7 --endpoint hq.example.net:51901\n  \
         bridge-ctl invite hq branch8 --endpoint 203.0.113.10:51901 > branch8.invite\n  \
         rm /etc/tapbridge/hq.d/branch7.toml && bridge-ctl reload hq\n",
        exit_status!()
    ))]
    Invite {
        /// The hub's link name; its config is /etc/tapbridge/NAME.toml.
        #[arg(value_name = "NAME")]
        name: String,
        /// The new branch's name, its tunnel.name (1 to 21 letters, digits, - and _:
        /// it names its files).
        #[arg(value_name = "PEER")]
        peer: String,
        /// Read this config file instead (NAME must be its stem).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where branches reach the hub; repeat for several uplinks, most preferred
        /// first. Default: tunnel.listen, when it is a specific address.
        #[arg(long = "endpoint", value_name = "HOST:PORT")]
        endpoints: Vec<String>,
    },
    /// On a new branch: write its configuration and key from an invitation.
    ///
    /// Writes DIR/NAME.toml (the hub as its one peer, this site's tunnel.name as the hub
    /// knows it, the hub's tunnel settings) and DIR/NAME.psk (mode 0600), never
    /// overwriting either, runs the checks of `bridge-ctl check` on them, and prints the
    /// file written and the `link up` command. Add the LAN side (interface.bridge or
    /// addresses) before bringing the link up, as the site needs.
    #[command(after_long_help = concat!(
        "Examples:\n  bridge-ctl join - < branch7.invite\n  \
         bridge-ctl join tapbridge-invite:1:... --name branch7 --dir /etc/tapbridge\n",
        exit_status!()
    ))]
    Join {
        /// The line `bridge-ctl invite` printed, or - to read it from standard input
        /// (keeps the key out of the process list and the shell history).
        #[arg(value_name = "TOKEN")]
        token: String,
        /// The link NAME to write (default: the name the hub gave this site).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// The directory to write NAME.toml and NAME.psk into.
        #[arg(long, value_name = "DIR", default_value = "/etc/tapbridge")]
        dir: PathBuf,
    },
    /// Make this box the active or the standby one of a high-availability pair.
    ///
    /// What keepalived's notify scripts call (appliance/ha/). `active`: handshake with
    /// every peer at once, announce to the LAN, forward and answer. `standby`: stop
    /// forwarding at once; keep the TAP and its bridge membership, answer nothing, talk
    /// to no peer. Prints `role NAME: OLD -> NEW`; setting the role the link has is not
    /// an error. Needs `[ha]` in the link's configuration, and root or a member of
    /// `control.admin_group`.
    #[command(after_long_help = concat!(
        "Examples:\n  bridge-ctl role hq active\n  \
         bridge-ctl role --config /etc/tapbridge/hq.toml standby\n",
        exit_status!()
    ))]
    Role {
        /// NAME (unless --config is given) and the role: `active` or `standby`.
        #[arg(value_names = ["NAME", "ROLE"], num_args = 1..=2, required = true)]
        words: Vec<String>,
        /// Read this config file instead; NAME is then its file stem.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the hook environment (TAPBRIDGE_*=value lines) of a running link, for
    /// re-running a hook outside the daemon (appliance/hooks/nat-reapply.sh). Prints
    /// nothing, with exit status 0, when the link is not up.
    #[command(hide = true)]
    HookEnv {
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Write the manual pages (bridge-ctl.8 and one per command) into DIR.
    #[command(hide = true)]
    GenerateManpages {
        /// The directory to write into (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Write the bash, zsh and fish completion scripts into DIR.
    #[command(hide = true)]
    GenerateCompletions {
        /// The directory to write into (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum LinkAction {
    /// Start the daemon for a link and wait until it is ready.
    ///
    /// Validates the configuration, then starts the daemon detached and waits until the
    /// TAP is up, its addresses and routes are programmed, the UDP port is bound, the
    /// control socket listens and the up hooks have run; prints a one-line summary. If
    /// the link cannot come up, nothing is left behind. A link that is already up is
    /// refused; what a killed instance left behind is replaced.
    #[command(after_long_help = concat!(
        "Examples:\n  bridge-ctl link up hq\n  \
         bridge-ctl link up --config ./lab.toml --foreground --log-level debug\n",
        exit_status!()
    ))]
    Up {
        #[command(flatten)]
        link: LinkArgs,
        /// Stay in the foreground (what the systemd unit runs); SIGTERM or SIGINT
        /// take the link down cleanly, SIGHUP reloads. Under systemd it reports
        /// readiness (READY=1) and feeds the watchdog.
        #[arg(long)]
        foreground: bool,
        /// Set by `link up` for the daemon it detaches: log into FILE (its
        /// stderr), rotated to FILE.1 when it grows past 4 MiB.
        #[arg(long, value_name = "FILE", hide = true, requires = "foreground")]
        log_file: Option<PathBuf>,
    },
    /// Stop a link gracefully and remove what it added.
    ///
    /// Runs the down hooks, removes the routes and addresses the link added, deletes
    /// the TAP and writes the lease database. A link that is not up is reported, with
    /// exit status 0.
    #[command(after_long_help = concat!(
        "Examples:\n  bridge-ctl link down hq\n  bridge-ctl link down --config ./lab.toml\n",
        exit_status!()
    ))]
    Down {
        #[command(flatten)]
        link: LinkArgs,
        #[command(flatten)]
        socket: SocketArg,
    },
}

/// `NAME` (meaning /etc/tapbridge/NAME.toml) or `--config FILE`.
#[derive(Args)]
pub(crate) struct LinkArgs {
    /// The link name; its config is /etc/tapbridge/NAME.toml.
    #[arg(value_name = "NAME", required_unless_present = "config")]
    pub(crate) name: Option<String>,
    /// Read this config file instead; NAME is then its file stem.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// `--socket PATH`: the control socket to ask, instead of the one the
/// configuration names.
#[derive(Args)]
pub(crate) struct SocketArg {
    /// Ask the daemon listening on this control socket instead of the one the
    /// configuration names (`control.socket`).
    #[arg(long, value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
}

/// Like [`LinkArgs`], but both may be left out.
#[derive(Args)]
pub(crate) struct OptionalLink {
    /// The link name; without it, every link whose control socket exists.
    #[arg(value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Read this config file instead; NAME is then its file stem.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

impl LinkArgs {
    /// Finds and validates the link's config.
    pub(crate) fn load(&self) -> anyhow::Result<Config> {
        let (_, path) = config::locate(self.name.as_deref(), self.config.as_deref())?;
        Ok(Config::load(&path)?)
    }
}

impl OptionalLink {
    pub(crate) fn load(&self) -> anyhow::Result<Option<Config>> {
        if self.name.is_none() && self.config.is_none() {
            return Ok(None);
        }
        let (_, path) = config::locate(self.name.as_deref(), self.config.as_deref())?;
        Ok(Some(Config::load(&path)?))
    }
}

/// A usage error found after clap's parsing (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);
