#!/usr/bin/env bash
# dhcp_load.sh — the DHCP responder under a burst of clients (correctness, not
# timing; scripts/dhcp_bench.sh measures): 2,000 raw-socket clients
# (examples/dhcp_load.rs: distinct MACs, BROADCAST flag, full DORA) at
# 1,000/s against site A, whose pool has about 8,000 addresses.
#
#   load ── br-lan ── tb-a [site A: responder, pool 198.19.0.100-198.19.31.199]
#                          ══ WAN 198.18.0.1/30 ↔ 198.18.0.2/30 (peer b, never up)
#
# Checks:
#   * every client completes DORA, no address is ACKed to two clients, no NAK;
#   * `leases --json` lists every ACKed (MAC, address);
#   * right after the last ACK, `kill -9` of the daemon: what is on disk (the
#     lease file plus its journals, read by an independent reader of the
#     documented formats) holds every ACKed lease;
#   * `link up` again reads it: `leases --json` lists every ACKed lease, and
#     the journals are folded into the lease file;
#   * 500 more clients after the restart all complete and never get an address
#     the first 2,000 hold;
#   * `kill -9` 0.7 s into a burst of 3,000 at 2,000/s: every lease a client got an ACK
#     for is on disk and listed after `link up`.
#
# Prints "ok - ..." / "not ok - ..." lines; exit 1 on any failure.

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init
# The debug build: `cargo test --all-targets` (tests/run.sh) has made it already.
tb_build_example LOAD dhcp_load debug

e2e_site a
e2e_site b
GA=$(e2e_ns a)
e2e_no_ipv6 "$GA"
e2e_wan "$GA" "$(e2e_ns b)" 198.18.0.1/30 198.18.0.2/30
ip -n "$GA" link add br-lan type bridge
ip -n "$GA" link set br-lan type bridge forward_delay 0 stp_state 0
ip -n "$GA" link set br-lan up
tb_ns_add tbe2e-load NS_LOAD
e2e_no_ipv6 "$NS_LOAD"
tb_veth "$NS_LOAD" eth0 "$GA" lanload
ip -n "$GA" link set lanload master br-lan

LEASES="$E2E_WORK/a.leases"
# The conflict check (on by default) holds each offer 400 ms for its ARP probe and
# caps probed offers near 640/s; this test is about durability under load, so it is
# off here (dhcp_conflict.sh tests the check).
tb_link_config "$(e2e_conf a)" --ifname tb-a --mtu 1500 --bridge br-lan \
    --listen 198.18.0.1:51901 --psk "$E2E_WORK/psk" --keepalive 5s \
    --peer b=198.18.0.2:51901 \
    --dhcp enabled=true --dhcp server_address=198.19.0.1 \
    --dhcp pool=198.19.0.100-198.19.31.199 --dhcp subnet=198.19.0.0/19 \
    --dhcp lease_time=1h --dhcp "lease_file=$LEASES" --dhcp conflict_check=false \
    --socket "$(e2e_sock a)" || e2e_fatal "could not write the config"
e2e_require_up a

# load N FIRST OUT: run the load tool in the client namespace (bounded).
load() {
    ip netns exec "$NS_LOAD" timeout -k 5 90 "$LOAD" --iface eth0 --count "$1" \
        --first "$2" --rate 1000 --timeout 60 --acked "$3"
}

# check_load DESC N JSON: every one of N clients completed, none shared, no NAK.
check_load() {
    e2e_check "$1" python3 -c '
import json, sys
r = json.loads(sys.argv[1])
n = int(sys.argv[2])
assert r["completed"] == n and r["naks"] == 0 and r["shared_addresses"] == 0, r
' "$3" "$2"
}

# listed_in_leases FILE: every "MAC IP" line of FILE is in `leases --json`.
# shellcheck disable=SC2317 # invoked indirectly through e2e_check
listed_in_leases() {
    e2e_json a leases | python3 -c '
import json, sys
have = {(l["mac"].lower(), l["ip"]) for l in json.load(sys.stdin)["leases"]}
want = {tuple(line.split()) for line in open(sys.argv[1]) if line.strip()}
missing = want - have
assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:3]}"
' "$1"
}

# kill_daemon: kill -9 site A's daemon and wait until it is gone. (Not
# e2e_daemon_pid: with thousands of leases the status JSON is too long for a
# command-line argument.)
kill_daemon() {
    local pid
    pid=$(e2e_json a | python3 -c 'import json, sys; print(json.load(sys.stdin)["pid"])') || true
    [[ "$pid" =~ ^[0-9]+$ && "$(ip netns identify "$pid" 2>/dev/null)" == "$GA" ]] ||
        e2e_fatal "cannot find the daemon of site A"
    kill -KILL "$pid"
    tb_wait_until 10 "site A's daemon to die" e2e_pid_gone "$pid" ||
        e2e_fatal "kill -9 did not stop the daemon"
}

