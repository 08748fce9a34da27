//! The manual pages: bridge-ctl(8) and one page per command, from the clap
//! definitions (clap_mangen renders the synopsis, description and options;
//! the sections operators look for, EXAMPLES, EXIT STATUS, FILES and SEE
//! ALSO, are written here), and tapbridge.toml(5), from
//! docs/configuration.md (see [`crate::man_config`]).

/// Escapes `s` for roff text: backslashes, and a leading `.` or `'` that
/// would make the line a request.
pub(crate) fn escape(s: &str) -> String {
    let s = s.replace('\\', "\\e");
    if s.starts_with(['.', '\'']) {
        format!("\\&{s}")
    } else {
        s
    }
}

/// The files every page lists.
const FILES: &[(&str, &str)] = &[
    (
        "/etc/tapbridge/NAME.toml",
        "the configuration of link NAME; see tapbridge.toml(5)",
    ),
    (
        "/etc/tapbridge/NAME.d/*.toml",
        "peer drop-ins of link NAME: [[peer]] tables only, one file per site, as \
         bridge-ctl invite writes them (PEER.toml, its key PEER.psk beside it)",
    ),
    (
        "/etc/tapbridge/NAME.psk",
        "the link's pre-shared key (mode 0600), made by bridge-ctl genpsk",
    ),
    (
        "/etc/tapbridge/NAME.nat",
        "settings of the NAT hooks in /usr/lib/tapbridge/scripts/",
    ),
    (
        "/run/tapbridge/NAME.sock",
        "the running link's control socket",
    ),
    (
        "/run/tapbridge/NAME.log",
        "the log of a daemon started by link up without --foreground (the previous \
         one is NAME.log.1); under systemd the log is in the journal",
    ),
    (
        "/var/lib/tapbridge/NAME.leases",
        "the DHCP lease database of link NAME",
    ),
    (
        "/lib/systemd/system/tapbridge@.service",
        "the systemd unit of link NAME, tapbridge@NAME.service",
    ),
    (
        "/usr/share/doc/tapbridge/examples/",
        "example configurations",
    ),
];

/// The page name of a built command: `bridge-ctl`, `bridge-ctl-link-up`, ...
pub(crate) fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned()
}

/// Renders the page of `cmd` (built, so that its subcommands know their
/// page names); `parent` is the page above it, if any.
pub(crate) fn command_page(cmd: clap::Command, parent: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(page_name)
        .collect();
    let help = cmd
        .get_after_long_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let has_version = cmd.get_version().is_some();
    let page = clap_mangen::Man::new(cmd)
        .section("8")
        .manual("tapbridge")
        .source(concat!("tapbridge ", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    page.render_options_section(&mut out)?;
    if !subcommands.is_empty() {
        page.render_subcommands_section(&mut out)?;
    }
    let blocks = help_blocks(&help);
    let mut text = String::new();
    let examples: Vec<&str> = blocks
        .iter()
        .filter(|(h, _)| h.starts_with("Example"))
        .flat_map(|(_, lines)| lines.iter().copied())
        .collect();
    text.push_str(".SH EXAMPLES\n");
    if examples.is_empty() {
        text.push_str(&format!("See {}(8).\n", parent.unwrap_or("bridge-ctl")));
    } else {
        text.push_str(".RS 4\n.nf\n");
        for line in examples {
            text.push_str(&escape(line.trim()));
            text.push('\n');
        }
        text.push_str(".fi\n.RE\n");
    }
    if let Some((_, lines)) = blocks.iter().find(|(h, _)| h.starts_with("Exit status")) {
        text.push_str(".SH \"EXIT STATUS\"\n");
        for line in lines {
            // "  0  success": the status, then what it means.
            let line = line.trim();
            let (code, what) = line.split_once(' ').unwrap_or((line, ""));
            text.push_str(&format!(
                ".TP\n.B {}\n{}\n",
                escape(code),
                escape(what.trim())
            ));
        }
    }
    text.push_str(".SH FILES\n");
    for (path, what) in FILES {
        text.push_str(&format!(".TP\n.I {}\n{}\n", escape(path), escape(what)));
    }
    text.push_str(".SH \"SEE ALSO\"\n");
    let mut see: Vec<String> = Vec::new();
    see.extend(parent.map(|p| format!("{p}(8)")));
    if parent.is_some_and(|p| p != "bridge-ctl") {
        see.push("bridge-ctl(8)".into());
    }
    see.extend(subcommands.iter().map(|s| format!("{s}(8)")));
    see.extend(
        [
            "tapbridge.toml(5)",
            "systemctl(1)",
            "journalctl(1)",
            "systemd.exec(5)",
        ]
        .map(String::from),
    );
    let refs: Vec<String> = see
        .iter()
        .map(|s| {
            let (page, sect) = s.split_once('(').unwrap_or((s, ""));
            format!(".BR {} ({}", escape(page).replace('-', "\\-"), sect)
        })
        .collect();
    text.push_str(&refs.join(",\n"));
    text.push_str("\n.PP\n");
    text.push_str(
        "The operator's guide, with the journald filters, the log rotation and the \
         upgrade steps, is docs/operations.md in the source tree.\n",
    );
    out.extend_from_slice(text.as_bytes());
    if has_version {
        page.render_version_section(&mut out)?;
    }
    Ok(out)
}

/// Splits an `after_long_help` text into its headed blocks: a line ending
/// in `:` at the margin starts one; the indented lines after it are its
/// content (blank lines dropped).
fn help_blocks(text: &str) -> Vec<(&str, Vec<&str>)> {
    let mut blocks: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') && line.ends_with(':') {
            blocks.push((line.trim_end_matches(':'), Vec::new()));
        } else if let Some((_, lines)) = blocks.last_mut() {
            lines.push(line);
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_text_splits_into_headed_blocks() {
        let b = help_blocks(
            "Examples:\n  bridge-ctl a\n  bridge-ctl b\n\nExit status:\n  0  success\n",
        );
        assert_eq!(
            b,
            vec![
                ("Examples", vec!["  bridge-ctl a", "  bridge-ctl b"]),
                ("Exit status", vec!["  0  success"]),
            ]
        );
    }

    #[test]
    fn escaping_keeps_text_from_becoming_requests() {
        assert_eq!(escape(".hidden"), "\\&.hidden");
        assert_eq!(escape("'quote"), "\\&'quote");
        assert_eq!(escape("a\\b"), "a\\eb");
        assert_eq!(escape("plain"), "plain");
    }
}
