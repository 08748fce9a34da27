//! Commands that talk to a running link: `link up` (starting the daemon,
//! detached or in the foreground), `link down`, `status` and `leases`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tapbridge::config::Config;
use tapbridge::control::{self, ClientError, Request, Response};
use tapbridge::daemon;

/// Set in the environment of a daemon that `link up` started detached: it
/// reports `READY <summary>` or `ERROR <message>` on stdout, then lets go of it.
pub(crate) const READY_ENV: &str = "TAPBRIDGE_REPORT_READY";
/// How long `link up` waits for a detached daemon (hooks may be slow).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(90);

/// `bridge-ctl link up`: start the daemon for `config`.
pub(crate) fn link_up(
    config: &Config,
    foreground: bool,
    log_level: Option<&str>,
) -> anyhow::Result<()> {
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
            link: config.command_line_name(),
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
    cmd.args(["link", "up", "--foreground", "--log-file"])
        .arg(&log)
        .arg("--config")
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
        outln!("logging to {}", log.display());
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

/// The control socket to ask: `--socket PATH` if given, else the one
/// `config` names.
pub(crate) fn socket_of<'a>(config: &'a Config, socket: Option<&'a Path>) -> &'a Path {
    socket.unwrap_or(&config.control.socket)
}

/// `bridge-ctl link down`: stop the daemon for `config` (at `socket`, if
/// given).
pub(crate) fn link_down(config: &Config, socket: Option<&Path>) -> anyhow::Result<()> {
    let sock = socket_of(config, socket);
    match control::request(sock, Request::Down, Duration::from_secs(90)) {
        Ok(_) => {
            outln!("link {} down", config.name);
            Ok(())
        }
        Err(ClientError::NotRunning(_)) => {
            outln!("link {} is not up", config.name);
            Ok(())
        }
        Err(ClientError::Stale(_)) if daemon::LinkLock::is_held(config) => {
            // Its daemon holds the link but does not answer yet, or no more.
            bail!(
                "link {} is starting or stopping (its control socket does not answer yet); try again in a moment",
                config.name
            )
        }
        Err(ClientError::Stale(path)) => {
            // Its daemon died (kill -9); the TAP went with it.
            let _ = std::fs::remove_file(sock);
            outln!(
                "link {} is not up (removed the stale control socket {path})",
                config.name
            );
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot take link {} down", config.name)),
    }
}

/// `bridge-ctl status`: one link (`config`, or the daemon at `socket`), or
/// every running link when neither is given.
pub(crate) fn status(
    config: Option<&Config>,
    socket: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let one = config.is_some() || socket.is_some();
    let sockets: Vec<PathBuf> = match (config, socket) {
        (_, Some(s)) => vec![s.to_owned()],
        (Some(c), None) => vec![c.control.socket.clone()],
        (None, None) => {
            // The registry names every running link; sockets in the default
            // directory are listed too (a daemon older than the registry).
            let mut v = daemon::registered_sockets(Path::new(daemon::REGISTRY_DIR));
            v.extend(running_sockets(Path::new(DEFAULT_RUN_DIR)));
            v.sort();
            v.dedup();
            v
        }
    };
    let mut all = Vec::new();
    for sock in &sockets {
        match control::request(sock, Request::Status, Duration::from_secs(5)) {
            Ok(Response {
                status: Some(s), ..
            }) => all.push(s),
            Ok(_) => bail!("{}: the daemon sent no status", sock.display()),
            Err(e) if !one => eprintln!("warning: {e}"),
            Err(e) => {
                let name = config.map(|c| c.name.as_str()).unwrap_or("?");
                return Err(e).with_context(|| format!("cannot get the status of link {name}"));
            }
        }
    }
    if json {
        match (one, all.as_slice()) {
            (true, [one]) => outln!("{}", serde_json::to_string_pretty(one)?),
            _ => outln!("{}", serde_json::to_string_pretty(&all)?),
        }
        return Ok(());
    }
    if all.is_empty() {
        outln!("no link is up");
    }
    for s in &all {
        out!(
            "{}",
            control::human::status_table(s, &link_args(config, &s.name, socket))
        );
    }
    Ok(())
}

/// How to name `name`'s link on a command line, for hints that name
/// another command: as `config` was given (its file, when that is not the
/// default one), else by NAME; with `--socket PATH` when it was given.
pub(crate) fn link_args(config: Option<&Config>, name: &str, socket: Option<&Path>) -> String {
    let link = config.map_or_else(|| name.to_owned(), Config::command_line_name);
    match socket {
        Some(s) => format!("{link} --socket {}", s.display()),
        None => link,
    }
}

/// `bridge-ctl diag`: per peer what `config`'s daemon (at `socket`, if
/// given) knows, and the likely cause of what is wrong.
pub(crate) fn diag(config: &Config, socket: Option<&Path>) -> anyhow::Result<()> {
    let resp = control::request(
        socket_of(config, socket),
        Request::Status,
        Duration::from_secs(5),
    )
    .with_context(|| format!("cannot get the state of link {}", config.name))?;
    let Some(s) = resp.status else {
        bail!("the daemon of link {} sent no status", config.name);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    out!("{}", control::diag::report(&s, now));
    Ok(())
}

/// The directory `status` without NAME scans for control sockets.
pub(crate) const DEFAULT_RUN_DIR: &str = "/run/tapbridge";

pub(crate) fn running_sockets(dir: &Path) -> Vec<PathBuf> {
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

/// `bridge-ctl leases`: the DHCP lease table of `config`'s link (at
/// `socket`, if given).
pub(crate) fn leases(config: &Config, socket: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let resp = control::request(
        socket_of(config, socket),
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
