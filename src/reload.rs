//! Re-reading a running link's configuration and key files
//! (`bridge-ctl reload`, SIGHUP) and working out what changes.
//!
//! [`plan`] compares the running configuration with the file as it is now
//! and returns every change, or refuses. Peers are matched by name: a name
//! only in the file is added, a name only in the running link is removed, a
//! peer whose endpoint or keys changed is changed in place (its running
//! session keeps carrying frames until the new handshake completes); peers
//! whose settings did not change are not touched at all. A peer's policy
//! keys (`isolate`, `max_macs`, `macs`, `vlans`) change in place with no
//! effect on its session: every reload hands the bridge every peer's
//! policy. `[dhcp]`, `[arp]`,
//! `[guard]`, `[hooks]`, `[metrics]`, `tunnel.keepalive`, `tunnel.rekey_after`,
//! `tunnel.hub` and `tunnel.transport` change live as whole sections (the worker rebuilds what
//! depends on them, keeping leases and learned state where they still fit).
//!
//! What the running link cannot change is listed in [`RESTART_ONLY`]; such a
//! difference, or an invalid file, refuses the whole reload and **nothing**
//! changes. Applying a plan is the worker's job
//! ([`crate::datapath::worker`]); the parts of it that can fail (building the
//! new responder, binding the new metrics address) run before anything is
//! changed.

use std::path::Path;

use crate::config::{Config, ConfigError, PeerEndpoint, Psk, setting_position};
use crate::error::Chain;
use crate::tunnel::PresharedKey;

/// Settings that need `link down` + `link up` to change, as
/// `(section, key)` (docs/operations.md, "Changing a running link", and
/// docs/configuration.md list them too).
pub const RESTART_ONLY: &[(&str, &str)] = &[
    ("interface", "name"),
    ("interface", "mtu"),
    ("interface", "mac"),
    ("interface", "addresses"),
    ("interface", "routes"),
    ("interface", "bridge"),
    ("tunnel", "name"),
    ("tunnel", "listen"),
    ("tunnel", "wan_mtu"),
    ("tunnel", "workers"),
    ("control", "socket"),
    ("control", "group"),
    ("ha", "start_as"),
    ("ha", "partner"),
    ("ha", "partner_psk_file"),
    ("ha", "announce"),
];

/// A change to one peer.
#[derive(Debug)]
pub enum PeerChange {
    /// A peer only in the file.
    Added {
        /// Its name.
        name: String,
        /// Its endpoints in order of preference, if configured (a name is
        /// resolved by the worker's resolver thread, not here).
        endpoints: Vec<PeerEndpoint>,
        /// Its keys.
        keys: Vec<PresharedKey>,
    },
    /// A peer only in the running link.
    Removed {
        /// Its name.
        name: String,
    },
    /// A peer's configured endpoints changed (one, or their order).
    Endpoint {
        /// Its name.
        name: String,
        /// The new endpoints in order of preference (empty: wait to be
        /// contacted; a name is resolved by the worker's resolver thread,
        /// not here).
        endpoints: Vec<PeerEndpoint>,
    },
    /// A peer's keys changed (a rotation or a revocation).
    Keys {
        /// Its name.
        name: String,
        /// The new keys; the first initiates.
        keys: Vec<PresharedKey>,
    },
}

/// What a reload will do.
pub struct Plan {
    /// The configuration that will be running afterwards.
    pub config: Config,
    /// Every peer's keys as loaded (in the new file's peer order), to
    /// compare next time.
    pub keys: Vec<Vec<Psk>>,
    /// Peer changes, removals first (so a name removed and another added
    /// reuse slots predictably).
    pub peers: Vec<PeerChange>,
    /// `tunnel.keepalive` or `tunnel.rekey_after` changed.
    pub timers: bool,
    /// `tunnel.hub` changed.
    pub hub: bool,
    /// `tunnel.transport` changed: the TCP listener opens or closes, and
    /// peers whose transport changes handshake again over the new one.
    pub transport: bool,
    /// `[dhcp]` or `[arp]` changed: the responder is rebuilt.
    pub responder: bool,
    /// `[guard]` changed.
    pub guard: bool,
    /// `[hooks]` changed.
    pub hooks: bool,
    /// `[metrics]` changed: the endpoint is rebound (or started, stopped).
    pub metrics: bool,
    /// One line per change, for the operator and the log.
    pub lines: Vec<String>,
}

