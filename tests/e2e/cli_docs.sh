#!/usr/bin/env bash
#
# cli_docs.sh — bridge-ctl's help texts, man pages and shell completions (SPEC §3).
#
# The man pages and completions are generated from the clap definitions by the hidden
# commands `bridge-ctl generate-manpages DIR` and `bridge-ctl generate-completions DIR`
# (scripts/build-deb.sh runs them to fill the .deb). Checks:
#   * every command's --help has an example and the exit statuses 0/1/2;
#   * bridge-ctl.8, one page per command and tapbridge.toml.5 exist; man-db's
#     `man --warnings -l` renders every page without a warning, with EXAMPLES, FILES and
#     SEE ALSO sections and no EXTRA; `man 8 NAME` finds the pages in a man directory
#     (MANPATH) as it would installed ones; the main page names every command;
#   * the completions, loaded by each shell the way it loads installed ones (bash:
#     sourced; zsh: compinit from $fpath, driven through a pseudo-terminal with zsh/zpty;
#     fish: sourced, `complete --do-complete`), offer the commands, the link actions and
#     a command's options, and not the hidden generate-* commands; all three offer the
#     link names (the config directory's *.toml) where a command takes NAME.
# man-db, zsh and fish are needed (installed with apt-get when missing; .ci/run installs
# them): a missing one fails the test, it is not skipped. Touches no network
# configuration.
#
# Run as root: tests/e2e/cli_docs.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init
tb_need_cmd man man-db
tb_need_cmd zsh zsh
tb_need_cmd fish fish

W=$E2E_WORK
COMMANDS=(link status leases diag check genpsk reload version invite join role)

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
e2e_check "tapbridge.toml.5 exists" test -s "$W/man/tapbridge.toml.5"
for c in "${COMMANDS[@]}" link-up link-down; do
    e2e_check "bridge-ctl-$c.8 exists" test -s "$W/man/bridge-ctl-$c.8"
