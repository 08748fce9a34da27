//! Hooks: executables run directly (never through a shell) with the link
//! described in `TAPBRIDGE_*` environment variables.
//!
//! `up`/`down` hooks run on the daemon's own thread ([`run`]), since `link
//! up` waits for them. `peer_up`/`peer_down` hooks run on a thread of their
//! own ([`PeerHooks`]), fed through a bounded queue, so a slow hook never
//! holds up the datapath; when the queue is full the event's hooks are
//! skipped, counted and logged.
//!
//! A hook's output is logged. Reading it never waits for more than the
//! hook itself: a hook that leaves a background process holding its stdout
//! or stderr open is done when it exits, and what the background process
//! writes later is not read.

use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::Chain;

/// How long one hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// After a hook exits, how long its output pipes are still read (what it
/// wrote just before exiting); a background process it left behind may
/// keep them open far longer.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(300);

/// At most this much of a hook's output (per stream) is kept for the log.
const MAX_OUTPUT: usize = 64 * 1024;

/// Peer events waiting for their hooks; more are dropped and counted.
const PEER_QUEUE: usize = 64;

/// What the hooks are told about the link.
#[derive(Debug, Clone)]
pub struct HookEnv {
    /// Link name.
    pub name: String,
    /// TAP device.
    pub interface: String,
    /// Addresses, CIDR notation.
    pub addresses: Vec<String>,
    /// TAP MTU.
    pub mtu: u32,
    /// `tunnel.wan_mtu` as configured: a number, or `auto`.
    pub wan_mtu: String,
    /// The Linux bridge the TAP is enslaved to (`TAPBRIDGE_BRIDGE`, empty
    /// when none).
    pub bridge: Option<String>,
    /// The tunnel's bound UDP address (`TAPBRIDGE_LISTEN`, e.g.
    /// `0.0.0.0:51901`).
    pub listen: SocketAddr,
    /// `tunnel.transport` (`TAPBRIDGE_TRANSPORT`: `udp`, `tcp` or `auto`;
    /// the last two also listen on TCP at the same port).
    pub transport: &'static str,
}

/// A hook that did not succeed; each names the hook's path.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// It could not be executed (missing, not executable, bad interpreter).
    #[error("hook {path} could not be started")]
    Start {
        /// The hook.
        path: String,
        /// What `exec` said.
        #[source]
        cause: std::io::Error,
    },
    /// Its output could not be captured.
    #[error("hook {path} could not be given output pipes")]
    Pipes {
        /// The hook.
        path: String,
    },
    /// It ran longer than [`HOOK_TIMEOUT`] and was killed.
    #[error("hook {path} did not finish within {}s", HOOK_TIMEOUT.as_secs())]
    Timeout {
        /// The hook.
        path: String,
    },
    /// Its exit could not be collected.
    #[error("hook {path} could not be waited for")]
    Wait {
        /// The hook.
        path: String,
        /// What `waitpid` said.
        #[source]
        cause: std::io::Error,
    },
    /// It exited unsuccessfully; `detail` is the first line it printed
    /// (stderr first), if any.
    #[error("hook {path} failed ({status}){}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Failed {
        /// The hook.
        path: String,
        /// How it exited.
        status: ExitStatus,
        /// The first line of its output.
        detail: Option<String>,
    },
}

