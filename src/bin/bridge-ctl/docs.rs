//! The hidden packaging commands: man pages and shell completions generated
//! from the clap definitions in [`crate::cli`].

use std::path::Path;

use anyhow::Context as _;

use crate::cli::Cli;
use crate::man;

/// `bridge-ctl generate-manpages DIR`: bridge-ctl.8 and one page per command
/// (bridge-ctl-link-up.8, ...), from the clap definitions in cli.rs, and
/// tapbridge.toml.5, from docs/configuration.md. Run by scripts/build-deb.sh;
/// the package ships them in /usr/share/man/man8 and man5.
pub(crate) fn generate_manpages(dir: &Path) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        outln!("{}", path.display());
        Ok(())
    }
    fn write(cmd: clap::Command, parent: Option<&str>, dir: &Path) -> anyhow::Result<()> {
        let name = man::page_name(&cmd);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), Some(&name), dir)?;
        }
        let page = man::command_page(cmd, parent)?;
        write_file(&dir.join(format!("{name}.8")), &page)
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    write(cmd, None, dir)?;
    write_file(
        &dir.join("tapbridge.toml.5"),
        crate::man_config::page().as_bytes(),
    )
}

/// `bridge-ctl generate-completions DIR`: bridge-ctl.bash, _bridge-ctl (zsh) and
/// bridge-ctl.fish. Run by scripts/build-deb.sh; the package installs them where
/// bash-completion, zsh and fish look for vendor completions. Besides clap's
/// commands and options, each completes link names where a command takes NAME.
pub(crate) fn generate_completions(dir: &Path) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    // The hidden generate-* commands are for packaging, not for operators.
    let full = Cli::command();
    let visible = full.get_subcommands().filter(|s| !s.is_hide_set()).cloned();
    let mut cmd = clap::Command::new("bridge-ctl")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(visible)
        .subcommand_required(true);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (shell, file) in [
        (Shell::Bash, "bridge-ctl.bash"),
        (Shell::Zsh, "_bridge-ctl"),
        (Shell::Fish, "bridge-ctl.fish"),
    ] {
        let path = dir.join(file);
        let mut out = Vec::new();
        let text = if shell == Shell::Bash {
            // clap_complete 4.6 turns the '-' of "bridge-ctl" into its separator in
            // some case labels but not in others, so subcommands' options would never
            // complete. Generated for "bridge_ctl", then bound to the real name.
            clap_complete::generate(shell, &mut cmd, "bridge_ctl", &mut out);
            let text = String::from_utf8_lossy(&out)
                .replace(" bridge_ctl\n", " bridge-ctl\n")
                .replace("complete -F _bridge_ctl ", "complete -F _bridge_ctl_links ");
            format!("{text}{BASH_LINK_NAMES}")
        } else if shell == Shell::Fish {
            clap_complete::generate(shell, &mut cmd, "bridge-ctl", &mut out);
            format!("{}{FISH_LINK_NAMES}", String::from_utf8_lossy(&out))
        } else {
            clap_complete::generate(shell, &mut cmd, "bridge-ctl", &mut out);
            zsh_link_names(&String::from_utf8_lossy(&out))
        };
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        outln!("{}", path.display());
    }
    Ok(())
}

/// Appended to clap's bash completion: where a command takes NAME, offer
/// the links configured in /etc/tapbridge (the stems of its *.toml files;
/// BRIDGE_CTL_CONFIG_DIR points elsewhere, for tests). clap's function
/// still completes commands and options.
const BASH_LINK_NAMES: &str = r#"
# Link names where a command takes NAME: the stems of /etc/tapbridge/*.toml.
_bridge_ctl_links() {
    _bridge_ctl "$@"
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]} i w f
    local -a words=() names=()
    [[ $cur == -* ]] && return 0
    case $prev in --config | --log-level | --out | --socket) return 0 ;; esac
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
        --config) return 0 ;; # --config FILE names the link itself
        --log-level | --out | --socket) ((i++)) ;;
        -*) ;;
        *) words+=("$w") ;;
        esac
    done
    case "${words[*]}" in
    status | leases | diag | check | reload | invite | "link up" | "link down") ;;
    *) return 0 ;;
    esac
    for f in "${BRIDGE_CTL_CONFIG_DIR:-/etc/tapbridge}"/*.toml; do
        [[ -f $f ]] || continue
        f=${f##*/}
        names+=("${f%.toml}")
    done
    ((${#names[@]})) || return 0
    mapfile -t COMPREPLY < <(compgen -W "${names[*]}" -- "$cur")
}
"#;

/// Appended to clap's fish completion: link names where a command takes
/// NAME, as for bash.
const FISH_LINK_NAMES: &str = r#"
# Link names where a command takes NAME: the stems of /etc/tapbridge/*.toml.
function __bridge_ctl_links
    set -l dir /etc/tapbridge
    set -q BRIDGE_CTL_CONFIG_DIR; and set dir $BRIDGE_CTL_CONFIG_DIR
    for f in $dir/*.toml
        basename $f .toml
    end
end
complete -c bridge-ctl -n "__fish_seen_subcommand_from status leases diag check reload invite up down" -a "(__bridge_ctl_links)" -d "link"
"#;

/// clap's zsh completion with link names where a command takes NAME: the
/// positional `name` completes with `_bridge_ctl_links` instead of
/// `_default`, a function defined before the script's final dispatch.
fn zsh_link_names(text: &str) -> String {
    const DISPATCH: &str = "if [ \"$funcstack[1]\" = \"_bridge-ctl\" ]; then";
    let text: String = text
        .lines()
        .map(|l| {
            if (l.starts_with("'::name -- ") || l.starts_with("':name -- The hub"))
                && l.ends_with(":_default' \\")
            {
                l.replace(":_default' \\", ":_bridge_ctl_links' \\")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let helper = "(( $+functions[_bridge_ctl_links] )) ||\n\
                  _bridge_ctl_links() {\n    \
                  # The stems of /etc/tapbridge/*.toml (BRIDGE_CTL_CONFIG_DIR for tests).\n    \
                  local -a names\n    \
                  names=( ${BRIDGE_CTL_CONFIG_DIR:-/etc/tapbridge}/*.toml(N:t:r) )\n    \
                  _describe -t links 'link' names\n\
                  }\n\n";
    match text.find(DISPATCH) {
        Some(i) => format!("{}{helper}{}\n", &text[..i], &text[i..]),
        None => format!("{text}\n"),
    }
}
