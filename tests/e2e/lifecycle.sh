#!/usr/bin/env bash
#
# lifecycle.sh — link up/down, crash recovery, hooks and `check` (SPEC §3, §4).
#
#   [alpha] tb-alpha 198.19.3.1/24 ── wan0 198.18.3.1/30 ══ 198.18.3.2/30 wan0 ── tb-beta 198.19.3.2/24 [beta]
#
# Checks, in order:
#   * `check`: 0 for a good config; 2 for an unknown key, naming file:line:col and the key;
#     2 for a group/world-readable PSK file (and `link up` refuses it with 2, leaving
#     no TAP); `link up` with a bad key exits 2 and leaves nothing behind;
#   * link up: the up hook ran and saw TAPBRIDGE_NAME/INTERFACE/ADDRESSES/MTU/WAN_MTU;
#     traffic flows;
#   * a second `link up` of the running link is refused (non-zero, a message) and the
#     running daemon (same PID, TAP, status, traffic) is unaffected;
#   * `kill -9` of the daemon, then `link up` works without manual cleanup: TAP,
#     address, route, peer up, traffic;
#   * `link down`: the down hook ran; no TAP, address, route, socket file or daemon is
#     left; `link down` again says so and exits 0;
#   * a failing up hook makes `link up` fail, runs the down hooks and leaves nothing behind.
#
# Run as root: tests/e2e/lifecycle.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

PORT=51901
ROUTE_DEV=198.19.64.0/18
ROUTE_VIA=198.19.128.0/18
W=$E2E_WORK

e2e_site alpha
e2e_site beta
NS_A=$(e2e_ns alpha)
NS_B=$(e2e_ns beta)
e2e_wan "$NS_A" "$NS_B" 198.18.3.1/30 198.18.3.2/30

# Hooks: one records its environment, one records that it ran, one fails.
cat >"$W/env-hook.sh" <<EOF
#!/bin/sh
env >"$W/up-env.txt"
EOF
cat >"$W/down-hook.sh" <<EOF
#!/bin/sh
echo "\$TAPBRIDGE_NAME" >"$W/down-ran.txt"
EOF
printf '#!/bin/sh\necho "e2e: this hook fails on purpose" >&2\nexit 1\n' >"$W/fail-hook.sh"
chmod 755 "$W/env-hook.sh" "$W/down-hook.sh" "$W/fail-hook.sh"

# Distinctive MTUs so the hook environment cannot be a coincidence of defaults. Fixed
# MACs, as an operator would set them: a restarted TAP keeps its MAC, so the other
# side's ARP cache stays valid.
e2e_config alpha --listen "198.18.3.1:$PORT" --peer "beta=198.18.3.2:$PORT" \
    --address 198.19.3.1/24 --route "$ROUTE_DEV" --route "$ROUTE_VIA via 198.19.3.2" \
    --mtu 1420 --wan-mtu 1480 --hook-up "$W/env-hook.sh" --hook-down "$W/down-hook.sh" \
    --mac 02:00:00:e2:e3:01
e2e_config beta --listen "198.18.3.2:$PORT" --peer "alpha=198.18.3.1:$PORT" \
    --address 198.19.3.2/24 --mtu 1420 --wan-mtu 1480 --mac 02:00:00:e2:e3:02
CONF_A=$(e2e_conf alpha)

# ---------------------------------------------------------------- check
e2e_check_exit "check alpha (good config) exits 0" 0 e2e_ctl alpha 10 check alpha --config "$CONF_A"

# The typo "mtuu" is on line 4, column 1.
cat >"$W/badkey.toml" <<EOF
# a config with a typo
[interface]
name = "tb-badkey"
mtuu = 1500
addresses = ["198.19.5.1/24"]
routes = ["198.19.192.0/18"]

[tunnel]
listen = "198.18.3.1:51902"
psk_file = "$W/psk"

[[peer]]
name = "beta"
endpoint = "198.18.3.2:51902"

[control]
socket = "$W/run/badkey.sock"
EOF
e2e_check_exit "check with an unknown key exits 2" 2 \
    e2e_ctl alpha 10 check badkey --config "$W/badkey.toml"
if e2e_passed; then
    e2e_match "the error names file:line:col (badkey.toml:4:1)" 'badkey\.toml:4:1\b' "$E2E_STDERR"
    e2e_match "the error names the key 'mtuu'" 'mtuu' "$E2E_STDERR"
    e2e_match "the error is one 'error: ...' sentence on stderr" '^error: ' "$E2E_STDERR"
