//! `bridge-ctl`: the operator's command-line interface (SPEC §3).
//!
//! Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.
//! Errors go to stderr as one sentence, `error: ...`.

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use tapbridge::config::{self, Config, ConfigError, Psk};
use tapbridge::control::{self, ClientError, Request, Response};
use tapbridge::daemon;

/// `println!` that treats a closed stdout (`bridge-ctl status | head`) as the
/// reader being done, instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// `print!` with the same treatment as [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// The exit status paragraph every command's long help ends with (SPEC §3).
macro_rules! exit_status {
    () => {
        "\nExit status:\n  0  success\n  1  runtime failure (the daemon is not running, cannot be reached, \
         failed)\n  2  usage or configuration error (the message names file, line, column and key)"
    };
}

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
struct Cli {
    /// Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter;
    /// default: RUST_LOG, else info.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        /// Print `{"leases": [...]}` instead of a table.
        #[arg(long)]
        json: bool,
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
    /// peers, endpoints, keys, timers, [dhcp], [arp], [hooks], [metrics].
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
enum LinkAction {
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
    },
}

/// `NAME` (meaning /etc/tapbridge/NAME.toml) or `--config FILE`.
#[derive(Args)]
struct LinkArgs {
    /// The link name; its config is /etc/tapbridge/NAME.toml.
    #[arg(value_name = "NAME", required_unless_present = "config")]
    name: Option<String>,
    /// Read this config file instead; NAME is then its file stem.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Like [`LinkArgs`], but both may be left out.
#[derive(Args)]
struct OptionalLink {
    /// The link name; without it, every link whose control socket exists.
    #[arg(value_name = "NAME")]
    name: Option<String>,
    /// Read this config file instead; NAME is then its file stem.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl LinkArgs {
    /// Finds and validates the link's config.
    fn load(&self) -> anyhow::Result<Config> {
        let (_, path) = config::locate(self.name.as_deref(), self.config.as_deref())?;
        Ok(Config::load(&path)?)
    }
}

impl OptionalLink {
    fn load(&self) -> anyhow::Result<Option<Config>> {
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
struct UsageError(String);

fn main() -> ExitCode {
    let cli = Cli::parse(); // clap prints usage errors and exits 2 itself
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit_status(&err))
        }
    }
}

/// 2 for configuration and usage errors, 1 for everything else.
fn exit_status(err: &anyhow::Error) -> u8 {
    let usage = err.chain().any(|e| {
        e.is::<ConfigError>()
            || e.is::<UsageError>()
            || e.downcast_ref::<daemon::DaemonError>()
                .is_some_and(daemon::DaemonError::is_config)
    });
    if usage { 2 } else { 1 }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(cli.log_level.as_deref())?;
    match cli.command {
        Command::Link {
            action: LinkAction::Up { link, foreground },
        } => link_up(&link.load()?, foreground, cli.log_level.as_deref()),
        Command::Link {
            action: LinkAction::Down { link },
        } => link_down(&link.load()?),
        Command::Status { link, json } => status(link.load()?.as_ref(), json),
        Command::Leases { link, json } => leases(&link.load()?, json),
        Command::Check { link } => check(&link.load()?),
        Command::Genpsk { out } => genpsk(out.as_deref()),
        Command::Reload { link } => reload(&link.load()?),
        Command::HookEnv { link } => hook_env(&link.load()?),
        Command::GenerateManpages { dir } => generate_manpages(&dir),
        Command::GenerateCompletions { dir } => generate_completions(&dir),
        Command::Version => {
            outln!(
                "bridge-ctl {} (tunnel protocol version {})",
                env!("CARGO_PKG_VERSION"),
                tapbridge::wire::tunnel::VERSION
            );
            Ok(())
        }
    }
}

