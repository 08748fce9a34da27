//! `bridge-ctl`: the operator's command-line interface (SPEC §3).
//!
//! Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.
//! Errors go to stderr as one sentence, `error: ...`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tapbridge::config::{self, Config, ConfigError, Psk};

/// Site-to-site Layer-2 bridge: TAP + encrypted UDP tunnel with local ARP/DHCP.
#[derive(Parser)]
#[command(name = "bridge-ctl", version)]
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
    Link {
        #[command(subcommand)]
        action: LinkAction,
    },
    /// Show the state of one link, or of every running link.
    Status {
        #[command(flatten)]
        link: OptionalLink,
        /// Print the JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a link's DHCP lease table.
    Leases {
        #[command(flatten)]
        link: LinkArgs,
        /// Print `{"leases": [...]}` instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate a link's config and PSK file without touching the system.
    Check {
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Print a fresh random 32-byte pre-shared key, base64.
    Genpsk,
}

#[derive(Subcommand)]
enum LinkAction {
    /// Start the daemon for a link and wait until it is ready.
    Up {
        #[command(flatten)]
        link: LinkArgs,
        /// Stay in the foreground (what the systemd unit runs).
        #[arg(long)]
        foreground: bool,
    },
    /// Stop a link gracefully and remove what it added.
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
    let usage = err
        .chain()
        .any(|e| e.is::<ConfigError>() || e.is::<UsageError>());
    if usage { 2 } else { 1 }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(cli.log_level.as_deref())?;
    match cli.command {
        Command::Link {
            action: LinkAction::Up { link, foreground },
        } => link_up(&link.load()?, foreground),
        Command::Link {
            action: LinkAction::Down { link },
        } => link_down(&link.load()?),
        Command::Status { link, json } => status(link.load()?.as_ref(), json),
        Command::Leases { link, json } => leases(&link.load()?, json),
        Command::Check { link } => check(&link.load()?),
        Command::Genpsk => genpsk(),
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

/// `bridge-ctl check`: the config parsed (in `run`); now the PSK file.
fn check(config: &Config) -> anyhow::Result<()> {
    Psk::load(&config.tunnel.psk_file)?;
    let peers = config.peers.len();
    println!(
        "config {} ok: interface {}, {peers} peer{}, dhcp {}",
        config.path.display(),
        config.interface.name,
        if peers == 1 { "" } else { "s" },
        if config.dhcp.is_some() { "on" } else { "off" },
    );
    Ok(())
}

/// `bridge-ctl genpsk`: 44 characters of base64 and a newline.
fn genpsk() -> anyhow::Result<()> {
    let psk = Psk::generate().context("cannot get random bytes from the operating system")?;
    println!("{}", psk.to_base64());
    Ok(())
}

/// `bridge-ctl link up`: start the daemon for `config`.
fn link_up(config: &Config, foreground: bool) -> anyhow::Result<()> {
    let _ = foreground;
    anyhow::bail!("link up {} is not implemented yet", config.name)
}

/// `bridge-ctl link down`: stop the daemon for `config`.
fn link_down(config: &Config) -> anyhow::Result<()> {
    anyhow::bail!("link down {} is not implemented yet", config.name)
}

/// `bridge-ctl status`: one link, or every running link when `config` is `None`.
fn status(config: Option<&Config>, json: bool) -> anyhow::Result<()> {
    let _ = (config, json);
    anyhow::bail!("status is not implemented yet")
}

/// `bridge-ctl leases`: the DHCP lease table of `config`'s link.
fn leases(config: &Config, json: bool) -> anyhow::Result<()> {
    let _ = json;
    anyhow::bail!("leases {} is not implemented yet", config.name)
}
