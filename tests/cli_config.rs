//! `bridge-ctl check` and `bridge-ctl genpsk` run as a real binary: exit
//! status and message shape (SPEC §3). Touches only files in a private
//! temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_bridge-ctl");
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A temporary directory unique to one test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tapbridge-cli-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Writes `name` with `mode` and returns its path.
    fn file(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(psk: &Path, extra: &str) -> String {
    format!(
        "[interface]\nname = \"tb0\"\n\n[tunnel]\npsk_file = \"{}\"\n{extra}\n[[peer]]\nname = \"b\"\nendpoint = \"198.18.0.2:51901\"\n\n[[peer]]\nname = \"c\"\n\n[dhcp]\nserver_address = \"198.19.0.254\"\npool = \"198.19.0.100-198.19.0.199\"\nsubnet = \"198.19.0.0/24\"\n",
        psk.display()
    )
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run bridge-ctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_a_valid_config() {
    let dir = TempDir::new("ok");
    let psk = dir.file("site-a.psk", &format!("{KEY}\n"), 0o600);
    let cfg = dir.file("site-a.toml", &config(&psk, ""), 0o644);
    let out = run(&["check", "--config", cfg.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "config {} ok: interface tb0, 2 peers, dhcp on, site name \"site-a\"\n",
            cfg.display()
        )
    );
    // NAME given as well must match the file stem.
    let out = run(&[
        "check",
        "site-a",
        "--config",
        cfg.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let out = run(&[
        "check",
        "site-b",
        "--config",
        cfg.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not match"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_rejects_an_unknown_key_with_its_position() {
    let dir = TempDir::new("badkey");
    let psk = dir.file("site-a.psk", KEY, 0o600);
    let cfg = dir.file("site-a.toml", &config(&psk, "keepalve = \"10s\""), 0o644);
    let out = run(&["check", "--config", cfg.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let want = format!(
        "error: {}:6:1: tunnel.keepalve: unknown field `keepalve`",
        cfg.display()
    );
    assert!(
        err.starts_with(&want),
        "{err:?} does not start with {want:?}"
    );
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn check_rejects_a_readable_psk_file() {
    let dir = TempDir::new("perms");
    let psk = dir.file("site-a.psk", KEY, 0o644);
    let cfg = dir.file("site-a.toml", &config(&psk, ""), 0o644);
    let out = run(&["check", "--config", cfg.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: "), "{err:?}");
    assert!(
        err.contains("readable by group or others (mode 0644)"),
        "{err:?}"
    );
    assert!(
        err.contains(&format!("chmod 600 {}", psk.display())),
        "{err:?}"
    );
}

#[test]
fn check_reports_a_missing_config_file() {
    let dir = TempDir::new("missing");
    let cfg = dir.0.join("nothere.toml");
    let out = run(&["check", "--config", cfg.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: cannot read config file"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["check"][..],
        &["frobnicate"],
        &["link", "up"],
        &["genpsk", "extra"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).starts_with("error: "), "{args:?}");
    }
    let out = run(&["--log-level", "not a level!!", "genpsk"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unimplemented_commands_are_runtime_failures() {
    let dir = TempDir::new("runtime");
    let psk = dir.file("site-a.psk", KEY, 0o600);
    let cfg = dir.file("site-a.toml", &config(&psk, ""), 0o644);
    let out = run(&["leases", "--config", cfg.to_str().expect("utf-8 path")]);
    // Whatever leases does once implemented, without a daemon it cannot succeed.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("error: "));
}

#[test]
fn genpsk_prints_fresh_base64_keys() {
    let a = run(&["genpsk"]);
    let b = run(&["genpsk"]);
    for out in [&a, &b] {
        assert_eq!(out.status.code(), Some(0));
        let s = text(&out.stdout);
        assert!(s.ends_with('\n'));
        let key = s.trim_end_matches('\n');
        assert_eq!(key.len(), 44, "{key:?}");
        let decoded = tapbridge::config::Psk::from_base64(key).expect("32 bytes of base64");
        assert_eq!(decoded.as_bytes().len(), 32);
    }
    assert_ne!(a.stdout, b.stdout);
}

#[test]
fn genpsk_out_writes_a_private_file_once() {
    let dir = TempDir::new("genpsk-out");
    let path = dir.0.join("new.psk");
    let p = path.to_str().expect("utf-8 path");
    let out = run(&["genpsk", "--out", p]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "the key is not printed");
    let mode = std::fs::metadata(&path)
        .expect("written")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let key = tapbridge::config::Psk::load(&path).expect("a loadable key file");
    // Never overwritten: a usage error, and the key is still there.
    let again = run(&["genpsk", "--out", p]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("already exists"));
    assert_eq!(tapbridge::config::Psk::load(&path).expect("kept"), key);
}

#[test]
fn log_level_accepts_levels_and_directives() {
    for level in ["debug", "WARN", "tapbridge=trace,info"] {
        let out = run(&["--log-level", level, "genpsk"]);
        assert_eq!(out.status.code(), Some(0), "{level}: {}", text(&out.stderr));
    }
    let out = run(&["genpsk", "--log-level", "verbose"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: invalid --log-level"));
}