fn init_logging(level: Option<&str>) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => {
            let bad = || {
                UsageError(format!(
                    "invalid --log-level {level:?}; use error, warn, info, debug, trace or off \
                     (optionally as target=level,...)"
                ))
            };
            if !is_log_filter(level) {
                return Err(bad().into());
            }
            EnvFilter::try_new(level).map_err(|_| bad())?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // Fails only if a subscriber is already installed, which is harmless.
    // Colour only for a person at a terminal: journald and the detached
    // daemon's log file get plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}

/// Whether `s` is `LEVEL` or `target=LEVEL,...` (EnvFilter itself accepts
/// almost any string as a target name, so a typo would silently log nothing).
fn is_log_filter(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    s.split(',').all(|directive| {
        let (target, level) = directive.rsplit_once('=').unwrap_or(("", directive));
        LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level))
            && target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
    })
}

/// `bridge-ctl check`: the config parsed (in `run`); now the key files.
/// `bridge-ctl check`: what `link up` would refuse, found without touching
/// the system: the file, the key files, the responder as `link up` builds
/// it, the hooks and the control groups.
fn check(config: &Config) -> anyhow::Result<()> {
    config.peer_keys()?;
    tapbridge::daemon::check_responder(config)?;
    config.preflight()?;
    let peers = config.peers.len();
    outln!(
        "config {} ok: interface {}, {peers} peer{}, dhcp {}",
        config.path.display(),
        config.interface.name,
        if peers == 1 { "" } else { "s" },
        if config.dhcp.is_some() { "on" } else { "off" },
    );
    Ok(())
}

/// `bridge-ctl reload`: the file is checked here first (its errors are exit
/// status 2 with file, line and key); the daemon then re-reads it itself and
/// says what it changed.
fn reload(config: &Config) -> anyhow::Result<()> {
    // Key files are root's alone; a member of control.admin_group cannot
    // read them, and the daemon checks them anyway.
    if nix::unistd::Uid::effective().is_root() {
        config.peer_keys()?;
    }
    let resp = match control::request(
        &config.control.socket,
        Request::Reload,
        Duration::from_secs(10),
    ) {
        Err(control::ClientError::ConfigRefused(why)) => return Err(UsageError(why).into()),
        Err(e @ (control::ClientError::NotRunning(_) | control::ClientError::Stale(_))) => {
            // The socket path comes from the new file: a changed one is
            // somewhere no daemon listens yet.
            anyhow::bail!(
                "cannot reload link {}: {e}; if [control] socket changed since link up, \
                 that needs a restart (link down with the previous file, then link up)",
                config.name
            )
        }
        r => r.with_context(|| format!("cannot reload link {}", config.name))?,
    };
    let changes = resp.changes.unwrap_or_default();
    if changes.is_empty() {
        outln!("no change");
    }
    for line in &changes {
        outln!("{line}");
    }
    Ok(())
}

/// `bridge-ctl genpsk`: 44 characters of base64 and a newline.
fn genpsk(out: Option<&std::path::Path>) -> anyhow::Result<()> {
    let psk = Psk::generate().context("cannot get random bytes from the operating system")?;
    let Some(path) = out else {
        outln!("{}", psk.to_base64());
        return Ok(());
    };
    let mut text = zeroize::Zeroizing::new(psk.to_base64());
    text.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                UsageError(format!(
                    "{} already exists; genpsk --out never overwrites a key file",
                    path.display()
                ))
                .into()
            } else {
                anyhow::Error::new(e).context(format!("cannot create {}", path.display()))
            }
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Set in the environment of a daemon that `link up` started detached: it
/// reports `READY <summary>` or `ERROR <message>` on stdout, then lets go of it.
const READY_ENV: &str = "TAPBRIDGE_REPORT_READY";
/// How long `link up` waits for a detached daemon (hooks may be slow).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// `bridge-ctl link up`: start the daemon for `config`.
fn link_up(config: &Config, foreground: bool, log_level: Option<&str>) -> anyhow::Result<()> {
    // Check the keys before anything starts, so their errors are exit status 2.
    config.peer_keys()?;
    if foreground {
        let report = std::env::var_os(READY_ENV).is_some();
        let result = daemon::run(config, |summary| {
            let _ = writeln!(
                std::io::stdout(),
                "{}{summary}",
                if report { "READY " } else { "" }
            );
            if report {
                // Detach from the parent's pipe: it sees EOF and returns.
                if let Ok(null) = std::fs::File::options().write(true).open("/dev/null") {
                    let _ = nix::unistd::dup2_stdout(&null);
                }
            }
        })
        // Here the library's error meets the person: `{:#}` below and in
        // main() print it with its causes.
        .map_err(anyhow::Error::from);
        if let (true, Err(e)) = (report, &result) {
            let _ = writeln!(std::io::stdout(), "ERROR {e:#}");
        }
        return result;
    }
    if let Some(pid) = daemon::running_pid(config)? {
        return Err(daemon::DaemonError::AlreadyUp {
            name: config.name.clone(),
            pid,
        }
        .into());
    }
    let log = daemon::log_path(config);
    if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log_file = std::fs::File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .with_context(|| format!("cannot open the log file {}", log.display()))?;
    let exe = std::env::current_exe().context("cannot find the bridge-ctl executable")?;
    let mut cmd = std::process::Command::new(exe);
    if let Some(level) = log_level {
        cmd.arg("--log-level").arg(level);
    }
    cmd.args(["link", "up", "--foreground", "--config"])
        .arg(&config.path)
        .env(READY_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .process_group(0);
    let mut child = cmd.spawn().context("cannot start the daemon")?;
    let stdout = child.stdout.take().context("daemon stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the daemon for link {} did not become ready within {}s (log: {})",
                config.name,
                START_TIMEOUT.as_secs(),
                log.display()
            );
        }
    };
    if let Some(summary) = line.strip_prefix("READY ") {
        out!("{summary}");
        return Ok(());
    }
    let _ = child.wait();
    match line.strip_prefix("ERROR ") {
        Some(msg) => bail!("{}", msg.trim_end()),
        None => bail!(
            "the daemon for link {} exited during start-up (log: {})",
            config.name,
            log.display()
        ),
    }
}

