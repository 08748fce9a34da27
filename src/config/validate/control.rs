//! `[control]`: the control socket. Its path, which must fit in a Unix
//! socket address, and the groups allowed to read the link's state and to
//! change it.

use std::path::PathBuf;

use super::{Cx, Result};
use crate::config::ControlConfig;
use crate::config::raw::RawControl;
use crate::config::value;

impl Cx<'_> {
    pub(super) fn control(&self, link: &str, raw: Option<&RawControl>) -> Result<ControlConfig> {
        let socket = match raw.and_then(|c| c.socket.as_ref()) {
            Some(s) => {
                let path = self.path(s, "control.socket")?;
                // sockaddr_un.sun_path holds 108 bytes including the NUL.
                if path.as_os_str().len() > 107 {
                    return Err(self.err(
                        &s.span(),
                        "control.socket",
                        "the path is longer than the 107 bytes a Unix socket address can hold",
                    ));
                }
                path
            }
            None => PathBuf::from(format!("/run/tapbridge/{link}.sock")),
        };
        let group = self.opt(
            &raw.and_then(|c| c.group.clone()),
            "control.group",
            value::group_name,
        )?;
        let admin_group = self.opt(
            &raw.and_then(|c| c.admin_group.clone()),
            "control.admin_group",
            value::group_name,
        )?;
        Ok(ControlConfig {
            socket,
            group,
            admin_group,
        })
    }
}
