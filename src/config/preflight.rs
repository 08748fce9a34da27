//! Checks of a validated [`Config`] against the machine, for `bridge-ctl
//! check`: what would make `link up` fail (or run something unsafe) that the
//! file alone cannot show. Reads file metadata and the group database only;
//! changes nothing.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::unistd::Group;

use super::{Config, ConfigError};

impl Config {
    /// Every hook exists, is an executable regular file that neither group
    /// nor others may write, in a directory others may not write; and the
    /// control groups exist. The first problem is returned, located at the
    /// key that names it.
    pub fn preflight(&self) -> Result<(), ConfigError> {
        let lists = [
            ("hooks.up", &self.hooks.up),
            ("hooks.down", &self.hooks.down),
            ("hooks.peer_up", &self.hooks.peer_up),
            ("hooks.peer_down", &self.hooks.peer_down),
        ];
        for (key, hooks) in lists {
            for (i, hook) in hooks.iter().enumerate() {
                hook_problem(hook).map_err(|m| self.error_at(key, i, m))?;
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
                        return Err(self.error_at(
                            key,
                            0,
                            format!("group {name:?} does not exist (create it with groupadd)"),
                        ));
                    }
                    Err(e) => {
                        return Err(self.error_at(
                            key,
                            0,
                            format!("cannot look up group {name:?}: {e}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Why `hook` cannot (or should not) be run, if it cannot.
fn hook_problem(hook: &Path) -> Result<(), String> {
    let shown = hook.display();
    let meta = std::fs::metadata(hook).map_err(|e| format!("hook {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("hook {shown} is not a regular file"));
    }
    let mode = meta.permissions().mode();
    if mode & 0o111 == 0 {
        return Err(format!(
            "hook {shown} is not executable (mode {:04o}); run chmod 755 {shown}",
            mode & 0o7777
        ));
    }
    // The daemon runs hooks as root: whoever may change one may run code as root.
    if mode & 0o022 != 0 {
        return Err(format!(
            "hook {shown} may be changed by group or others (mode {:04o}); run chmod go-w {shown}",
            mode & 0o7777
        ));
    }
    if let Some(dir) = hook.parent().filter(|d| !d.as_os_str().is_empty()) {
        let dmeta = std::fs::metadata(dir).map_err(|e| format!("hook {shown}: {e}"))?;
        let dmode = dmeta.mode();
        // Others could replace the file in a world-writable directory (the
        // sticky bit does not stop the directory's or the file's owner).
        if dmode & 0o002 != 0 {
            return Err(format!(
                "hook {shown} is in {}, which everyone may write; move it to a directory only root may change",
                dir.display()
            ));
        }
    }
    Ok(())
}
