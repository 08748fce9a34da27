//! [`Written`]: every setting a config file writes, flattened to one key
//! each (`dhcp.lease_time` → `"12h"`), so `reload` can say what changed
//! from what to what instead of "[dhcp]: changed".
//!
//! Peers are keyed by name (`peer.b.max_macs`), other lists of tables by
//! position (`dhcp.reservation.2.ip`); a plain list is one value. A key the
//! file leaves out has no entry: its value is the default.

use std::collections::BTreeMap;

/// The file's settings, flattened, values as TOML writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written(BTreeMap<String, String>);

impl Written {
    /// The settings of `text` (already known to parse).
    pub(super) fn of(text: &str) -> Written {
        let mut out = BTreeMap::new();
        if let Ok(table) = text.parse::<toml::Table>() {
            flatten("", &toml::Value::Table(table), &mut out);
        }
        Written(out)
    }

    /// These settings and the peers of drop-in `text` (already known to
    /// parse; it holds nothing but `[[peer]]` tables).
    pub(super) fn with_dropin(mut self, text: &str) -> Written {
        if let Ok(table) = text.parse::<toml::Table>() {
            flatten("", &toml::Value::Table(table), &mut self.0);
        }
        self
    }

    /// `key: old -> new` for each setting under one of `prefixes` (a
    /// section such as `dhcp`, or `peer.b`) that differs, in key order; a
    /// setting left out reads `(default)`.
    pub fn changes(&self, to: &Written, prefixes: &[&str]) -> Vec<String> {
        let under = |k: &str| {
            prefixes
                .iter()
                .any(|p| k == *p || k.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
        };
        let mut keys: Vec<&String> = self
            .0
            .keys()
            .chain(to.0.keys())
            .filter(|k| under(k))
            .collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| {
                let (a, b) = (self.0.get(k), to.0.get(k));
                (a != b).then(|| {
                    let show =
                        |v: Option<&String>| v.map_or("(default)", String::as_str).to_owned();
                    format!("{k}: {} -> {}", show(a), show(b))
                })
            })
            .collect()
    }
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten(&join(k), v, out);
            }
        }
        toml::Value::Array(list) if !list.is_empty() && list.iter().all(toml::Value::is_table) => {
            for (i, item) in list.iter().enumerate() {
                // A peer by its name (the order of peers means nothing).
                let name = item.get("name").and_then(toml::Value::as_str);
                let id = match (prefix, name) {
                    ("peer", Some(n)) => n.to_owned(),
                    _ => (i + 1).to_string(),
                };
                flatten(&join(&id), item, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_changed_from_what_to_what() {
        let a = Written::of(
            "[tunnel]\nhub = true\n[[peer]]\nname = \"b\"\nmax_macs = 10\n[[peer]]\nname = \"c\"\n\
             [dhcp]\nlease_time = \"12h\"\ndns = [\"198.19.0.1\"]\n[[dhcp.reservation]]\nmac = \"02:00:00:00:00:01\"\nip = \"198.19.0.10\"\n",
        );
        let b = Written::of(
            "[tunnel]\nhub = true\n[[peer]]\nname = \"c\"\n[[peer]]\nname = \"b\"\nmax_macs = 20\n\
             [dhcp]\ndns = [\"198.19.0.1\", \"198.19.0.2\"]\nntp = [\"198.19.0.1\"]\n[[dhcp.reservation]]\nmac = \"02:00:00:00:00:01\"\nip = \"198.19.0.11\"\n",
        );
        assert_eq!(
            a.changes(&b, &["dhcp"]),
            [
                "dhcp.dns: [\"198.19.0.1\"] -> [\"198.19.0.1\", \"198.19.0.2\"]",
                "dhcp.lease_time: \"12h\" -> (default)",
                "dhcp.ntp: (default) -> [\"198.19.0.1\"]",
                "dhcp.reservation.1.ip: \"198.19.0.10\" -> \"198.19.0.11\"",
            ]
        );
        // Peers by name, whatever their order.
        assert_eq!(a.changes(&b, &["peer.b"]), ["peer.b.max_macs: 10 -> 20"]);
        assert!(a.changes(&b, &["peer.c", "tunnel"]).is_empty());
        // A prefix is a whole key part: "peer.b" is not "peer.bb".
        let c = Written::of("[[peer]]\nname = \"bb\"\nmax_macs = 1\n");
        assert!(Written::default().changes(&c, &["peer.b"]).is_empty());
    }
}