/// `bridge-ctl link down`: stop the daemon for `config`.
fn link_down(config: &Config) -> anyhow::Result<()> {
    match control::request(
        &config.control.socket,
        Request::Down,
        Duration::from_secs(90),
    ) {
        Ok(_) => {
            outln!("link {} down", config.name);
            Ok(())
        }
        Err(ClientError::NotRunning(_)) => {
            outln!("link {} is not up", config.name);
            Ok(())
        }
        Err(ClientError::Stale(path)) => {
            // Its daemon died (kill -9); the TAP went with it.
            let _ = std::fs::remove_file(&config.control.socket);
            outln!(
                "link {} is not up (removed the stale control socket {path})",
                config.name
            );
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot take link {} down", config.name)),
    }
}

/// `bridge-ctl status`: one link, or every running link when `config` is `None`.
fn status(config: Option<&Config>, json: bool) -> anyhow::Result<()> {
    let sockets: Vec<PathBuf> = match config {
        Some(c) => vec![c.control.socket.clone()],
        None => running_sockets(Path::new(DEFAULT_RUN_DIR)),
    };
    let mut all = Vec::new();
    for sock in &sockets {
        match control::request(sock, Request::Status, Duration::from_secs(5)) {
            Ok(Response {
                status: Some(s), ..
            }) => all.push(s),
            Ok(_) => bail!("{}: the daemon sent no status", sock.display()),
            Err(e) if config.is_none() => eprintln!("warning: {e}"),
            Err(e) => {
                let name = config.map(|c| c.name.as_str()).unwrap_or("?");
                return Err(e).with_context(|| format!("cannot get the status of link {name}"));
            }
        }
    }
    if json {
        match (config, all.as_slice()) {
            (Some(_), [one]) => outln!("{}", serde_json::to_string_pretty(one)?),
            _ => outln!("{}", serde_json::to_string_pretty(&all)?),
        }
        return Ok(());
    }
    if all.is_empty() {
        outln!("no link is up");
    }
    for s in &all {
        out!("{}", control::human::status_table(s));
    }
    Ok(())
}

/// The directory `status` without NAME scans for control sockets.
const DEFAULT_RUN_DIR: &str = "/run/tapbridge";

fn running_sockets(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `bridge-ctl leases`: the DHCP lease table of `config`'s link.
fn leases(config: &Config, json: bool) -> anyhow::Result<()> {
    let resp = control::request(
        &config.control.socket,
        Request::Leases,
        Duration::from_secs(5),
    )
    .with_context(|| format!("cannot get the leases of link {}", config.name))?;
    let leases = resp.leases.unwrap_or_default();
    if json {
        // Pretty, like `status --json`.
        let list = control::LeaseList { leases };
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if leases.is_empty() {
        outln!("no leases");
        return Ok(());
    }
    outln!("{:<18} {:<16} {:>10}  CLIENT ID", "MAC", "IP", "EXPIRES IN");
    for l in &leases {
        let id = l.client_id.as_deref().unwrap_or("-");
        outln!("{:<18} {:<16} {:>9}s  {id}", l.mac, l.ip, l.expires_in_secs);
    }
    Ok(())
}

/// `bridge-ctl hook-env NAME`: what the running daemon gives its hooks, from
/// its status (the live interface, addresses, bridge, listen address) and the
/// config (the WAN MTU).
fn hook_env(config: &Config) -> anyhow::Result<()> {
    let s = match control::request(
        &config.control.socket,
        Request::Status,
        Duration::from_secs(5),
    ) {
        Ok(Response {
            status: Some(s), ..
        }) => s,
        Ok(_) => bail!("the daemon of link {} sent no status", config.name),
        Err(ClientError::NotRunning(_) | ClientError::Stale(_)) => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot reach link {}", config.name)),
    };
    let vars = [
        ("NAME", s.name.clone()),
        ("INTERFACE", s.interface.name.clone()),
        ("ADDRESSES", s.interface.addresses.join(" ")),
        ("MTU", s.interface.mtu.to_string()),
        ("WAN_MTU", config.tunnel.wan_mtu.to_string()),
        ("BRIDGE", s.interface.bridge.clone().unwrap_or_default()),
        ("LISTEN", s.listen.clone()),
    ];
    for (key, value) in vars {
        // One line per variable: a value can never carry a second one.
        outln!("TAPBRIDGE_{key}={}", value.replace(['\n', '\r'], " "));
    }
    Ok(())
}

/// `bridge-ctl generate-manpages DIR`: bridge-ctl.8 and one page per command
/// (bridge-ctl-link-up.8, ...), from the clap definitions above. Run by
/// scripts/build-deb.sh; the package ships them in /usr/share/man/man8.
fn generate_manpages(dir: &Path) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    fn write(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), dir)?;
        }
        let page = clap_mangen::Man::new(cmd)
            .section("8")
            .manual("tapbridge")
            .source(concat!("tapbridge ", env!("CARGO_PKG_VERSION")));
        let path = dir.join(page.get_filename());
        let mut out = Vec::new();
        page.render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
        outln!("{}", path.display());
        Ok(())
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    write(cmd, dir)
}

