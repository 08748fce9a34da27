#!/usr/bin/env bash
#
# End-to-end test of the Prometheus endpoint ([metrics] listen), run as root.
#
# Two gateway namespaces of its own (unique names, always removed), joined by a
# veth "WAN" 198.18.93.1 <-> 198.18.93.2; each runs a daemon whose TAP carries
# 198.19.93.1/24 or 198.19.93.2/24, and site a serves metrics on 127.0.0.1:9477
# inside its namespace. IPv6 is off in both so the kernel sends nothing through
# the TAPs on its own (no DAD, MLD or router solicitations) and the frame counters
# only move with the test's pings.
#
# Checks: a metrics port already in use makes `link up` fail with a clear message
# and leave no TAP or socket behind; after a ping across and with traffic stopped,
# the per-peer counters served on /metrics equal those of `status --json`; the
# link counters and the state are there; /other is a 404; after `link down` the
# endpoint is gone. Reports through tests/e2e/lib.sh (ok/not ok lines, a summary);
# exit 1 on any failure.
#
# Environment: BRIDGE_CTL (default target/release/bridge-ctl).

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=9477

e2e_init
e2e_site a
e2e_site b
NS_A=$(e2e_ns a)
NS_B=$(e2e_ns b)
e2e_no_ipv6 "$NS_A"
e2e_no_ipv6 "$NS_B"
e2e_wan "$NS_A" "$NS_B" 198.18.93.1/24 198.18.93.2/24

site_config() { # site_config NAME OVERLAY-ADDR PEER PEER-WAN-ADDR
    tb_link_config "$(e2e_conf "$1")" --ifname "tbm-$1" --mtu 1500 --address "$2/24" \
        --listen 0.0.0.0:51901 --psk "$E2E_WORK/psk" --keepalive 10s \
        --peer "$3=$4:51901" --socket "$(e2e_sock "$1")" --metrics "127.0.0.1:$PORT"
}
site_config a 198.19.93.1 b 198.18.93.2
site_config b 198.19.93.2 a 198.18.93.1

# fetch NS PATH OUT: GET http://127.0.0.1:PORT/PATH inside NS; prints the HTTP
# status code ("refused" if nothing listens), writes the body to OUT.
fetch() {
    ip netns exec "$1" timeout 10 python3 - "$PORT" "$2" "$3" <<'EOF'
import sys, urllib.request, urllib.error
port, path, out = sys.argv[1:4]
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except (ConnectionRefusedError, urllib.error.URLError):
    code, body = "refused", b""
open(out, "wb").write(body)
print(code)
EOF
}

# ---------------------------------------------------------------- bind failure

# Site b's metrics port is taken: link up must fail, say why, and leave nothing.
ip netns exec "$NS_B" timeout 60 python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)
time.sleep(60)
' "$PORT" &
SQUATTER=$!
tb_defer tb_stop_pid "$SQUATTER"
tb_wait_until 10 "the squatter listens on $PORT" \
    bash -c "ip netns exec '$NS_B' ss -ltnH 'sport = :$PORT' | grep -q ." || true
e2e_run e2e_ctl b 30 link up b --config "$(e2e_conf b)"
rc=$E2E_RC
out="$E2E_STDOUT$E2E_STDERR"
e2e_check "link up with the metrics port taken fails (exit $rc)" test "$rc" -ne 0
e2e_match "the error names the metrics address" "cannot serve metrics on 127.0.0.1:$PORT" "$out"
e2e_check "no TAP left behind by the failed link up" bash -c "! ip -n '$NS_B' link show tbm-b >/dev/null 2>&1"
e2e_check "no control socket left behind" test ! -e "$(e2e_sock b)"
tb_stop_pid "$SQUATTER"
wait "$SQUATTER" 2>/dev/null || true

# ---------------------------------------------------------------- two sites up

for site in a b; do
    e2e_up "$site" >/dev/null || e2e_fatal "bridge-ctl link up $site failed: ${E2E_STDERR%%$'\n'*}"
done

e2e_check "ping across the bridge" \
    ip netns exec "$NS_A" ping -c 5 -i 0.2 -W 2 -w 20 198.19.93.2
