//! tapbridge.toml(5), rendered from docs/configuration.md, the one place
//! where every key's type, default and reload behaviour is written down:
//! the page cannot drift from the reference.
//!
//! Only the markdown that file uses is understood: `##` sections, tables,
//! bullets (with indented continuation lines and nested bullets),
//! paragraphs, `**bold**`, `` `code` `` and `[links](target)`. Of the
//! sections, "The file" and "How reload treats the keys" become the
//! DESCRIPTION, each `[section]` with a key table becomes a section of the
//! page; the rest (notes on the specification) is left out.

use crate::man::escape;

/// The reference the page is made from.
const REFERENCE: &str = include_str!("../../../docs/configuration.md");

/// The header of a table of keys.
const KEY_TABLE: [&str; 4] = ["key", "type", "default", "reload"];

/// A block of markdown.
#[derive(Debug, PartialEq, Eq)]
enum Block {
    Para(String),
    /// A bullet's lines, the marker removed and continuation lines dedented.
    Bullet(Vec<String>),
    /// Rows of cells (the header first; the `|---|` line dropped).
    Table(Vec<Vec<String>>),
}

/// The `##` sections of `md`: heading and blocks.
fn sections(md: &str) -> Vec<(String, Vec<Block>)> {
    let mut out: Vec<(String, Vec<Block>)> = Vec::new();
    let mut lines = md.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix("## ") {
            out.push((h.to_owned(), Vec::new()));
            continue;
        }
        let Some((_, blocks)) = out.last_mut() else {
            continue; // the title and introduction
        };
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('|') {
            let mut rows = vec![cells(line)];
            while let Some(l) = lines.next_if(|l| l.starts_with('|')) {
                if !l.contains("---") {
                    rows.push(cells(l));
                }
            }
            blocks.push(Block::Table(rows));
        } else if let Some(first) = line.strip_prefix("- ") {
            let mut body = vec![first.to_owned()];
            loop {
                if let Some(l) = lines.next_if(|l| l.starts_with("  ")) {
                    body.push(l[2..].to_owned());
                } else if lines.peek().is_some_and(|l| l.trim().is_empty()) {
                    // A blank line continues the bullet only if an
                    // indented line follows it.
                    let mut ahead = lines.clone();
                    ahead.next();
                    if ahead.peek().is_some_and(|l| l.starts_with("  ")) {
                        lines.next();
                        body.push(String::new());
                    } else {
                        break;
                    }
                } else {
                    break;
                }
            }
            blocks.push(Block::Bullet(body));
        } else {
            let mut text = line.to_owned();
            while let Some(l) = lines.next_if(|l| {
                !l.trim().is_empty() && !l.starts_with(['|', '#']) && !l.starts_with("- ")
            }) {
                text.push(' ');
                text.push_str(l.trim());
            }
            blocks.push(Block::Para(text));
        }
    }
    out
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

