#!/bin/bash
#
# operator.sh — what an operator sees of a link: its logs, its hooks across a reload,
# the NAT hook's refusal of a WAN interface that does not exist, and the man pages.
# One site in a namespace of its own, cabled to an empty one (its peer never answers;
# nothing needs it to).
#
#   * a detached `link up` prints "logging to PATH"; PATH exists and holds the
#     daemon's lines;
#   * hook pairing: up with [hooks] up = A-up, down = A-down; a reload that changes
#     them to B-up / B-down says they take effect at the next link up; `link down`
#     then runs A-down (the one paired with the up hook that ran), not B-down;
#   * journald priorities: `link up --foreground` with stderr on a file and
#     JOURNAL_STREAM naming that file's device:inode writes every line with an
#     sd-daemon prefix, <6> for info and <4> for a warning (a down hook that fails);
#     with JOURNAL_STREAM naming another file, no prefixes;
#   * nat-up.sh with TAPBRIDGE_NAT_WAN_IF naming a missing interface exits 2 with one
#     sentence naming it, directly and as the link's up hook (link up fails and the TAP
#     is gone); with an existing interface it gets past that check;
#   * a peer that dies (its daemon killed while pings flow, path MTU "auto") is
#     reported down, and no "path MTU lowered" is logged for it;
#   * `man -l` of every page generate-manpages writes shows EXAMPLES, FILES, SEE ALSO.
# Bounded: every call under a timeout, the whole test under E2E_TIME_LIMIT (60 s).
#
# Run as root: tests/e2e/operator.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

: "${E2E_TIME_LIMIT:=60}"
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init
tb_need_cmd man man-db

W=$E2E_WORK
e2e_site op
e2e_site far
NS=$(e2e_ns op)
e2e_no_ipv6 "$NS"
# A WAN whose other end runs no daemon: the peer never answers.
e2e_wan "$NS" "$(e2e_ns far)" 198.18.41.1/24 198.18.41.2/24

HOOKS=$W/hooks
mkdir -m 700 "$HOOKS"
RECORD=$HOOKS/ran
# hook NAME: an executable that appends NAME and its phase to $RECORD.
hook() {
    # shellcheck disable=SC2016 # $TAPBRIDGE_PHASE is for the hook to expand
    printf '#!/bin/sh\necho "%s $TAPBRIDGE_PHASE" >> "%s"\n' "$1" "$RECORD" >"$HOOKS/$1"
    chmod 700 "$HOOKS/$1"
}
hook A-up
hook A-down
hook B-up
hook B-down
printf '#!/bin/sh\necho "this down hook fails on purpose" >&2\nexit 3\n' >"$HOOKS/fail-down"
chmod 700 "$HOOKS/fail-down"

# config HOOK_ARGS...: (re)write op's config with these e2e_config hook options.
config() {
    e2e_config op --listen 198.18.41.1:51941 --peer far=198.18.41.2:51941 \
        --address 198.19.41.1/24 "$@"
}
CONF=$(e2e_conf op)

# ---------------------------------------------------------------- detached: log path, hooks
config --hook-up "$HOOKS/A-up" --hook-down "$HOOKS/A-down"
e2e_require_up op
LOG=$(sed -n 's/^logging to //p' <<<"$E2E_STDOUT")
e2e_match "link up prints the log path" '^logging to /' "$E2E_STDOUT"
e2e_check "the printed log path is the link's log file" test "$LOG" == "$W/run/op.log"
e2e_check "the log file exists" test -s "$LOG"
e2e_check "the log file holds the daemon's lines" grep -q 'link op up' "$LOG"
e2e_match "the up hook A-up ran" '^A-up up$' "$(cat "$RECORD" 2>/dev/null || true)"

config --hook-up "$HOOKS/B-up" --hook-down "$HOOKS/B-down"
e2e_run e2e_ctl op 20 reload --config "$CONF"
e2e_expect_rc "reload with changed [hooks] exits 0" 0
e2e_match "reload says up/down hooks take effect at the next link up" \
    '^\[hooks\]: changed; up and down hooks take effect at the next link up' "$E2E_STDOUT"
