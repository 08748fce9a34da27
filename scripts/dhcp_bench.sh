#!/usr/bin/env bash
#
# dhcp_bench.sh — DHCP under load: tapbridge's responder vs dnsmasq, full DORA
# from raw-socket clients (examples/dhcp_load.rs), on a 65k-address pool.
#
#   ./scripts/dhcp_bench.sh [--rates "1000 3000 5000 8000"] [--duration N] [--runs N]
#                           [--only SERVER]... [--unicast]
#
# Rig (namespaces, removed on exit):
#   load ─┐
#   host-a ┼ br-lan [gw-a] tb-a ══ WAN 198.18.0.1/30 ↔ .2/30 ══ [gw-b] tb-b br-lan ── host-b
#   dns ──┘   (LAN 198.19.0.0/16; host-a .0.10, host-b .0.20, dnsmasq .0.2)
# Pool 198.19.1.0-198.19.255.254 (65,279 addresses), lease time 1 h, for every
# server. Four servers, each in its default and its fast setting:
#   tapbridge          site A's responder with the defaults (conflict_check on:
#                      fresh addresses are probed before they are offered)
#   tapbridge-nocheck  the same with conflict_check = false
#   dnsmasq            dnsmasq with its default ping check before an offer
#   dnsmasq-noping     dnsmasq --no-ping
# (server 198.19.0.1 with the lease file in the work dir; dnsmasq with
# --quiet-dhcp (no log line per message), --dhcp-authoritative,
# --dhcp-lease-max above the pool and a lease file, while site A runs as a
# plain bridge (responder off), so the tunnel stays up.)
# For each server, offered rate and run (a fresh server and lease file each
# run): RATE x DURATION clients at RATE/s, reporting completed DORA/s, p50
# and p99 latency, the server's CPU time per completed DORA (utime+stime of
# all its threads from /proc/PID/stat), and the median ping RTT from host-a to
# host-b across the tunnel during the load against the idle median. Prints
# the medians over the runs with their range (min-max) and writes the table
# as markdown to target/bench/dhcp-latest.md.
#
# Options:
#   --rates "R..."  offered DORA/s (default "1000 3000 5000 8000")
#   --duration N    seconds of load per run (default 5; clients = rate x N, at
#                   most 60,000)
#   --runs N        runs per rate (default 3)
#   --only NAME     tapbridge, tapbridge-nocheck, dnsmasq or dnsmasq-noping;
#                   repeatable
#   --unicast       clients that take unicast replies (BROADCAST flag clear,
#                   as most clients send it); by default they ask for
#                   broadcast replies, which the LAN bridge floods to every
#                   port
#
# Environment: BRIDGE_CTL=/path/to/bridge-ctl and TB_EXAMPLE_DIR=dir-with-dhcp_load
# skip the builds. Exit status 0 when every selected server produced numbers,
# 1 otherwise, 2 on usage errors. Everything is bounded by timeouts.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/netns.sh
source "$HERE/lib/netns.sh"
# shellcheck source=scripts/lib/config.sh
source "$HERE/lib/config.sh"
REPO=$(tb_repo_root)

usage() {
    sed -n '3,46p' "$0" | sed 's/^# \{0,1\}//'
}

RATES=(1000 3000 5000 8000)
DURATION=5
RUNS=3
SERVERS=(tapbridge tapbridge-nocheck dnsmasq dnsmasq-noping)
ONLY=()
UNICAST=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --rates)
        [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*( [1-9][0-9]*)*$ ]] || {
            printf 'error: --rates needs whole numbers separated by spaces\n' >&2
            exit 2
        }
        read -r -a RATES <<<"$2"
        shift 2
        ;;
    --duration | --runs)
        [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]?$ ]] || {
            printf 'error: %s needs a whole number from 1 to 99\n' "$1" >&2
            exit 2
        }
        if [[ "$1" == --duration ]]; then DURATION=$2; else RUNS=$2; fi
        shift 2
        ;;
    --only)
        [[ $# -ge 2 && "$2" =~ ^(tapbridge|tapbridge-nocheck|dnsmasq|dnsmasq-noping)$ ]] || {
            printf 'error: --only needs tapbridge, tapbridge-nocheck, dnsmasq or dnsmasq-noping\n' >&2
            exit 2
        }
        ONLY+=("$2")
        shift 2
        ;;
    --unicast)
        UNICAST=(--unicast)
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        printf 'error: unknown argument %s (see --help)\n' "$1" >&2
        exit 2
        ;;
    esac
