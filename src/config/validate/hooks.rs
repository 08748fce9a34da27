//! `[hooks]`: the programs run after the link comes up, before it goes down,
//! and when a peer's session comes up or goes down, each a path taken
//! relative to the config file's directory.

use super::{Cx, Result};
use crate::config::HooksConfig;
use crate::config::raw::RawHooks;

impl Cx<'_> {
    pub(super) fn hooks(&self, raw: &RawHooks) -> Result<HooksConfig> {
        let up = raw
            .up
            .iter()
            .map(|h| self.path(h, "hooks.up"))
            .collect::<Result<_>>()?;
        let down = raw
            .down
            .iter()
            .map(|h| self.path(h, "hooks.down"))
            .collect::<Result<_>>()?;
        let peer_up = raw
            .peer_up
            .iter()
            .map(|h| self.path(h, "hooks.peer_up"))
            .collect::<Result<_>>()?;
        let peer_down = raw
            .peer_down
            .iter()
            .map(|h| self.path(h, "hooks.peer_down"))
            .collect::<Result<_>>()?;
        Ok(HooksConfig {
            up,
            down,
            peer_up,
            peer_down,
        })
    }
}
