#!/usr/bin/env bash
#
# link_lock.sh — `link up` is exclusive: many at once, one winner, nothing broken.
#
#   [alpha] tb-alpha 198.19.9.1/24 ── wan0 198.18.9.1/30 ══ 198.18.9.2/30 wan0 ── tb-beta 198.19.9.2/24 [beta]
#
# Ten rounds; in each, ten `bridge-ctl link up alpha` start at once (as two
# administrators, or an administrator and systemd, can cause). Checks, each round:
#   * exactly one exits 0; each of the nine others exits non-zero saying "already up";
#   * the winner's daemon runs, its TAP tb-alpha exists with its address, and alpha
#     reaches beta across the tunnel through it;
#   * `link down` then leaves no TAP, daemon or socket.
# Then `link up` right after `link down` is not refused (the lock goes first).
# Before the per-link lock, in about one try in three a loser removed the winner's
# TAP (the daemon ran on with no interface) and others failed half-way.
#
# Run as root: tests/e2e/link_lock.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

: "${E2E_TIME_LIMIT:=240}"
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

PORT=51901
W=$E2E_WORK
ROUNDS=10
RACERS=10

e2e_site alpha
e2e_site beta
NS_A=$(e2e_ns alpha)
NS_B=$(e2e_ns beta)
e2e_no_ipv6 "$NS_A"
e2e_no_ipv6 "$NS_B"
e2e_wan "$NS_A" "$NS_B" 198.18.9.1/30 198.18.9.2/30

e2e_config alpha --listen "198.18.9.1:$PORT" --peer "beta=198.18.9.2:$PORT" \
    --address 198.19.9.1/24
e2e_config beta --listen "198.18.9.2:$PORT" --peer "alpha=198.18.9.1:$PORT" \
    --address 198.19.9.2/24
CONF_A=$(e2e_conf alpha)
e2e_require_up beta
# However the rounds end, alpha is taken down.
tb_defer e2e_ctl alpha "$E2E_T_DOWN" link down --config "$CONF_A"

# race ROUND: RACERS concurrent `link up` of alpha; their exit statuses and
# output in $W/race-ROUND-I.{rc,out}.
race() {
    local round=$1 i pids=()
    for ((i = 1; i <= RACERS; i++)); do
        (
            rc=0
            e2e_ctl alpha "$E2E_T_UP" link up --config "$CONF_A" \
                >"$W/race-$round-$i.out" 2>&1 </dev/null || rc=$?
            printf '%s\n' "$rc" >"$W/race-$round-$i.rc"
        ) &
        pids+=("$!")
    done
    for i in "${pids[@]}"; do
        wait "$i" || true
    done
}

# shellcheck disable=SC2317 # invoked indirectly through e2e_wait
alpha_reaches_beta() {
    ip netns exec "$NS_A" ping -n -c 1 -W 1 198.19.9.2 >/dev/null 2>&1
}

for ((round = 1; round <= ROUNDS; round++)); do
    race "$round"
    winners=0
    losers_ok=0
    losers_bad=""
    for ((i = 1; i <= RACERS; i++)); do
        rc=$(cat "$W/race-$round-$i.rc" 2>/dev/null || echo missing)
        if [[ "$rc" == 0 ]]; then
            winners=$((winners + 1))
        elif grep -q "already up" "$W/race-$round-$i.out"; then
            losers_ok=$((losers_ok + 1))
        else
            losers_bad+=$'\n'"racer $i: exit $rc: $(head -c 400 "$W/race-$round-$i.out")"
        fi
    done
    if [[ "$winners" == 1 ]]; then
        e2e_ok "round $round: exactly one of $RACERS concurrent link up wins"
    else
        e2e_not_ok "round $round: exactly one of $RACERS concurrent link up wins" \
            "$winners exited 0"
    fi
    if [[ "$losers_ok" == $((RACERS - 1)) ]]; then
        e2e_ok "round $round: the $((RACERS - 1)) others are refused with \"already up\""
    else
        e2e_not_ok "round $round: the $((RACERS - 1)) others are refused with \"already up\"" \
            "$losers_ok were${losers_bad}"
    fi
    pid=$(e2e_daemon_pid alpha || true)
    if [[ -n "$pid" ]]; then
        e2e_ok "round $round: the winner's daemon runs (pid $pid)"
    else
        e2e_not_ok "round $round: the winner's daemon runs" "no pid from status"
    fi
    e2e_check "round $round: TAP tb-alpha exists with its address" \
        bash -c "ip -n '$NS_A' -o addr show dev tb-alpha | grep -q 198.19.9.1/24"
    e2e_wait "round $round: alpha reaches beta through the winner's TAP" 20 alpha_reaches_beta
    e2e_check "round $round: link down" \
        e2e_ctl alpha "$E2E_T_DOWN" link down --config "$CONF_A"
    e2e_check "round $round: no TAP left" bash -c "! ip -n '$NS_A' link show dev tb-alpha 2>/dev/null"
    e2e_check "round $round: no socket left" test ! -e "$(e2e_sock alpha)"
    if [[ -n "$pid" ]]; then
        e2e_wait "round $round: the daemon is gone" 10 e2e_pid_gone "$pid"
    fi
done

# The lock goes before `link down` returns: a `link up` right after is not refused.
e2e_check "link up right after link down" e2e_ctl alpha "$E2E_T_UP" link up --config "$CONF_A"
e2e_check "link down" e2e_ctl alpha "$E2E_T_DOWN" link down --config "$CONF_A"
e2e_check "link up right after link down, again" \
    e2e_ctl alpha "$E2E_T_UP" link up --config "$CONF_A"

e2e_summary
