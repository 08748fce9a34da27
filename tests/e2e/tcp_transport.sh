#!/usr/bin/env bash
#
# tcp_transport.sh — the TCP fallback (SPEC §4 `tunnel.transport`, §6 per-peer `transport`).
#
#   [left] tb-left 198.19.9.1/24 ── wan0 198.18.9.1/24 ══ 198.18.9.2/24 wan0 ── tb-right 198.19.9.2/24 [right]
#
# Both sites run `transport = "auto"`; left knows right's endpoint, right waits to be
# contacted. UDP on the tunnel port is dropped in left's namespace with iptables
# (both directions) before anything starts, as a hotel network would. Checks: the link
# comes up over TCP (status says "tcp" on both sides), carries a 50 MB transfer through
# the bridge (nc) with an identical sha256, and no tunnel UDP got through; with the
# iptables rules removed both sides return to UDP within 40 s (auto tries UDP every
# 20 s) and traffic still flows; a TCP connection to right's port sending garbage is
# closed with not one byte sent back, and counted in tcp_refused; a replay of a
# captured initiation on a new connection gets nothing back either. Finally a reload
# to transport = "udp" on right closes its TCP listener.
#
# Run as root: tests/e2e/tcp_transport.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init
tb_need_cmd iptables iptables
tb_need_cmd nc netcat-openbsd
tb_need_cmd python3 python3

PORT=51901
SIZE_MB=50

e2e_site left
e2e_site right
NS_L=$(e2e_ns left)
NS_R=$(e2e_ns right)
e2e_no_ipv6 "$NS_L"
e2e_no_ipv6 "$NS_R"
e2e_wan "$NS_L" "$NS_R" 198.18.9.1/24 198.18.9.2/24

# UDP on the tunnel port blocked at left, both ways; counted so the test can say
# nothing got through.
block_udp() {
    ip netns exec "$NS_L" iptables -w -"$1" OUTPUT -p udp --dport "$PORT" -j DROP
    ip netns exec "$NS_L" iptables -w -"$1" INPUT -p udp --sport "$PORT" -j DROP
}
block_udp A
tb_defer ip netns exec "$NS_L" iptables -w -F

e2e_config right --listen "0.0.0.0:$PORT" --peer left --transport auto \
    --address 198.19.9.2/24 --keepalive 2s --mac 02:00:00:e2:e9:02
e2e_config left --listen "198.18.9.1:$PORT" --peer "right=198.18.9.2:$PORT" --transport auto \
    --address 198.19.9.1/24 --keepalive 2s --mac 02:00:00:e2:e9:01
e2e_require_up right
e2e_require_up left

# ---------------------------------------------------------------- up over TCP
e2e_wait_peer_up left right 40
e2e_passed || e2e_fatal "the tunnel did not come up over TCP"
e2e_match "left: transport tcp" '^tcp$' "$(e2e_peer left right transport)"
# shellcheck disable=SC2317 # called indirectly, by e2e_wait
transport_is() {
    [[ "$(e2e_peer "$1" "$2" transport)" == "$3" ]]
}
e2e_wait "right: transport tcp" 10 transport_is right left tcp
e2e_wait "ping left → right over TCP" 10 e2e_ping1 left 198.19.9.2

# ---------------------------------------------------------------- 50 MB through it
src="$E2E_WORK/blob" dst="$E2E_WORK/blob.out"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom >"$src"
timeout 120 ip netns exec "$NS_R" nc -l -N 198.19.9.2 5001 >"$dst" &
nc_pid=$!
tb_defer tb_stop_pid "$nc_pid"
tb_wait_until 10 "nc listening in right" \
    ip netns exec "$NS_R" bash -c "ss -ltn | grep -q '198.19.9.2:5001'"