# Traffic has stopped; give any in-flight frame time to land.
sleep 1

# peer_json FILE FIELD: one field of peer b from a status --json file.
peer_json() {
    python3 -c 'import json, sys; p = json.load(open(sys.argv[1]))["peers"][0]; print(p[sys.argv[2]])' "$1" "$2"
}
# metric FILE NAME LABELS: the value of one series, empty if absent.
metric() {
    awk -v want="$2{$3}" '$1 == want { print $2 }' "$1"
}

# Counters equal in /metrics and in the status taken right after (a few tries,
# only in case a stray frame crosses between the two reads).
for _ in 1 2 3 4 5; do
    code=$(fetch "$NS_A" /metrics "$E2E_WORK/metrics.txt" || echo failed)
    e2e_json a >"$E2E_WORK/status.json" || true
    same=1
    for f in tx_frames rx_frames tx_bytes rx_bytes handshakes; do
        [[ "$(metric "$E2E_WORK/metrics.txt" "tapbridge_peer_${f}_total" 'link="a",peer="b"')" == \
            "$(peer_json "$E2E_WORK/status.json" "$f" 2>/dev/null)" ]] || same=0
    done
    ((same)) && break
    sleep 0.5
done
e2e_check "GET /metrics answers 200 (got $code)" test "$code" == 200
e2e_check "the exposition ends with # EOF" bash -c "tail -n 1 '$E2E_WORK/metrics.txt' | grep -qx '# EOF'"
for f in tx_frames rx_frames tx_bytes rx_bytes handshakes; do
    m=$(metric "$E2E_WORK/metrics.txt" "tapbridge_peer_${f}_total" 'link="a",peer="b"')
    s=$(peer_json "$E2E_WORK/status.json" "$f" 2>/dev/null || echo missing)
    e2e_check "peer $f: metrics $m == status $s" test -n "$m" -a "$m" == "$s"
done
tx=$(metric "$E2E_WORK/metrics.txt" tapbridge_peer_tx_frames_total 'link="a",peer="b"')
e2e_check "the pings were counted (tx_frames $tx >= 5)" test "${tx:-0}" -ge 5
e2e_check "peer state up is 1" \
    test "$(metric "$E2E_WORK/metrics.txt" tapbridge_peer_state 'link="a",peer="b",state="up"')" == 1
e2e_check "peer state down is 0" \
    test "$(metric "$E2E_WORK/metrics.txt" tapbridge_peer_state 'link="a",peer="b",state="down"')" == 0
age=$(metric "$E2E_WORK/metrics.txt" tapbridge_peer_last_handshake_age_seconds 'link="a",peer="b"')
e2e_check "seconds since the last handshake present ($age)" test -n "$age"
for c in rx_auth_failed rx_replayed rx_malformed arp_replies dhcp_replies fragmented reassembled; do
    m=$(metric "$E2E_WORK/metrics.txt" "tapbridge_${c}_total" 'link="a"')
    s=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["counters"][sys.argv[2]])' \
        "$E2E_WORK/status.json" "$c" 2>/dev/null || echo missing)
    e2e_check "link counter $c: metrics $m == status $s" test -n "$m" -a "$m" == "$s"
done
e2e_check "lease count served" test "$(metric "$E2E_WORK/metrics.txt" tapbridge_leases 'link="a"')" == 0

code=$(fetch "$NS_A" /other "$E2E_WORK/other.txt" || echo failed)
e2e_check "GET /other answers 404 (got $code)" test "$code" == 404
code=$(fetch "$NS_A" /metrics "$E2E_WORK/again.txt" || echo failed)
e2e_check "the endpoint still serves after a 404 (got $code)" test "$code" == 200

# ---------------------------------------------------------------- link down

e2e_check "link down a" e2e_ctl a 30 link down a --config "$(e2e_conf a)"
code=$(fetch "$NS_A" /metrics "$E2E_WORK/gone.txt" || echo failed)
e2e_check "the endpoint is gone after link down (got $code)" test "$code" == refused

e2e_summary