/// Starts `cmd`, retrying briefly while its file is busy (`ETXTBSY`): a
/// file just written can still be open for writing in a child that another
/// thread forked and that has not reached `exec` yet (the close-on-exec
/// descriptor goes only then), and a hook installed a moment ago by a
/// package or an editor can be caught the same way.
fn spawn(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// Runs `path` with the environment of `env` plus `TAPBRIDGE_PHASE`
/// (`up`/`down`); waits up to [`HOOK_TIMEOUT`]. Its stdout and stderr are
/// passed through to the daemon's log.
pub fn run(path: &Path, phase: &str, env: &HookEnv) -> Result<(), HookError> {
    run_with(path, phase, env, &[])
}

/// [`run`] with `extra` variables added to the environment.
fn run_with(
    path: &Path,
    phase: &str,
    env: &HookEnv,
    extra: &[(&str, &str)],
) -> Result<(), HookError> {
    let shown = || path.display().to_string();
    let mut cmd = Command::new(path);
    cmd.env("TAPBRIDGE_NAME", &env.name)
        .env("TAPBRIDGE_INTERFACE", &env.interface)
        .env("TAPBRIDGE_ADDRESSES", env.addresses.join(" "))
        .env("TAPBRIDGE_MTU", env.mtu.to_string())
        .env("TAPBRIDGE_WAN_MTU", &env.wan_mtu)
        .env("TAPBRIDGE_BRIDGE", env.bridge.as_deref().unwrap_or(""))
        .env("TAPBRIDGE_LISTEN", env.listen.to_string())
        .env("TAPBRIDGE_TRANSPORT", env.transport)
        .env("TAPBRIDGE_PHASE", phase)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = spawn(&mut cmd).map_err(|cause| HookError::Start {
        path: shown(),
        cause,
    })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(HookError::Pipes { path: shown() });
    };
    let mut out = Output::new(stdout, stderr);
    let start = Instant::now();
    let mut exited: Option<(ExitStatus, Instant)> = None;
    loop {
        if exited.is_none() {
            match child.try_wait() {
                Ok(Some(s)) => exited = Some((s, Instant::now())),
                Ok(None) if start.elapsed() > HOOK_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    out.log(path);
                    return Err(HookError::Timeout { path: shown() });
                }
                Ok(None) => {}
                Err(cause) => {
                    return Err(HookError::Wait {
                        path: shown(),
                        cause,
                    });
                }
            }
        }
        match exited {
            Some(_) if out.closed() => break,
            Some((_, at)) if at.elapsed() >= DRAIN_AFTER_EXIT => break,
            _ => out.read_some(Duration::from_millis(20)),
        }
    }
    let status = exited
        .map(|(s, _)| s)
        .expect("the loop ends only after the hook exited");
    out.log(path);
    if status.success() {
        Ok(())
    } else {
        let first = out
            .stderr
            .text
            .lines()
            .chain(out.stdout.text.lines())
            .next()
            .unwrap_or("")
            .trim();
        Err(HookError::Failed {
            path: shown(),
            status,
            detail: (!first.is_empty()).then(|| first.to_owned()),
        })
    }
}

/// One output pipe of a hook and what was read from it.
struct Stream<R> {
    pipe: Option<R>,
    text: String,
}

impl<R: Read + AsFd> Stream<R> {
    fn new(pipe: R) -> Self {
        Stream {
            pipe: Some(pipe),
            text: String::new(),
        }
    }

