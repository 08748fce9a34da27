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
# Site a also runs the DHCP responder (a 10-address pool); busybox udhcpc on its
# TAP takes one lease.
#
# Checks: a metrics port already in use makes `link up` fail with a clear message
# and leave no TAP or socket behind; after a DHCP lease, a ping across and with
# traffic stopped, the per-peer counters served on /metrics equal those of `status
# --json`; the drop counters (one family, a `reason` label), the DHCP counters and
# pool gauges, build_info, the handshake timestamp and the state are there;
# `promtool check metrics` accepts the exposition (text format 0.0.4, what a client
# without an OpenMetrics Accept header gets) and OpenMetrics is served on request;
# every metric name the shipped alert rules and dashboard (appliance/monitoring/)
# use is one the daemon exports; `leases --json` prints {"leases": [...]} pretty,
# like `status --json`, with the lease; an applied and a refused reload are
# counted; /other is a 404; after `link down` the endpoint is gone. Reports through
# tests/e2e/lib.sh (ok/not ok lines, a summary); exit 1 on any failure.
#
# Environment: BRIDGE_CTL (default target/release/bridge-ctl).

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=9477

e2e_init
tb_need_pkg prometheus udhcpc python3-prometheus-client
tb_need_cmd promtool prometheus
tb_need_cmd udhcpc udhcpc
e2e_site a
e2e_site b
NS_A=$(e2e_ns a)
NS_B=$(e2e_ns b)
e2e_no_ipv6 "$NS_A"
e2e_no_ipv6 "$NS_B"
e2e_wan "$NS_A" "$NS_B" 198.18.93.1/24 198.18.93.2/24

site_config() { # site_config NAME OVERLAY-ADDR PEER PEER-WAN-ADDR [OPTION...]
    tb_link_config "$(e2e_conf "$1")" --ifname "tbm-$1" --mtu 1500 --address "$2/24" \
        --listen 0.0.0.0:51901 --psk "$E2E_WORK/psk" --keepalive 10s \
        --peer "$3=$4:51901" --socket "$(e2e_sock "$1")" --metrics "127.0.0.1:$PORT" "${@:5}"
}
site_config a 198.19.93.1 b 198.18.93.2 --dhcp enabled=true --dhcp server_address=198.19.93.254 \
    --dhcp pool=198.19.93.100-198.19.93.109 --dhcp subnet=198.19.93.0/24 \
    --dhcp lease_time=1h --dhcp "lease_file=$E2E_WORK/a.leases"
site_config b 198.19.93.2 a 198.18.93.1

