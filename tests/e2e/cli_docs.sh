#!/usr/bin/env bash
#
# cli_docs.sh — bridge-ctl's help texts, man pages and shell completions (SPEC §3).
#
# The man pages and completions are generated from the clap definitions by the hidden
# commands `bridge-ctl generate-manpages DIR` and `bridge-ctl generate-completions DIR`
# (scripts/build-deb.sh runs them to fill the .deb). Checks:
#   * every command's --help has an example and the exit statuses 0/1/2;
#   * bridge-ctl.8 and one page per command exist, `man -l` renders them, and the main
#     page names every command;
#   * the bash completion, sourced by bash, offers the commands, the link actions and a
#     command's options, and not the hidden generate-* commands; zsh and fish files
#     exist and name the commands (and pass `zsh -n` / `fish -n` where installed).
# Touches no network configuration.
#
# Run as root: tests/e2e/cli_docs.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

W=$E2E_WORK
COMMANDS=(link status leases check genpsk reload version)

# ---------------------------------------------------------------- help texts
for c in "${COMMANDS[@]}" "link up" "link down"; do
    read -ra words <<<"$c"
    help=$("$BIN" "${words[@]}" --help 2>&1 || true)
    e2e_match "bridge-ctl $c --help shows an example" '^Examples?:' "$help"
    e2e_match "bridge-ctl $c --help lists exit statuses 0, 1 and 2" \
        '^Exit status:' "$help"
    if ! grep -q '^  2  usage or configuration error' <<<"$help"; then
        e2e_not_ok "bridge-ctl $c --help explains exit status 2" "$help"
    fi
done
e2e_nomatch "--help does not list the hidden generate commands" 'generate-' "$("$BIN" --help)"

# ---------------------------------------------------------------- man pages
e2e_check "generate-manpages writes the pages" "$BIN" generate-manpages "$W/man"
e2e_check "bridge-ctl.8 exists" test -s "$W/man/bridge-ctl.8"
for c in "${COMMANDS[@]}" link-up link-down; do
    e2e_check "bridge-ctl-$c.8 exists" test -s "$W/man/bridge-ctl-$c.8"
done
if command -v man >/dev/null; then
    page=$(MANWIDTH=100 man -l "$W/man/bridge-ctl.8" 2>"$W/man.err" || true)
    e2e_match "man -l bridge-ctl.8 renders a NAME section" '^NAME' "$page"
    e2e_check "man -l bridge-ctl.8 renders without warnings" test ! -s "$W/man.err"
    for c in "${COMMANDS[@]}"; do
        e2e_match "bridge-ctl(8) names the command $c" "bridge-ctl-$c\\(8\\)" "$page"
    done
    e2e_match "bridge-ctl-link-up(8) has the exit statuses" '2 +usage or configuration error' \
        "$(MANWIDTH=100 man -l "$W/man/bridge-ctl-link-up.8" 2>&1 || true)"
else
    e2e_skip "man -l renders bridge-ctl.8" "man is not installed"
fi

# ---------------------------------------------------------------- completions
e2e_check "generate-completions writes the scripts" "$BIN" generate-completions "$W/comp"
for f in bridge-ctl.bash _bridge-ctl bridge-ctl.fish; do
    e2e_check "completion file $f exists" test -s "$W/comp/$f"
done

# complete WORDS...: what the bash completion offers after `bridge-ctl WORDS... <TAB>`.
complete_bash() {
    bash --norc --noprofile -c '
        source "$1"; shift
        f=$(complete -p bridge-ctl | sed -E "s/.* -F ([^ ]+) .*/\1/")
        COMP_WORDS=(bridge-ctl "$@" "")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        "$f" bridge-ctl "" "$prev"
        printf "%s\n" "${COMPREPLY[@]}"' _ "$W/comp/bridge-ctl.bash" "$@"
}
top=$(complete_bash | tr '\n' ' ')
for c in "${COMMANDS[@]}"; do
    e2e_match "bash completion offers $c" "(^| )$c( |$)" "$top"
done
e2e_nomatch "bash completion does not offer the hidden generate commands" 'generate' "$top"
e2e_match "bash completion after 'link' offers up and down" '(^| )up .*down' \
    "$(complete_bash link | tr '\n' ' ')"
e2e_match "bash completion after 'link up' offers --foreground and --config" \
    '--config.*--foreground|--foreground.*--config' "$(complete_bash link up | tr '\n' ' ')"
for c in "${COMMANDS[@]}"; do
    e2e_check "zsh completion names $c" grep -q "'$c:" "$W/comp/_bridge-ctl"
    e2e_check "fish completion names $c" grep -q -- "-a \"$c\"" "$W/comp/bridge-ctl.fish"
done
if command -v zsh >/dev/null; then
    e2e_check "zsh -n _bridge-ctl" zsh -n "$W/comp/_bridge-ctl"
fi
if command -v fish >/dev/null; then
    e2e_check "fish -n bridge-ctl.fish" fish -n "$W/comp/bridge-ctl.fish"
fi

e2e_summary