    /// Reads what is available (the caller polled it readable); closes the
    /// stream at end of file or on error.
    fn read_available(&mut self) {
        let Some(p) = self.pipe.as_mut() else { return };
        let mut buf = [0u8; 4096];
        match p.read(&mut buf) {
            Ok(0) | Err(_) => self.pipe = None,
            Ok(n) => {
                if self.text.len() < MAX_OUTPUT {
                    self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    }
}

/// Both output pipes of a hook, read with `poll` on the calling thread.
struct Output {
    stdout: Stream<ChildStdout>,
    stderr: Stream<ChildStderr>,
}

impl Output {
    fn new(stdout: ChildStdout, stderr: ChildStderr) -> Self {
        Output {
            stdout: Stream::new(stdout),
            stderr: Stream::new(stderr),
        }
    }

    fn closed(&self) -> bool {
        self.stdout.pipe.is_none() && self.stderr.pipe.is_none()
    }

    /// Waits up to `wait` for output and reads what came.
    fn read_some(&mut self, wait: Duration) {
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        let ready = {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2);
            if let Some(p) = &self.stdout.pipe {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            if let Some(p) = &self.stderr.pipe {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            if fds.is_empty() {
                std::thread::sleep(wait);
                return;
            }
            if poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) <= 0 {
                return;
            }
            fds.iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect::<Vec<_>>()
        };
        let mut i = 0;
        if self.stdout.pipe.is_some() {
            if ready[i] {
                self.stdout.read_available();
            }
            i += 1;
        }
        if self.stderr.pipe.is_some() && ready.get(i).copied().unwrap_or(false) {
            self.stderr.read_available();
        }
    }

    fn log(&self, path: &Path) {
        for line in self.stdout.text.lines().chain(self.stderr.text.lines()) {
            tracing::info!(hook = %path.display(), "{line}");
        }
    }
}

/// A peer session event for the `peer_up`/`peer_down` hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEvent {
    /// `true`: the session came up; `false`: it went down.
    pub up: bool,
    /// The peer's name (`TAPBRIDGE_PEER`).
    pub peer: String,
    /// Its endpoint, if known (`TAPBRIDGE_PEER_ENDPOINT`, empty if not).
    pub endpoint: Option<SocketAddr>,
}

/// Runs `peer_up`/`peer_down` hooks on a thread of its own, in order.
///
/// It also tracks which peers' sessions are up, so that `peer_up` runs when
/// a session comes up after being down (or never up), not on every rekey.
pub struct PeerHooks {
    queue: SyncSender<(PeerEvent, Vec<PathBuf>)>,
    dropped: Arc<AtomicU64>,
    up: std::collections::HashSet<String>,
}

impl PeerHooks {
    /// Starts the hook thread for the link described by `env`.
    pub fn start(env: HookEnv) -> std::io::Result<PeerHooks> {
        let (queue, jobs) = mpsc::sync_channel::<(PeerEvent, Vec<PathBuf>)>(PEER_QUEUE);
        std::thread::Builder::new()
            .name("peer-hooks".into())
            .spawn(move || {
                for (ev, hooks) in jobs {
                    let endpoint = ev.endpoint.map(|e| e.to_string()).unwrap_or_default();
                    let extra = [
                        ("TAPBRIDGE_PEER", ev.peer.as_str()),
                        ("TAPBRIDGE_PEER_ENDPOINT", endpoint.as_str()),
                    ];
                    let phase = if ev.up { "peer_up" } else { "peer_down" };
                    for hook in &hooks {
                        if let Err(e) = run_with(hook, phase, &env, &extra) {
                            tracing::warn!(peer = %ev.peer, "{}", Chain(&e));
                        }
                    }
                }
            })?;
        Ok(PeerHooks {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            up: std::collections::HashSet::new(),
        })
    }

    /// A handshake with `peer` completed: runs `hooks` (the `peer_up` list)
    /// if its session was not already up. Call for rekeys too.
    pub fn handshake(&mut self, peer: &str, endpoint: Option<SocketAddr>, hooks: &[PathBuf]) {
        if self.up.insert(peer.to_owned()) {
            self.notify(
                PeerEvent {
                    up: true,
                    peer: peer.to_owned(),
                    endpoint,
                },
                hooks,
            );
        }
    }

    /// `peer`'s session went down: runs `hooks` (the `peer_down` list) if it
    /// was up.
    pub fn down(&mut self, peer: &str, endpoint: Option<SocketAddr>, hooks: &[PathBuf]) {
        if self.up.remove(peer) {
            self.notify(
                PeerEvent {
                    up: false,
                    peer: peer.to_owned(),
                    endpoint,
                },
                hooks,
            );
        }
    }

    /// Queues `hooks` to run for `event`; never blocks. When the queue is
    /// full the event is dropped, counted and logged.
    pub fn notify(&self, event: PeerEvent, hooks: &[PathBuf]) {
        if hooks.is_empty() {
            return;
        }
        match self.queue.try_send((event, hooks.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full((ev, _)) | TrySendError::Disconnected((ev, _))) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    peer = %ev.peer,
                    dropped = n,
                    "peer hooks skipped: {PEER_QUEUE} events are already waiting for theirs"
                );
            }
        }
    }

