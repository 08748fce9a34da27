#!/usr/bin/env bash
#
# bench_workers.sh — what `tunnel.workers` gives a hub: the same hub with one worker
# and with N, alternating, in one run.
#
#   ./scripts/bench_workers.sh [--workers N] [--runs R] [--duration S] [--pin]
#
# Rig: a hub namespace (hub = true) and N spoke namespaces, each spoke on a veth of its
# own to the hub (underlay 198.18.(20+i).0/24, MTU 1500; overlay 198.19.20.0/24: hub .1,
# spoke i .(2+i)). Each spoke's underlay address is picked so that the hub's steering
# program sends its datagrams to worker i (tests/tools/steer.py). The spokes run one
# worker each. For every run, the hub comes up with workers = 1 and then with
# workers = N, and measures, N flows at once (one per spoke, iperf3 clients in the hub):
#   tcp-out   TCP, hub → spokes, Mbit/s received (sum)
#   tcp-in    TCP, spokes → hub (iperf3 -R)
#   udp-out   UDP 64-byte datagrams at full speed, hub → spokes, packets/s received
#   udp-in    the same, spokes → hub
#   hub-cpu   the hub daemon's CPU seconds over the four tests
# Prints each test's median [min–max] for both settings and the ratio of the medians
# (N over 1) with the per-run ratios; markdown to target/bench/workers.md.
#
# Options:
#   --workers N    the hub's workers in the second setting (default 2, 2..16)
#   --runs R       runs of both settings (default 3)
#   --duration S   seconds per iperf3 test (default 5)
#   --pin          pin the hub's worker k to CPU k and everything else to the CPUs
#                  after the hub's; only with at least N + 1 CPUs (said and skipped
#                  otherwise: on fewer, the spokes and iperf3 share the hub's CPUs)
#
# Environment: BRIDGE_CTL=/path/to/bridge-ctl skips the build. Exit status 0 when
# every test produced numbers, 1 otherwise, 2 on usage errors. Everything is bounded by
# timeouts and removed on exit or Ctrl-C.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/netns.sh
source "$HERE/lib/netns.sh"
# shellcheck source=scripts/lib/config.sh
source "$HERE/lib/config.sh"
REPO=$(tb_repo_root)
REPORT="$REPO/tests/tools/bench_report.py"
STEER="$REPO/tests/tools/steer.py"

usage() {
    sed -n '3,33p' "$0" | sed 's/^# \{0,1\}//'
}

N=2
RUNS=3
DURATION=5
PIN=0
# number OPTION VALUE MIN MAX: VALUE if it is a whole number in MIN..MAX, else exit 2.
number() {
    if [[ "$2" =~ ^[0-9]+$ ]] && (($2 >= $3 && $2 <= $4)); then
        printf '%s\n' "$2"
    else
        printf 'error: %s needs a whole number from %s to %s\n' "$1" "$3" "$4" >&2
        exit 2
    fi
}
while [[ $# -gt 0 ]]; do
    case "$1" in
    --workers | --runs | --duration)
        [[ $# -ge 2 ]] || {
            printf 'error: %s needs a value\n' "$1" >&2
            exit 2
        }
        case "$1" in
        --workers) N=$(number "$1" "$2" 2 16) ;;
        --runs) RUNS=$(number "$1" "$2" 1 20) ;;
        --duration) DURATION=$(number "$1" "$2" 1 60) ;;
        esac
        shift 2
        ;;
    --pin)
        PIN=1
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

tb_require_root
tb_install_traps
tb_need_cmd ip iproute2
tb_need_cmd python3 python3
tb_need_cmd iperf3 iperf3
tb_need_cmd taskset util-linux
if [[ -n "${BRIDGE_CTL:-}" ]]; then
    tb_heading "Using BRIDGE_CTL"
else
    tb_heading "Building bridge-ctl (cargo build --release)"
fi
tb_build_release BIN
tb_info "$BIN"

CPUS=$(nproc)
if ((PIN)) && ((CPUS < N + 1)); then
    tb_warn "--pin needs at least $((N + 1)) CPUs for $N workers and the rest; this machine has $CPUS: not pinned"
    PIN=0
fi

WORK=$(mktemp -d /tmp/tapbridge-bench-workers.XXXXXX)
tb_defer rm -rf "$WORK"
chmod 700 "$WORK"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
PORT=51901
FAILED=0

