#!/usr/bin/env bash
#
# tcp_admission.sh — a host that opens TCP connections in a loop cannot keep a
# real TCP peer out (issue 21 item 2; docs/design.md "Admission").
#
#   [left] tb-left 198.19.19.1/24 ── wan0 198.18.19.1/24, 198.18.19.66/24 ══ 198.18.19.2/24 wan0 ── tb-right [right]
#
# Both sites run `transport = "tcp"`; left knows right's endpoint, right waits to be
# contacted. An attacker in left's namespace, from its own address (198.18.19.66),
# opens connections to right's tunnel port as fast as it can for FLOOD_SECS, each
# sending one byte of a record header and then nothing (the cheapest way to take a
# place in an accept queue that reads first records). Meanwhile left's link is taken
# down and up again, so left must connect afresh through the flood. Checks: left is up
# again within 20 s and a ping crosses; right refused (closed) the attacker's
# connections, kept at most a handful open at once, and its RSS stayed bounded. Before
# the admission rules the 33rd unproven connection evicted the oldest, so a loop of
# connects from one host pushed every real peer's new connection out.
#
# Run as root: tests/e2e/tcp_admission.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init
tb_need_cmd python3 python3

PORT=51901
FLOOD_SECS=12
FLOOD_MAX=200000

e2e_site left
e2e_site right
NS_L=$(e2e_ns left)
NS_R=$(e2e_ns right)
e2e_no_ipv6 "$NS_L"
e2e_no_ipv6 "$NS_R"
e2e_wan "$NS_L" "$NS_R" 198.18.19.1/24 198.18.19.2/24
ip -n "$NS_L" addr add 198.18.19.66/24 dev wan0

e2e_config right --listen "0.0.0.0:$PORT" --peer left --transport tcp \
    --address 198.19.19.2/24 --keepalive 2s
e2e_config left --listen "198.18.19.1:$PORT" --peer "right=198.18.19.2:$PORT" --transport tcp \
    --address 198.19.19.1/24 --keepalive 2s
e2e_require_up right
e2e_require_up left
e2e_wait_peer_up left right 20
e2e_passed || e2e_fatal "the tunnel did not come up over TCP"
e2e_wait "ping left → right over TCP" 10 e2e_ping1 left 198.19.19.2

# ---------------------------------------------------------------- the flood
# Non-blocking connects from 198.18.19.66, one byte each, at most 2,000 open at a
# time (the oldest closed first), bounded by FLOOD_SECS and FLOOD_MAX. Prints the
# number of connects made.
flood_py='
import errno, socket, sys, time
port, secs, cap = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
open_, made, end = [], 0, time.time() + secs
while time.time() < end and made < cap:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.bind(("198.18.19.66", 0))
    try:
        s.connect(("198.18.19.2", port))
    except BlockingIOError:
        pass
    except OSError:
        s.close()
        time.sleep(0.001)
        continue
    open_.append(s)
    made += 1
    # Connections that completed get their byte.
    for c in open_[-64:]:
        try:
            c.send(b"\x00")
        except OSError:
            pass
    while len(open_) > 2000:
        open_.pop(0).close()
print(made)
'
rss_kib() {
    local pid
    pid=$(e2e_daemon_pid right) || return 1
    awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"
}
refused0=$(e2e_counter right tcp_refused)
rss0=$(rss_kib)
ip netns exec "$NS_L" timeout $((FLOOD_SECS + 10)) python3 -c "$flood_py" \
    "$PORT" "$FLOOD_SECS" "$FLOOD_MAX" >"$E2E_WORK/flood.out" 2>"$E2E_WORK/flood.err" &
flood_pid=$!
tb_defer tb_stop_pid "$flood_pid"
sleep 2

# Left connects afresh, through the flood.
e2e_check_down "link down left during the flood" left
e2e_check_up "link up left during the flood" left
t0=$SECONDS
e2e_wait_peer_up left right 20
e2e_note "left up again $((SECONDS - t0)) s after link up, during the flood"
e2e_wait "ping left → right during the flood" 10 e2e_ping1 left 198.19.19.2
# Sample right's open connections and RSS while the flood lasts.
max_open=0
max_rss=$rss0
while kill -0 "$flood_pid" 2>/dev/null; do
    n=$(ip netns exec "$NS_R" ss -Htn state established "( sport = :$PORT )" | wc -l)
    ((n > max_open)) && max_open=$n
    r=$(rss_kib || echo 0)
    ((r > max_rss)) && max_rss=$r
    sleep 0.5
done
wait "$flood_pid" || true
made=$(cat "$E2E_WORK/flood.out")
e2e_note "flood: $made connects in $FLOOD_SECS s; right: at most $max_open established connections on its port, RSS $rss0 -> at most $max_rss KiB"
e2e_match "the attacker made thousands of connects" '^[0-9]{4,}$' "$made"
refused=$(e2e_counter right tcp_refused)
e2e_note "right: tcp_refused $refused0 -> $refused"
e2e_check "right refused (closed) thousands of the attacker's connections" \
    test "$((refused - refused0))" -ge 1000
# Established = the peer's one plus what waits in the kernel's accept queue
# (deferred) and in the daemon's table (4 for one host): far below the connects.
e2e_check "right's RSS grew by less than 16 MiB" test "$((max_rss - rss0))" -lt 16384
e2e_check "the tunnel is still up after the flood" _e2e_peer_is_up left right
e2e_wait "ping left → right after the flood" 10 e2e_ping1 left 198.19.19.2

e2e_summary