impl Plan {
    /// Whether the file differs from the running link at all.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Why a reload was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file or a key file is invalid. The message is the whole
    /// sentence, causes included ([`Chain`]): the worker sends it to
    /// `bridge-ctl reload` as it is, so the cause is not also a `source`.
    #[error("{}", Chain(.0))]
    Config(ConfigError),
    /// A setting that cannot change live differs.
    #[error(
        "{file}{at}: {key}: differs from the running link and cannot change while it runs; \
         nothing was changed (restart the link to apply it)"
    )]
    NeedsRestart {
        /// The config file.
        file: String,
        /// `:line:column` of the setting (or its section) in the file, if found.
        at: String,
        /// The setting, e.g. `tunnel.listen`.
        key: String,
    },
    /// The new settings are valid but could not be put in place (e.g. the
    /// new metrics address is taken); nothing was changed.
    #[error("{file}{at}: {key}: {message}; nothing was changed")]
    Apply {
        /// The config file.
        file: String,
        /// `:line:column` of the section, if found.
        at: String,
        /// The section or setting.
        key: String,
        /// What went wrong.
        message: String,
    },
}

impl From<ConfigError> for ReloadError {
    fn from(e: ConfigError) -> ReloadError {
        ReloadError::Config(e)
    }
}

impl ReloadError {
    /// A refusal about `section` (`entry`-th of an array of tables)
    /// `key` of the file at `path`, located in the file as it is now.
    pub fn at(
        path: &Path,
        section: &str,
        entry: Option<usize>,
        key: Option<&str>,
    ) -> (String, String) {
        let at = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| setting_position(&text, section, entry, key))
            .map(|(l, c)| format!(":{l}:{c}"))
            .unwrap_or_default();
        (path.display().to_string(), at)
    }

    /// The new settings of `section` could not be put in place.
    pub fn apply(path: &Path, section: &str, message: String) -> ReloadError {
        let (file, at) = ReloadError::at(path, section, None, None);
        ReloadError::Apply {
            file,
            at,
            key: format!("[{section}]"),
            message,
        }
    }
}