# shellcheck disable=SC2317 # called indirectly, by e2e_check
send_blob() {
    timeout 120 ip netns exec "$NS_L" nc -N 198.19.9.2 5001 <"$src"
}
t0=$(date +%s.%N)
e2e_check "left sends $SIZE_MB MB to right through the bridge" send_blob
wait "$nc_pid" || true
t1=$(date +%s.%N)
sum_src=$(sha256sum <"$src" | cut -d' ' -f1)
sum_dst=$(sha256sum <"$dst" | cut -d' ' -f1)
e2e_match "the $SIZE_MB MB arrive with an identical sha256 ($sum_src)" "^$sum_src\$" "$sum_dst"
e2e_note "$SIZE_MB MB over the TCP transport in $(python3 -c "print(round($t1 - $t0, 2))") s"
udp_out=$(ip netns exec "$NS_L" iptables -w -L OUTPUT -v -n -x | awk '/udp dpt:'"$PORT"'/ {print $1}')
e2e_note "UDP tunnel packets dropped leaving left: $udp_out"
e2e_match "left tried UDP (auto starts there) and none of it got out" '^[1-9][0-9]*$' "$udp_out"
e2e_match "left: still tcp after the transfer" '^tcp$' "$(e2e_peer left right transport)"

# ---------------------------------------------------------------- garbage and replays
# A raw TCP client in left's namespace: sends BYTES, then reads until the server
# closes (or 9 s pass: a connection that has not proved anything is closed after 5 s
# at the latest); prints how many bytes came back and how it ended.
probe_py='
import socket, sys, time
s = socket.create_connection(("198.18.9.2", int(sys.argv[1])), timeout=9)
s.sendall(bytes.fromhex(sys.argv[2]))
got, how = 0, "timeout"
end = time.time() + 9
try:
    while time.time() < end:
        b = s.recv(4096)
        if not b:
            how = "closed"
            break
        got += len(b)
except ConnectionResetError:
    how = "reset"
except socket.timeout:
    pass
print(got, how)
'
refused0=$(e2e_counter right tcp_refused)
garbage=$(head -c 300 /dev/urandom | od -An -tx1 | tr -d ' \n')
out=$(ip netns exec "$NS_L" python3 -c "$probe_py" "$PORT" "$garbage")
e2e_note "garbage connection: $out"
e2e_match "a connection sending garbage gets nothing back and is closed" '^0 (closed|reset)$' "$out"
# A record-shaped lie: a length, then an initiation-sized block of zeros.
fake="008c$(printf '01020000%0272d' 0)"
out=$(ip netns exec "$NS_L" python3 -c "$probe_py" "$PORT" "$fake")
e2e_note "forged initiation record: $out"
e2e_match "a forged initiation record gets nothing back and is closed" '^0 (closed|reset)$' "$out"
# shellcheck disable=SC2317 # called indirectly, by e2e_wait
refused_two_more() {
    (($(e2e_counter right tcp_refused) >= refused0 + 2))
}
e2e_wait "right counts both in tcp_refused" 5 refused_two_more
e2e_check "the tunnel is still up after the garbage" _e2e_peer_is_up left right

# ---------------------------------------------------------------- back to UDP
block_udp D
e2e_note "UDP allowed again at $(date +%T)"
# shellcheck disable=SC2317 # called indirectly, by e2e_wait
both_udp() {
    transport_is left right udp && transport_is right left udp
}
e2e_wait "both sides return to UDP within 40 s" 40 both_udp
e2e_wait "ping left → right over UDP" 10 e2e_ping1 left 198.19.9.2

# ---------------------------------------------------------------- reload to udp closes the listener
# shellcheck disable=SC2317 # called indirectly, by e2e_wait/e2e_check
tcp_listening() {
    ip netns exec "$NS_R" ss -ltn | grep -q ":$PORT\b"
}
e2e_check "right listens on TCP $PORT (auto)" tcp_listening
e2e_config right --listen "0.0.0.0:$PORT" --peer left --transport udp \
    --address 198.19.9.2/24 --keepalive 2s --mac 02:00:00:e2:e9:02
e2e_check_exit "reload right with transport = udp (exit 0)" 0 \
    e2e_ctl right 20 reload right --config "$(e2e_conf right)"
e2e_match "reload prints the change" '^tunnel.transport: auto -> udp$' "$E2E_STDOUT"
e2e_check_fails "right no longer listens on TCP $PORT" tcp_listening
e2e_wait "ping left → right after the reload" 10 e2e_ping1 left 198.19.9.2

e2e_summary
