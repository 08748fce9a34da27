//! `bridge-ctl`: the operator's command-line interface (SPEC §3).
//!
//! Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.
//! Errors go to stderr as one sentence, `error: ...`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser as _;
use tapbridge::config::{Config, ConfigError, Psk};
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

mod cli;
mod docs;
mod invite;
mod link;
mod logging;
mod man;
mod man_config;

use cli::{Cli, Command, LinkAction, UsageError};
use docs::{generate_completions, generate_manpages};
use link::{diag, leases, link_down, link_up, status};

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
    let log_file = match &cli.command {
        Command::Link {
            action: LinkAction::Up { log_file, .. },
        } => log_file.as_deref(),
        _ => None,
    };
    logging::init(cli.log_level.as_deref(), log_file)?;
    match cli.command {
        Command::Link {
            action: LinkAction::Up {
                link, foreground, ..
            },
        } => link_up(&link.load()?, foreground, cli.log_level.as_deref()),
        Command::Link {
            action: LinkAction::Down { link, socket },
        } => link_down(&link.load()?, socket.socket.as_deref()),
        Command::Status { link, socket, json } => {
            status(link.load()?.as_ref(), socket.socket.as_deref(), json)
        }
        Command::Leases { link, socket, json } => {
            leases(&link.load()?, socket.socket.as_deref(), json)
        }
        Command::Diag { link, socket } => diag(&link.load()?, socket.socket.as_deref()),
        Command::Check { link } => check(&link.load()?),
        Command::Genpsk { out } => genpsk(out.as_deref()),
        Command::Reload { link } => reload(&link.load()?),
        Command::Invite {
            name,
            peer,
            config,
            endpoints,
        } => invite::invite(&name, config.as_deref(), &peer, &endpoints),
        Command::Join { token, name, dir } => invite::join(&token, name.as_deref(), &dir),
        Command::Role { words, config } => role(&words, config),
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

/// `bridge-ctl check`: what `link up` would refuse, found without touching
/// the system: the file, the key files, the responder as `link up` builds
/// it, the hooks and the control groups.
fn check(config: &Config) -> anyhow::Result<()> {
    outln!("{}", checked(config)?);
    Ok(())
}

/// The checks of `bridge-ctl check` on a loaded `config` (also run by
/// `join` on what it wrote); the line `check` prints.
pub(crate) fn checked(config: &Config) -> anyhow::Result<String> {
    config.peer_keys()?;
    if let Some(key) = config.ha.as_ref().and_then(|h| h.partner_psk_file.as_ref()) {
        key.load()?;
    }
    tapbridge::daemon::check_responder(config)?;
    config.preflight()?;
    let peers = config.peers.len();
    let dropped = config
        .peers
        .iter()
        .filter(|p| p.file != config.path)
        .count();
    Ok(format!(
        "config {} ok: interface {}, {peers} peer{}{}, dhcp {}, site name {:?}",
        config.path.display(),
        config.interface.name,
        if peers == 1 { "" } else { "s" },
        if dropped == 0 {
            String::new()
        } else {
            let dir = tapbridge::config::dropin_dir(&config.path, &config.name);
            format!(" ({dropped} from {})", dir.display())
        },
        if config.dhcp.is_some() { "on" } else { "off" },
        config.tunnel.name,
    ))
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

/// `bridge-ctl role [NAME] ROLE [--config FILE]`: the last word is the
/// role, a word before it the link.
fn role(words: &[String], config: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let (name, word) = match words {
        [word] => (None, word),
        [name, word] => (Some(name.clone()), word),
        _ => return Err(UsageError("give NAME and the role, active or standby".into()).into()),
    };
    let role: tapbridge::role::Role = word
        .parse()
        .map_err(|e: tapbridge::role::NotARole| UsageError(e.to_string()))?;
    let config = cli::LinkArgs { name, config }.load()?;
    if config.ha.is_none() {
        return Err(UsageError(format!(
            "{}: link {} has no [ha] section, so it is always active",
            config.path.display(),
            config.name
        ))
        .into());
    }
    let resp = control::request(
        &config.control.socket,
        Request::Role { role },
        Duration::from_secs(10),
    )
    .with_context(|| format!("cannot set the role of link {}", config.name))?;
    let old = resp.previous_role.unwrap_or(role);
    let new = resp.role.unwrap_or(role);
    outln!("role {}: {old} -> {new}", config.name);
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
