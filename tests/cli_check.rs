//! `bridge-ctl check` refuses what `link up` would refuse (SPEC §3): each
//! refusal is exit status 2 and one sentence naming the config file, line,
//! column and key. Runs the real binary; touches only a private temporary
//! directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_bridge-ctl");
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A temporary directory unique to one test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("tapbridge-check-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        TempDir(dir)
    }

    /// Writes `name` with `mode` and returns its path.
    fn file(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create dir");
        }
        std::fs::write(&path, contents).expect("write file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    /// A link config `site-a.toml` with a valid key file; `extra` starts on
    /// line 11, inside `[dhcp]` unless it opens a section of its own.
    fn config(&self, extra: &str) -> PathBuf {
        let psk = self.file("site-a.psk", &format!("{KEY}\n"), 0o600);
        self.file("site-a.toml", &base(&psk, extra), 0o644)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn base(psk: &Path, extra: &str) -> String {
    format!(
        "[interface]\nname = \"tb0\"\n[tunnel]\npsk_file = \"{}\"\n[[peer]]\nname = \"b\"\n[dhcp]\n\
         server_address = \"198.19.0.254\"\npool = \"198.19.0.100-198.19.0.199\"\n\
         subnet = \"198.19.0.0/24\"\n{extra}\n",
        psk.display()
    )
}

fn check(cfg: &Path) -> Output {
    Command::new(BIN)
        .args(["check", "--config"])
        .arg(cfg)
        .env_remove("RUST_LOG")
        .output()
        .expect("run bridge-ctl")
}

/// `check` exits 2 with one line starting `error: FILE:LINE:COL: KEY: ` and
/// containing `fragment`.
fn refused(cfg: &Path, line: usize, col: usize, key: &str, fragment: &str) {
    let out = check(cfg);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let want = format!("error: {}:{line}:{col}: {key}: ", cfg.display());
    assert!(
        err.starts_with(&want),
        "{err:?} does not start with {want:?}"
    );
    assert!(err.contains(fragment), "{err:?} lacks {fragment:?}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(out.stdout.is_empty());
}

fn accepted(cfg: &Path) {
    let out = check(cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {err}");
}

#[test]
fn the_base_config_is_accepted() {
    let dir = TempDir::new("base");
    accepted(&dir.config(""));
}

#[test]
fn dhcp_settings_the_responder_refuses() {
    let dir = TempDir::new("dhcp");
    let cfg = dir.config("router = \"198.18.0.1\"");
    refused(
        &cfg,
        11,
        10,
        "dhcp.router",
        "198.18.0.1 is outside subnet 198.19.0.0/24",
    );
    let cfg = dir.config("lease_time = \"5s\"");
    refused(&cfg, 11, 14, "dhcp.lease_time", "at least 10s");
    // 80 DNS servers: 320 bytes of option 6, more than a 576-byte reply holds.
    let dns: Vec<String> = (1..=80).map(|i| format!("\"198.19.0.{i}\"")).collect();
    let cfg = dir.config(&format!("dns = [{}]", dns.join(", ")));
    let out = check(&cfg);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let want = format!("error: {}:7:", cfg.display());
    assert!(
        err.starts_with(&want),
        "{err:?} does not start with {want:?}"
    );
    assert!(err.contains(": dhcp: "), "{err:?}");
    assert!(err.contains("fit in a DHCP reply"), "{err:?}");
    // The same 80 addresses are fine for a responder without them.
    accepted(&dir.config("dns = [\"198.19.0.1\"]"));
}

#[test]
fn hooks_that_cannot_or_should_not_run() {
    let dir = TempDir::new("hooks");
    let script = "#!/bin/sh\nexit 0\n";
    let hooks =
        |key: &str, path: &Path| dir.config(&format!("[hooks]\n{key} = [\"{}\"]", path.display()));
    let good = dir.file("hooks/ok.sh", script, 0o755);
    accepted(&hooks("up", &good));

    let missing = dir.0.join("hooks/missing.sh");
    refused(&hooks("up", &missing), 12, 7, "hooks.up", "No such file");
    let plain = dir.file("hooks/plain.sh", script, 0o644);
    refused(
        &hooks("down", &plain),
        12,
        9,
        "hooks.down",
        "is not executable",
    );
    let group_writable = dir.file("hooks/gw.sh", script, 0o775);
    refused(
        &hooks("peer_up", &group_writable),
        12,
        12,
        "hooks.peer_up",
        "may be changed by group or others",
    );
    let open_dir = dir.0.join("open");
    let in_open_dir = dir.file("open/h.sh", script, 0o755);
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    refused(
        &hooks("peer_down", &in_open_dir),
        12,
        14,
        "hooks.peer_down",
        "which everyone may write",
    );
    refused(
        &hooks("up", &dir.0.join("hooks")),
        12,
        7,
        "hooks.up",
        "not a regular file",
    );
}

#[test]
fn control_groups_must_exist() {
    let dir = TempDir::new("groups");
    let cfg = dir.config("[control]\ngroup = \"tb-no-such-group-7\"");
    refused(
        &cfg,
        12,
        9,
        "control.group",
        "group \"tb-no-such-group-7\" does not exist",
    );
    let cfg = dir.config("[control]\nadmin_group = \"tb-no-such-group-8\"");
    refused(&cfg, 12, 15, "control.admin_group", "does not exist");
    accepted(&dir.config("[control]\ngroup = \"root\"\nadmin_group = \"root\""));
}

#[test]
fn a_missing_key_file_is_reported_at_the_key_naming_it() {
    let dir = TempDir::new("psk");
    let gone = dir.0.join("gone.psk");
    let cfg = dir.file("site-a.toml", &base(&gone, ""), 0o644);
    refused(&cfg, 4, 12, "tunnel.psk_file", "gone.psk");
    let psk = dir.file("site-a.psk", &format!("{KEY}\n"), 0o600);
    let text = base(&psk, "").replace(
        "name = \"b\"\n",
        &format!("name = \"b\"\npsk_file = \"{}\"\n", gone.display()),
    );
    let cfg = dir.file("site-a.toml", &text, 0o644);
    refused(&cfg, 7, 12, "peer.psk_file", "gone.psk");
}

/// `bridge-ctl` and the NAT hooks (appliance/hooks/lib/nat.sh) accept the
/// same link names: a link that comes up always gets its firewall rules.
#[test]
fn link_names_follow_the_nat_hooks_rule() {
    let dir = TempDir::new("names");
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("appliance/hooks/lib/nat.sh");
    let names = [
        ("site-a", true),
        ("A9_x", true),
        ("0", true),
        ("abcdefghijklmnopqrstu", true),   // 21
        ("abcdefghijklmnopqrstuv", false), // 22
        ("a.b", false),
        ("_a", false),
        ("-a", false),
        ("a+b", false),
        ("a b", false),
        ("ä", false),
    ];
    for (name, ok) in names {
        let hook = Command::new("bash")
            .args(["-c", ". \"$1\"; tb_valid_linkname \"$2\"", "_"])
            .arg(&lib)
            .arg(name)
            .status()
            .expect("run bash");
        assert_eq!(hook.success(), ok, "nat.sh on {name:?}");
        let psk = dir.file("k.psk", &format!("{KEY}\n"), 0o600);
        let cfg = dir.file(&format!("{name}.toml"), &base(&psk, ""), 0o644);
        let out = check(&cfg);
        let err = String::from_utf8_lossy(&out.stderr);
        if ok {
            assert_eq!(out.status.code(), Some(0), "{name:?}: {err}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{name:?}");
            assert!(err.contains("invalid link name"), "{name:?}: {err}");
        }
    }
}

/// `reload` of a link that no daemon serves at the file's control socket is
/// a runtime failure (exit 1) whose one line says what to do when the
/// socket path itself was what changed.
#[test]
fn reload_without_a_daemon_names_the_socket_and_the_restart() {
    let dir = TempDir::new("reload");
    let sock = dir.0.join("run/site-a.sock");
    let cfg = dir.config(&format!("[control]\nsocket = \"{}\"", sock.display()));
    let out = Command::new(BIN)
        .args(["reload", "--config"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .output()
        .expect("run bridge-ctl");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains(&sock.display().to_string()), "{err:?}");
    assert!(err.contains("[control] socket changed"), "{err:?}");
}

/// The five inputs `check` used to accept although the link could never
/// work with them: a bridge that is not there, a key file another user
/// owns, a keepalive longer than the rekey interval, listen port 0, and an
/// endpoint of the other IP version than the socket.
#[test]
fn inputs_the_link_could_never_work_with() {
    let dir = TempDir::new("never");
    let psk = dir.file("site-a.psk", &format!("{KEY}\n"), 0o600);
    let with = |from: &str, to: &str| {
        let text = base(&psk, "").replacen(from, to, 1);
        assert_ne!(text, base(&psk, ""), "{from:?} is in the base config");
        dir.file("site-a.toml", &text, 0o644)
    };
    let iface = "name = \"tb0\"\n";
    let bridge = |b: &str| with(iface, &format!("{iface}bridge = \"{b}\"\n"));
    refused(
        &bridge("tb-no-such-br-9"),
        3,
        10,
        "interface.bridge",
        "there is no bridge \"tb-no-such-br-9\"",
    );
    refused(
        &bridge("lo"),
        3,
        10,
        "interface.bridge",
        "\"lo\" is an interface but not a bridge",
    );

    let key_line = format!("psk_file = \"{}\"\n", psk.display());
    let tunnel = |extra: &str| with(&key_line, &format!("{key_line}{extra}\n"));
    refused(
        &tunnel("keepalive = \"3m\""),
        5,
        13,
        "tunnel.keepalive",
        "keepalive (3m) is longer than rekey_after (2m)",
    );
    refused(
        &tunnel("rekey_after = \"5s\""),
        5,
        15,
        "tunnel.rekey_after",
        "keepalive (10s) is longer than rekey_after (5s)",
    );
    accepted(&tunnel("keepalive = \"2m\""));
    refused(
        &tunnel("listen = \"0.0.0.0:0\""),
        5,
        10,
        "tunnel.listen",
        "port 0",
    );

    let peer = "name = \"b\"\n";
    let endpoint = |listen: &str, e: &str| {
        let text = base(&psk, "")
            .replacen(&key_line, &format!("{key_line}listen = \"{listen}\"\n"), 1)
            .replacen(peer, &format!("{peer}endpoint = \"{e}\"\n"), 1);
        dir.file("site-a.toml", &text, 0o644)
    };
    refused(
        &endpoint("0.0.0.0:51901", "[2001:2::2]:51901"),
        8,
        12,
        "peer.endpoint",
        "is IPv6 but tunnel.listen (0.0.0.0:51901) is IPv4",
    );
    refused(
        &endpoint("[2001:2::1]:51901", "198.18.0.2:51901"),
        8,
        12,
        "peer.endpoint",
        "is IPv4 but tunnel.listen ([2001:2::1]:51901) is one IPv6 address",
    );
    accepted(&endpoint("[::]:51901", "198.18.0.2:51901"));
    accepted(&endpoint("[::]:51901", "[2001:2::2]:51901"));
    accepted(&endpoint("0.0.0.0:51901", "hq.example.net:51901"));

    // Owned by another user (nobody): only root can make that file.
    if nix::unistd::geteuid().is_root() {
        let cfg = dir.config("");
        let key = dir.0.join("site-a.psk");
        std::os::unix::fs::chown(&key, Some(65534), None).expect("chown");
        refused(&cfg, 4, 12, "tunnel.psk_file", "belongs to user 65534");
        std::os::unix::fs::chown(&key, Some(0), None).expect("chown back");
        accepted(&cfg);
    }
}
