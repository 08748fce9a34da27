//! `bridge-ctl invite` (on a hub) and `bridge-ctl join` (on a new branch):
//! the files each writes, and the invitation between them
//! ([`tapbridge::invite`] defines its format).
//!
//! Every file is written the same way: into a temporary file in the same
//! directory, created with its final mode (0600 for keys, so a key is never
//! readable by others, not even for a moment), synced, then linked to its
//! name, which fails if the name exists (nothing is ever overwritten), and
//! the directory synced. What a failed command wrote is removed again.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tapbridge::config::{self, Config, Psk, WanMtu};
use tapbridge::control::{self, ClientError, Request};
use tapbridge::invite::{Invitation, Transport};
use zeroize::Zeroizing;

use crate::cli::UsageError;

/// `bridge-ctl invite NAME PEER [--endpoint HOST:PORT]...`.
pub(crate) fn invite(
    name: &str,
    config: Option<&Path>,
    peer: &str,
    endpoints: &[String],
) -> anyhow::Result<()> {
    let (_, path) = config::locate(Some(name), config)?;
    // A hub may have no branch yet: this adds the first.
    let hub = Config::load_without_peers(&path)?;
    config::check_link_name(peer)
        .map_err(|e| UsageError(format!("invalid peer name {peer:?}: {e}")))?;
    if let Some(p) = hub.peers.iter().find(|p| p.name == peer) {
        return Err(UsageError(format!(
            "peer {peer:?} already exists (in {}); invite adds new peers only",
            p.file.display()
        ))
        .into());
    }
    if peer == hub.tunnel.name {
        return Err(UsageError(format!("{peer:?} is the hub's own name")).into());
    }
    let endpoints = hub_endpoints(&hub, endpoints)?;
    let mut inv = Invitation {
        hub: hub.tunnel.name.clone(),
        site: peer.to_owned(),
        endpoints,
        key: Zeroizing::new([0; 32]),
        mtu: u16::try_from(hub.interface.mtu).unwrap_or(u16::MAX),
        wan_mtu: match hub.tunnel.wan_mtu {
            WanMtu::Auto => None,
            WanMtu::Fixed(n) => Some(u16::try_from(n).unwrap_or(u16::MAX)),
        },
        transport: match hub.tunnel.transport {
            config::Transport::Udp => Transport::Udp,
            config::Transport::Tcp => Transport::Tcp,
            config::Transport::Auto => Transport::Auto,
        },
        keepalive_ms: millis(hub.tunnel.keepalive),
        rekey_after_ms: millis(hub.tunnel.rekey_after),
    };
    let psk = Psk::generate().context("cannot get random bytes from the operating system")?;
    inv.key.copy_from_slice(psk.as_bytes());
    // Encoded before anything is written: what cannot be said is refused
    // with nothing left behind.
    let token = inv.encode().map_err(|e| UsageError(e.to_string()))?;

    let dir = config::dropin_dir(&hub.path, &hub.name);
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let key_file = dir.join(format!("{peer}.psk"));
    let dropin = dir.join(format!("{peer}.toml"));
    let mut written = Written::default();
    let mut key_text = Zeroizing::new(psk.to_base64());
    key_text.push('\n');
    written.create(&key_file, key_text.as_bytes(), 0o600)?;
    let text = format!(
        "# {peer}, invited by `bridge-ctl invite {} {peer}`; its own key is {peer}.psk.\n\
         # To revoke it: delete this file (and the key), then `bridge-ctl reload {}`.\n\
         [[peer]]\nname = \"{peer}\"\npsk_file = \"{peer}.psk\"\n",
        hub.name, hub.name
    );
    written.create(&dropin, text.as_bytes(), 0o644)?;
    // The hub's configuration with the new drop-in must hold, or nothing stays.
    Config::load(&hub.path).and_then(|c| c.peer_keys().map(drop))?;
    match control::request(
        &hub.control.socket,
        Request::Reload,
        Duration::from_secs(10),
    ) {
        Ok(resp) => {
            for line in resp.changes.unwrap_or_default() {
                eprintln!("{line}");
            }
        }
        Err(ClientError::NotRunning(_) | ClientError::Stale(_)) => eprintln!(
            "link {} is not up; {peer} is a peer from its next link up",
            hub.name
        ),
        Err(ClientError::ConfigRefused(why)) => return Err(UsageError(why).into()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot reload link {}", hub.name));
        }
    }
    written.keep();
    eprintln!(
        "wrote {} and {} (0600); the invitation for {peer} follows on standard output.\n\
         It holds {peer}'s key: keep it secret, hand it over privately, and on the branch run\n  \
         bridge-ctl join - < FILE   (or: bridge-ctl join TOKEN)",
        dropin.display(),
        key_file.display()
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", *token)
        .and_then(|()| out.flush())
        .context("cannot write the invitation to standard output")?;
    Ok(())
}

/// Where branches reach the hub: `--endpoint` values, else `tunnel.listen`
/// when it is an address one can send to.
fn hub_endpoints(hub: &Config, given: &[String]) -> anyhow::Result<Vec<String>> {
    if given.len() > tapbridge::invite::MAX_ENDPOINTS {
        return Err(UsageError("give at most 8 --endpoint values".into()).into());
    }
    if given.is_empty() {
        let listen = hub.tunnel.listen;
        if listen.ip().is_unspecified() {
            return Err(UsageError(format!(
                "link {} listens on {listen}, which no branch can send to; give the address \
                 branches reach the hub at with --endpoint HOST:PORT",
                hub.name
            ))
            .into());
        }
        return Ok(vec![listen.to_string()]);
    }
    let mut out = Vec::with_capacity(given.len());
    for e in given {
        let parsed = config::parse_endpoint(e)
            .map_err(|why| UsageError(format!("--endpoint {e:?}: {why}")))?;
        out.push(parsed.to_string());
    }
    Ok(out)
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// `bridge-ctl join TOKEN [--name NAME] [--dir DIR]`.
pub(crate) fn join(token: &str, name: Option<&str>, dir: &Path) -> anyhow::Result<()> {
    let token = if token == "-" {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the invitation from standard input")?;
        line
    } else {
        Zeroizing::new(token.to_owned())
    };
    let inv = Invitation::decode(&token).map_err(|e| UsageError(e.to_string()))?;
    let name = name.unwrap_or(&inv.site);
    config::check_link_name(name).map_err(|e| {
        UsageError(format!(
            "invalid link name {name:?}: {e}; give one with --name NAME"
        ))
    })?;
    config::check_site_name(&inv.site)
        .and_then(|()| config::check_site_name(&inv.hub))
        .map_err(|e| UsageError(format!("the invitation is malformed: {e}")))?;
    let path = dir.join(format!("{name}.toml"));
    let key_file = dir.join(format!("{name}.psk"));
    for p in [&path, &key_file] {
        if p.exists() {
            return Err(UsageError(format!(
                "{} already exists; join never overwrites a file",
                p.display()
            ))
            .into());
        }
    }
    let text = branch_config(&inv, name)?;
    // The text must hold before anything is written.
    let path = std::path::absolute(&path).unwrap_or(path);
    Config::parse(name, &path, &text).map_err(|e| {
        anyhow::Error::new(e)
            .context("the invitation makes a configuration this bridge-ctl refuses")
    })?;
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut written = Written::default();
    let mut key_text = Zeroizing::new(Psk::from_bytes(*inv.key).to_base64());
    key_text.push('\n');
    written.create(&key_file, key_text.as_bytes(), 0o600)?;
    written.create(&path, text.as_bytes(), 0o644)?;
    let line = crate::checked(&Config::load(&path)?)?;
    written.keep();
    outln!("{line}");
    outln!(
        "wrote {} and its key {} (0600)",
        path.display(),
        key_file.display()
    );
    let default = Path::new(config::CONFIG_DIR).join(format!("{name}.toml"));
    if path == default {
        outln!("bring it up with: bridge-ctl link up {name}");
    } else {
        outln!(
            "bring it up with: bridge-ctl link up --config {}",
            path.display()
        );
    }
    Ok(())
}

/// The branch's configuration: the hub as its one peer, its own name and
/// key, and the tunnel settings it must share with the hub (written only
/// where they differ from the defaults).
fn branch_config(inv: &Invitation, name: &str) -> anyhow::Result<String> {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let v6 = inv.endpoints.iter().any(|e| {
        matches!(
            config::parse_endpoint(e),
            Ok(config::PeerEndpoint::Addr(a)) if a.is_ipv6()
        )
    });
    let mut t = format!(
        "# Written by `bridge-ctl join` from an invitation of hub {}.\n\
         # Add this site's LAN side to [interface] (bridge = \"br-lan\", or addresses)\n\
         # as it needs, then bring the link up.\n\n[interface]\n",
        q(&inv.hub)
    );
    if inv.mtu != 1500 {
        t.push_str(&format!("mtu = {}\n", inv.mtu));
    }
    t.push_str(&format!(
        "\n[tunnel]\nname = {}\nlisten = \"{}\"\npsk_file = {}\n",
        q(&inv.site),
        if v6 { "[::]:51901" } else { "0.0.0.0:51901" },
        q(&format!("{name}.psk"))
    ));
    if let Some(m) = inv.wan_mtu {
        t.push_str(&format!("wan_mtu = {m}\n"));
    }
    if inv.transport != Transport::Udp {
        t.push_str(&format!("transport = \"{}\"\n", inv.transport.as_str()));
    }
    if inv.keepalive_ms != 10_000 {
        t.push_str(&format!("keepalive = \"{}\"\n", duration(inv.keepalive_ms)));
    }
    if inv.rekey_after_ms != 120_000 {
        t.push_str(&format!(
            "rekey_after = \"{}\"\n",
            duration(inv.rekey_after_ms)
        ));
    }
    t.push_str(&format!("\n[[peer]]\nname = {}\n", q(&inv.hub)));
    match &inv.endpoints[..] {
        [one] => t.push_str(&format!("endpoint = {}\n", q(one))),
        list => {
            let list: Vec<String> = list.iter().map(|e| q(e)).collect();
            t.push_str(&format!("endpoint = [{}]\n", list.join(", ")));
        }
    }
    Ok(t)
}

/// `"90s"` or `"1500ms"`, as the configuration writes durations.
fn duration(ms: u32) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The files a command created so far, removed again unless it succeeds.
#[derive(Default)]
struct Written(Vec<PathBuf>);

impl Written {
    /// Creates `path` with `bytes` and `mode`, atomically, never replacing
    /// an existing file.
    fn create(&mut self, path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::hard_link(&tmp, path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(UsageError(format!(
                    "{} already exists; nothing is ever overwritten",
                    path.display()
                ))
                .into());
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot write {}", path.display()));
            }
        }
        self.0.push(path.to_owned());
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Success: the files stay.
    fn keep(&mut self) {
        self.0.clear();
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_branch_config_carries_the_hubs_settings() {
        let inv = Invitation {
            hub: "hq\"7".into(),
            site: "branch7".into(),
            endpoints: vec!["[2001:2::1]:51901".into(), "hq.example.net:4000".into()],
            key: Zeroizing::new([7; 32]),
            mtu: 1400,
            wan_mtu: Some(1300),
            transport: Transport::Auto,
            keepalive_ms: 2_500,
            rekey_after_ms: 120_000,
        };
        let text = branch_config(&inv, "b7").expect("text");
        assert!(text.contains("mtu = 1400\n"), "{text}");
        assert!(text.contains("name = \"branch7\"\nlisten = \"[::]:51901\"\npsk_file = \"b7.psk\"\nwan_mtu = 1300\ntransport = \"auto\"\nkeepalive = \"2500ms\"\n"), "{text}");
        assert!(!text.contains("rekey_after"), "{text}");
        assert!(
            text.contains("[[peer]]\nname = 'hq\"7'\nendpoint = [\"[2001:2::1]:51901\", \"hq.example.net:4000\"]\n"),
            "{text}"
        );
        let c = Config::parse("b7", Path::new("/etc/tapbridge/b7.toml"), &text).expect("valid");
        assert_eq!(c.tunnel.name, "branch7");
        assert_eq!(c.peers[0].name, "hq\"7");
        assert_eq!(c.tunnel.keepalive, Duration::from_millis(2500));
    }
}