fi
e2e_check_exit "link up with an unknown key exits 2" 2 \
    e2e_ctl alpha "$E2E_T_UP" link up badkey --config "$W/badkey.toml"
e2e_check "link up with an unknown key: no TAP tb-badkey" e2e_link_absent "$NS_A" tb-badkey
e2e_check "link up with an unknown key: no address 198.19.5.1" e2e_no_addr "$NS_A" 198.19.5.1
e2e_check "link up with an unknown key: no socket file" test ! -e "$W/run/badkey.sock"

# A group/world-readable PSK must be refused.
cp "$W/psk" "$W/loose.psk"
chmod 644 "$W/loose.psk"
sed "s|psk_file = \"$W/psk\"|psk_file = \"$W/loose.psk\"|" "$CONF_A" >"$W/loosepsk.toml"
if grep -q loose.psk "$W/loosepsk.toml"; then
    e2e_check_exit "check with a 0644 PSK file exits 2" 2 \
        e2e_ctl alpha 10 check loosepsk --config "$W/loosepsk.toml"
    if e2e_passed; then
        e2e_match "the error names the PSK file" 'loose\.psk' "$E2E_STDERR"
    fi
    e2e_check_exit "link up with a 0644 PSK file exits 2" 2 \
        e2e_ctl alpha "$E2E_T_UP" link up loosepsk --config "$W/loosepsk.toml"
    # The config still names tb-alpha and 198.19.3.1: nothing of it may exist now.
    e2e_check "link up with a 0644 PSK file: no TAP tb-alpha" e2e_link_absent "$NS_A" tb-alpha
    e2e_check "link up with a 0644 PSK file: no address 198.19.3.1" e2e_no_addr "$NS_A" 198.19.3.1
    e2e_check "link up with a 0644 PSK file: no hook ran" test ! -e "$W/up-env.txt"
else
    e2e_not_ok "could not derive a config with a loose PSK file"
fi

# ---------------------------------------------------------------- up, hooks
e2e_require_up alpha
e2e_require_up beta

e2e_check "the up hook ran before link up returned" test -s "$W/up-env.txt"
if e2e_passed; then
    envtxt=$(cat "$W/up-env.txt")
    e2e_match "hook env: TAPBRIDGE_NAME=alpha" '^TAPBRIDGE_NAME=alpha$' "$envtxt"
    e2e_match "hook env: TAPBRIDGE_INTERFACE=tb-alpha" '^TAPBRIDGE_INTERFACE=tb-alpha$' "$envtxt"
    e2e_match "hook env: TAPBRIDGE_ADDRESSES has 198.19.3.1/24" \
        '^TAPBRIDGE_ADDRESSES=(.*[ ,])?198\.19\.3\.1/24([ ,].*)?$' "$envtxt"
    e2e_match "hook env: TAPBRIDGE_MTU=1420" '^TAPBRIDGE_MTU=1420$' "$envtxt"
    e2e_match "hook env: TAPBRIDGE_WAN_MTU=1480" '^TAPBRIDGE_WAN_MTU=1480$' "$envtxt"
fi
e2e_match "route $ROUTE_DEV on tb-alpha" "^$ROUTE_DEV dev tb-alpha" \
    "$(ip -n "$NS_A" route show "$ROUTE_DEV" 2>&1 || true)"
e2e_match "route $ROUTE_VIA via 198.19.3.2" "^$ROUTE_VIA via 198\.19\.3\.2 dev tb-alpha" \
    "$(ip -n "$NS_A" route show "$ROUTE_VIA" 2>&1 || true)"
e2e_check "control socket file exists" test -S "$(e2e_sock alpha)"
e2e_match "tb-alpha has the configured MAC and MTU" 'mtu 1420 .*link/ether 02:00:00:e2:e3:01 ' \
    "$(ip -n "$NS_A" -o link show dev tb-alpha 2>&1 || true)"
e2e_check "status alpha --json: interface mac and mtu are the configured ones" \
    e2e_jq alpha 'exit(0 if d["interface"]["mac"].lower() == "02:00:00:e2:e3:01"
        and d["interface"]["mtu"] == 1420 else 1)'
e2e_wait_peer_up alpha beta
e2e_passed || e2e_fatal "the tunnel did not come up"
e2e_wait "ping alpha → beta" 10 e2e_ping1 alpha 198.19.3.2

# ---------------------------------------------------------------- second up refused
pid1=$(e2e_daemon_pid alpha || true)
if [[ -n "$pid1" ]]; then
    e2e_note "alpha's daemon: PID $pid1"