tb_heading "Rig: a hub and $N spokes, suffix $TB_SUFFIX"
tb_ns_add tbbw-hub NS_HUB
SPOKE_NS=()
SPOKE_UNDER=()
for ((i = 0; i < N; i++)); do
    net="198.18.$((20 + i))"
    # The address of this subnet that the hub steers to worker i.
    addr=$(python3 "$STEER" pick "$net" "$PORT" "$N" | sed -n "$((i + 1))p")
    [[ -n "$addr" ]] || tb_die "no address under $net for worker $i"
    tb_ns_add "tbbw-s$i" ns
    tb_veth "$NS_HUB" "s$i" "$ns" wan0
    ip -n "$NS_HUB" addr add "$net.1/24" dev "s$i"
    ip -n "$ns" addr add "$addr/24" dev wan0
    SPOKE_NS+=("$ns")
    SPOKE_UNDER+=("$addr")
    tb_info "spoke $i: $addr (worker $(python3 "$STEER" worker "$addr" "$PORT" "$N") of $N)"
done

if ! (umask 077 && "$BIN" genpsk >"$WORK/psk") || [[ ! -s "$WORK/psk" ]]; then
    tb_die "bridge-ctl genpsk printed no key"
fi

# link_config FILE LISTEN OVERLAY [extra tb_link_config options...]: the link
# named after FILE's stem.
link_config() {
    local file=$1 listen=$2 overlay=$3 name
    shift 3
    name=$(basename "$file" .toml)
    mkdir -p "$(dirname "$file")"
    tb_link_config "$file" \
        --comment "tapbridge workers benchmark, link \"$name\" (generated by scripts/bench_workers.sh)" \
        --ifname tb0 --mtu 1500 --address "$overlay/24" --listen "$listen" \
        --psk "$WORK/psk" --wan-mtu 1500 "$@" \
        --dhcp enabled=false --dhcp server_address=198.19.20.254 \
        --dhcp pool=198.19.20.100-198.19.20.199 --dhcp subnet=198.19.20.0/24 \
        --dhcp "lease_file=${file%.toml}.leases" --socket "${file%.toml}.sock"
}

hub_peers=()
for ((i = 0; i < N; i++)); do
    hub_peers+=(--peer "s$i=${SPOKE_UNDER[$i]}:$PORT")
    link_config "$WORK/s$i.toml" "${SPOKE_UNDER[$i]}:$PORT" "198.19.20.$((2 + i))" \
        --peer "hub=198.18.$((20 + i)).1:$PORT"
done
# The hub's two settings: the same link "hub", in directories of their own.
for w in 1 "$N"; do
    link_config "$WORK/w$w/hub.toml" "0.0.0.0:$PORT" 198.19.20.1 --hub true --workers "$w" \
        "${hub_peers[@]}"
done

# ctl NS SECS ARGS...: bridge-ctl in NS under a timeout.
ctl() {
    local ns=$1 secs=$2
    shift 2
    ip netns exec "$ns" timeout -k 5 "$secs" "$BIN" "$@"
}

# daemon_pid NS CONFIG: the PID from `status --json`.
daemon_pid() {
    ctl "$1" 10 status --config "$2" --json >"$WORK/status.json" 2>/dev/null || true
    python3 "$REPORT" status-pid "$WORK/status.json"
}

for ((i = 0; i < N; i++)); do
    tb_defer ctl "${SPOKE_NS[$i]}" 20 link down --config "$WORK/s$i.toml"
    tb_run ctl "${SPOKE_NS[$i]}" 30 link up --config "$WORK/s$i.toml" >/dev/null ||
        tb_die "spoke $i did not come up"
done

# pin_rest PID...: every thread of each PID on the CPUs after the hub's N.
pin_rest() {
    local pid
    for pid in "$@"; do
        taskset -a -p -c "$N-$((CPUS - 1))" "$pid" >/dev/null 2>&1 || true
    done
}

# hub_up W: the hub with W workers; all spokes reachable through it. Prints its PID.
hub_up() {
    local w=$1 i t k
    tb_defer ctl "$NS_HUB" 20 link down --config "$WORK/w$w/hub.toml"
    tb_run ctl "$NS_HUB" 30 link up --config "$WORK/w$w/hub.toml" >/dev/null || return 1
    for ((i = 0; i < N; i++)); do
        tb_wait_until 20 "ping hub → spoke $i" \
            ip netns exec "$NS_HUB" ping -c 1 -W 1 "198.19.20.$((2 + i))" || return 1
    done
    HUB_PID=$(daemon_pid "$NS_HUB" "$WORK/w$w/hub.toml")
    [[ -n "$HUB_PID" ]] || return 1
    if ((PIN)); then
        # Worker 0 is the main thread, worker k the thread named worker-k; the
        # daemon's other threads (control, hooks, resolver) go with the rest.
        for t in /proc/"$HUB_PID"/task/*; do
            k=$(cat "$t/comm")
            if [[ "${t##*/}" == "$HUB_PID" ]]; then
                k=0
            elif [[ "$k" == worker-* ]]; then
                k=${k#worker-}
            else
                k="$N-$((CPUS - 1))"
            fi
            taskset -p -c "$k" "${t##*/}" >/dev/null
        done
        for ((i = 0; i < N; i++)); do
            pin_rest "$(daemon_pid "${SPOKE_NS[$i]}" "$WORK/s$i.toml")"
        done
    fi
}

