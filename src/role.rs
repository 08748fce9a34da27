//! [`Role`]: what a box of a high-availability pair does now (SPEC §5
//! "High availability"). The active box bridges; the standby keeps its TAP
//! and bridge membership but forwards nothing, answers nothing and talks to
//! no peer. An existing VRRP engine (keepalived) elects; `bridge-ctl role`
//! tells the daemon. A link without `[ha]` is always active.
//!
//! Text form, both ways and in serde: `"active"`, `"standby"`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A box's role in its pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Bridges, answers ARP/DHCP/ND, handshakes with peers.
    #[default]
    Active,
    /// Keeps the TAP; forwards nothing, answers nothing, no handshakes.
    Standby,
}

impl Role {
    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby => "standby",
        }
    }

    /// Whether the box forwards and answers.
    pub fn is_active(self) -> bool {
        self == Role::Active
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a role (\"active\" or \"standby\")")]
pub struct NotARole(pub String);

impl FromStr for Role {
    type Err = NotARole;

    fn from_str(s: &str) -> Result<Role, NotARole> {
        match s {
            "active" => Ok(Role::Active),
            "standby" => Ok(Role::Standby),
            other => Err(NotARole(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_both_ways() {
        for r in [Role::Active, Role::Standby] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(serde_json::to_string(&r).expect("json"), format!("\"{r}\""));
        }
        assert!("master".parse::<Role>().is_err());
        assert_eq!(Role::default(), Role::Active);
    }
}