# fetch NS PATH OUT [ACCEPT]: GET http://127.0.0.1:PORT/PATH inside NS (with that
# Accept header, if given); prints the HTTP status code ("refused" if nothing
# listens), writes the body to OUT and the Content-Type to OUT.type.
fetch() {
    ip netns exec "$1" timeout 10 python3 - "$PORT" "$2" "$3" "${4:-}" <<'EOF'
import sys, urllib.request, urllib.error
port, path, out, accept = sys.argv[1:5]
req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
if accept:
    req.add_header("Accept", accept)
ctype = ""
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        code, body, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except (ConnectionRefusedError, urllib.error.URLError):
    code, body = "refused", b""
open(out, "wb").write(body)
open(out + ".type", "w").write(ctype)
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

# A DHCP client on site a's TAP: the local responder answers, nothing crosses.
e2e_check "udhcpc on tbm-a gets a lease from the local responder" \
    ip netns exec "$NS_A" timeout 30 udhcpc -f -q -n -i tbm-a -s /bin/true -t 5 -T 2
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
e2e_match "without an OpenMetrics Accept header: text format 0.0.4" '^text/plain; version=0.0.4' \
    "$(cat "$E2E_WORK/metrics.txt.type")"
e2e_check "promtool check metrics accepts the exposition" \
    bash -c "promtool check metrics <'$E2E_WORK/metrics.txt'"
code=$(fetch "$NS_A" /metrics "$E2E_WORK/om.txt" \
    'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' || echo failed)
e2e_check "GET /metrics as Prometheus asks answers 200 (got $code)" test "$code" == 200
e2e_match "... in OpenMetrics" '^application/openmetrics-text' "$(cat "$E2E_WORK/om.txt.type")"
e2e_check "the OpenMetrics exposition ends with # EOF" \
    bash -c "tail -n 1 '$E2E_WORK/om.txt' | grep -qx '# EOF'"
# Debian's own python3 (where the package installs the module) parses it
# with the Prometheus project's strict OpenMetrics parser.
e2e_check "the OpenMetrics exposition passes the strict OpenMetrics parser" \
    /usr/bin/python3 -c '
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(open(sys.argv[1]).read()))
assert len(families) >= 20, len(families)
' "$E2E_WORK/om.txt"
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
at=$(metric "$E2E_WORK/metrics.txt" tapbridge_peer_last_handshake_timestamp_seconds 'link="a",peer="b"')
now=$(date +%s)
e2e_cmp "the last handshake's timestamp ($at) is in the last minute" "${at:-0}" -ge $((now - 60))
e2e_cmp "... and not in the future" "${at:-0}" -le $((now + 2))
# status counter=series: every link counter of status is on /metrics.
for pair in rx_auth_failed='tapbridge_rx_dropped_total link="a",reason="auth_failed"' \
    rx_replayed='tapbridge_rx_dropped_total link="a",reason="replayed"' \
    rx_malformed='tapbridge_rx_dropped_total link="a",reason="malformed"' \
    rx_unknown_peer='tapbridge_rx_dropped_total link="a",reason="unknown_peer"' \
    tx_dropped='tapbridge_tx_dropped_total link="a",reason="no_session"' \
    arp_replies='tapbridge_arp_replies_total link="a"' \
    dhcp_replies='tapbridge_dhcp_replies_total link="a"' \
    dhcp_naks='tapbridge_dhcp_naks_total link="a"' \
    dhcp_pool_exhausted='tapbridge_dhcp_dropped_total link="a",reason="pool_exhausted"' \
    dhcp_malformed='tapbridge_dhcp_dropped_total link="a",reason="malformed"' \
    remote_dhcp_dropped='tapbridge_dhcp_dropped_total link="a",reason="from_tunnel"' \
    fragmented='tapbridge_fragmented_frames_total link="a"' \
    reassembled='tapbridge_reassembled_frames_total link="a"'; do
    c=${pair%%=*}
    series=${pair#*=}
    m=$(metric "$E2E_WORK/metrics.txt" "${series%% *}" "${series#* }")
    s=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["counters"][sys.argv[2]])' \
        "$E2E_WORK/status.json" "$c" 2>/dev/null || echo missing)
    e2e_check "link counter $c: metrics $m == status $s" test -n "$m" -a "$m" == "$s"
done
replies=$(metric "$E2E_WORK/metrics.txt" tapbridge_dhcp_replies_total 'link="a"')
e2e_cmp "the DHCP exchange was answered (OFFER and ACK: $replies replies)" "${replies:-0}" -ge 2
e2e_check "one lease served" test "$(metric "$E2E_WORK/metrics.txt" tapbridge_dhcp_leases 'link="a"')" == 1
e2e_check "pool size 10 served" \
    test "$(metric "$E2E_WORK/metrics.txt" tapbridge_dhcp_pool_addresses 'link="a"')" == 10
e2e_check "one pool address in use" \
    test "$(metric "$E2E_WORK/metrics.txt" tapbridge_dhcp_pool_addresses_in_use 'link="a"')" == 1
version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$E2E_WORK/status.json")
e2e_check "build_info carries the daemon's version ($version)" \
    test "$(metric "$E2E_WORK/metrics.txt" tapbridge_build_info "link=\"a\",version=\"$version\"")" == 1
e2e_check "endpoint changes served (none here)" \
    test "$(metric "$E2E_WORK/metrics.txt" tapbridge_peer_endpoint_changes_total 'link="a",peer="b"')" == 0