e2e_down op || true
e2e_expect_rc "link down exits 0" 0
ran=$(cat "$RECORD" 2>/dev/null || true)
e2e_match "link down ran A-down, the down hook paired with the up hook that ran" '^A-down down$' "$ran"
e2e_nomatch "link down did not run B-down (from the reload)" '^B-' "$ran"
e2e_check "link down logged which down hooks it ran" \
    grep -q 'running the down hooks configured with the up hooks that ran' "$LOG"

# ---------------------------------------------------------------- journald priorities
# foreground OUT ERR: run the daemon in the foreground (stdout OUT, stderr appended to
# ERR, the environment as given) until it is up, then take it down and wait for it.
foreground() {
    local out=$1 err=$2 pid
    shift 2
    ip netns exec "$NS" env "$@" timeout -k 5 40 "$BIN" link up --foreground --config "$CONF" \
        >"$out" 2>>"$err" </dev/null &
    pid=$!
    tb_defer tb_stop_pid "$pid"
    tb_wait_until 20 "the foreground daemon answers" \
        e2e_ctl op 5 status --config "$CONF" >/dev/null 2>&1 || true
    e2e_ctl op 20 link down --config "$CONF" >/dev/null 2>&1 || true
    wait "$pid" 2>/dev/null || true
}
config --hook-down "$HOOKS/fail-down"
J=$W/journal.txt
: >"$J"
foreground "$W/fg.out" "$J" JOURNAL_STREAM="$(stat -c '%d:%i' "$J")"
journal=$(cat "$J")
e2e_match "foreground daemon printed its summary" '^link op up' "$(cat "$W/fg.out")"
e2e_match "under JOURNAL_STREAM an info line starts with <6>" '^<6>.*link op up' "$journal"
e2e_match "under JOURNAL_STREAM a warning starts with <4>" '^<4>.*fail-down' "$journal"
e2e_nomatch "under JOURNAL_STREAM every line has a priority prefix" '^([^<]|<[^0-7]|<[0-7][^>])' "$journal"
e2e_cmp "under JOURNAL_STREAM there are lines" "$(wc -l <"$J")" -ge 3

# JOURNAL_STREAM naming another file (inherited, not ours): plain lines.
P=$W/plain.txt
: >"$P"
foreground "$W/fg2.out" "$P" JOURNAL_STREAM="$(stat -c '%d:%i' "$RECORD")"
e2e_match "with JOURNAL_STREAM naming another file the lines are there" 'link op up' "$(cat "$P")"
e2e_nomatch "with JOURNAL_STREAM naming another file there are no prefixes" '^<[0-7]>' "$(cat "$P")"

# ---------------------------------------------------------------- NAT hook, missing WAN
NAT_UP=$E2E_ROOT/appliance/hooks/nat-up.sh
nat_env=(TAPBRIDGE_NAME=op TAPBRIDGE_INTERFACE=tb-op TAPBRIDGE_ADDRESSES=198.19.41.1/24
    TAPBRIDGE_NAT_CONFIG="$W/none.nat")
e2e_check_exit "nat-up.sh refuses a WAN interface that does not exist (exit 2)" 2 \
    ip netns exec "$NS" env "${nat_env[@]}" TAPBRIDGE_NAT_WAN_IF=nosuch0 timeout 20 "$NAT_UP"
e2e_match "and says so in one sentence naming it" \
    "^error: the WAN interface 'nosuch0' \(TAPBRIDGE_NAT_WAN_IF\) does not exist" "$E2E_STDERR"
e2e_cmp "one line on stderr" "$(wc -l <<<"$E2E_STDERR")" -eq 1
# An existing one passes that check: the next setting (a bad MSS) is what it refuses.
e2e_check_exit "nat-up.sh with an existing WAN interface gets to the next check" 2 \
    ip netns exec "$NS" env "${nat_env[@]}" TAPBRIDGE_NAT_WAN_IF=wan0 TAPBRIDGE_NAT_MSS=bogus \
    timeout 20 "$NAT_UP"