hub_down() {
    tb_run ctl "$NS_HUB" 20 link down --config "$WORK/w$1/hub.toml" >/dev/null ||
        tb_warn "link down of the hub with $1 workers failed"
}

# flows SETTING TEST RUN KIND [IPERF3 ARGS...]: one iperf3 flow per spoke, all at once;
# the sum of what was received goes into the results.
flows() {
    local setting=$1 test=$2 run=$3 kind=$4 i sum=0 v ok=1 pids=() servers=()
    shift 4
    for ((i = 0; i < N; i++)); do
        ip netns exec "${SPOKE_NS[$i]}" timeout $((DURATION + 30)) \
            iperf3 -s -1 -B "198.19.20.$((2 + i))" -p $((5201 + i)) >/dev/null 2>&1 &
        servers+=("$!")
    done
    for ((i = 0; i < N; i++)); do
        tb_wait_until 10 "iperf3 server in spoke $i" ip netns exec "${SPOKE_NS[$i]}" \
            bash -c "ss -Hltn | grep -q '198.19.20.$((2 + i)):$((5201 + i))'" || ok=0
    done
    if ((PIN)); then
        pin_rest "${servers[@]}"
    fi
    for ((i = 0; i < N; i++)); do
        ip netns exec "$NS_HUB" timeout $((DURATION + 20)) iperf3 -c "198.19.20.$((2 + i))" \
            -p $((5201 + i)) -t "$DURATION" -J "$@" >"$WORK/flow$i.json" 2>/dev/null &
        pids+=("$!")
    done
    if ((PIN)); then
        pin_rest "${pids[@]}"
    fi
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || ok=0
    done
    for i in "${servers[@]}"; do
        tb_stop_pid "$i"
    done
    for ((i = 0; i < N; i++)); do
        if v=$(python3 "$REPORT" iperf "$WORK/flow$i.json" "$kind" 2>"$WORK/flow$i.err"); then
            sum=$(python3 -c 'import sys; print(float(sys.argv[1]) + float(sys.argv[2]))' "$sum" "$v")
        else
            tb_warn "$setting $test, spoke $i: $(cat "$WORK/flow$i.err")"
            ok=0
        fi
    done
    if ((ok)); then
        printf '%s\t%s\t%s\t%s\n' "$setting" "$test" "$run" "$sum" >>"$RESULTS"
        tb_info "$setting $test: $sum"
    else
        tb_warn "$setting $test run $run: a flow failed"
        FAILED=1
    fi
}

for ((run = 1; run <= RUNS; run++)); do
    for w in 1 "$N"; do
        setting="workers = $w"
        tb_heading "Run $run of $RUNS: $setting"
        if ! hub_up "$w"; then
            tb_warn "the hub with $w workers did not come up with every spoke reachable"
            FAILED=1
            hub_down "$w"
            continue
        fi
        before=$(tb_cpu_ticks "$HUB_PID" || echo 0)
        flows "$setting" tcp-out "$run" tcp
        flows "$setting" tcp-in "$run" tcp -R
        flows "$setting" udp-out "$run" udp-pps -u -l 64 -b 0
        flows "$setting" udp-in "$run" udp-pps -u -l 64 -b 0 -R
        after=$(tb_cpu_ticks "$HUB_PID" || echo 0)
        printf '%s\thub-cpu\t%s\t%s\n' "$setting" "$run" \
            "$(python3 -c 'import sys; print((int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3]))' \
                "$before" "$after" "$(getconf CLK_TCK)")" >>"$RESULTS"
        hub_down "$w"
    done
done

tb_heading "Results"
OUT_DIR="$REPO/target/bench"
mkdir -p "$OUT_DIR"
pinned="not pinned"
((PIN)) && pinned="the hub's workers pinned to CPUs 0-$((N - 1)), the rest to $N-$((CPUS - 1))"
TITLE="Benchmark: a hub with workers = 1 and workers = $N — $(date -u +%Y-%m-%dT%H:%MZ), \
kernel $(uname -r), $CPUS CPUs, $N spokes (one per worker), ${DURATION}s per iperf3 test, \
$RUNS runs, $pinned. Mbit/s or packets/s received, summed over the spokes; hub-cpu in CPU s."
python3 "$REPORT" runs "$RESULTS" "$OUT_DIR/workers.md" "$TITLE"
printf '\nmarkdown: %s\n' "$OUT_DIR/workers.md"
exit "$FAILED"