FIRST="$E2E_WORK/acked-1"
out=$(load 2000 0 "$FIRST" || true)
e2e_note "load: $out"
check_load "2,000 clients complete DORA with distinct addresses and no NAK" 2000 "$out"

# The daemon dies at once after the last ACK went out.
kill_daemon

# on_disk ACKED: what is on disk, read as documented (the lease file, JSON
# version 2, then each <file>.journal.<generation> in order, one JSON line per
# change), holds every "MAC IP" line of ACKED.
# shellcheck disable=SC2317 # invoked indirectly through e2e_check
on_disk() {
    python3 -c '
import glob, json, os, sys
path, acked = sys.argv[1], sys.argv[2]
leases = {}
if os.path.exists(path):
    d = json.load(open(path))
    assert d["version"] == 2, d["version"]
    leases = {l["client"]: l for l in d["leases"]}
journals = sorted(glob.glob(path + ".journal.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
for j in journals:
    data = open(j, "rb").read()
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        rec = json.loads(line)
        if rec.get("removed"):
            leases.pop(rec["client"], None)
        else:
            for k in [k for k, l in leases.items() if l["ip"] == rec["ip"]]:
                del leases[k]
            leases[rec["client"]] = rec
have = {(l["mac"].lower(), l["ip"]) for l in leases.values()}
want = {tuple(line.split()) for line in open(acked) if line.strip()}
missing = want - have
assert not missing, f"{len(missing)} of {len(want)} missing, e.g. {sorted(missing)[:3]}"
print(f"{len(want)} leases, {len(journals)} journal(s)", file=sys.stderr)
' "$LEASES" "$1"
}

e2e_check "after kill -9 the lease file and its journals hold every ACKed lease" on_disk "$FIRST"

if e2e_ctl a "$E2E_T_UP" link up --config "$(e2e_conf a)" >/dev/null; then
    e2e_ok "link up after kill -9"
else
    e2e_fatal "link up after kill -9 failed"
fi
e2e_check "after the restart leases --json lists every ACKed lease" listed_in_leases "$FIRST"
journals=("$LEASES".journal.*)
e2e_check "the restart folded the journals into the lease file" test ! -e "${journals[0]}"

SECOND="$E2E_WORK/acked-2"
LOG="${E2E_WORK}/run/a.log"
log_mark=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
out=$(load 500 2000 "$SECOND" || true)
e2e_note "load: $out"
check_load "500 more clients after the restart complete DORA" 500 "$out"
e2e_check "none of them got an address the first 2,000 hold" python3 -c '
import sys
first = {line.split()[1] for line in open(sys.argv[1]) if line.strip()}
second = {line.split()[1] for line in open(sys.argv[2]) if line.strip()}
assert not first & second, sorted(first & second)[:3]
' "$FIRST" "$SECOND"
e2e_check "leases --json lists them too" listed_in_leases "$SECOND"

# lease_lines_budgeted: since the burst started, the log has one "DHCP lease
# granted" line per client up to 50 in a second and a count for the rest:
# every grant accounted for, not 500 lines.
# shellcheck disable=SC2317 # invoked indirectly through tb_wait_until
lease_lines_budgeted() {
    python3 -c '
import re, sys
text = open(sys.argv[1], errors="replace").read()[int(sys.argv[2]):]
lines = text.count("DHCP lease granted")
unlogged = sum(int(n) for n in re.findall(r"not logged one by one unlogged=(\d+)", text))
print(f"{lines} lines, {unlogged} counted", file=sys.stderr)
assert lines + unlogged == 500 and 0 < lines < 500, (lines, unlogged)
' "$LOG" "$log_mark"
}
e2e_check "the burst's 500 grants: at most 50 log lines a second, the rest counted" \
    tb_wait_until 5 "the lease log summary" lease_lines_budgeted

# kill -9 in the middle of a burst: every ACK a client got is on disk.
THIRD="$E2E_WORK/acked-3"
ip netns exec "$NS_LOAD" timeout -k 5 60 "$LOAD" --iface eth0 --count 3000 --first 2500 \
    --rate 2000 --timeout 6 --acked "$THIRD" >"$E2E_WORK/load-3.json" 2>&1 &
load_pid=$!
sleep 0.7
kill_daemon
wait "$load_pid" || true
e2e_note "load: $(cat "$E2E_WORK/load-3.json")"
acked=$(wc -l <"$THIRD" 2>/dev/null || echo 0)
e2e_check "the burst was cut short by the kill ($acked of 3000 ACKed)" test "$acked" -gt 0 -a "$acked" -lt 3000
e2e_check "after kill -9 mid-burst every ACKed lease is on disk" on_disk "$THIRD"
if e2e_ctl a "$E2E_T_UP" link up --config "$(e2e_conf a)" >/dev/null; then
    e2e_ok "link up after the second kill -9"
    e2e_check "and leases --json lists every lease ACKed before the kill" listed_in_leases "$THIRD"
else
    e2e_not_ok "link up after the second kill -9"
fi

e2e_summary
