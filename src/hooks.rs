//! Up and down hooks: executables run directly (never through a shell) with
//! the link described in `TAPBRIDGE_*` environment variables.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

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
}

/// A hook that did not succeed.
#[derive(Debug, thiserror::Error)]
#[error("hook {path} {what}")]
pub struct HookError {
    path: String,
    what: String,
}

/// Runs `path` with the environment of `env` plus `TAPBRIDGE_PHASE`
/// (`up`/`down`); waits up to [`HOOK_TIMEOUT`]. Its stdout and stderr are
/// passed through to the daemon's log.
pub fn run(path: &Path, phase: &str, env: &HookEnv) -> Result<(), HookError> {
    let err = |what: String| HookError {
        path: path.display().to_string(),
        what,
    };
    let mut child = Command::new(path)
        .env("TAPBRIDGE_NAME", &env.name)
        .env("TAPBRIDGE_INTERFACE", &env.interface)
        .env("TAPBRIDGE_ADDRESSES", env.addresses.join(" "))
        .env("TAPBRIDGE_MTU", env.mtu.to_string())
        .env("TAPBRIDGE_WAN_MTU", &env.wan_mtu)
        .env("TAPBRIDGE_PHASE", phase)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("could not be started: {e}")))?;
    // Drain the pipes on their own threads so a chatty hook cannot block.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out_thread = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_thread = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > HOOK_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(format!(
                    "did not finish within {}s",
                    HOOK_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(err(format!("could not be waited for: {e}"))),
        }
    };
    let out = out_thread.join().unwrap_or_default();
    let errout = err_thread.join().unwrap_or_default();
    for line in out.lines().chain(errout.lines()) {
        tracing::info!(hook = %path.display(), "{line}");
    }
    if status.success() {
        Ok(())
    } else {
        let first = errout
            .lines()
            .chain(out.lines())
            .next()
            .unwrap_or("")
            .trim();
        let detail = if first.is_empty() {
            String::new()
        } else {
            format!(": {first}")
        };
        Err(err(format!("failed ({status}){detail}")))
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
}
