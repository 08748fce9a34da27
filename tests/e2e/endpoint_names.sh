#!/usr/bin/env bash
#
# endpoint_names.sh — a peer endpoint given as a host name (SPEC §4 `[[peer]] endpoint`).
#
#   [left] tb-left 198.19.7.1/24 ── wan0 198.18.7.1/24 ══ 198.18.7.2/24 (later .3) wan0 ── tb-right 198.19.7.2/24 [right]
#
# left names its peer "hq.tapbridge.test:51901"; the name lives only in left's
# namespace hosts file (/etc/netns/NS/hosts, bind-mounted by `ip netns exec`), and
# left's resolv.conf points at its own loopback, so no DNS query leaves the
# namespace. right has no endpoint for left (it waits to be contacted), so only a
# resolution can point left at right. Checks: a name that does not resolve fails
# `link up` with exit 1, a message naming the peer and the host, and nothing left
# behind; with the name in the hosts file the link comes up and left's status shows
# the address in use; right restarts on another address (198.18.7.3) and the hosts
# file is edited while left's peer is down: left resolves the name again by itself
# and reconnects within 40 s, its status showing the new endpoint; right moves back
# and a reload names another host for it: left resolves it at once and reconnects.
#
# Run as root: tests/e2e/endpoint_names.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

PORT=51901
NAME=hq.tapbridge.test

e2e_site left
e2e_site right
NS_L=$(e2e_ns left)
NS_R=$(e2e_ns right)
e2e_no_ipv6 "$NS_L"
e2e_no_ipv6 "$NS_R"
e2e_wan "$NS_L" "$NS_R" 198.18.7.1/24 198.18.7.2/24

e2e_etc_file left resolv.conf $'nameserver 127.0.0.1\noptions timeout:1 attempts:1'
e2e_etc_file left hosts "127.0.0.1 localhost"

e2e_config right --listen "0.0.0.0:$PORT" --peer left \
    --address 198.19.7.2/24 --keepalive 2s --mac 02:00:00:e2:e7:02
e2e_require_up right

# ---------------------------------------------------------------- a name that does not resolve
e2e_config left --listen "198.18.7.1:$PORT" --peer "right=nosuch.tapbridge.test:$PORT" \
    --address 198.19.7.1/24 --keepalive 2s --mac 02:00:00:e2:e7:01
e2e_up left || true
e2e_expect_rc "unresolvable name: link up exits 1" 1
e2e_match "unresolvable name: the message names the peer and the host" \
    "cannot resolve peer right's endpoint nosuch.tapbridge.test" "$E2E_STDERR$E2E_STDOUT"
e2e_note "link up said: $(printf '%s' "$E2E_STDERR$E2E_STDOUT" | head -n 1)"
e2e_nothing_left left "unresolvable name" 198.19.7.1
e2e_check "unresolvable name: no daemon left in left's namespace" e2e_ns_empty "$NS_L"

# ---------------------------------------------------------------- the name resolves
e2e_etc_file left hosts $'127.0.0.1 localhost\n198.18.7.2 '"$NAME"
e2e_config left --listen "198.18.7.1:$PORT" --peer "right=$NAME:$PORT" \
    --address 198.19.7.1/24 --keepalive 2s --mac 02:00:00:e2:e7:01
e2e_require_up left
e2e_wait_peer_up left right
e2e_passed || e2e_fatal "the tunnel did not come up"
e2e_wait "ping left → right" 10 e2e_ping1 left 198.19.7.2
e2e_match "left's status shows the resolved address, not the name" \
    "^198\.18\.7\.2:$PORT\$" "$(e2e_peer left right endpoint)"

# ---------------------------------------------------------------- the name moves
e2e_check_down "right: link down" right
ip -n "$NS_R" addr del 198.18.7.2/24 dev wan0
ip -n "$NS_R" addr add 198.18.7.3/24 dev wan0
e2e_check_up "right: link up on its new address 198.18.7.3" right
# shellcheck disable=SC2317 # called indirectly, by e2e_wait
peer_not_up() {
    [[ "$(e2e_peer left right state)" != "up" ]]
}
e2e_wait "left sees right down (nothing answers at 198.18.7.2)" 15 peer_not_up
e2e_etc_file left hosts $'127.0.0.1 localhost\n198.18.7.3 '"$NAME"
e2e_note "$NAME now resolves to 198.18.7.3 in left's namespace"
# shellcheck disable=SC2317 # called indirectly, by e2e_wait
endpoint_moved() {
    [[ "$(e2e_peer left right endpoint)" == "198.18.7.3:$PORT" ]] && _e2e_peer_is_up left right
}
e2e_wait "left resolves the name again and reconnects within 40 s (endpoint 198.18.7.3:$PORT, up)" \
    40 endpoint_moved
e2e_wait "ping left → right over the new address" 10 e2e_ping1 left 198.19.7.2

# ---------------------------------------------------------------- reload names another host
# right moves back to 198.18.7.2 while hq still says .3; a reload points left at hq2,
# which says .2. It is resolved at once (the periodic look-up of hq was just made and
# would keep left at .3 anyway), so left reconnects well before the next period.
e2e_etc_file left hosts $'127.0.0.1 localhost\n198.18.7.3 '"$NAME"$'\n198.18.7.2 hq2.tapbridge.test'
e2e_check_down "right: link down again" right
ip -n "$NS_R" addr del 198.18.7.3/24 dev wan0
ip -n "$NS_R" addr add 198.18.7.2/24 dev wan0
e2e_check_up "right: link up on 198.18.7.2 again" right
e2e_wait "left sees right down (nothing answers at 198.18.7.3)" 15 peer_not_up
e2e_config left --listen "198.18.7.1:$PORT" --peer "right=hq2.tapbridge.test:$PORT" \
    --address 198.19.7.1/24 --keepalive 2s --mac 02:00:00:e2:e7:01
e2e_check_exit "reload left with endpoint hq2.tapbridge.test (exit 0)" 0 \
    e2e_ctl left 20 reload left --config "$(e2e_conf left)"
e2e_match "reload prints the change" \
    "^peer right: endpoint $NAME:$PORT -> hq2\.tapbridge\.test:$PORT\$" "$E2E_STDOUT"
# shellcheck disable=SC2317 # called indirectly, by e2e_wait
endpoint_back() {
    [[ "$(e2e_peer left right endpoint)" == "198.18.7.2:$PORT" ]] && _e2e_peer_is_up left right
}
e2e_wait "after the reload left reconnects to 198.18.7.2 within 15 s" 15 endpoint_back
e2e_wait "ping left → right after the reload" 10 e2e_ping1 left 198.19.7.2

e2e_summary
