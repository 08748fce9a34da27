#!/bin/bash
#
# End-to-end test of the hooks' environment and of `[hooks] peer_up` / `peer_down`
# (SPEC §4). Two sites on a veth WAN, each in a namespace of its own; east runs:
#
#   up         a hook that writes its environment to a file and then leaves a
#              background `sleep 300` holding its stdout and stderr: `link up` must
#              still return (the hook's output is read only while the hook runs)
#   peer_up    writes its environment to a file each time west's session comes up
#   peer_down  the same when west's session goes down
#
# Checks: TAPBRIDGE_BRIDGE (empty: no bridge) and TAPBRIDGE_LISTEN reach the up hook;
# peer_up runs with TAPBRIDGE_PEER=west and west's endpoint when west comes up;
# peer_down runs when west goes down (silent for three keepalives); peer_up runs again
# when west comes back. Reports through tests/e2e/lib.sh.

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

PORT=51901
e2e_site east
e2e_site west
NS_E=$(e2e_ns east)
NS_W=$(e2e_ns west)
e2e_wan "$NS_E" "$NS_W" 198.18.31.1/30 198.18.31.2/30

HOOKS="$E2E_WORK/hooks"
mkdir -m 700 "$HOOKS"
# hook NAME BODY: an executable shell script in $HOOKS.
hook() {
    printf '#!/bin/sh\n%s\n' "$2" >"$HOOKS/$1"
    chmod 700 "$HOOKS/$1"
}
hook up.sh "env | grep '^TAPBRIDGE_' | sort > '$HOOKS/up.env'
sleep 300 &
echo \$! > '$HOOKS/bg.pid'
echo 'up hook done'"
hook peer-up.sh "n=\$(ls '$HOOKS' | grep -c '^peer_up[.]')
env | grep '^TAPBRIDGE_' | sort > '$HOOKS'/peer_up.\$n"
hook peer-down.sh "n=\$(ls '$HOOKS' | grep -c '^peer_down[.]')
env | grep '^TAPBRIDGE_' | sort > '$HOOKS'/peer_down.\$n"
# shellcheck disable=SC2317 # run by the cleanup
stop_bg() {
    local pid
    pid=$(cat "$HOOKS/bg.pid" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] && kill "$pid" 2>/dev/null
    return 0
}
tb_defer stop_bg

e2e_config east --listen "198.18.31.1:$PORT" --peer "west=198.18.31.2:$PORT" \
    --address 198.19.31.1/24 --hook-up "$HOOKS/up.sh" \
    --extra "peer_up = [\"$HOOKS/peer-up.sh\"]
peer_down = [\"$HOOKS/peer-down.sh\"]"
# --extra is appended after [control]; move the two keys into [hooks].
CONF_E=$(e2e_conf east)
python3 - "$CONF_E" <<'PY'
import sys
p = sys.argv[1]
lines = open(p).read().split("\n")
extra = [l for l in lines if l.startswith(("peer_up =", "peer_down ="))]
rest = [l for l in lines if l not in extra]
i = rest.index("[hooks]")
open(p, "w").write("\n".join(rest[: i + 1] + extra + rest[i + 1 :]))
PY
e2e_config west --listen "198.18.31.2:$PORT" --peer "east=198.18.31.1:$PORT" \
    --address 198.19.31.2/24

e2e_check "check accepts peer_up and peer_down hooks" "$BIN" check --config "$CONF_E"
e2e_require_up east
e2e_check "the up hook's output reached the log" grep -q 'up hook done' "$E2E_WORK/run/east.log"
up_env=$(cat "$HOOKS/up.env" 2>/dev/null || true)
e2e_match "up hook: TAPBRIDGE_BRIDGE is set and empty without a bridge" '^TAPBRIDGE_BRIDGE=$' "$up_env"
e2e_match "up hook: TAPBRIDGE_LISTEN is the bound address" "TAPBRIDGE_LISTEN=198.18.31.1:$PORT" "$up_env"
e2e_match "up hook: TAPBRIDGE_PHASE=up" 'TAPBRIDGE_PHASE=up' "$up_env"
# shellcheck disable=SC2016 # expanded by the inner bash
e2e_check "up hook: its background process is still running" \
    bash -c 'kill -0 "$(cat "$1")"' _ "$HOOKS/bg.pid"

e2e_require_up west
e2e_wait_peer_up east west
e2e_wait "peer_up ran when west came up" 10 test -s "$HOOKS/peer_up.0"
env1=$(cat "$HOOKS/peer_up.0" 2>/dev/null || true)
e2e_match "peer_up: TAPBRIDGE_PEER=west" 'TAPBRIDGE_PEER=west' "$env1"
e2e_match "peer_up: TAPBRIDGE_PEER_ENDPOINT is west's address" \
    "TAPBRIDGE_PEER_ENDPOINT=198.18.31.2:$PORT" "$env1"
e2e_match "peer_up: TAPBRIDGE_PHASE=peer_up" 'TAPBRIDGE_PHASE=peer_up' "$env1"
e2e_match "peer_up: the link's variables are there too" 'TAPBRIDGE_NAME=east' "$env1"
e2e_check "no peer_down yet" test ! -e "$HOOKS/peer_down.0"

e2e_run e2e_ctl west "$E2E_T_DOWN" link down --config "$(e2e_conf west)"
e2e_expect_rc "link down west" 0
# Keepalive 2 s: west is down for east after three silent intervals.
e2e_wait "peer_down ran when west went down" 20 test -s "$HOOKS/peer_down.0"
env2=$(cat "$HOOKS/peer_down.0" 2>/dev/null || true)
e2e_match "peer_down: TAPBRIDGE_PEER=west" 'TAPBRIDGE_PEER=west' "$env2"
e2e_match "peer_down: TAPBRIDGE_PHASE=peer_down" 'TAPBRIDGE_PHASE=peer_down' "$env2"

e2e_require_up west
e2e_wait "peer_up ran again when west came back" 20 test -s "$HOOKS/peer_up.1"
e2e_check "peer_up did not run for rekeys or keepalives" test ! -e "$HOOKS/peer_up.2"

e2e_summary
