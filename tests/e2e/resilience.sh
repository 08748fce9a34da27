#!/usr/bin/env bash
#
# resilience.sh — peer restart, crash, roaming and a lossy WAN (SPEC §5).
#
#   [left] tb-left 198.19.5.1/24 ── wan0 198.18.5.1/24 ══ 198.18.5.2/24 wan0 ── tb-right 198.19.5.2/24 [right]
#
# Checks: traffic resumes within 15 s, without touching left, after right restarts
# (`link down` + `link up`) and after right's daemon is killed with SIGKILL and
# brought up again (left counts new handshakes); roaming: right's WAN address moves
# from 198.18.5.2 to 198.18.5.3 (right listens on 0.0.0.0, left still has the old
# endpoint configured) and left follows: its status shows 198.18.5.3:51901 and pings
# work; with 10 % random loss in each direction of left's WAN (iptables statistic
# match) a bounded ping run gets most replies and no DUP! line. The loss is skipped only
# when the kernel's configuration says it was built without the match; a rule that
# cannot be added for any other reason is a failure.
#
# Run as root: tests/e2e/resilience.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/tools/kernel_config.sh
source "$E2E_ROOT/tests/tools/kernel_config.sh"

e2e_init
tb_need_cmd iptables iptables

PORT=51901

e2e_site left
e2e_site right
NS_L=$(e2e_ns left)
NS_R=$(e2e_ns right)
e2e_wan "$NS_L" "$NS_R" 198.18.5.1/24 198.18.5.2/24

# Fixed MACs (as an operator would set them): a restarted TAP keeps its MAC, so the
# other side's ARP cache stays valid. right listens on the wildcard address, so it
# keeps working when its WAN address moves.
e2e_config left --listen "198.18.5.1:$PORT" --peer "right=198.18.5.2:$PORT" \
    --address 198.19.5.1/24 --keepalive 2s --mac 02:00:00:e2:e5:01
e2e_config right --listen "0.0.0.0:$PORT" --peer "left=198.18.5.1:$PORT" \
    --address 198.19.5.2/24 --keepalive 2s --mac 02:00:00:e2:e5:02

e2e_require_up left
e2e_require_up right
e2e_wait_peer_up left right
e2e_passed || e2e_fatal "the tunnel did not come up"
e2e_wait "ping left → right" 10 e2e_ping1 left 198.19.5.2
e2e_passed || e2e_fatal "no traffic through the tunnel"

handshakes() {
    local n
    n=$(e2e_peer left right handshakes 2>/dev/null) || n=x
    printf '%s\n' "$n"
}
# shellcheck disable=SC2317 # called indirectly, by e2e_wait
endpoint_moved() {
    [[ "$(e2e_peer left right endpoint)" == "198.18.5.3:$PORT" ]]
}
left_pid=$(e2e_daemon_pid left || echo x)

# ---------------------------------------------------------------- graceful restart
hs0=$(handshakes)
e2e_check_down "right: link down" right
e2e_check_up "right: link up again" right
e2e_wait "after right's restart: ping left → right resumes within 15 s" 15 \
    e2e_ping1 left 198.19.5.2
e2e_wait "after right's restart: left sees right up" 15 _e2e_peer_is_up left right
e2e_cmp "after right's restart: left completed a new handshake ($hs0 → …)" "$(handshakes)" -gt "$hs0"
e2e_check "after right's restart: ping right → left" e2e_ping right 198.19.5.1

# ---------------------------------------------------------------- crash
hs1=$(handshakes)
if pid=$(e2e_daemon_pid right); then
    kill -KILL "$pid"
    e2e_wait "right's daemon (PID $pid) is gone after kill -9" 5 e2e_pid_gone "$pid"
    e2e_up right || true
    e2e_expect_rc "right: link up after kill -9" 0
    e2e_wait "after right's crash: ping left → right resumes within 15 s" 15 \
        e2e_ping1 left 198.19.5.2
    e2e_cmp "after right's crash: left completed a new handshake ($hs1 → …)" "$(handshakes)" -gt "$hs1"
    e2e_check "after right's crash: ping right → left" e2e_ping right 198.19.5.1
else
    e2e_not_ok "found right's daemon PID (status key pid, ss -xlp, or the namespace's only process)"
fi
e2e_cmp "left's daemon was never restarted" "$(e2e_daemon_pid left || echo y)" -eq "$left_pid"

# ---------------------------------------------------------------- roaming
# Delete first, then add: deleting a primary address would take secondaries with it.
ip -n "$NS_R" addr del 198.18.5.2/24 dev wan0
ip -n "$NS_R" addr add 198.18.5.3/24 dev wan0
e2e_note "right's WAN address moved 198.18.5.2 → 198.18.5.3"
e2e_wait "roaming: ping right → left works from the new address" 15 e2e_ping1 right 198.19.5.1
e2e_wait "roaming: left's status shows right at 198.18.5.3:$PORT" 15 endpoint_moved
e2e_check "roaming: ping left → right (3 probes)" e2e_ping left 198.19.5.2
e2e_check "roaming: left's peer right is up" _e2e_peer_is_up left right

# ---------------------------------------------------------------- lossy WAN
# The statistic match comes with the iptables package (libxt_statistic; iptables-nft
# may turn it into nftables' own random expression, otherwise the kernel's xt_statistic
# is loaded on demand). Only a kernel built without it is a reason to skip.
loss_ok=1
: >"$E2E_WORK/iptables.err"
for chain in INPUT OUTPUT; do
    dir=-i
    [[ "$chain" == OUTPUT ]] && dir=-o
    if ! ip netns exec "$NS_L" iptables -w 5 -A "$chain" "$dir" wan0 -p udp \
        -m statistic --mode random --probability 0.1 -j DROP 2>>"$E2E_WORK/iptables.err"; then
        loss_ok=0
    fi
done
if [[ "$loss_ok" -ne 1 ]]; then
    if lacks=$(tb_kernel_lacks NETFILTER_XT_MATCH_STATISTIC); then
        e2e_skip "lossy WAN" "this kernel is built without the statistic match ($lacks is not set)"
    else
        e2e_not_ok "lossy WAN: iptables adds 10 % random loss on wan0 (-m statistic)" \
            "$(cat "$E2E_WORK/iptables.err")" \
            "$(iptables -V 2>&1); kernel NETFILTER_XT_MATCH_STATISTIC=$(tb_kernel_config NETFILTER_XT_MATCH_STATISTIC)"
    fi
else
    e2e_note "left drops 10 % of UDP on wan0, each direction"
    e2e_run e2e_ping left 198.19.5.2 -c 50 -i 0.05 -W 2
    received=$(grep -Eo '[0-9]+ received' <<<"$E2E_STDOUT" | grep -Eo '^[0-9]+' || echo 0)
    e2e_cmp "lossy WAN: at least 30 of 50 pings answered ($received)" "$received" -ge 30
    e2e_nomatch "lossy WAN: no DUP! replies" 'DUP!' "$E2E_STDOUT"
    e2e_cmp "lossy WAN: no frame was replayed into right ($(e2e_jq right 'd["counters"]["rx_replayed"]' || echo x))" \
        "$(e2e_jq right 'd["counters"]["rx_replayed"]' || echo x)" -eq 0
    ip netns exec "$NS_L" iptables -w 5 -F INPUT
    ip netns exec "$NS_L" iptables -w 5 -F OUTPUT
    e2e_check "after the lossy run: ping left → right (3 probes, no loss)" e2e_ping left 198.19.5.2
fi

e2e_summary