    /// Events whose hooks were skipped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HookEnv {
        HookEnv {
            name: "a".into(),
            interface: "tb0".into(),
            addresses: vec!["198.19.0.1/24".into(), "2001:2::1/64".into()],
            mtu: 1500,
            wan_mtu: "1400".into(),
            bridge: None,
            listen: "0.0.0.0:51901".parse().expect("addr"),
            transport: "auto",
        }
    }

    #[test]
    fn environment_reaches_the_hook_without_a_shell() {
        let dir = std::env::temp_dir().join(format!("tb-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("env.txt");
        let script = dir.join("hook.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nenv | grep ^TAPBRIDGE_ | sort > '{}'\n",
                out.display()
            ),
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        run(&script, "up", &env()).expect("hook ok");
        let got = std::fs::read_to_string(&out).expect("read");
        assert!(got.contains("TAPBRIDGE_ADDRESSES=198.19.0.1/24 2001:2::1/64\n"));
        assert!(got.contains("TAPBRIDGE_INTERFACE=tb0\n"));
        assert!(got.contains("TAPBRIDGE_MTU=1500\n"));
        assert!(got.contains("TAPBRIDGE_WAN_MTU=1400\n"));
        assert!(got.contains("TAPBRIDGE_NAME=a\n"));
        assert!(got.contains("TAPBRIDGE_BRIDGE=\n"));
        assert!(got.contains("TAPBRIDGE_LISTEN=0.0.0.0:51901\n"));
        assert!(got.contains("TAPBRIDGE_TRANSPORT=auto\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn failure_names_the_hook_and_its_message() {
        let dir = std::env::temp_dir().join(format!("tb-hook2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let script = dir.join("fail.sh");
        std::fs::write(&script, "#!/bin/sh\necho 'no WAN interface' >&2\nexit 3\n").expect("w");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let e = run(&script, "up", &env()).expect_err("fails").to_string();
        assert!(e.contains("fail.sh"), "{e}");
        assert!(e.contains("no WAN interface"), "{e}");
        let e = run(&dir.join("missing"), "up", &env())
            .expect_err("missing")
            .to_string();
        assert!(e.contains("could not be started"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, body).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[test]
    fn a_background_process_holding_the_output_does_not_hold_up_the_hook() {
        let dir = std::env::temp_dir().join(format!("tb-hook3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let pidfile = dir.join("bg.pid");
        // The background sleep inherits stdout and stderr and keeps them
        // open for five minutes; the hook itself exits at once.
        let hook = script(
            &dir,
            "bg.sh",
            &format!(
                "#!/bin/sh\necho started\nsleep 300 &\necho $! > '{}'\nexit 0\n",
                pidfile.display()
            ),
        );
        let (tx, rx) = mpsc::channel();
        let env = env();
        std::thread::spawn(move || {
            let _ = tx.send(run(&hook, "up", &env).map_err(|e| e.to_string()));
        });
        // Not a timing assertion: 60 s only bounds a hang (before this fix,
        // the hook's output was read to EOF, i.e. for the full 300 s).
        let got = rx.recv_timeout(Duration::from_secs(60));
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(got.expect("the hook run returned"), Ok(()));
    }

    #[test]
    fn peer_hooks_run_off_thread_with_the_peer_in_the_environment() {
        let dir = std::env::temp_dir().join(format!("tb-hook4-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("peer.txt");
        let hook = script(
            &dir,
            "peer.sh",
            &format!(
                "#!/bin/sh\necho \"$TAPBRIDGE_PHASE $TAPBRIDGE_PEER $TAPBRIDGE_PEER_ENDPOINT \
                 $TAPBRIDGE_LISTEN\" >> '{}'\n",
                out.display()
            ),
        );
        let hooks = PeerHooks::start(env()).expect("thread");
        let ev = |up, endpoint: Option<&str>| PeerEvent {
            up,
            peer: "hq".into(),
            endpoint: endpoint.map(|e| e.parse().expect("endpoint")),
        };
        hooks.notify(
            ev(true, Some("198.18.0.2:51901")),
            std::slice::from_ref(&hook),
        );
        hooks.notify(ev(false, None), std::slice::from_ref(&hook));
        // Without hooks nothing is queued.
        hooks.notify(ev(true, None), &[]);
        drop(hooks); // the thread finishes the queue, then ends
        let mut text = String::new();
        for _ in 0..500 {
            text = std::fs::read_to_string(&out).unwrap_or_default();
            if text.lines().count() >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            text,
            "peer_up hq 198.18.0.2:51901 0.0.0.0:51901\npeer_down hq  0.0.0.0:51901\n"
        );
    }

    #[test]
    fn a_full_peer_queue_drops_and_counts_instead_of_blocking() {
        let dir = std::env::temp_dir().join(format!("tb-hook5-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let gate = dir.join("gate");
        // The first hook waits until the gate file exists, so the queue fills.
        let hook = script(
            &dir,
            "slow.sh",
            &format!(
                "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.05; done\n",
                gate.display()
            ),
        );
        let hooks = PeerHooks::start(env()).expect("thread");
        for _ in 0..PEER_QUEUE + 10 {
            hooks.notify(
                PeerEvent {
                    up: true,
                    peer: "hq".into(),
                    endpoint: None,
                },
                std::slice::from_ref(&hook),
            );
        }
        // One event may already be running; at least 9 found the queue full.
        let dropped = hooks.dropped();
        std::fs::write(&gate, "").expect("open the gate");
        drop(hooks);
        let _ = std::fs::remove_dir_all(&dir);
        assert!((9..=10).contains(&dropped), "dropped {dropped}");
    }
}