/// Reads the running link's config file and keys again and works out what
/// changes. `keys` are the keys the link runs with, in `running`'s peer
/// order.
pub fn plan(running: &Config, keys: &[Vec<Psk>]) -> Result<Plan, ReloadError> {
    let fresh = Config::load(&running.path)?;
    if let Some((section, key)) = restart_only_difference(running, &fresh) {
        let (file, at) = ReloadError::at(&fresh.path, section, None, Some(key));
        let key = match (section, key) {
            ("", _) => "a setting reload cannot apply".to_owned(),
            (s, "") => format!("[{s}]"),
            (s, k) => format!("{s}.{k}"),
        };
        return Err(ReloadError::NeedsRestart { file, at, key });
    }
    let new_keys = fresh.peer_keys()?;
    let mut lines = Vec::new();
    let mut peers = Vec::new();
    for old in &running.peers {
        if !fresh.peers.iter().any(|p| p.name == old.name) {
            lines.push(format!(
                "peer {}: removed{}",
                old.name,
                from_dropin(running, &old.file, " (it was in ", ")")
            ));
            peers.push(PeerChange::Removed {
                name: old.name.clone(),
            });
        }
    }
    for (new, new_keys) in fresh.peers.iter().zip(&new_keys) {
        let tunnel_keys = || {
            new_keys
                .iter()
                .map(|k| PresharedKey::new(*k.as_bytes()))
                .collect()
        };
        let Some(i) = running.peers.iter().position(|p| p.name == new.name) else {
            lines.push(format!(
                "peer {}: added ({}, {}{})",
                new.name,
                endpoint_text(&new.endpoints),
                key_count(new_keys.len()),
                from_dropin(&fresh, &new.file, ", from ", "")
            ));
            peers.push(PeerChange::Added {
                name: new.name.clone(),
                endpoints: new.endpoints.clone(),
                keys: tunnel_keys(),
            });
            continue;
        };
        let old = &running.peers[i];
        if old.endpoints != new.endpoints {
            lines.push(format!(
                "peer {}: endpoint {} -> {}",
                new.name,
                endpoint_text(&old.endpoints),
                endpoint_text(&new.endpoints)
            ));
            peers.push(PeerChange::Endpoint {
                name: new.name.clone(),
                endpoints: new.endpoints.clone(),
            });
        }
        if old.policy != new.policy {
            // Applied with every reload (the worker hands the bridge all
            // policies); no session is touched.
            let keys =
                ["isolate", "max_macs", "macs", "vlans"].map(|k| format!("peer.{}.{k}", new.name));
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let said = running.written.changes(&fresh.written, &keys);
            if said.is_empty() {
                lines.push(format!("peer {}: policy changed", new.name));
            }
            lines.extend(said);
        }
        if keys.get(i) != Some(new_keys) {
            lines.push(format!(
                "peer {}: keys changed ({})",
                new.name,
                key_count(new_keys.len())
            ));
            peers.push(PeerChange::Keys {
                name: new.name.clone(),
                keys: tunnel_keys(),
            });
        }
    }
    let (a, b) = (&running.tunnel, &fresh.tunnel);
    let timers = a.keepalive != b.keepalive || a.rekey_after != b.rekey_after;
    if a.keepalive != b.keepalive {
        lines.push(format!(
            "tunnel.keepalive: {:?} -> {:?}",
            a.keepalive, b.keepalive
        ));
    }
    if a.rekey_after != b.rekey_after {
        lines.push(format!(
            "tunnel.rekey_after: {:?} -> {:?}",
            a.rekey_after, b.rekey_after
        ));
    }
    let hub = a.hub != b.hub;
    if hub {
        lines.push(format!("tunnel.hub: {} -> {}", a.hub, b.hub));
    }
    let transport = a.transport != b.transport;
    if transport {
        lines.push(format!(
            "tunnel.transport: {} -> {}",
            a.transport.as_str(),
            b.transport.as_str()
        ));
    }
    let section = |name: &str, old: bool, new: bool, differs: bool, lines: &mut Vec<String>| {
        match (old, new) {
            (false, true) => lines.push(format!("[{name}]: added")),
            (true, false) => lines.push(format!("[{name}]: removed")),
            _ if differs => {
                // Each setting from what to what; the bare line only when
                // the files write the same and a default moved.
                let said = running.written.changes(&fresh.written, &[name]);
                if said.is_empty() {
                    lines.push(format!("[{name}]: changed"));
                }
                lines.extend(said);
            }
            _ => {}
        }
        differs
    };
    let dhcp = section(
        "dhcp",
        running.dhcp.is_some(),
        fresh.dhcp.is_some(),
        running.dhcp != fresh.dhcp,
        &mut lines,
    );
    let arp = section(
        "arp",
        running.arp.is_some(),
        fresh.arp.is_some(),
        running.arp != fresh.arp,
        &mut lines,
    );
    let guard = section(
        "guard",
        true,
        true,
        running.guard != fresh.guard,
        &mut lines,
    );
    let hooks = running.hooks != fresh.hooks;
    if running.hooks.up != fresh.hooks.up || running.hooks.down != fresh.hooks.down {
        // Up hooks run only at link up, and link down runs the down hooks
        // that pair with the up hooks that ran (daemon::run).
        lines.push(
            "[hooks]: changed; up and down hooks take effect at the next link up (link down \
             runs the down hooks configured with the up hooks that ran)"
                .into(),
        );
    } else if hooks {
        let said = running.written.changes(&fresh.written, &["hooks"]);
        if said.is_empty() {
            lines.push("[hooks]: changed".into());
        }
        lines.extend(said);
    }
    let metrics = section(
        "metrics",
        running.metrics.is_some(),
        fresh.metrics.is_some(),
        running.metrics != fresh.metrics,
        &mut lines,
    );
    Ok(Plan {
        config: fresh,
        keys: new_keys,
        peers,
        timers,
        hub,
        transport,
        responder: dhcp || arp,
        guard,
        hooks,
        metrics,
        lines,
    })
}

