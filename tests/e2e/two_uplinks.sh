#!/usr/bin/env bash
#
# two_uplinks.sh — a site with two uplinks (SPEC §4 `[[peer]] endpoint` as an array):
# fast failover, return to the preferred uplink, answers from the address used.
#
#   [a] tb-a 198.19.51.1/24
#        wan0 198.18.50.1/24 ── 198.18.50.254 [r] 198.18.51.254 ── wan0 198.18.51.2/24 (B1) ┐
#                                                  198.18.52.254 ── wan1 198.18.52.2/24 (B2) ┴ [b] tb-b 198.19.51.2/24
#
# b is a multihomed gateway without policy routing: it listens on 0.0.0.0, and its
# default route leaves through wan0 (via B1's link; wan1's default route has a worse
# metric). a knows b as endpoint = [B1, B2]; b waits to be contacted. The router r
# counts, per B address, the tunnel's UDP packets to it and from it (iptables), and
# "cuts" B1 by dropping UDP to and from it. Because b's replies all leave through
# wan0, only b answering *from* B2 (IP_PKTINFO) gets them past the cut.
# Checks: the tunnel comes up over B1, and nothing is sent to or from B2; a
# `ping -i 0.05` across the bridge runs while B1 is cut: at most 60 replies (3 s)
# are lost, a's status shows endpoint B2, and b answered from B2 (packets from B2
# counted at r); B1 restored: within 10 s a's status shows B1 again, traffic flows
# to and from B1 and no more to B2; a's status counts both moves and lists both
# endpoints.
#
# Run as root: tests/e2e/two_uplinks.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init
tb_need_cmd iptables iptables

PORT=51901
B1=198.18.51.2
B2=198.18.52.2

for s in a r b; do e2e_site "$s"; done
NS_A=$(e2e_ns a)
NS_R=$(e2e_ns r)
NS_B=$(e2e_ns b)
for ns in "$NS_A" "$NS_R" "$NS_B"; do
    e2e_no_ipv6 "$ns"
    # b gets datagrams on wan1 for a destination whose route leaves via wan0, and r
    # sees b's answers from B2 arrive on B1's link: no reverse-path filtering.
    ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0
    ip netns exec "$ns" sysctl -qw net.ipv4.conf.default.rp_filter=0
done
tb_veth "$NS_A" wan0 "$NS_R" eth-a
tb_veth "$NS_R" eth-b1 "$NS_B" wan0
tb_veth "$NS_R" eth-b2 "$NS_B" wan1
ip -n "$NS_A" addr add 198.18.50.1/24 dev wan0
ip -n "$NS_R" addr add 198.18.50.254/24 dev eth-a
ip -n "$NS_R" addr add 198.18.51.254/24 dev eth-b1
ip -n "$NS_R" addr add 198.18.52.254/24 dev eth-b2
ip -n "$NS_B" addr add "$B1/24" dev wan0
ip -n "$NS_B" addr add "$B2/24" dev wan1
ip -n "$NS_A" route add 198.18.48.0/21 via 198.18.50.254
ip -n "$NS_B" route add 198.18.50.0/24 via 198.18.51.254 metric 100
ip -n "$NS_B" route add 198.18.50.0/24 via 198.18.52.254 metric 200
ip netns exec "$NS_R" sysctl -qw net.ipv4.ip_forward=1
# Counting rules (ACCEPT changes nothing); the cut is inserted in front of them.
for b in "$B1" "$B2"; do
    ip netns exec "$NS_R" iptables -w -A FORWARD -p udp -d "$b" --dport "$PORT" \
        -m comment --comment "to-$b" -j ACCEPT
    ip netns exec "$NS_R" iptables -w -A FORWARD -p udp -s "$b" --sport "$PORT" \
        -m comment --comment "from-$b" -j ACCEPT
done

# counted to|from ADDR: tunnel packets r forwarded to or from ADDR.
counted() {
    ip netns exec "$NS_R" iptables -w -L FORWARD -v -n -x |
        awk -v c="/* $1-$2 */" 'index($0, c) { n += $1 } END { print n + 0 }'
}
cut_b1() {
    ip netns exec "$NS_R" iptables -w "$1" FORWARD -p udp -d "$B1" -j DROP
    ip netns exec "$NS_R" iptables -w "$1" FORWARD -p udp -s "$B1" -j DROP
}

