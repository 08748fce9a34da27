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
# endpoint is gone. Prints ok/not ok lines and "N passed, N failed"; exit 1 on any
# failure.
#
# Environment: BRIDGE_CTL (default target/release/bridge-ctl).

set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/netns.sh
source "$ROOT/scripts/lib/netns.sh"
cd "$ROOT"
BRIDGE_CTL=${BRIDGE_CTL:-target/release/bridge-ctl}
BIN=$(realpath -- "$BRIDGE_CTL" 2>/dev/null || true)
PORT=9477
PASSED=0
FAILED=0

tb_require_root
[[ -x "$BIN" ]] || tb_die "no bridge-ctl at $BRIDGE_CTL (build it with cargo build --release, or set BRIDGE_CTL)"
command -v python3 >/dev/null 2>&1 || tb_die "python3 is needed to fetch the endpoint and read JSON"
tb_install_traps

pass() { PASSED=$((PASSED + 1)); printf 'ok - %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); printf 'not ok - %s\n' "$1"; }
check() { # check DESCRIPTION COMMAND...
    local desc=$1
    shift
    if "$@"; then pass "$desc"; else fail "$desc"; fi
}

WORK=$(mktemp -d)
tb_defer rm -rf -- "$WORK"
tb_ns_add tbmet-a NS_A
tb_ns_add tbmet-b NS_B
for ns in "$NS_A" "$NS_B"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
done
tb_veth "$NS_A" wan0 "$NS_B" wan0
ip -n "$NS_A" addr add 198.18.93.1/24 dev wan0
ip -n "$NS_B" addr add 198.18.93.2/24 dev wan0

(umask 077 && "$BIN" genpsk >"$WORK/m.psk")

site_config() { # site_config NAME OVERLAY-ADDR PEER PEER-WAN-ADDR
    cat >"$WORK/$1.toml" <<EOF
[interface]
name = "tbm-$1"
mtu = 1500
addresses = ["$2/24"]

[tunnel]
listen = "0.0.0.0:51901"
psk_file = "$WORK/m.psk"
keepalive = "10s"

[[peer]]
name = "$3"
endpoint = "$4:51901"

[control]
socket = "$WORK/$1.sock"

[metrics]
listen = "127.0.0.1:$PORT"
EOF
}
site_config a 198.19.93.1 b 198.18.93.2
site_config b 198.19.93.2 a 198.18.93.1

ctl() { # ctl NS ARGS...: bridge-ctl inside NS, bounded
    local ns=$1
    shift
    ip netns exec "$ns" timeout 30 "$BIN" "$@"
}

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
rc=0
out=$(ctl "$NS_B" link up b --config "$WORK/b.toml" 2>&1) || rc=$?
check "link up with the metrics port taken fails (exit $rc)" test "$rc" -ne 0
check "the error names the metrics address" grep -q "cannot serve metrics on 127.0.0.1:$PORT" <<<"$out"
check "no TAP left behind by the failed link up" bash -c "! ip -n '$NS_B' link show tbm-b >/dev/null 2>&1"
check "no control socket left behind" test ! -e "$WORK/b.sock"
tb_stop_pid "$SQUATTER"
wait "$SQUATTER" 2>/dev/null || true

# ---------------------------------------------------------------- two sites up

for site in a b; do
    ns=$NS_A
    [[ $site == b ]] && ns=$NS_B
    tb_defer ip netns exec "$ns" timeout 20 "$BIN" link down "$site" --config "$WORK/$site.toml"
    if ! ctl "$ns" link up "$site" --config "$WORK/$site.toml" >/dev/null; then
        tb_die "bridge-ctl link up $site failed (see the message above)"
    fi
done

check "ping across the bridge" \
    ip netns exec "$NS_A" ping -c 5 -i 0.2 -W 2 -w 20 198.19.93.2 >/dev/null
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
    code=$(fetch "$NS_A" /metrics "$WORK/metrics.txt" || echo failed)
    ctl "$NS_A" status a --config "$WORK/a.toml" --json >"$WORK/status.json" || true
    same=1
    for f in tx_frames rx_frames tx_bytes rx_bytes handshakes; do
        [[ "$(metric "$WORK/metrics.txt" "tapbridge_peer_${f}_total" 'link="a",peer="b"')" == \
            "$(peer_json "$WORK/status.json" "$f" 2>/dev/null)" ]] || same=0
    done
    ((same)) && break
    sleep 0.5
done
check "GET /metrics answers 200 (got $code)" test "$code" == 200
check "the exposition ends with # EOF" bash -c "tail -n 1 '$WORK/metrics.txt' | grep -qx '# EOF'"
for f in tx_frames rx_frames tx_bytes rx_bytes handshakes; do
    m=$(metric "$WORK/metrics.txt" "tapbridge_peer_${f}_total" 'link="a",peer="b"')
    s=$(peer_json "$WORK/status.json" "$f" 2>/dev/null || echo missing)
    check "peer $f: metrics $m == status $s" test -n "$m" -a "$m" == "$s"
done
tx=$(metric "$WORK/metrics.txt" tapbridge_peer_tx_frames_total 'link="a",peer="b"')
check "the pings were counted (tx_frames $tx >= 5)" test "${tx:-0}" -ge 5
check "peer state up is 1" \
    test "$(metric "$WORK/metrics.txt" tapbridge_peer_state 'link="a",peer="b",state="up"')" == 1
check "peer state down is 0" \
    test "$(metric "$WORK/metrics.txt" tapbridge_peer_state 'link="a",peer="b",state="down"')" == 0
age=$(metric "$WORK/metrics.txt" tapbridge_peer_last_handshake_age_seconds 'link="a",peer="b"')
check "seconds since the last handshake present ($age)" test -n "$age"
for c in rx_auth_failed rx_replayed rx_malformed arp_replies dhcp_replies fragmented reassembled; do
    m=$(metric "$WORK/metrics.txt" "tapbridge_${c}_total" 'link="a"')
    s=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["counters"][sys.argv[2]])' \
        "$WORK/status.json" "$c" 2>/dev/null || echo missing)
    check "link counter $c: metrics $m == status $s" test -n "$m" -a "$m" == "$s"
done
check "lease count served" test "$(metric "$WORK/metrics.txt" tapbridge_leases 'link="a"')" == 0

code=$(fetch "$NS_A" /other "$WORK/other.txt" || echo failed)
check "GET /other answers 404 (got $code)" test "$code" == 404
code=$(fetch "$NS_A" /metrics "$WORK/again.txt" || echo failed)
check "the endpoint still serves after a 404 (got $code)" test "$code" == 200

# ---------------------------------------------------------------- link down

check "link down a" ctl "$NS_A" link down a --config "$WORK/a.toml"
code=$(fetch "$NS_A" /metrics "$WORK/gone.txt" || echo failed)
check "the endpoint is gone after link down (got $code)" test "$code" == refused

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