e2e_match "(refused for the MSS, not the WAN)" 'TAPBRIDGE_NAT_MSS' "$E2E_STDERR"

# As the link's up hook: link up fails, names the interface, and leaves no TAP.
config --hook-up "$NAT_UP"
tb_defer e2e_ctl op "$E2E_T_DOWN" link down --config "$CONF"
e2e_run ip netns exec "$NS" env TAPBRIDGE_NAT_WAN_IF=nosuch0 TAPBRIDGE_NAT_CONFIG="$W/none.nat" \
    timeout -k 5 "$E2E_T_UP" "$BIN" link up --config "$CONF"
e2e_expect_rc "link up with nat-up.sh and a missing WAN interface fails" nonzero
e2e_match "link up's error names the missing WAN interface" "nosuch0.*does not exist" \
    "$E2E_STDERR"
e2e_check "the TAP was removed again" e2e_link_absent "$NS" tb-op

# ---------------------------------------------------------------- a peer that dies
# op and far, path MTU discovered ("auto"), pings flowing (so the size in use is
# re-probed); far's daemon is killed: op must report far down, and never log that
# the path MTU was lowered (the probes that go unanswered are a dead peer's).
config --wan-mtu auto
e2e_config far --listen 198.18.41.2:51941 --peer op=198.18.41.1:51941 \
    --address 198.19.41.2/24 --wan-mtu auto
e2e_require_up op
e2e_require_up far
e2e_wait_peer_up op far 20
# shellcheck disable=SC2317 # run by e2e_wait
pmtu_found() { [[ "$(e2e_peer op far path_mtu 2>/dev/null)" == 1500 ]]; }
e2e_wait "op found the 1500-byte path to far" 20 pmtu_found
ip netns exec "$NS" timeout 45 ping -q -i 0.2 -w 40 198.19.41.2 >/dev/null 2>&1 &
PING=$!
tb_defer tb_stop_pid "$PING"
FAR_PID=$(e2e_daemon_pid far || true)
e2e_match "far's daemon has a pid" '^[0-9]+$' "$FAR_PID"
[[ "$FAR_PID" =~ ^[0-9]+$ ]] && kill -KILL "$FAR_PID"
# shellcheck disable=SC2317 # run by e2e_wait
far_down() { [[ "$(e2e_peer op far state 2>/dev/null)" == down ]]; }
e2e_wait "op reports far down after far's daemon was killed" 30 far_down
e2e_check "op logged 'peer down' for far" grep -q 'peer down' "$LOG"
e2e_nomatch "op never logged 'path MTU lowered' for the dead peer" 'path MTU lowered' \
    "$(cat "$LOG")"
e2e_nomatch "op's path MTU to far was not lowered" '^1280$' "$(e2e_peer op far path_mtu 2>/dev/null || true)"
tb_stop_pid "$PING"
e2e_down op || true

# ---------------------------------------------------------------- man pages
e2e_check "generate-manpages writes the pages" "$BIN" generate-manpages "$W/man"
pages=("$W"/man/*.8 "$W"/man/*.5)
e2e_cmp "bridge-ctl pages and tapbridge.toml.5 were written" "${#pages[@]}" -ge 11
e2e_check "tapbridge.toml.5 is among them" test -s "$W/man/tapbridge.toml.5"
for f in "${pages[@]}"; do
    page=$(MANWIDTH=100 man -l "$f" 2>/dev/null || true)
    for section in EXAMPLES FILES 'SEE ALSO'; do
        e2e_match "man -l $(basename "$f") shows $section" "^$section\$" "$page"
    done
done
page=$(MANWIDTH=100 man -l "$W/man/tapbridge.toml.5" 2>/dev/null || true)
e2e_match "tapbridge.toml(5) gives a key's type, default and reload" \
    'Type: duration\. Default: "10s"\. Reload applies it' "$page"
e2e_match "tapbridge.toml(5) says which keys need a restart" \
    'Restart needed: a reload that changes it is refused' "$page"

e2e_summary
