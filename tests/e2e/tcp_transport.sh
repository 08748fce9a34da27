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
# closed with not one byte sent back, and counted in tcp_refused; so is one sending a
# record-shaped forgery (an initiation-sized block of zeros), and one replaying a real
# initiation: left's own, captured with tcpdump at right's WAN port from the TCP
# connection it opened to bring the link up (which right answered), each replayed on a
# new connection. Finally a reload to transport = "udp" on right closes its TCP
# listener.
#
# Run as root: tests/e2e/tcp_transport.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init
tb_need_cmd iptables iptables
tb_need_cmd nc netcat-openbsd
tb_need_cmd python3 python3
tb_need_cmd tcpdump tcpdump
tb_need_cmd scapy python3-scapy
# scapy as Debian installs it, for Debian's python3 (python3 on PATH may be another).
SCAPY_PY=python3
if ! python3 -c 'import scapy.all' >/dev/null 2>&1; then
    SCAPY_PY=/usr/bin/python3
    "$SCAPY_PY" -c 'import scapy.all' >/dev/null 2>&1 ||
        e2e_fatal "python3-scapy is installed but neither python3 nor /usr/bin/python3 imports it"
fi

PORT=51901
SIZE_MB=50

e2e_site left
e2e_site right
NS_L=$(e2e_ns left)
NS_R=$(e2e_ns right)
e2e_no_ipv6 "$NS_L"
e2e_no_ipv6 "$NS_R"
e2e_wan "$NS_L" "$NS_R" 198.18.9.1/24 198.18.9.2/24

# Left's handshake initiations over TCP, as right's WAN port sees them: segments from
# left to the tunnel port whose payload starts with an initiation record (length 148,
# type 1). The filter keeps the 50 MB transfer out of the file.
rec='tcp[((tcp[12:1] & 0xf0) >> 2):2] = 0x0094 and tcp[((tcp[12:1] & 0xf0) >> 2) + 2] = 1'
e2e_capture_start "$NS_R" wan0 "$E2E_WORK/init.pcap" \
    "src host 198.18.9.1 and tcp dst port $PORT and $rec" ||
    e2e_fatal "tcpdump did not start in right's namespace: $(cat "$E2E_WORK/init.pcap.log")"

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
fake="0094$(printf '01030000%0288d' 0)"
out=$(ip netns exec "$NS_L" python3 -c "$probe_py" "$PORT" "$fake")
e2e_note "forged initiation record: $out"
e2e_match "a forged initiation record gets nothing back and is closed" '^0 (closed|reset)$' "$out"

# The real thing: each initiation left sent on its TCP connections, replayed from left's
# own address on a new connection. Right has completed those handshakes, so each is
# stale: nothing may come back, and the session must not notice.
e2e_capture_stop
# shellcheck disable=SC2016 # python code
captured=$("$SCAPY_PY" -c '
import sys
from scapy.all import TCP, PcapReader
seen = []
for p in PcapReader(sys.argv[1]):
    b = bytes(p[TCP].payload) if p.haslayer(TCP) else b""
    if len(b) >= 150 and b[:3] == b"\x00\x94\x01" and b[:150] not in seen:
        seen.append(b[:150])
for b in seen:
    print(b.hex())
' "$E2E_WORK/init.pcap" 2>"$E2E_WORK/extract.err") || true
n_captured=$(grep -c . <<<"$captured" || true)
e2e_note "initiation records captured at right's WAN port: $n_captured ($(e2e_capture_count "$E2E_WORK/init.pcap" tcp) segments)"
e2e_cmp "left's initiation over TCP was captured on the wire" "$n_captured" -ge 1
e2e_passed || e2e_note "$(cat "$E2E_WORK/extract.err")"
hs_before=$(e2e_peer right left handshakes || echo x)
i=0
while read -r record; do
    [[ -n "$record" ]] || continue
    i=$((i + 1))
    out=$(ip netns exec "$NS_L" python3 -c "$probe_py" "$PORT" "$record")
    e2e_note "replayed initiation $i (${record:0:24}...): $out"
    e2e_match "replayed captured initiation $i gets nothing back and is closed" '^0 (closed|reset)$' "$out"
done <<<"$captured"

# shellcheck disable=SC2317 # called indirectly, by e2e_wait
refused_all() {
    (($(e2e_counter right tcp_refused) >= refused0 + 2 + n_captured))
}
e2e_wait "right counts the garbage, the forgery and the $n_captured replays in tcp_refused" 5 refused_all
e2e_check "the tunnel is still up after the garbage and the replays" _e2e_peer_is_up left right
e2e_match "the replays made no handshake (right's count stays $hs_before)" "^$hs_before\$" \
    "$(e2e_peer right left handshakes || echo x)"

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
