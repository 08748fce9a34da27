#!/usr/bin/env bash
#
# path_mtu.sh — `wan_mtu = "auto"` finds a narrower path without ICMP and follows it down.
#
#   [a] wan0 198.18.41.1 ── r1 ══ 1400 (later 1280) ══ r2 ── 198.18.41.10 wan0 [b]
#       tb-a 198.19.41.1/24                                 tb-b 198.19.41.2/24
#
# Both sites' own WAN links are 1500 bytes; the link between the two routers is
# 1400, and both routers drop every ICMP "fragmentation needed" they would send
# (iptables), so the sites' kernels never learn the path MTU. Checks: within 10 s
# of `link up`, `ping -M do -s 1472` (a full 1500-byte packet, DF) crosses the
# bridge; each site's status reports a `path_mtu` between 1393 and 1400 for the
# other; the routers did drop ICMP (their DROP rule counted packets). Then the
# inner link shrinks to 1280 while pings run: 1278-byte pings (one datagram at
# the old path MTU, too large for the new one) cross again within 10 s, `path_mtu` falls to at most 1280, full-size pings still cross.
#
# Run as root: tests/e2e/path_mtu.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init
tb_need_cmd iptables iptables

PORT=51901
for s in a r1 r2 b; do e2e_site "$s"; done
NS_A=$(e2e_ns a)
NS_R1=$(e2e_ns r1)
NS_R2=$(e2e_ns r2)
NS_B=$(e2e_ns b)
for ns in "$NS_A" "$NS_R1" "$NS_R2" "$NS_B"; do e2e_no_ipv6 "$ns"; done

tb_veth "$NS_A" wan0 "$NS_R1" eth-a
tb_veth "$NS_R1" inner "$NS_R2" inner
tb_veth "$NS_R2" eth-b "$NS_B" wan0
ip -n "$NS_A" addr add 198.18.41.1/30 dev wan0
ip -n "$NS_R1" addr add 198.18.41.2/30 dev eth-a
ip -n "$NS_R1" addr add 198.18.41.5/30 dev inner
ip -n "$NS_R2" addr add 198.18.41.6/30 dev inner
ip -n "$NS_R2" addr add 198.18.41.9/30 dev eth-b
ip -n "$NS_B" addr add 198.18.41.10/30 dev wan0
ip -n "$NS_A" route add 198.18.41.8/30 via 198.18.41.2
ip -n "$NS_R1" route add 198.18.41.8/30 via 198.18.41.6
ip -n "$NS_R2" route add 198.18.41.0/30 via 198.18.41.5
ip -n "$NS_B" route add 198.18.41.0/30 via 198.18.41.9
# inner_mtu N: the routers' link between them.
inner_mtu() {
    ip -n "$NS_R1" link set inner mtu "$1"
    ip -n "$NS_R2" link set inner mtu "$1"
}
inner_mtu 1400
for ns in "$NS_R1" "$NS_R2"; do
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
    ip netns exec "$ns" iptables -w -A OUTPUT -p icmp --icmp-type fragmentation-needed -j DROP
done

e2e_config a --listen "198.18.41.1:$PORT" --peer "b=198.18.41.10:$PORT" --address 198.19.41.1/24 --wan-mtu auto
e2e_config b --listen "198.18.41.10:$PORT" --peer "a=198.18.41.1:$PORT" --address 198.19.41.2/24 --wan-mtu auto

# big_ping SITE DST: one full-size (1500-byte) ping with DF set.
# shellcheck disable=SC2317 # called through e2e_wait
big_ping() {
    e2e_ping "$1" "$2" -M "do" -s 1472 -c 1 -W 1
}
# mid_ping SITE DST: a 1278-byte ping (DF): its frame fits one tunnel datagram at
# a 1400-byte path MTU (1362 bytes outer) but not at 1280, so it only crosses a
# 1280-byte path once the tunnel has noticed and fragments it. (A 1500-byte
# ping is always split into two halves of ~830 bytes, which pass either way.)
# shellcheck disable=SC2317 # called through e2e_wait
mid_ping() {
    e2e_ping "$1" "$2" -M "do" -s 1250 -c 1 -W 1
}
# mtu_between SITE PEER LO HI: the peer's path_mtu in SITE's status is in LO..HI.
# shellcheck disable=SC2317 # called through e2e_wait
mtu_between() {
    local m
    m=$(e2e_peer "$1" "$2" path_mtu) && [[ "$m" =~ ^[0-9]+$ ]] && ((m >= $3 && m <= $4))
}

UP_AT=$SECONDS
e2e_require_up a
e2e_require_up b
e2e_wait "ping -M do -s 1472 a → b within 10 s of link up" 10 big_ping a 198.19.41.2
e2e_wait "a's path_mtu to b is 1393..1400" 15 mtu_between a b 1393 1400
e2e_wait "b's path_mtu to a is 1393..1400" 15 mtu_between b a 1393 1400
e2e_note "path_mtu: a→b $(e2e_peer a b path_mtu || echo '?'), b→a $(e2e_peer b a path_mtu || echo '?'), found within $((SECONDS - UP_AT)) s of link up"
# Every probe fit the WAN interface (1500): none was refused by the kernel itself.
for site in a b; do
    e2e_cmp "$site sent no datagram the kernel refused (udp_send_errors)" \
        "$(e2e_counter "$site" udp_send_errors || echo x)" -eq 0
done
dropped=$(ip netns exec "$NS_R1" iptables -w -L OUTPUT -v -n -x |
    awk '/DROP/ && /icmp/ {n += $1} END {print n + 0}')
dropped2=$(ip netns exec "$NS_R2" iptables -w -L OUTPUT -v -n -x |
    awk '/DROP/ && /icmp/ {n += $1} END {print n + 0}')
e2e_cmp "the routers dropped ICMP fragmentation-needed ($dropped + $dropped2 packets)" \
    "$((dropped + dropped2))" -gt 0

# The path shrinks under traffic.
e2e_check "before the cut, 1278-byte pings cross unfragmented" mid_ping a 198.19.41.2
PING_OUT="$E2E_WORK/ping.out"
ip netns exec "$NS_A" ping -n -q -M "do" -s 1250 -i 0.2 -W 1 -c 75 198.19.41.2 >"$PING_OUT" 2>&1 &
PING_PID=$!
tb_defer tb_stop_pid "$PING_PID"
sleep 2
inner_mtu 1280
CUT_AT=$SECONDS
e2e_note "inner link set to 1280"
# Usually 3-4 s: two lost confirmations, then a 1280-byte probe (asked again at
# once if lost) tells a narrower path from a dead peer.
e2e_wait "1278-byte pings cross again within 10 s" 10 mid_ping a 198.19.41.2
e2e_note "1278-byte pings crossed again $((SECONDS - CUT_AT)) s after the cut"
e2e_check "full-size pings cross too" big_ping a 198.19.41.2
e2e_wait "a's path_mtu to b falls to at most 1280" 10 mtu_between a b 1 1280
e2e_note "path_mtu now: a→b $(e2e_peer a b path_mtu || echo '?'), b→a $(e2e_peer b a path_mtu || echo '?')"
wait "$PING_PID" || true
read -r sent got < <(awk '/packets transmitted/ {print $1, $4}' "$PING_OUT")
e2e_note "1278-byte pings every 0.2 s around the cut: ${got:-?} of ${sent:-?} answered"
e2e_cmp "some were lost after the cut (the path really shrank)" "$((${sent:-0} - ${got:-0}))" -ge 1
state=$(e2e_peer a b state || echo x)
e2e_match "the peer stayed up ($state)" '^up$' "$state"

e2e_summary
