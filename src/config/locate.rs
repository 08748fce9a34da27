//! Finding where a setting is written in a config file, for messages about
//! a setting that is valid on its own (a reload that cannot apply it).

use toml::de::{DeTable, DeValue};

use super::span::line_col;

/// Where a setting is in a config file's `text`: `section`, optionally the
/// `peer`-th entry of an array of tables (`[[peer]]`), then `key`. Falls back
/// to the entry or section when the key itself is not written (a default
/// that changed), and to `None` when neither is.
pub fn position(
    text: &str,
    section: &str,
    entry: Option<usize>,
    key: Option<&str>,
) -> Option<(usize, usize)> {
    let doc = DeTable::parse(text).ok()?;
    let (sec_key, sec) = doc.get_ref().iter().find(|(k, _)| k.get_ref() == section)?;
    let mut best = sec_key.span().start;
    let table = match (sec.get_ref(), entry) {
        (DeValue::Table(t), None) => t,
        (DeValue::Array(a), Some(i)) => {
            let item = a.get(i)?;
            best = item.span().start;
            match item.get_ref() {
                DeValue::Table(t) => t,
                _ => return Some(line_col(text, best)),
            }
        }
        _ => return Some(line_col(text, best)),
    };
    if let Some(key) = key
        && let Some((k, _)) = table.iter().find(|(k, _)| k.get_ref() == key)
    {
        best = k.span().start;
    }
    Some(line_col(text, best))
}

#[cfg(test)]
mod tests {
    use super::position;

    const TEXT: &str = "[interface]\nname = \"tb0\"\n\n[tunnel]\nlisten = \"0.0.0.0:1\"\n\n[[peer]]\nname = \"a\"\n\n[[peer]]\nname = \"b\"\nendpoint = \"198.18.0.2:1\"\n";

    #[test]
    fn finds_keys_entries_and_sections() {
        assert_eq!(
            position(TEXT, "interface", None, Some("name")),
            Some((2, 1))
        );
        assert_eq!(position(TEXT, "tunnel", None, Some("listen")), Some((5, 1)));
        assert_eq!(
            position(TEXT, "peer", Some(1), Some("endpoint")),
            Some((12, 1))
        );
        // Not written: the entry, then the section.
        let peer1 = position(TEXT, "peer", Some(0), Some("endpoint")).map(|p| p.0);
        assert!(matches!(peer1, Some(7 | 8)), "{peer1:?}");
        assert_eq!(
            position(TEXT, "tunnel", None, Some("wan_mtu")).map(|p| p.0),
            Some(4)
        );
        assert_eq!(position(TEXT, "dhcp", None, Some("pool")), None);
        assert_eq!(position("not [toml", "tunnel", None, None), None);
    }
}