e2e_config b --listen "0.0.0.0:$PORT" --peer a --address 198.19.51.2/24 --mac 02:00:00:e2:51:02
e2e_config a --listen "198.18.50.1:$PORT" --peer "b=$B1:$PORT,$B2:$PORT" \
    --address 198.19.51.1/24 --mac 02:00:00:e2:51:01
e2e_require_up b
e2e_require_up a
e2e_wait_peer_up a b
e2e_passed || e2e_fatal "the tunnel did not come up"
e2e_wait "ping a → b" 10 e2e_ping1 a 198.19.51.2

# ---------------------------------------------------------------- up over B1
e2e_match "a's status: endpoint B1" "^$B1:$PORT\$" "$(e2e_peer a b endpoint)"
e2e_match "a's status lists both endpoints, B1 first" \
    "^\[\"$B1:$PORT\", \"$B2:$PORT\"\]\$" "$(e2e_peer a b endpoints)"
e2e_ping a 198.19.51.2 -c 5 -i 0.1 -W 2 >/dev/null || true
n_to_b1=$(counted to "$B1")
n_from_b1=$(counted from "$B1")
e2e_check "traffic to and from B1 ($n_to_b1 / $n_from_b1 packets)" \
    test "$n_to_b1" -gt 0 -a "$n_from_b1" -gt 0
e2e_check "nothing to or from B2 while B1 works" \
    test "$(counted to "$B2")" -eq 0 -a "$(counted from "$B2")" -eq 0

# ---------------------------------------------------------------- B1 cut
PING_OUT="$E2E_WORK/ping.txt"
ip netns exec "$NS_A" timeout 60 ping -n -q -i 0.05 -c 160 -W 1 198.19.51.2 >"$PING_OUT" 2>&1 &
PING_PID=$!
tb_defer tb_stop_pid "$PING_PID"
sleep 2
cut_b1 -I
e2e_note "B1 cut at r (UDP to and from $B1 dropped)"
wait "$PING_PID" || true
sent=$(sed -n 's/^\([0-9]*\) packets transmitted, \([0-9]*\) received.*/\1/p' "$PING_OUT")
got=$(sed -n 's/^\([0-9]*\) packets transmitted, \([0-9]*\) received.*/\2/p' "$PING_OUT")
e2e_note "ping -i 0.05 during the cut: $(grep 'packets transmitted' "$PING_OUT" || cat "$PING_OUT")"
lost=$((${sent:-0} - ${got:-0}))
e2e_check "ping -i 0.05 ran (160 sent, $got answered)" test "${sent:-0}" -eq 160
e2e_check "failover: $lost replies lost, at most 60 (3 s)" test "$lost" -le 60
e2e_match "a's status: endpoint B2" "^$B2:$PORT\$" "$(e2e_peer a b endpoint)"
e2e_match "a's status counts the move" "^1\$" "$(e2e_peer a b endpoint_changes)"
n_to_b2=$(counted to "$B2")
n_from_b2=$(counted from "$B2")
e2e_check "b answered from B2, the address a used ($n_to_b2 packets to B2, $n_from_b2 from it)" \
    test "$n_to_b2" -gt 0 -a "$n_from_b2" -gt 0

# ---------------------------------------------------------------- B1 restored
cut_b1 -D
e2e_note "B1 restored"
# shellcheck disable=SC2317 # called indirectly, by e2e_wait
back_on_b1() {
    [[ "$(e2e_peer a b endpoint)" == "$B1:$PORT" ]]
}
e2e_wait "a returns to B1 within 10 s" 10 back_on_b1
e2e_match "a's status counts the move back" "^2\$" "$(e2e_peer a b endpoint_changes)"
ip netns exec "$NS_R" iptables -w -Z FORWARD
e2e_ping a 198.19.51.2 -c 10 -i 0.1 -W 2 >/dev/null || true
n_to_b1=$(counted to "$B1")
n_from_b1=$(counted from "$B1")
e2e_check "traffic flows to and from B1 again ($n_to_b1 / $n_from_b1 packets)" \
    test "$n_to_b1" -ge 10 -a "$n_from_b1" -ge 10
e2e_check "and no longer to or from B2" \
    test "$(counted to "$B2")" -eq 0 -a "$(counted from "$B2")" -eq 0
e2e_wait "ping a → b over B1" 10 e2e_ping1 a 198.19.51.2

e2e_summary
