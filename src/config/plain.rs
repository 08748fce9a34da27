//! The TOML parser's complaints in an operator's words: "must be an integer
//! (a number without quotes), not the string "big"" rather than serde's
//! "invalid type: string "big", expected i64"; `[peer]` where `[[peer]]` is
//! meant; a key set twice, named.

/// Keys whose value is a duration string.
const DURATIONS: [&str; 5] = [
    "tunnel.keepalive",
    "tunnel.rekey_after",
    "dhcp.lease_time",
    "dhcp.first_lease",
    "arp.binding_timeout",
];

/// Tables that are lists of tables (`[[...]]`), and what each entry is.
const TABLE_LISTS: [(&str, &str); 3] = [
    ("peer", "peer"),
    ("dhcp.reservation", "reservation"),
    ("dhcp.option", "option"),
];

/// `message` (a type complaint from the parser, at `key`) in plain words, or
/// `None` when it is no type complaint.
pub(super) fn type_error(message: &str, key: &str) -> Option<String> {
    let rest = message.strip_prefix("invalid type: ")?;
    let (found, expected) = rest.rsplit_once(", expected ")?;
    let found = found_words(found);
    if let Some((_, entry)) = TABLE_LISTS.iter().find(|(k, _)| *k == key)
        && expected == "a sequence"
    {
        return Some(format!(
            "write [[{key}]] (double brackets) for each {entry}, not [{key}]"
        ));
    }
    let want = match expected {
        e if is_integer_type(e) || e == "an integer" => "an integer (a number without quotes)",
        "a string" if DURATIONS.contains(&key) => "a duration in quotes, like \"90s\" or \"12h\"",
        "a string" => "a string in quotes",
        "a sequence" => "a list, like [\"a\", \"b\"]",
        "a boolean" => "true or false (without quotes)",
        e if e.starts_with("struct ") || e == "a map" => "a table",
        e => e,
    };
    Some(format!("must be {want}, not {found}"))
}

/// serde's word for the value found, as a person would say it.
fn found_words(found: &str) -> String {
    if let Some(s) = found.strip_prefix("string ") {
        return format!("the string {s}");
    }
    for (prefix, what) in [
        ("integer `", "the number "),
        ("floating point `", "the number "),
        ("boolean `", ""),
    ] {
        if let Some(v) = found.strip_prefix(prefix).and_then(|r| r.strip_suffix('`')) {
            return format!("{what}{v}");
        }
    }
    match found {
        "map" | "table" => "a table".to_owned(),
        "sequence" | "array" => "a list".to_owned(),
        other => other.to_owned(),
    }
}

fn is_integer_type(t: &str) -> bool {
    let digits = t.strip_prefix('i').or_else(|| t.strip_prefix('u'));
    digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// For "duplicate key" at `offset` of `text`: the key named with its table
/// (`interface.mtu`), from the line the parser points at, and the sentence
/// to say.
pub(super) fn duplicate_key(text: &str, offset: usize) -> Option<(String, String)> {
    let key = duplicate_name(text, offset)?;
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let table = text[line_start..].trim_start().starts_with('[');
    let words = if table {
        format!("[{key}] appears twice; merge the two tables")
    } else {
        format!("{key} is set twice; keep one")
    };
    Some((key, words))
}

fn duplicate_name(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?.trim();
    let name = if line.starts_with('[') {
        // A table given twice: the header names it.
        return Some(
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned(),
        );
    } else {
        line.split('=').next()?.trim().trim_matches('"')
    };
    if name.is_empty() {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    Some(match table {
        Some(t) => format!("{t}.{name}"),
        None => name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_complaints_in_plain_words() {
        let t = |m: &str, k: &str| type_error(m, k).unwrap_or_default();
        assert_eq!(
            t(
                "invalid type: string \"big\", expected i64",
                "interface.mtu"
            ),
            "must be an integer (a number without quotes), not the string \"big\""
        );
        assert_eq!(
            t("invalid type: map, expected a sequence", "peer"),
            "write [[peer]] (double brackets) for each peer, not [peer]"
        );
        assert_eq!(
            t(
                "invalid type: integer `10`, expected a string",
                "tunnel.keepalive"
            ),
            "must be a duration in quotes, like \"90s\" or \"12h\", not the number 10"
        );
        assert_eq!(
            t(
                "invalid type: string \"198.19.0.1/24\", expected a sequence",
                "interface.addresses"
            ),
            "must be a list, like [\"a\", \"b\"], not the string \"198.19.0.1/24\""
        );
        assert_eq!(
            t(
                "invalid type: string \"yes\", expected a boolean",
                "tunnel.hub"
            ),
            "must be true or false (without quotes), not the string \"yes\""
        );
        assert_eq!(type_error("unknown field `x`", "a.x"), None);
    }

    #[test]
    fn a_duplicate_key_is_named_with_its_table() {
        let text = "[interface]\nmtu = 1500\nmtu = 1400\n[tunnel]\n";
        let at = text.find("mtu = 1400").unwrap_or(0);
        let said = |t: &str, at: usize| duplicate_key(t, at).map(|(_, w)| w);
        assert_eq!(
            said(text, at).as_deref(),
            Some("interface.mtu is set twice; keep one")
        );
        let text = "[interface]\n[interface]\n";
        assert_eq!(
            said(text, 12).as_deref(),
            Some("[interface] appears twice; merge the two tables")
        );
        assert_eq!(
            said("a = 1\na = 2\n", 6).as_deref(),
            Some("a is set twice; keep one")
        );
    }
}