done
# `man` from man-db (Debian's mandoc can provide one too, with other options).
e2e_match "man is man-db's" '^man [0-9]' "$(man --version 2>&1 || true)"
for f in "$W"/man/*.8 "$W"/man/*.5; do
    rc=0
    page=$(MANWIDTH=100 man --warnings -l "$f" 2>"$W/man.err") || rc=$?
    e2e_check "man --warnings -l $(basename "$f") exits 0 without warnings" \
        test "$rc" == 0 -a ! -s "$W/man.err"
    e2e_passed || e2e_note "$(head -n 5 "$W/man.err")"
    e2e_match "man -l $(basename "$f") renders a NAME section" '^NAME' "$page"
    for section in EXAMPLES FILES 'SEE ALSO'; do
        e2e_match "man -l $(basename "$f") has a $section section" "^$section\$" "$page"
    done
    e2e_nomatch "man -l $(basename "$f") has no EXTRA section" '^EXTRA$' "$page"
done
# Looked up by name in a man directory, as an installed page is.
mkdir -p "$W/mantree/man8"
cp "$W"/man/*.8 "$W/mantree/man8/"
page=$(MANPATH=$W/mantree MANWIDTH=100 man 8 bridge-ctl 2>&1 || true)
e2e_match "man 8 bridge-ctl finds and renders the page (MANPATH)" '^NAME' "$page"
for c in "${COMMANDS[@]}"; do
    e2e_match "bridge-ctl(8) names the command $c" "bridge-ctl-$c\\(8\\)" "$page"
done
e2e_match "man 8 bridge-ctl-link-up has the exit statuses" '2 +usage or configuration error' \
    "$(MANPATH=$W/mantree MANWIDTH=100 man 8 bridge-ctl-link-up 2>&1 || true)"

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
e2e_match "bash completion after 'diag' offers --socket and --config" \
    '--config.*--socket|--socket.*--config' "$(complete_bash diag | tr '\n' ' ')"
# Link names where a command takes NAME: the stems of the config directory's *.toml
# (BRIDGE_CTL_CONFIG_DIR stands in for /etc/tapbridge).
mkdir -p "$W/etc"
touch "$W/etc/hq.toml" "$W/etc/branch7.toml" "$W/etc/notes.txt"
export BRIDGE_CTL_CONFIG_DIR=$W/etc
for c in status leases diag check reload invite "link up" "link down"; do
    read -ra words <<<"$c"
    e2e_match "bash completion after '$c' offers the link names" '^branch7 hq $' \
        "$(complete_bash "${words[@]}" | sort | tr '\n' ' ')"
done
e2e_match "bash completion after 'link' still offers up and down" '(^| )up .*down' \
    "$(complete_bash link | tr '\n' ' ')"
e2e_nomatch "bash completion after 'link' offers no link name" '(^| )(hq|branch7) ' \
    "$(complete_bash link | tr '\n' ' ')"
e2e_nomatch "bash completion after 'genpsk' offers no link name" '(^| )(hq|branch7) ' \
    "$(complete_bash genpsk | tr '\n' ' ')"
unset BRIDGE_CTL_CONFIG_DIR

# zsh: _bridge-ctl is found through $fpath by compinit (as from vendor-completions),
# then completion runs for real: an interactive zsh in a pseudo-terminal (zsh/zpty) is
# sent `bridge-ctl WORDS<TAB>`; compadd is wrapped to write what it is given to a file.
cat >"$W/complete.zsh" <<'EOF'
# zsh -f complete.zsh FPATH-DIR OUT LINE: what completion offers for `bridge-ctl LINE<TAB>`.
zmodload zsh/zpty || exit 3
dir=$1 out=$2 line=$3
: >| $out
# Input typed before the shell reads its first line may be discarded: wait for the prompt.
zpty t "PS1='<P>' zsh -f -i"
zpty -r t _ '*<P>*' || exit 4
zpty -w t "bindkey -e; unsetopt autolist; fpath=(${(q)dir} \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -r t _ '*<P>*' || exit 4
zpty -w t "print -r -- \$_comps[bridge-ctl] >>${(q)out}.comps"
zpty -r t _ '*<P>*' || exit 4
zpty -w t "compadd() { local -a m; builtin compadd -O m \"\$@\"; print -rl -- \$m >>${(q)out}; builtin compadd \"\$@\"; }"
zpty -r t _ '*<P>*' || exit 4
# TAB, then (read only once the completion has finished) clear the line and write a
# marker; Ctrl-C would not do: the terminal turns it into a signal at once.
zpty -n -w t "bridge-ctl $line"$'\t\C-u'
zpty -w t "print -r -- __done__ >>${(q)out}"
for i in {1..200}; do grep -q '^__done__$' $out && break; sleep 0.1; done
zpty -d t
grep -q '^__done__$' $out || { print -u2 "the completion did not finish in 20 s"; exit 5; }
grep -v '^__done__$' $out
EOF
# complete_zsh LINE: what zsh offers after `bridge-ctl LINE<TAB>`.
# (From an empty directory, so that a fallback to file names offers nothing.)
complete_zsh() {
    { (cd "$W/empty" && timeout 30 zsh -f "$W/complete.zsh" "$W/comp-zsh" "$W/zsh.out" "$1" </dev/null) ||
        true; } | sort -u
}
mkdir -p "$W/comp-zsh" "$W/empty"
cp "$W/comp/_bridge-ctl" "$W/comp-zsh/"
e2e_check "zsh -n _bridge-ctl" zsh -n "$W/comp/_bridge-ctl"
top=$(complete_zsh "" | tr '\n' ' ')
e2e_match "zsh: compinit registers _bridge-ctl for bridge-ctl" '^_bridge-ctl$' \
    "$(cat "$W/zsh.out.comps" 2>/dev/null || true)"
for c in "${COMMANDS[@]}"; do
    e2e_match "zsh completion offers $c" "(^| )$c( |$)" "$top"
done
e2e_nomatch "zsh completion does not offer the hidden generate commands" 'generate' "$top"
e2e_match "zsh completion after 'link' offers up and down" '(^| )down .*up( |$)' \
    "$(complete_zsh "link " | tr '\n' ' ')"
e2e_match "zsh completion after 'link up -' offers --foreground and --config" \
    '--config.*--foreground' "$(complete_zsh "link up -" | tr '\n' ' ')"
export BRIDGE_CTL_CONFIG_DIR=$W/etc
for c in "status " "link up " "reload "; do
    got=$(complete_zsh "$c" | tr '\n' ' ')
    e2e_match "zsh completion after '$c' offers the link names" '(^| )branch7 (.* )?hq( |$)' "$got"
done
unset BRIDGE_CTL_CONFIG_DIR

# fish: the file sourced as fish loads vendor_completions.d, then asked to complete.
complete_fish() {
    # shellcheck disable=SC2016 # fish code, expanded by fish
    { (cd "$W/empty" && timeout 30 fish --no-config -c 'source $argv[1]; complete --do-complete $argv[2]' \
        "$W/comp/bridge-ctl.fish" "bridge-ctl $1" </dev/null) || true; } | cut -f1 | sort -u
}
e2e_check "fish -n bridge-ctl.fish" fish -n "$W/comp/bridge-ctl.fish"
top=$(complete_fish "" | tr '\n' ' ')
for c in "${COMMANDS[@]}"; do
    e2e_match "fish completion offers $c" "(^| )$c( |$)" "$top"
done
e2e_nomatch "fish completion does not offer the hidden generate commands" 'generate' "$top"
e2e_match "fish completion after 'link' offers up and down" '(^| )down .*up( |$)' \
    "$(complete_fish "link " | tr '\n' ' ')"
e2e_match "fish completion after 'link up --' offers --foreground and --config" \
    '--config.*--foreground' "$(complete_fish "link up --" | tr '\n' ' ')"
export BRIDGE_CTL_CONFIG_DIR=$W/etc
for c in "status " "link down " "check "; do
    e2e_match "fish completion after '$c' offers the link names" '(^| )branch7 (.* )?hq( |$)' \
        "$(complete_fish "$c" | tr '\n' ' ')"
done
unset BRIDGE_CTL_CONFIG_DIR

e2e_summary