/// `bridge-ctl generate-completions DIR`: bridge-ctl.bash, _bridge-ctl (zsh) and
/// bridge-ctl.fish. Run by scripts/build-deb.sh; the package installs them where
/// bash-completion, zsh and fish look for vendor completions.
fn generate_completions(dir: &Path) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    // The hidden generate-* commands are for packaging, not for operators.
    let full = Cli::command();
    let visible = full.get_subcommands().filter(|s| !s.is_hide_set()).cloned();
    let mut cmd = clap::Command::new("bridge-ctl")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(visible)
        .subcommand_required(true);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (shell, file) in [
        (Shell::Bash, "bridge-ctl.bash"),
        (Shell::Zsh, "_bridge-ctl"),
        (Shell::Fish, "bridge-ctl.fish"),
    ] {
        let path = dir.join(file);
        let mut out = Vec::new();
        let text = if shell == Shell::Bash {
            // clap_complete 4.6 turns the '-' of "bridge-ctl" into its separator in
            // some case labels but not in others, so subcommands' options would never
            // complete. Generated for "bridge_ctl", then bound to the real name.
            clap_complete::generate(shell, &mut cmd, "bridge_ctl", &mut out);
            String::from_utf8_lossy(&out).replace(" bridge_ctl\n", " bridge-ctl\n")
        } else {
            clap_complete::generate(shell, &mut cmd, "bridge-ctl", &mut out);
            String::from_utf8_lossy(&out).into_owned()
        };
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        outln!("{}", path.display());
    }
    Ok(())
}