done
if ((${#ONLY[@]} > 0)); then
    SERVERS=("${ONLY[@]}")
fi

tb_require_root
tb_install_traps

tb_heading "Tools"
tb_need_cmd ip iproute2
tb_need_cmd ping iputils-ping
tb_need_cmd python3 python3
tb_need_cmd dnsmasq dnsmasq-base
tb_build_release BIN
tb_build_example LOAD dhcp_load
tb_info "$BIN, $LOAD, $(dnsmasq --version | head -n1)"

CLK_TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/tapbridge-dhcp-bench.XXXXXX)
tb_defer rm -rf "$WORK"
chmod 700 "$WORK"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
FAILED=0

tb_heading "Rig (suffix $TB_SUFFIX)"
tb_ns_add tbdb-ga GA
tb_ns_add tbdb-gb GB
tb_ns_add tbdb-ha HA
tb_ns_add tbdb-hb HB
tb_ns_add tbdb-load NL
tb_ns_add tbdb-dns ND
for ns in "$GA" "$GB" "$HA" "$HB" "$NL" "$ND"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
done
tb_veth "$GA" wan0 "$GB" wan0
ip -n "$GA" addr add 198.18.0.1/30 dev wan0
ip -n "$GB" addr add 198.18.0.2/30 dev wan0
for gw in "$GA" "$GB"; do
    ip -n "$gw" link add br-lan type bridge
    ip -n "$gw" link set br-lan type bridge forward_delay 0 stp_state 0
    ip -n "$gw" link set br-lan up
done
tb_veth "$HA" eth0 "$GA" lanha
tb_veth "$NL" eth0 "$GA" lanload
tb_veth "$ND" eth0 "$GA" landns
tb_veth "$HB" eth0 "$GB" lanhb
for p in lanha lanload landns; do ip -n "$GA" link set "$p" master br-lan; done
ip -n "$GB" link set lanhb master br-lan
ip -n "$HA" addr add 198.19.0.10/16 dev eth0
ip -n "$HB" addr add 198.19.0.20/16 dev eth0
ip -n "$ND" addr add 198.19.0.2/16 dev eth0
(umask 077 && "$BIN" genpsk >"$WORK/psk")

# config FILE LISTEN PEER ENDPOINT TAP DHCP(0: off, 1: defaults, nocheck)
config() {
    local opts=()
    if [[ "$6" != 0 ]]; then
        opts+=(--dhcp enabled=true --dhcp server_address=198.19.0.1
            --dhcp pool=198.19.1.0-198.19.255.254 --dhcp subnet=198.19.0.0/16
            --dhcp lease_time=1h --dhcp "lease_file=$WORK/a.leases")
    fi
    if [[ "$6" == nocheck ]]; then
        opts+=(--dhcp conflict_check=false)
    fi
    tb_link_config "$1" --ifname "$5" --mtu 1500 --bridge br-lan --listen "$2" \
        --psk "$WORK/psk" --keepalive 5s --peer "$3=$4" "${opts[@]}" \
        --socket "$WORK/$(basename "$1" .toml).sock" || tb_die "cannot write $1"
}
config "$WORK/a-dhcp.toml" 198.18.0.1:51901 b 198.18.0.2:51901 tb-a 1
config "$WORK/a-nocheck.toml" 198.18.0.1:51901 b 198.18.0.2:51901 tb-a nocheck
config "$WORK/a-plain.toml" 198.18.0.1:51901 b 198.18.0.2:51901 tb-a 0
config "$WORK/b.toml" 198.18.0.2:51901 a 198.18.0.1:51901 tb-b 0
# The link names come from the file names: site A's must be "a" every time.
mkdir -p "$WORK/dhcp" "$WORK/nocheck" "$WORK/plain"
mv "$WORK/a-dhcp.toml" "$WORK/dhcp/a.toml"
mv "$WORK/a-nocheck.toml" "$WORK/nocheck/a.toml"
mv "$WORK/a-plain.toml" "$WORK/plain/a.toml"

# up NS CONF / down NS CONF: bounded bridge-ctl link up/down.
up() {
    tb_defer ip netns exec "$1" timeout 20 "$BIN" link down --config "$2"
    tb_run ip netns exec "$1" timeout 30 "$BIN" link up --config "$2" >/dev/null
}
down() {
    ip netns exec "$1" timeout 20 "$BIN" link down --config "$2" >/dev/null 2>&1 || true
}
# daemon_pid NS CONF: the daemon's PID from status --json.
daemon_pid() {
    ip netns exec "$1" timeout 10 "$BIN" status --config "$2" --json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["pid"])'
}

up "$GB" "$WORK/b.toml" || tb_die "site B did not come up"

# ping_median SECS OUT: ping host-b from host-a every 10 ms for SECS seconds
# (bounded) into OUT; prints nothing.
ping_run() {
    ip netns exec "$HA" timeout $(($1 + 5)) ping -n -i 0.01 -w "$1" 198.19.0.20 >"$2" 2>&1 || true
}
median_rtt() {
    python3 -c '
import re, statistics, sys
r = [float(m) for m in re.findall(r"time=([0-9.]+)", open(sys.argv[1]).read())]
print(f"{statistics.median(r):.3f}" if r else "nan")
' "$1"
}

# server_conf SERVER: site A's configuration for tapbridge or tapbridge-nocheck.
server_conf() {
    if [[ "$1" == tapbridge ]]; then
        printf '%s\n' "$WORK/dhcp/a.toml"
    else
        printf '%s\n' "$WORK/nocheck/a.toml"
    fi
}

# start_server SERVER: a fresh server with an empty lease file; sets SRV_PID.
start_server() {
    rm -f "$WORK"/a.leases* "$WORK/dnsmasq.leases"
    case "$1" in
    tapbridge | tapbridge-nocheck)
        up "$GA" "$(server_conf "$1")" || return 1
        SRV_PID=$(daemon_pid "$GA" "$(server_conf "$1")") || return 1
        ;;
    dnsmasq | dnsmasq-noping)
        up "$GA" "$WORK/plain/a.toml" || return 1
        : >"$WORK/dnsmasq.leases"
        local ping=()
        [[ "$1" == dnsmasq-noping ]] && ping=(--no-ping)
        # `ip netns exec` execs dnsmasq: $! is dnsmasq itself (its CPU time
        # is what is measured), stopped by PID in stop_server or on exit.
        ip netns exec "$ND" dnsmasq --keep-in-foreground --port=0 "${ping[@]}" \
            --dhcp-authoritative --interface=eth0 --bind-interfaces --quiet-dhcp \
            --dhcp-range=198.19.1.0,198.19.255.254,255.255.0.0,1h --dhcp-lease-max=70000 \
            --dhcp-leasefile="$WORK/dnsmasq.leases" --pid-file= --log-facility="$WORK/dnsmasq.log" \
            --no-resolv --no-hosts &
        SRV_PID=$!
        tb_defer tb_stop_pid "$SRV_PID"
        sleep 0.5
        kill -0 "$SRV_PID" 2>/dev/null || return 1
        ;;
    esac
    tb_wait_until 20 "host-a reaches host-b across the tunnel" \
        ip netns exec "$HA" ping -c 1 -W 1 198.19.0.20
}