/// `{before}FILE{after}` when `file` is a peer drop-in of `config`, else
/// nothing (a peer of the main file).
fn from_dropin(config: &Config, file: &Path, before: &str, after: &str) -> String {
    if file == config.path {
        String::new()
    } else {
        format!("{before}{}{after}", file.display())
    }
}

/// `no endpoint`, `198.18.0.2:51901`, or `[198.18.0.2:51901, 198.18.1.2:51901]`.
fn endpoint_text(e: &[PeerEndpoint]) -> String {
    match e {
        [] => "no endpoint".into(),
        [one] => one.to_string(),
        list => {
            let list: Vec<String> = list.iter().map(ToString::to_string).collect();
            format!("[{}]", list.join(", "))
        }
    }
}

fn key_count(n: usize) -> String {
    if n == 1 {
        "1 key".into()
    } else {
        format!("{n} keys, the first initiates")
    }
}

/// The first setting of [`RESTART_ONLY`] in which `b` differs from `a`, or
/// failing that the section of any other difference that [`plan`] would not
/// apply (a safety net for settings added later: they are refused until
/// reload learns them).
fn restart_only_difference(a: &Config, b: &Config) -> Option<(&'static str, &'static str)> {
    let (i, j) = (&a.interface, &b.interface);
    let differs = |section: &str, key: &str| -> bool {
        match (section, key) {
            ("interface", "name") => i.name != j.name,
            ("interface", "mtu") => i.mtu != j.mtu,
            ("interface", "mac") => i.mac != j.mac,
            ("interface", "addresses") => i.addresses != j.addresses,
            ("interface", "routes") => i.routes != j.routes,
            ("interface", "bridge") => i.bridge != j.bridge,
            ("tunnel", "name") => a.tunnel.name != b.tunnel.name,
            ("tunnel", "listen") => a.tunnel.listen != b.tunnel.listen,
            ("tunnel", "wan_mtu") => a.tunnel.wan_mtu != b.tunnel.wan_mtu,
            ("tunnel", "workers") => a.tunnel.workers != b.tunnel.workers,
            ("control", "socket") => a.control.socket != b.control.socket,
            ("control", "group") => a.control.group != b.control.group,
            ("ha", key) => {
                let (x, y) = (a.ha.as_ref(), b.ha.as_ref());
                match key {
                    "start_as" => x.map(|h| h.start_as) != y.map(|h| h.start_as),
                    "partner" => x.map(|h| h.partner) != y.map(|h| h.partner),
                    "partner_psk_file" => {
                        let path = |h: Option<&crate::config::HaConfig>| {
                            h.and_then(|h| h.partner_psk_file.as_ref().map(|k| k.path.clone()))
                        };
                        path(x) != path(y)
                    }
                    _ => x.map(|h| h.announce) != y.map(|h| h.announce),
                }
            }
            _ => false,
        }
    };
    if let Some(found) = RESTART_ONLY.iter().copied().find(|(s, k)| differs(s, k)) {
        return Some(found);
    }
    // Everything reload applies, taken from `b`: what still differs is not
    // applied by anyone.
    let mut x = a.clone();
    x.peers.clone_from(&b.peers);
    x.tunnel.psk_file.clone_from(&b.tunnel.psk_file);
    x.tunnel.keepalive = b.tunnel.keepalive;
    x.tunnel.rekey_after = b.tunnel.rekey_after;
    x.tunnel.hub = b.tunnel.hub;
    x.tunnel.transport = b.tunnel.transport;
    x.dhcp.clone_from(&b.dhcp);
    x.arp.clone_from(&b.arp);
    x.hooks.clone_from(&b.hooks);
    x.guard.clone_from(&b.guard);
    x.metrics.clone_from(&b.metrics);
    // What the files write is compared through the settings it becomes.
    x.written.clone_from(&b.written);
    if x == *b {
        None
    } else if x.interface != b.interface {
        Some(("interface", ""))
    } else if x.tunnel != b.tunnel {
        Some(("tunnel", ""))
    } else if x.control != b.control {
        Some(("control", ""))
    } else {
        Some(("", ""))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("tb-reload-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            let _ = std::fs::remove_file(&p);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .unwrap();
            std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn conf(extra: &str) -> String {
        format!(
            "[interface]\n[tunnel]\npsk_file = \"link.psk\"\n[[peer]]\nname = \"b\"\npsk_file = \"b.psk\"\n[[peer]]\nname = \"c\"\n{extra}"
        )
    }

    fn load(path: &Path) -> (Config, Vec<Vec<Psk>>) {
        let c = Config::load(path).unwrap();
        let k = c.peer_keys().unwrap();
        (c, k)
    }

    #[test]
    fn key_changes_are_planned_per_peer() {
        let d = Dir::new("keys");
        d.write("link.psk", K1);
        d.write("b.psk", K1);
        let cfg = d.write("hub.toml", &conf(""));
        let (running, keys) = load(&cfg);
        let p = plan(&running, &keys).unwrap();
        assert!(p.is_empty() && p.peers.is_empty(), "no change");
        // Rotation: the new key first, the old one second.
        d.write("b.psk", &format!("{K2}\n{K1}\n"));
        let p = plan(&running, &keys).unwrap();
        assert!(
            matches!(&p.peers[..], [PeerChange::Keys { name, keys }] if name == "b" && keys.len() == 2)
        );
        assert_eq!(
            p.lines,
            ["peer b: keys changed (2 keys, the first initiates)"]
        );
        // The link's own file changes: only the peers that use it change.
        let (running, keys) = load(&cfg);
        d.write("link.psk", K2);
        let p = plan(&running, &keys).unwrap();
        assert_eq!(p.lines, ["peer c: keys changed (1 key)"]);
    }

    #[test]
    fn peers_are_matched_by_name_added_removed_and_moved() {
        let d = Dir::new("peers");
        d.write("link.psk", K1);
        d.write("b.psk", K1);
        let cfg = d.write("hub.toml", &conf(""));
        let (running, keys) = load(&cfg);
        // c gets an endpoint, d is new, b is gone; order in the file differs.
        d.write(
            "hub.toml",
            "[interface]\n[tunnel]\npsk_file = \"link.psk\"\n[[peer]]\nname = \"d\"\nendpoint = \"198.18.0.4:51901\"\n[[peer]]\nname = \"c\"\nendpoint = \"198.18.0.3:51901\"\n",
        );
        let p = plan(&running, &keys).unwrap();
        assert_eq!(
            p.lines,
            [
                "peer b: removed",
                "peer d: added (198.18.0.4:51901, 1 key)",
                "peer c: endpoint no endpoint -> 198.18.0.3:51901",
            ]
        );
        assert!(
            matches!(p.peers[0], PeerChange::Removed { .. }),
            "removals first"
        );
        assert!(!p.responder && !p.metrics && !p.timers && !p.hub);
    }

    #[test]
    fn drop_ins_added_and_removed_are_peers_added_and_removed() {
        let d = Dir::new("dropins");
        d.write("link.psk", K1);
        d.write("b.psk", K1);
        let cfg = d.write("hub.toml", &conf(""));
        let (running, keys) = load(&cfg);
        std::fs::create_dir(d.0.join("hub.d")).unwrap();
        d.write("hub.d/e.psk", K2);
        let e = d.write(
            "hub.d/e.toml",
            "[[peer]]\nname = \"e\"\npsk_file = \"e.psk\"\n",
        );
        let p = plan(&running, &keys).unwrap();
        assert_eq!(
            p.lines,
            [format!(
                "peer e: added (no endpoint, 1 key, from {})",
                e.display()
            )]
        );
        assert!(
            matches!(&p.peers[..], [PeerChange::Added { name, keys, .. }] if name == "e" && keys.len() == 1)
        );
        let (running, keys) = load(&cfg);
        // A bad drop-in refuses the whole reload, naming itself.
        d.write("hub.d/f.toml", "[[peer]]\nname = \"f\"\nbogus = 1\n");
        let err = plan(&running, &keys).err().unwrap().to_string();
        assert!(err.contains("hub.d/f.toml:3:1: peer.bogus"), "{err}");
        std::fs::remove_file(d.0.join("hub.d/f.toml")).unwrap();
        // Removing the file removes the peer.
        std::fs::remove_file(&e).unwrap();
        let p = plan(&running, &keys).unwrap();
        assert_eq!(
            p.lines,
            [format!("peer e: removed (it was in {})", e.display())]
        );
    }

    #[test]
    fn a_host_name_endpoint_is_planned_as_a_name() {
        let d = Dir::new("names");
        d.write("link.psk", K1);
        d.write("b.psk", K1);
        let cfg = d.write("hub.toml", &conf(""));
        let (running, keys) = load(&cfg);
        let text = "[interface]\n[tunnel]\npsk_file = \"link.psk\"\n[[peer]]\nname = \"c\"\nendpoint = \"hq.tapbridge.test:51901\"\n[[peer]]\nname = \"e\"\nendpoint = \"e.tapbridge.test:9\"\n";
        d.write("hub.toml", text);
        let p = plan(&running, &keys).unwrap();
        assert_eq!(
            p.lines,
            [
                "peer b: removed",
                "peer c: endpoint no endpoint -> hq.tapbridge.test:51901",
                "peer e: added (e.tapbridge.test:9, 1 key)",
            ]
        );
        let name = |host: &str, port| {
            vec![PeerEndpoint::Name {
                host: host.into(),
                port,
            }]
        };
        assert!(matches!(
            &p.peers[1],
            PeerChange::Endpoint { name: n, endpoints } if n == "c" && *endpoints == name("hq.tapbridge.test", 51901)
        ));
        assert!(matches!(
            &p.peers[2],
            PeerChange::Added { name: n, endpoints, .. } if n == "e" && *endpoints == name("e.tapbridge.test", 9)
        ));
        // The same name again is no change: nothing is resolved to compare.
        let (running, keys) = load(&cfg);
        assert!(plan(&running, &keys).unwrap().is_empty());
    }

    #[test]
    fn an_endpoint_list_is_planned_as_a_whole() {
        let d = Dir::new("uplinks");
        d.write("link.psk", K1);
        d.write("b.psk", K1);
        let cfg = d.write("hub.toml", &conf("endpoint = \"198.18.0.3:51901\"\n"));
        let (running, keys) = load(&cfg);
        // A second uplink, preferred.
        d.write(
            "hub.toml",
            &conf("endpoint = [\"198.18.1.3:51901\", \"198.18.0.3:51901\"]\n"),
        );
        let p = plan(&running, &keys).unwrap();
        assert_eq!(
            p.lines,
            ["peer c: endpoint 198.18.0.3:51901 -> [198.18.1.3:51901, 198.18.0.3:51901]"]
        );
        let addr = |s: &str| PeerEndpoint::Addr(s.parse().unwrap());
        let want = vec![addr("198.18.1.3:51901"), addr("198.18.0.3:51901")];
        assert!(matches!(
            &p.peers[..],
            [PeerChange::Endpoint { name, endpoints }] if name == "c" && *endpoints == want
        ));
        // Only the order changes: that is a change too.
        let (running, keys) = load(&cfg);
        d.write(
            "hub.toml",
            &conf("endpoint = [\"198.18.0.3:51901\", \"198.18.1.3:51901\"]\n"),
        );
        let p = plan(&running, &keys).unwrap();
        assert_eq!(
            p.lines,
            [
                "peer c: endpoint [198.18.1.3:51901, 198.18.0.3:51901] -> [198.18.0.3:51901, 198.18.1.3:51901]"
            ]
        );
        // The same list: no change.
        let (running, keys) = load(&cfg);
        assert!(plan(&running, &keys).unwrap().is_empty());
    }

    #[test]
    fn live_sections_are_planned() {
        let d = Dir::new("sections");
        d.write("link.psk", K1);
        d.write("b.psk", K1);
        let dhcp = "[dhcp]\nserver_address = \"198.19.0.254\"\npool = \"198.19.0.100-198.19.0.199\"\nsubnet = \"198.19.0.0/24\"\nlease_file = \"l\"\n";
        let cfg = d.write("hub.toml", &conf(dhcp));
        let (running, keys) = load(&cfg);
        d.write(
            "hub.toml",
            &conf(&format!(
                "{dhcp}dns = [\"198.19.0.1\"]\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
            )),
        );
        let p = plan(&running, &keys).unwrap();
        assert!(p.responder && p.metrics && p.peers.is_empty());
        assert_eq!(
            p.lines,
            [
                "dhcp.dns: (default) -> [\"198.19.0.1\"]",
                "[metrics]: added"
            ]
        );
        d.write(
            "hub.toml",
            &conf(&format!("{dhcp}conflict_check = false\n")),
        );
        let p = plan(&running, &keys).unwrap();
        assert!(p.responder, "conflict_check is reloadable");
        assert_eq!(p.lines, ["dhcp.conflict_check: (default) -> false"]);
        let text = conf(dhcp).replace("[tunnel]\n", "[tunnel]\nkeepalive = \"5s\"\nhub = true\n");
        d.write("hub.toml", &text);
        let p = plan(&running, &keys).unwrap();
        assert!(p.timers && p.hub && !p.responder && !p.guard);
        d.write(
            "hub.toml",
            &conf(&format!("{dhcp}[guard]\nstorm_pps = 100\n")),
        );
        let p = plan(&running, &keys).unwrap();
        assert!(p.guard && !p.timers);
        assert_eq!(p.lines, ["guard.storm_pps: (default) -> 100"]);
    }

    #[test]
    fn restart_only_settings_and_broken_files_are_refused_with_their_place() {
        let d = Dir::new("other");
        d.write("link.psk", K1);
        d.write("b.psk", K1);
        let cfg = d.write("hub.toml", &conf(""));
        let (running, keys) = load(&cfg);
        d.write(
            "hub.toml",
            &conf("").replace("[tunnel]\n", "[tunnel]\nlisten = \"0.0.0.0:4000\"\n"),
        );
        let err = plan(&running, &keys).err().unwrap().to_string();
        assert!(
            err.contains("hub.toml:3:1: tunnel.listen: differs"),
            "{err}"
        );
        assert!(err.contains("nothing was changed"), "{err}");
        d.write(
            "hub.toml",
            &conf("").replace("[interface]\n", "[interface]\nmtu = 1400\n"),
        );
        let err = plan(&running, &keys).err().unwrap().to_string();
        assert!(err.contains("hub.toml:2:1: interface.mtu"), "{err}");
        // The site's identity is bound into every session.
        d.write(
            "hub.toml",
            &conf("").replace("[tunnel]\n", "[tunnel]\nname = \"hq\"\n"),
        );
        let err = plan(&running, &keys).err().unwrap().to_string();
        assert!(err.contains("hub.toml:3:1: tunnel.name: differs"), "{err}");
        d.write("hub.toml", &conf("[bogus]\n"));
        let err = plan(&running, &keys).err().unwrap();
        assert!(matches!(err, ReloadError::Config(_)), "{err}");
        assert!(err.to_string().contains("bogus"), "{err}");
        d.write("hub.toml", &conf(""));
        d.write("b.psk", "not a key");
        let err = plan(&running, &keys).err().unwrap().to_string();
        assert!(err.contains("peer.psk_file"), "{err}");
        // The refusal bridge-ctl prints carries the causes, not just the place.
        assert!(
            err.contains("peer.psk_file: PSK file ")
                && err.contains(
                    " is malformed: it is not valid base64: character 4 (' ') is not base64"
                ),
            "{err}"
        );
        std::fs::remove_file(&cfg).unwrap();
        let err = plan(&running, &keys).err().unwrap().to_string();
        assert!(
            err.starts_with("cannot read config file ") && err.ends_with("(os error 2)"),
            "{err}"
        );
    }
}
