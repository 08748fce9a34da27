//! Checks of a validated [`Config`] against the machine, for `bridge-ctl
//! check`: what would make `link up` fail (or run something unsafe) that the
//! file alone cannot show. Reads file metadata, sysfs (the bridge) and the
//! group database only; changes nothing.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::unistd::Group;

use super::{Config, ConfigError, Problem};

impl Config {
    /// `interface.bridge` is a bridge in this network namespace; every hook
    /// exists, is an executable regular file that neither group
    /// nor others may write, in a directory others may not write; and the
    /// control groups exist. The first problem is returned, located at the
    /// key that names it.
    pub fn preflight(&self) -> Result<(), ConfigError> {
        if let Some(name) = &self.interface.bridge {
            bridge_problem(name).map_err(|p| self.error_at("interface.bridge", 0, p))?;
        }
        let lists = [
            ("hooks.up", &self.hooks.up),
            ("hooks.down", &self.hooks.down),
            ("hooks.peer_up", &self.hooks.peer_up),
            ("hooks.peer_down", &self.hooks.peer_down),
        ];
        for (key, hooks) in lists {
            for (i, hook) in hooks.iter().enumerate() {
                hook_problem(hook).map_err(|p| self.error_at(key, i, p))?;
            }
        }
        let groups = [
            ("control.group", &self.control.group),
            ("control.admin_group", &self.control.admin_group),
        ];
        for (key, group) in groups {
            if let Some(name) = group {
                match Group::from_name(name) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return Err(self.error_at(key, 0, Problem::NoGroup { name: name.clone() }));
                    }
                    Err(source) => {
                        return Err(self.error_at(
                            key,
                            0,
                            Problem::GroupLookup {
                                name: name.clone(),
                                source,
                            },
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Why `name` cannot be the TAP's bridge in this network namespace: no
/// such interface, or one that is not a bridge (sysfs shows a bridge's
/// `bridge/` directory).
fn bridge_problem(name: &str) -> Result<(), Problem> {
    let dir = Path::new("/sys/class/net").join(name);
    if !dir.exists() {
        return Err(Problem::NoBridge {
            name: name.to_owned(),
        });
    }
    if !dir.join("bridge").is_dir() {
        return Err(Problem::NotABridge {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Why `hook` cannot (or should not) be run, if it cannot.
fn hook_problem(hook: &Path) -> Result<(), Problem> {
    let path = || hook.to_owned();
    let unreadable = |source| Problem::Hook {
        path: path(),
        source,
    };
    let meta = std::fs::metadata(hook).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(Problem::HookNotAFile { path: path() });
    }
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(Problem::HookNotExecutable {
            path: path(),
            mode: mode & 0o7777,
        });
    }
    // The daemon runs hooks as root: whoever may change one may run code as root.
    if mode & 0o022 != 0 {
        return Err(Problem::HookWritable {
            path: path(),
            mode: mode & 0o7777,
        });
    }
    if let Some(dir) = hook.parent().filter(|d| !d.as_os_str().is_empty()) {
        let dmeta = std::fs::metadata(dir).map_err(unreadable)?;
        let dmode = dmeta.mode();
        // Others could replace the file in a world-writable directory (the
        // sticky bit does not stop the directory's or the file's owner).
        if dmode & 0o002 != 0 {
            return Err(Problem::HookDirWritable {
                path: path(),
                dir: dir.to_owned(),
            });
        }
    }
    Ok(())
}