/// Inline markdown to roff: code spans in bold, `**` dropped (the text
/// stays), links reduced to their text.
fn inline(md: &str) -> String {
    let md = md.replace("**", "");
    let mut out = String::new();
    let mut rest = md.as_str();
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            if let Some(end) = rest[1..].find('`') {
                let code = &rest[1..1 + end];
                out.push_str("\\fB");
                out.push_str(&code.replace('\\', "\\e").replace('-', "\\-"));
                out.push_str("\\fR");
                rest = &rest[end + 2..];
                continue;
            }
        }
        if c == '[' {
            // [text](target) -> text
            if let Some(mid) = rest.find("](") {
                if let Some(close) = rest[mid..].find(')') {
                    out.push_str(&inline(&rest[1..mid]));
                    rest = &rest[mid + close + 1..];
                    continue;
                }
            }
        }
        if c == '\\' {
            out.push_str("\\e");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// One line of roff text (a leading `.` or `'` made harmless).
fn text_line(md: &str) -> String {
    let s = inline(md);
    if s.starts_with(['.', '\'']) {
        format!("\\&{s}")
    } else {
        s
    }
}

/// The keys a bullet describes: the `**`key`**` names before its colon.
fn bullet_keys(first: &str) -> Vec<String> {
    let Some((head, _)) = first.split_once(':') else {
        return Vec::new();
    };
    if !head.starts_with("**`") {
        return Vec::new();
    }
    head.split("**")
        .filter_map(|p| p.strip_prefix('`')?.strip_suffix('`'))
        .map(str::to_owned)
        .collect()
}

/// A bullet's body as roff: its paragraphs (`.IP` between them) and nested
/// bullets on lines of their own. Lines are joined before the inline
/// markup is read (a code span may run over a line break).
fn bullet_body(lines: &[String], skip_keys: bool, out: &mut String) {
    let mut para = String::new();
    let flush = |para: &mut String, out: &mut String| {
        if !para.is_empty() {
            out.push_str(&text_line(para));
            out.push('\n');
            para.clear();
        }
    };
    for (i, line) in lines.iter().enumerate() {
        let line = if i == 0 && skip_keys {
            line.split_once(':')
                .map_or(line.as_str(), |(_, r)| r)
                .trim()
        } else {
            line.trim_end()
        };
        if line.trim().is_empty() {
            flush(&mut para, out);
            out.push_str(".IP\n");
        } else if let Some(item) = line.strip_prefix("- ") {
            flush(&mut para, out);
            out.push_str(".br\n\\(bu ");
            para.push_str(item.trim());
        } else {
            if !para.is_empty() {
                para.push(' ');
            }
            para.push_str(line.trim());
        }
    }
    flush(&mut para, out);
}

/// The blocks of one section as roff.
fn render_blocks(blocks: &[Block], out: &mut String) {
    // Bullets that describe keys are shown with the keys' table rows.
    let described: Vec<(Vec<String>, &Vec<String>)> = blocks
        .iter()
        .filter_map(|b| match b {
            Block::Bullet(lines) => Some((bullet_keys(lines.first()?), lines)),
            _ => None,
        })
        .filter(|(keys, _)| !keys.is_empty())
        .collect();
    let is_key_table = |rows: &Vec<Vec<String>>| {
        rows.first()
            .is_some_and(|h| h.iter().map(String::as_str).eq(KEY_TABLE))
    };
    let keys_shown: Vec<String> = blocks
        .iter()
        .filter_map(|b| match b {
            Block::Table(rows) if is_key_table(rows) => Some(rows),
            _ => None,
        })
        .flat_map(|rows| rows.iter().skip(1).filter_map(|r| r.first()))
        .map(|k| k.trim_matches('`').to_owned())
        .collect();
    for block in blocks {
        match block {
            Block::Para(text) => {
                out.push_str(".PP\n");
                out.push_str(&text_line(text));
                out.push('\n');
            }
            Block::Table(rows) if is_key_table(rows) => {
                for row in rows.iter().skip(1) {
                    let [key, ty, default, reload] = row.as_slice() else {
                        continue;
                    };
                    let name = key.trim_matches('`');
                    out.push_str(&format!(".TP\n.B {}\n", escape(name)));
                    out.push_str(&format!(
                        "Type: {}. Default: {}. {}.\n",
                        inline(ty),
                        inline(default),
                        reload_words(reload)
                    ));
                    for (keys, lines) in &described {
                        if keys.iter().any(|k| k == name) {
                            out.push_str(".IP\n");
                            bullet_body(lines, true, out);
                        }
                    }
                }
            }
            Block::Table(rows) => {
                for row in rows.iter().skip(1) {
                    let Some((first, rest)) = row.split_first() else {
                        continue;
                    };
                    out.push_str(&format!(".TP\n{}\n", text_line(first)));
                    let rest: Vec<String> = rest.iter().map(|c| inline(c)).collect();
                    out.push_str(&text_line(&rest.join("; ")));
                    out.push('\n');
                }
            }
            Block::Bullet(lines) => {
                let keys = bullet_keys(lines.first().map_or("", String::as_str));
                if !keys.is_empty() && keys.iter().all(|k| keys_shown.contains(k)) {
                    continue; // shown with its key
                }
                out.push_str(".IP \\(bu 2\n");
                bullet_body(lines, false, out);
            }
        }
    }
}

/// The reload column in words: whether `bridge-ctl reload` applies it.
fn reload_words(cell: &str) -> String {
    let cell = inline(cell);
    if let Some(rest) = cell.strip_prefix("restart") {
        format!("Restart needed: a reload that changes it is refused{rest}")
    } else if let Some(rest) = cell.strip_prefix("reload") {
        format!("Reload applies it{rest}")
    } else {
        cell
    }
}

/// The whole page.
pub(crate) fn page() -> String {
    render(REFERENCE)
}

fn render(md: &str) -> String {
    let mut out = String::new();
    out.push_str(concat!(
        ".TH tapbridge.toml 5 \"\" \"tapbridge ",
        env!("CARGO_PKG_VERSION"),
        "\" tapbridge\n"
    ));
    out.push_str(
        ".SH NAME\ntapbridge.toml \\- configuration of a tapbridge link\n\
         .SH SYNOPSIS\n/etc/tapbridge/\\fINAME\\fR.toml\n",
    );
    let all = sections(md);
    out.push_str(".SH DESCRIPTION\n");
    out.push_str(
        "A TOML file configures one link: the TAP device, the tunnel, the peers, \
         and optionally the local DHCP and ARP responder, the guards, hooks, the \
         control socket and the metrics endpoint. \\fBbridge\\-ctl check\\fR \\fINAME\\fR \
         validates it without touching the system.\n",
    );
    for (heading, blocks) in &all {
        if heading == "The file" || heading.starts_with("How reload") {
            out.push_str(&format!(".SS \"{}\"\n", text_line(heading)));
            render_blocks(blocks, &mut out);
        }
    }
    for (heading, blocks) in &all {
        let has_keys = blocks.iter().any(|b| {
            matches!(b, Block::Table(rows) if rows.first()
                .is_some_and(|h| h.iter().map(String::as_str).eq(KEY_TABLE)))
        });
        if has_keys {
            out.push_str(&format!(".SH \"{}\"\n", inline(heading).replace('"', "")));
            render_blocks(blocks, &mut out);
        }
    }
    out.push_str(EXAMPLES);
    out.push_str(
        ".SH FILES\n\
         .TP\n.I /etc/tapbridge/NAME.toml\nthe configuration of link NAME\n\
         .TP\n.I /etc/tapbridge/NAME.psk\nthe link's pre-shared key (mode 0600)\n\
         .TP\n.I /etc/tapbridge/NAME.nat\nsettings of the NAT hooks\n\
         .TP\n.I /usr/share/doc/tapbridge/examples/\nexample configurations\n\
         .SH \"SEE ALSO\"\n\
         .BR bridge\\-ctl (8),\n.BR bridge\\-ctl\\-check (8),\n\
         .BR bridge\\-ctl\\-reload (8),\n.BR bridge\\-ctl\\-link\\-up (8),\n\
         .BR systemctl (1)\n",
    );
    out
}

const EXAMPLES: &str = r#".SH EXAMPLES
A site bridged to its partner, answering DHCP for its own LAN:
.PP
.RS 4
.nf
[interface]
bridge = "br\-lan"

[tunnel]
listen = "0.0.0.0:51901"
psk_file = "/etc/tapbridge/site\-a.psk"

[[peer]]
name = "site\-b"
endpoint = "198.18.0.2:51901"

[dhcp]
server_address = "198.19.0.251"
subnet = "198.19.0.0/24"
pool = "198.19.0.100\-198.19.0.149"
router = "198.19.0.1"
.fi
.RE
.PP
Check it, bring it up under systemd, change it later:
.PP
.RS 4
.nf
bridge\-ctl check site\-a
systemctl enable \-\-now tapbridge@site\-a
systemctl reload tapbridge@site\-a
.fi
.RE
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_reference_is_on_the_page_with_type_default_and_reload() {
        let page = page();
        let mut keys = 0;
        for (_, blocks) in sections(REFERENCE) {
            for b in &blocks {
                let Block::Table(rows) = b else { continue };
                if !rows[0].iter().map(String::as_str).eq(KEY_TABLE) {
                    continue;
                }
                for row in &rows[1..] {
                    assert_eq!(row.len(), 4, "{row:?}");
                    let key = escape(row[0].trim_matches('`'));
                    assert!(page.contains(&format!(".B {key}\nType: ")), "{key}");
                    keys += 1;
                }
            }
        }
        assert!(keys >= 50, "only {keys} keys found");
        assert!(page.contains("Restart needed"));
        assert!(page.contains("Reload applies it"));
        for s in [
            ".SH EXAMPLES",
            ".SH FILES",
            ".SH \"SEE ALSO\"",
            ".SH DESCRIPTION",
        ] {
            assert!(page.contains(s), "{s}");
        }
    }

    #[test]
    fn markdown_blocks_and_inline_text() {
        let md = "# T\nintro\n## `[a]` — x\n\n| key | type | default | reload |\n|---|---|---|---|\n\
                  | `k` | integer | `1` | restart |\n\n- **`k`**: what k does,\n  more.\n\n  \
                  - nested\n- other\n\nA [link](x.md) and `--opt`.\n";
        let s = sections(md);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, "`[a]` — x");
        assert_eq!(
            s[0].1,
            vec![
                Block::Table(vec![
                    KEY_TABLE.iter().map(|c| c.to_string()).collect(),
                    vec![
                        "`k`".into(),
                        "integer".into(),
                        "`1`".into(),
                        "restart".into()
                    ],
                ]),
                Block::Bullet(vec![
                    "**`k`**: what k does,".into(),
                    "more.".into(),
                    String::new(),
                    "- nested".into()
                ]),
                Block::Bullet(vec!["other".into()]),
                Block::Para("A [link](x.md) and `--opt`.".into()),
            ]
        );
        assert_eq!(
            inline("A [link](x.md) and `--opt`."),
            "A link and \\fB\\-\\-opt\\fR."
        );
        assert_eq!(
            bullet_keys("**`peer_up`** / **`peer_down`**: run"),
            ["peer_up", "peer_down"]
        );
        let page = render(md);
        assert!(page.contains(".B k\nType: integer. Default: \\fB1\\fR. Restart needed"));
        assert!(
            page.contains("what k does, more.\n.IP\n.br\n\\(bu nested\n"),
            "{page}"
        );
    }
}
