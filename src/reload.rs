//! Re-reading a running link's configuration and key files
//! (`bridge-ctl reload`, SIGHUP).
//!
//! What can change live today: the keys of existing peers (a key file's
//! contents, or which file a peer uses), so keys are rotated and revoked
//! without a restart. The running sessions keep carrying frames; the next
//! handshake of each changed peer uses its new keys. Any other difference
//! between the file and the running link is refused, naming the file and the
//! first setting that differs, and nothing changes: such changes still need
//! `bridge-ctl link down NAME && bridge-ctl link up NAME`.

use crate::config::{Config, ConfigError, Psk};
use crate::tunnel::PresharedKey;

/// What a reload will do.
pub struct Plan {
    /// The configuration that will be running afterwards.
    pub config: Config,
    /// Every peer's keys as loaded (in peer order), to compare next time.
    pub keys: Vec<Vec<Psk>>,
    /// Peers whose keys change, with their new keys.
    pub changed: Vec<(usize, Vec<PresharedKey>)>,
    /// One line per change, for the operator and the log.
    pub lines: Vec<String>,
}

/// Why a reload was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file or a key file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A setting that cannot change live differs.
    #[error(
        "{file}: {key} differs from the running link, and reload cannot change it yet (only key \
         files); nothing was changed; restart the link to apply it"
    )]
    NeedsRestart {
        /// The config file.
        file: String,
        /// The first setting that differs.
        key: String,
    },
}

/// Reads the running link's config file and keys again and works out what
/// changes. `keys` are the keys the link runs with.
pub fn plan(running: &Config, keys: &[Vec<Psk>]) -> Result<Plan, ReloadError> {
    let fresh = Config::load(&running.path)?;
    if let Some(key) = first_difference(running, &fresh) {
        return Err(ReloadError::NeedsRestart {
            file: running.path.display().to_string(),
            key,
        });
    }
    let new_keys = fresh.peer_keys()?;
    let mut changed = Vec::new();
    let mut lines = Vec::new();
    for (i, (old, new)) in keys.iter().zip(&new_keys).enumerate() {
        if old != new {
            changed.push((
                i,
                new.iter()
                    .map(|k| PresharedKey::new(*k.as_bytes()))
                    .collect(),
            ));
            lines.push(format!(
                "peer {}: keys changed ({} key{})",
                fresh.peers[i].name,
                new.len(),
                if new.len() == 1 {
                    ""
                } else {
                    "s, the first initiates"
                }
            ));
        }
    }
    Ok(Plan {
        config: fresh,
        keys: new_keys,
        changed,
        lines,
    })
}

/// The first setting, other than where keys are read from, in which `b`
/// differs from `a`.
fn first_difference(a: &Config, b: &Config) -> Option<String> {
    let mut ta = a.tunnel.clone();
    let mut tb = b.tunnel.clone();
    ta.psk_file = None;
    tb.psk_file = None;
    if a.interface != b.interface {
        return Some("[interface]".into());
    }
    if ta != tb {
        return Some("[tunnel]".into());
    }
    if a.peers.len() != b.peers.len() {
        return Some("[[peer]] (peers added or removed)".into());
    }
    for (pa, pb) in a.peers.iter().zip(&b.peers) {
        if pa.name != pb.name {
            return Some(format!("peer.name ({:?} became {:?})", pa.name, pb.name));
        }
        if pa.endpoint != pb.endpoint {
            return Some(format!("peer.endpoint of peer {:?}", pa.name));
        }
    }
    let sections: [(&str, bool); 5] = [
        ("[dhcp]", a.dhcp != b.dhcp),
        ("[arp]", a.arp != b.arp),
        ("[hooks]", a.hooks != b.hooks),
        ("[control]", a.control != b.control),
        ("[metrics]", a.metrics != b.metrics),
    ];
    sections
        .into_iter()
        .find(|(_, differs)| *differs)
        .map(|(name, _)| name.to_owned())
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
    fn a_key_change_is_planned_and_nothing_else() {
        let d = Dir::new("keys");
        d.write("link.psk", K1);
        d.write("b.psk", K1);
        let cfg = d.write("hub.toml", &conf(""));
        let (running, keys) = load(&cfg);
        let p = plan(&running, &keys).unwrap();
        assert!(p.changed.is_empty() && p.lines.is_empty(), "no change");
        // Rotation: the new key first, the old one second.
        d.write("b.psk", &format!("{K2}\n{K1}\n"));
        let p = plan(&running, &keys).unwrap();
        assert_eq!(p.changed.len(), 1);
        assert_eq!(p.changed[0].0, 0);
        assert_eq!(p.changed[0].1.len(), 2);
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
    fn anything_else_is_refused_and_broken_files_too() {
        let d = Dir::new("other");
        d.write("link.psk", K1);
        d.write("b.psk", K1);
        let cfg = d.write("hub.toml", &conf(""));
        let (running, keys) = load(&cfg);
        d.write("hub.toml", &conf("endpoint = \"198.18.0.3:51901\"\n"));
        let err = plan(&running, &keys).err().unwrap().to_string();
        assert!(err.contains("peer.endpoint of peer \"c\""), "{err}");
        assert!(err.contains("nothing was changed"), "{err}");
        d.write("hub.toml", &conf("[arp]\nrespond = [\"198.19.0.254\"]\n"));
        let err = plan(&running, &keys).err().unwrap().to_string();
        assert!(err.contains("[arp] differs"), "{err}");
        d.write("hub.toml", &conf("[bogus]\n"));
        let err = plan(&running, &keys).err().unwrap();
        assert!(matches!(err, ReloadError::Config(_)), "{err}");
        d.write("hub.toml", &conf(""));
        d.write("b.psk", "not a key");
        let err = plan(&running, &keys).err().unwrap().to_string();
        assert!(err.contains("peer.psk_file"), "{err}");
    }
}