stop_server() {
    case "$1" in
    tapbridge | tapbridge-nocheck) down "$GA" "$(server_conf "$1")" ;;
    dnsmasq | dnsmasq-noping)
        tb_stop_pid "$SRV_PID"
        down "$GA" "$WORK/plain/a.toml"
        ;;
    esac
}

# result SERVER RATE RUN KEY VALUE
result() {
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
}

for server in "${SERVERS[@]}"; do
    tb_heading "$server"
    for rate in "${RATES[@]}"; do
        clients=$((rate * DURATION))
        ((clients <= 60000)) || clients=60000
        for run in $(seq 1 "$RUNS"); do
            if ! start_server "$server"; then
                tb_warn "$server did not start"
                FAILED=1
                stop_server "$server"
                continue
            fi
            ping_run 2 "$WORK/ping-idle"
            idle=$(median_rtt "$WORK/ping-idle")
            before=$(tb_cpu_ticks "$SRV_PID") || before=0
            ping_run $((DURATION + 1)) "$WORK/ping-load" &
            ppid=$!
            out=$(ip netns exec "$NL" timeout $((DURATION + 60)) "$LOAD" --iface eth0 \
                --count "$clients" --rate "$rate" "${UNICAST[@]}" --timeout $((DURATION + 30)) || true)
            after=$(tb_cpu_ticks "$SRV_PID") || after=$before
            wait "$ppid" || true
            loaded=$(median_rtt "$WORK/ping-load")
            stop_server "$server"
            if [[ "$out" != \{* ]]; then
                tb_warn "$server $rate/s run $run: no result from the load tool"
                FAILED=1
                continue
            fi
            line=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
ticks = int(sys.argv[3]) - int(sys.argv[2])
# No exchange completed: no CPU per exchange either (not the ticks over 1).
done = r["completed"]
cpu_us = f"{ticks / int(sys.argv[4]) * 1e6 / done:.1f}" if done else "-"
print(r["completed"], r["clients"], r["dora_per_sec"], r["p50_ms"], r["p99_ms"], cpu_us,
      r["retransmits"])
' "$out" "$before" "$after" "$CLK_TCK")
            read -r ndone total dps p50 p99 cpu retx <<<"$line"
            tb_info "$server $rate/s run $run: $ndone/$total done, $dps DORA/s, p50 $p50 ms, p99 $p99 ms, $cpu µs CPU/DORA, $retx retransmitted, ping $idle -> $loaded ms"
            result "$server" "$rate" "$run" done_pct "$(python3 -c "print(100*$ndone/$total)")"
            result "$server" "$rate" "$run" dora_per_sec "$dps"
            result "$server" "$rate" "$run" p50_ms "$p50"
            result "$server" "$rate" "$run" p99_ms "$p99"
            [[ "$cpu" == - ]] || result "$server" "$rate" "$run" cpu_us "$cpu"
            result "$server" "$rate" "$run" ping_extra_ms \
                "$(python3 -c "print(round($loaded - $idle, 3))" 2>/dev/null || echo nan)"
        done
    done
done

tb_heading "Results (median over runs, range in brackets)"
mkdir -p "$REPO/target/bench"
replies=broadcast
[[ ${#UNICAST[@]} -gt 0 ]] && replies=unicast
python3 - "$RESULTS" "$DURATION" "$RUNS" "$replies" >"$REPO/target/bench/dhcp-latest.md" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    server, rate, run, key, value = line.split("\t")
    rows[(server, int(rate), key)].append(float(value))
keys = [("done_pct", "done %"), ("dora_per_sec", "DORA/s"), ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"), ("cpu_us", "CPU µs/DORA"), ("ping_extra_ms", "ping +ms")]
print(f"DHCP DORA load, {sys.argv[2]} s per run, {sys.argv[3]} runs, pool 65,279 addresses, "
      f"{sys.argv[4]} replies\n")
print("| server | offered/s | " + " | ".join(k[1] for k in keys) + " |")
print("|---|---:|" + "---:|" * len(keys))
for server, rate in sorted({(s, r) for s, r, _ in rows}):
    cells = []
    for k, _ in keys:
        v = rows.get((server, rate, k), [])
        if not v:
            cells.append("-")
            continue
        m = statistics.median(v)
        fmt = (lambda x: f"{x:,.0f}") if k in ("dora_per_sec",) else (lambda x: f"{x:.2f}")
        cells.append(f"{fmt(m)} [{fmt(min(v))}–{fmt(max(v))}]")
    print(f"| {server} | {rate:,} | " + " | ".join(cells) + " |")
EOF
cat "$REPO/target/bench/dhcp-latest.md"
exit "$FAILED"