fi
e2e_check_fails "a second link up of the running link is refused" \
    e2e_ctl alpha "$E2E_T_UP" link up alpha --config "$CONF_A"
if e2e_passed; then
    e2e_match "the refusal says why (error: ... on stderr)" '^error: .+' "$E2E_STDERR"
fi
if [[ -n "$pid1" ]]; then
    e2e_check "the running daemon (PID $pid1) is still alive" kill -0 "$pid1"
    e2e_cmp "status still reports the same daemon" "$(e2e_daemon_pid alpha || echo x)" -eq "$pid1"
fi
e2e_check "TAP tb-alpha still exists" ip -n "$NS_A" link show dev tb-alpha
e2e_match "tb-alpha still has 198.19.3.1/24" 'inet 198\.19\.3\.1/24 ' \
    "$(ip -n "$NS_A" -o -4 addr show dev tb-alpha 2>&1 || true)"
e2e_check "control socket file still exists" test -S "$(e2e_sock alpha)"
e2e_check "peer still up after the refused second up" _e2e_peer_is_up alpha beta
e2e_check "traffic still flows after the refused second up" e2e_ping alpha 198.19.3.2

# ---------------------------------------------------------------- kill -9, up again
if [[ -z "$pid1" ]]; then
    e2e_not_ok "found alpha's daemon PID (status --json key pid)"
else
    kill -KILL "$pid1"
    e2e_wait "the killed daemon is gone" 5 e2e_pid_gone "$pid1"
    rm -f "$W/up-env.txt"
    e2e_check_exit "link up after kill -9 works without manual cleanup" 0 \
        e2e_ctl alpha "$E2E_T_UP" link up alpha --config "$CONF_A"
    e2e_check "after the crash: the up hook ran again" test -s "$W/up-env.txt"
    e2e_check "after the crash: TAP tb-alpha exists" ip -n "$NS_A" link show dev tb-alpha
    e2e_match "after the crash: tb-alpha has 198.19.3.1/24 exactly once" '^1$' \
        "$(ip -n "$NS_A" -o -4 addr show | grep -c ' 198\.19\.3\.1/24 ' || true)"
    e2e_match "after the crash: route $ROUTE_VIA is back" "^$ROUTE_VIA via 198\.19\.3\.2 dev tb-alpha" \
        "$(ip -n "$NS_A" route show "$ROUTE_VIA" 2>&1 || true)"
    pid2=$(e2e_daemon_pid alpha || echo x)
    e2e_check "after the crash: a new daemon runs (PID $pid2)" test "$pid2" != "$pid1" -a "$pid2" != x
    e2e_wait_peer_up alpha beta
    e2e_wait "after the crash: ping alpha → beta" 15 e2e_ping1 alpha 198.19.3.2
fi

# ---------------------------------------------------------------- down
pid=$(e2e_daemon_pid alpha || true)
e2e_check_down "link down alpha exits 0" alpha
e2e_check "the down hook ran with TAPBRIDGE_NAME=alpha" grep -qx alpha "$W/down-ran.txt"
e2e_nothing_left alpha "after link down" 198.19.3.1 "$ROUTE_DEV" "$ROUTE_VIA"
if [[ -n "$pid" ]]; then
    e2e_wait "after link down: the daemon (PID $pid) has exited" 5 e2e_pid_gone "$pid"
fi
e2e_down alpha || true
e2e_expect_rc "link down again exits 0" 0
if e2e_passed; then
    e2e_match "link down again says the link is not up" '[Nn]ot|[Aa]lready|[Dd]own' \
        "$E2E_STDOUT$E2E_STDERR"
fi

# ---------------------------------------------------------------- failing up hook
rm -f "$W/down-ran.txt"
e2e_config gamma --listen "198.18.3.1:51903" --peer "beta=198.18.3.2:51903" \
    --address 198.19.4.1/24 --route 198.19.192.0/18 --hook-up "$W/fail-hook.sh" \
    --hook-down "$W/down-hook.sh"
E2E_NS[gamma]=$NS_A
e2e_up gamma || true
e2e_expect_rc "link up with a failing up hook fails" nonzero
if e2e_passed; then
    e2e_match "the failure is reported on stderr" '^error: .+' "$E2E_STDERR"
fi
e2e_check "a failing up hook is rolled back by the down hooks" \
    grep -qx gamma "$W/down-ran.txt"
e2e_nothing_left gamma "after the failed up" 198.19.4.1 198.19.192.0/18
e2e_wait "after the failed up: no process is left in alpha's namespace" 5 \
    e2e_ns_empty "$NS_A"

e2e_summary