# Every tapbridge_* name the shipped rules and dashboard use is exported.
MON="$E2E_ROOT/appliance/monitoring"
for f in tapbridge.rules.yml tapbridge.dashboard.json; do
    missing=$(python3 - "$MON/$f" "$E2E_WORK/metrics.txt" <<'EOF'
import re, sys
used = set(re.findall(r"\btapbridge_[a-z0-9_]+", open(sys.argv[1]).read()))
exported = {l.split("{")[0].split(" ")[0] for l in open(sys.argv[2]) if not l.startswith("#")}
if len(used) < 5:
    print(f"only {len(used)} names found: the check would be vacuous")
print(" ".join(sorted(used - exported)))
EOF
    )
    e2e_check "every metric $f uses is exported${missing:+ (missing: $missing)}" test -z "$missing"
done

# leases --json: {"leases": [...]}, pretty like status --json, with udhcpc's lease.
e2e_run e2e_ctl a 10 leases a --config "$(e2e_conf a)" --json
e2e_expect_rc "leases --json" 0
printf '%s\n' "$E2E_STDOUT" >"$E2E_WORK/leases.json"
tap_mac=$(ip -n "$NS_A" -j link show tbm-a | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["address"])')
e2e_check "leases --json holds tbm-a's lease ($tap_mac) in the pool, as status does" \
    python3 - "$E2E_WORK/leases.json" "$E2E_WORK/status.json" "$tap_mac" <<'EOF'
import ipaddress, json, sys
d = json.load(open(sys.argv[1]))
assert list(d) == ["leases"], d
(lease,) = d["leases"]
assert lease["mac"] == sys.argv[3], lease
ip = ipaddress.ip_address(lease["ip"])
assert ipaddress.ip_address("198.19.93.100") <= ip <= ipaddress.ip_address("198.19.93.109"), ip
assert 0 < lease["expires_in_secs"] <= 3600, lease
assert [l["ip"] for l in json.load(open(sys.argv[2]))["leases"]] == [lease["ip"]]
EOF
e2e_check "leases --json is indented like status --json" \
    grep -q '^  "leases": \[' "$E2E_WORK/leases.json"

# Reloads: one applied (no change), one refused by the daemon (a valid file whose
# change, another tunnel.listen, needs a restart), both counted.
e2e_run e2e_ctl a 30 reload a --config "$(e2e_conf a)"
e2e_expect_rc "reload without change is applied" 0
cp "$(e2e_conf a)" "$E2E_WORK/a.toml.good"
sed -i 's/^listen = "0.0.0.0:51901"$/listen = "0.0.0.0:51902"/' "$(e2e_conf a)"
e2e_run e2e_ctl a 30 reload a --config "$(e2e_conf a)"
e2e_expect_rc "reload of another tunnel.listen is refused" 2
cp "$E2E_WORK/a.toml.good" "$(e2e_conf a)"
fetch "$NS_A" /metrics "$E2E_WORK/reloaded.txt" >/dev/null || true
e2e_check "reloads_total{result=applied} is 1" \
    test "$(metric "$E2E_WORK/reloaded.txt" tapbridge_reloads_total 'link="a",result="applied"')" == 1
e2e_check "reloads_total{result=refused} is 1" \
    test "$(metric "$E2E_WORK/reloaded.txt" tapbridge_reloads_total 'link="a",result="refused"')" == 1

code=$(fetch "$NS_A" /other "$E2E_WORK/other.txt" || echo failed)
e2e_check "GET /other answers 404 (got $code)" test "$code" == 404
code=$(fetch "$NS_A" /metrics "$E2E_WORK/again.txt" || echo failed)
e2e_check "the endpoint still serves after a 404 (got $code)" test "$code" == 200

# ---------------------------------------------------------------- link down

e2e_check "link down a" e2e_ctl a 30 link down a --config "$(e2e_conf a)"
code=$(fetch "$NS_A" /metrics "$E2E_WORK/gone.txt" || echo failed)
e2e_check "the endpoint is gone after link down (got $code)" test "$code" == refused

e2e_summary
