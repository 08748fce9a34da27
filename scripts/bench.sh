#!/usr/bin/env bash
#
# bench.sh — tapbridge against the userspace tunnels people use instead (VpnCloud,
# boringtun carrying VXLAN, OpenVPN) and kernel VXLAN, in one run.
#
#   ./scripts/bench.sh [--quick] [--duration N] [--runs N] [--breakdown] [--only NAME]...
#
# Two network namespaces joined by one veth (MTU 1500, 198.18.1.1 <-> 198.18.1.2).
# Over that same veth, one tunnel at a time:
#   tapbridge        bridge-ctl in host mode, TAP 198.19.1.1/24 <-> .2, MTU 1500
#   tapbridge-tcp    the same with tunnel.transport = "tcp" (the TCP fallback)
#   vpncloud         VpnCloud 2 (cargo install vpncloud), --type tap --mode switch
#                    --algorithm aes256, TAP 198.19.6.1/24 <-> .2, its own MTU (1413)
#   boringtun-vxlan  boringtun (cargo install boringtun-cli, userspace WireGuard,
#                    configured with wg) MTU 1420 between 198.19.4.1 and .2, and kernel
#                    VXLAN id 43 over it, 198.19.5.1/24 <-> .2, MTU 1370: a layer-2
#                    tunnel from "VXLAN over WireGuard"
#   openvpn          OpenVPN 2.6, UDP, dev tap, TLS (throwaway CA/certs), AES-256-GCM
#                    data channel, TAP 198.19.2.1/24 <-> .2, MTU 1500
#   vxlan            kernel VXLAN id 42, dstport 4789, 198.19.3.1/24 <-> .2, MTU 1450
#                    (unencrypted L2-over-UDP: the ceiling)
# For each: ping RTT on the idle tunnel (200 at 10 ms), iperf3 TCP 1 stream and 4
# streams, UDP 64-byte datagrams at full speed (packets/s received by the server),
# and the CPU seconds (utime+stime, both ends) the tunnel processes used during the
# TCP and UDP tests, and how much of the whole machine stayed idle during the
# single-stream test (room for another worker?). Prints one table with tapbridge's
# ratio to each of the others and writes it as markdown to target/bench/latest.md;
# with --runs N every cell is the median of N runs with the range, each ratio the
# median of the per-run ratios, and the RTT's ratio to the best userspace peer is
# listed per run.
#
# Options:
#   --quick         2 s per iperf3 test (default 10 s)
#   --duration N    N s per iperf3 test
#   --runs N        run the whole battery N times (default 1), tunnels in turn
#   --breakdown     after each daemon tunnel's ping, 200 more pings under `perf record`
#                   (scheduler, network and system-call tracepoints), and where the
#                   round trip went (tests/tools/rtt_breakdown.py), into
#                   target/bench/breakdown.txt. TB_BREAKDOWN_SYSCALLS=0 leaves the
#                   system-call tracepoints out: they cost a few microseconds per
#                   call and change which task the scheduler runs when
#   --only NAME     run one tunnel (see the names above); repeatable
#
# Tools missing from the machine are installed: Debian packages with apt-get, VpnCloud
# and boringtun with `cargo install` (a few minutes, once).
#
# Environment: BRIDGE_CTL=/path/to/bridge-ctl skips the build; TB_KEEP=1 keeps
# the namespaces. Exit status: 0 when every selected tunnel produced numbers,
# 1 when one failed (the others are still measured and reported), 2 on usage
# errors. Everything is bounded by timeouts and removed on exit or Ctrl-C.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/netns.sh
source "$HERE/lib/netns.sh"
# shellcheck source=scripts/lib/config.sh
source "$HERE/lib/config.sh"
REPO=$(tb_repo_root)
REPORT="$REPO/tests/tools/bench_report.py"

usage() {
    sed -n '3,46p' "$0" | sed 's/^# \{0,1\}//'
}

ALL_TUNNELS=(tapbridge tapbridge-tcp vpncloud boringtun-vxlan openvpn vxlan)

DURATION=10
RUNS=1
BREAKDOWN=0
SELECTED=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --quick)
        DURATION=2
        shift
        ;;
    --duration)
        [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || {
            printf 'error: --duration needs a positive whole number of seconds\n' >&2
            exit 2
        }
        DURATION=$2
        shift 2
        ;;
    --runs)
        [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]?$ ]] || {
            printf 'error: --runs needs a whole number from 1 to 99\n' >&2
            exit 2
        }
        RUNS=$2
        shift 2
        ;;
    --breakdown)
        BREAKDOWN=1
        shift
        ;;
    --only)
        [[ $# -ge 2 && " ${ALL_TUNNELS[*]} " == *" $2 "* ]] || {
            printf 'error: --only needs one of %s\n' "${ALL_TUNNELS[*]}" >&2
            exit 2
        }
        SELECTED+=("$2")
        shift 2
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
if [[ ${#SELECTED[@]} -eq 0 ]]; then
    SELECTED=("${ALL_TUNNELS[@]}")
fi

selected() {
    local t
    for t in "${SELECTED[@]}"; do
        [[ "$t" == "$1" ]] && return 0
    done
    return 1
}

tb_require_root
tb_install_traps

UNDER_A=198.18.1.1
UNDER_B=198.18.1.2
UNDER_MTU=1500
TAP_MTU=1500
VXLAN_MTU=1450
IPERF_PORT=5201
CLK_TCK=$(getconf CLK_TCK)
FAILED=0

tb_heading "Tools"
tb_need_cmd ip iproute2
tb_need_cmd ping iputils-ping
tb_need_cmd python3 python3
tb_need_cmd iperf3 iperf3
if selected openvpn; then
    tb_need_cmd openvpn openvpn
    tb_need_cmd openssl openssl
fi

# need_cargo_tool VAR CMD CRATE: the path of CMD (a Rust program) into VAR; when it is
# on neither PATH nor ~/.cargo/bin, `cargo install CRATE` first.
need_cargo_tool() {
    local var=$1 cmd=$2 crate=$3 path cargo
    path=$(command -v "$cmd" 2>/dev/null || true)
    if [[ -z "$path" && -x "$HOME/.cargo/bin/$cmd" ]]; then
        path=$HOME/.cargo/bin/$cmd
    fi
    if [[ -z "$path" ]]; then
        cargo=$(tb_find_cargo) || tb_die "'$cmd' is missing and cargo is not available to install $crate"
        tb_info "installing $crate with cargo install (for $cmd; a few minutes, once)"
        tb_run timeout 1200 "$cargo" install --quiet "$crate" ||
            tb_die "cargo install $crate failed"
        path=$HOME/.cargo/bin/$cmd
        [[ -x "$path" ]] || tb_die "cargo installed $crate but $path is missing"
    fi
    printf -v "$var" '%s' "$path"
}
if selected vpncloud; then
    need_cargo_tool VPNCLOUD vpncloud vpncloud
    tb_info "$("$VPNCLOUD" --version 2>&1 | head -n1)"
fi
if selected boringtun-vxlan; then
    need_cargo_tool BORINGTUN boringtun-cli boringtun-cli
    tb_need_cmd wg wireguard-tools
    tb_info "$("$BORINGTUN" --version 2>&1 | head -n1), $(wg --version | cut -d' ' -f1-2)"
fi
if [[ "$BREAKDOWN" -eq 1 ]]; then
    tb_need_cmd perf linux-perf
fi
tb_info "iperf3 $(iperf3 --version | head -n1 | cut -d' ' -f2)"

if selected tapbridge || selected tapbridge-tcp; then
    tb_bridge_ctl BIN
fi

WORK=$(mktemp -d /tmp/tapbridge-bench.XXXXXX)
tb_defer rm -rf "$WORK"
chmod 700 "$WORK"
# One results file per run (run-N.tsv), listed in order for the report.
RESULT_FILES=()
RESULTS=""

# result TUNNEL METRIC VALUE: into this run's results.
result() {
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"
}

tb_heading "Rig: two namespaces, one veth (MTU $UNDER_MTU), suffix $TB_SUFFIX"
tb_ns_add tbbench-a NS_A
tb_ns_add tbbench-b NS_B
tb_veth "$NS_A" veth0 "$NS_B" veth0
ip -n "$NS_A" link set veth0 mtu "$UNDER_MTU"
ip -n "$NS_B" link set veth0 mtu "$UNDER_MTU"
ip -n "$NS_A" addr add "$UNDER_A/24" dev veth0
ip -n "$NS_B" addr add "$UNDER_B/24" dev veth0
tb_wait_until 10 "underlay ping" ip netns exec "$NS_A" ping -c 1 -W 1 "$UNDER_B" ||
    tb_die "the veth underlay between $NS_A and $NS_B does not carry packets"
tb_info "$NS_A veth0 $UNDER_A  <->  $NS_B veth0 $UNDER_B"

# OpenVPN processes we started (both ends).
OPENVPN_PIDS=()
# PIDs whose CPU time is charged to the tunnel under test (empty for VXLAN).
TUNNEL_PIDS=()

cpu_ticks_total() {
    local pid total=0 t
    for pid in "${TUNNEL_PIDS[@]}"; do
        t=$(tb_cpu_ticks "$pid") || t=0
        total=$((total + t))
    done
    printf '%s\n' "$total"
}

# cpu_seconds BEFORE AFTER
cpu_seconds() {
    python3 -c 'import sys; print(f"{(int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3]):.2f}")' \
        "$1" "$2" "$CLK_TCK"
}

# iperf_run TUNNEL TEST SERVER_IP [IPERF3 CLIENT ARGS...]: one bounded iperf3
# test; its JSON lands in $WORK/TUNNEL-TEST.json. Returns non-zero on failure.
iperf_run() {
    local tunnel=$1 test=$2 server=$3 out
    shift 3
    out="$WORK/$tunnel-$test.json"
    ip netns exec "$NS_B" timeout $((DURATION + 30)) \
        iperf3 -s -1 -B "$server" -p "$IPERF_PORT" >"$WORK/$tunnel-$test.server.log" 2>&1 &
    # No deferred kill: whatever still runs in NS_B dies with the namespace.
    local spid=$!
    if ! tb_wait_until 10 "iperf3 server on $server:$IPERF_PORT" server_listening "$server"; then
        tb_stop_pid "$spid"
        return 1
    fi
    local rc=0
    tb_run ip netns exec "$NS_A" timeout $((DURATION + 20)) \
        iperf3 -c "$server" -p "$IPERF_PORT" -t "$DURATION" -J "$@" >"$out" 2>"$WORK/$tunnel-$test.err" || rc=$?
    tb_stop_pid "$spid"
    if [[ $rc -ne 0 ]]; then
        tb_warn "$tunnel: iperf3 $test failed (exit $rc): $(python3 "$REPORT" iperf "$out" tcp 2>&1 >/dev/null || true)"
        return 1
    fi
}

# server_listening SERVER_IP: true once the iperf3 server listens.
server_listening() {
    ip netns exec "$NS_B" ss -Hltn "sport = :$IPERF_PORT" | grep -qF "$1:$IPERF_PORT"
}

# The tunnel under test: its processes at site A and site B (empty for VXLAN), and
# the device each reads and writes, as the kernel's net tracepoints name it.
PID_A=""
PID_B=""
DEV_A=""
DEV_B=""
BREAKDOWN_OUT=""

# thread_ids PID: the IDs of PID's threads, comma-separated.
thread_ids() {
    local t ids=()
    for t in "/proc/$1/task/"*; do
        [[ -e "$t" ]] && ids+=("${t##*/}")
    done
    local IFS=,
    printf '%s\n' "${ids[*]}"
}

# breakdown TUNNEL SERVER_IP (with --breakdown, for a tunnel run by processes): 200
# more pings under `perf record`, then where each round trip went, appended to
# $BREAKDOWN_OUT.
breakdown() {
    local tunnel=$1 server=$2 tids_a tids_b filter="" t
    [[ "$BREAKDOWN" -eq 1 && -n "$PID_A" && -n "$PID_B" ]] || return 0
    tids_a=$(thread_ids "$PID_A")
    tids_b=$(thread_ids "$PID_B")
    # System calls of the two daemons only; the other events machine-wide.
    for t in ${tids_a//,/ } ${tids_b//,/ }; do
        filter+="${filter:+ || }common_pid == $t"
    done
    local syscalls=(-e raw_syscalls:sys_enter --filter "$filter")
    [[ "${TB_BREAKDOWN_SYSCALLS:-1}" == "0" ]] && syscalls=()
    tb_info "ping, 200 x 10 ms, under perf record (--breakdown)"
    if ! tb_run timeout 60 perf record -q -a -o "$WORK/$tunnel.perf" \
        -e sched:sched_wakeup -e sched:sched_switch -e net:net_dev_xmit \
        -e net:netif_receive_skb "${syscalls[@]}" -- \
        ip netns exec "$NS_A" ping -q -c 200 -i 0.01 -W 2 "$server" >"$WORK/$tunnel-trace-ping.txt" 2>&1; then
        tb_warn "$tunnel: perf record failed; no breakdown"
        return 0
    fi
    perf script -i "$WORK/$tunnel.perf" -F comm,pid,tid,cpu,time,event,trace \
        >"$WORK/$tunnel.trace" 2>/dev/null || true
    {
        python3 "$REPO/tests/tools/rtt_breakdown.py" "$WORK/$tunnel.trace" \
            --a "$tids_a" --b "$tids_b" --dev-a "$DEV_A" --dev-b "$DEV_B" --under veth0 \
            --label "$tunnel, run $RUN, ping under perf: $(python3 "$REPORT" ping \
                "$WORK/$tunnel-trace-ping.txt" 2>/dev/null || echo '?') ms" 2>&1 || true
        echo
    } | tee -a "$BREAKDOWN_OUT"
    rm -f "$WORK/$tunnel.perf" "$WORK/$tunnel.trace"
}

# measure TUNNEL SERVER_IP: the whole battery, results into $RESULTS.
measure() {
    local tunnel=$1 server=$2 before after idle_before v bad=0
    tb_info "waiting for $server to answer through $tunnel"
    if ! tb_wait_until 20 "$tunnel overlay ping to $server" \
        ip netns exec "$NS_A" ping -c 1 -W 1 "$server"; then
        tb_warn "$tunnel: no ping through the tunnel; skipping its measurements"
        return 1
    fi

    # First, on the idle tunnel: the round trip of a lone packet.
    tb_info "ping, 200 x 10 ms"
    if tb_run ip netns exec "$NS_A" timeout 30 ping -q -c 200 -i 0.01 -W 2 "$server" \
        >"$WORK/$tunnel-ping.txt" 2>&1; then
        v=$(python3 "$REPORT" ping "$WORK/$tunnel-ping.txt") && result "$tunnel" rtt "$v"
    else
        result "$tunnel" rtt failed
        bad=1
    fi
    breakdown "$tunnel" "$server"

    tb_info "TCP, 1 stream, ${DURATION}s"
    before=$(cpu_ticks_total)
    idle_before=$(head -n1 /proc/stat)
    if iperf_run "$tunnel" tcp1 "$server"; then
        after=$(cpu_ticks_total)
        # Machine-wide: is any core left over for another worker?
        v=$(python3 "$REPORT" idle "$idle_before" "$(head -n1 /proc/stat)") &&
            result "$tunnel" idle_tcp1 "$v"
        v=$(python3 "$REPORT" iperf "$WORK/$tunnel-tcp1.json" tcp) && result "$tunnel" tcp1 "$v"
        if [[ ${#TUNNEL_PIDS[@]} -gt 0 ]]; then
            result "$tunnel" cpu_tcp1 "$(cpu_seconds "$before" "$after")"
        fi
    else
        result "$tunnel" tcp1 failed
        bad=1
    fi

    tb_info "TCP, 4 streams, ${DURATION}s"
    if iperf_run "$tunnel" tcp4 "$server" -P 4; then
        v=$(python3 "$REPORT" iperf "$WORK/$tunnel-tcp4.json" tcp) && result "$tunnel" tcp4 "$v"
    else
        result "$tunnel" tcp4 failed
        bad=1
    fi

    tb_info "UDP, 64-byte datagrams, unlimited rate, ${DURATION}s"
    before=$(cpu_ticks_total)
    if iperf_run "$tunnel" udp "$server" -u -l 64 -b 0; then
        after=$(cpu_ticks_total)
        v=$(python3 "$REPORT" iperf "$WORK/$tunnel-udp.json" udp-pps) && result "$tunnel" udp_pps "$v"
        v=$(python3 "$REPORT" iperf "$WORK/$tunnel-udp.json" udp-loss) && result "$tunnel" udp_loss "$v"
        if [[ ${#TUNNEL_PIDS[@]} -gt 0 ]]; then
            result "$tunnel" cpu_udp "$(cpu_seconds "$before" "$after")"
        fi
    else
        result "$tunnel" udp_pps failed
        bad=1
    fi

    if [[ ${#TUNNEL_PIDS[@]} -eq 0 ]]; then
        result "$tunnel" cpu_tcp1 "n/a"
        result "$tunnel" cpu_udp "n/a"
    fi
    return "$bad"
}

# ---------------------------------------------------------------- tapbridge

# tapbridge_pid SITE NS: the daemon's PID, the "pid" key of `status --json`.
tapbridge_pid() {
    local site=$1 ns=$2 pid=""
    if ip netns exec "$ns" timeout 10 "$BIN" status "$site" --config "$WORK/$site.toml" --json \
        >"$WORK/$site-status.json" 2>/dev/null; then
        pid=$(python3 "$REPORT" status-pid "$WORK/$site-status.json")
    fi
    printf '%s\n' "$pid"
}

# tapbridge_config SITE ADDRESS LISTEN PEER ENDPOINT TRANSPORT (the shared writer,
# scripts/lib/config.sh)
tapbridge_config() {
    tb_link_config "$WORK/$1.toml" \
        --comment "tapbridge benchmark site \"$1\" (generated by scripts/bench.sh)" \
        --ifname tb0 --mtu "$TAP_MTU" --address "$2" \
        --listen "$3" --psk "$WORK/bench.psk" --wan-mtu "$UNDER_MTU" \
        --peer "$4=$5" --transport "$6" \
        --dhcp enabled=false --dhcp server_address=198.19.1.254 \
        --dhcp pool=198.19.1.100-198.19.1.199 --dhcp subnet=198.19.1.0/24 \
        --dhcp "lease_file=$WORK/$1.leases" \
        --socket "$WORK/$1.sock"
}

bench_tapbridge() {
    tapbridge_run tapbridge udp
}

bench_tapbridge-tcp() {
    tapbridge_run tapbridge-tcp tcp
}

# tapbridge_run TUNNEL TRANSPORT: both sites up with tunnel.transport = TRANSPORT,
# then the battery.
tapbridge_run() {
    local tunnel=$1 transport=$2
    tb_heading "$tunnel (host mode, MTU $TAP_MTU, transport $transport)"
    if ! (umask 077 && "$BIN" genpsk >"$WORK/bench.psk") || [[ ! -s "$WORK/bench.psk" ]]; then
        tb_warn "$tunnel: bridge-ctl genpsk printed no key"
        return 1
    fi
    tapbridge_config a 198.19.1.1/24 "$UNDER_A:51901" b "$UNDER_B:51901" "$transport"
    tapbridge_config b 198.19.1.2/24 "$UNDER_B:51901" a "$UNDER_A:51901" "$transport"
    local site ns pid
    for site in a b; do
        ns=$NS_A
        [[ "$site" == "b" ]] && ns=$NS_B
        tb_defer ip netns exec "$ns" timeout 20 "$BIN" link down "$site" --config "$WORK/$site.toml"
        if ! tb_run ip netns exec "$ns" timeout 30 "$BIN" link up "$site" --config "$WORK/$site.toml"; then
            tb_warn "$tunnel: 'bridge-ctl link up $site' failed; no $tunnel numbers"
            return 1
        fi
        pid=$(tapbridge_pid "$site" "$ns")
        if [[ -z "$pid" ]]; then
            tb_warn "$tunnel: cannot find the daemon PID for site $site; CPU not measured"
        else
            TUNNEL_PIDS+=("$pid")
        fi
        if [[ "$site" == "a" ]]; then PID_A=$pid; else PID_B=$pid; fi
    done
    DEV_A=tb0
    DEV_B=tb0
    tb_info "daemon PIDs: ${TUNNEL_PIDS[*]:-unknown}"
    result "$tunnel" mtu "$TAP_MTU"
    measure "$tunnel" 198.19.1.2
}

teardown_tapbridge-tcp() {
    teardown_tapbridge
}

teardown_tapbridge() {
    local site ns
    for site in a b; do
        ns=$NS_A
        [[ "$site" == "b" ]] && ns=$NS_B
        [[ -f "$WORK/$site.toml" ]] || continue
        tb_run ip netns exec "$ns" timeout 20 "$BIN" link down "$site" --config "$WORK/$site.toml" \
            >/dev/null || tb_warn "tapbridge: link down $site failed"
    done
}

# ---------------------------------------------------------------- openvpn

# Throwaway PKI: an EC P-256 CA, a server and a client certificate, valid 1 day.
openvpn_pki() {
    local d=$WORK/pki name eku
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj /CN=tapbridge-bench-ca -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
    for name in server client; do
        eku=serverAuth
        [[ "$name" == "client" ]] && eku=clientAuth
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj "/CN=bench-$name" -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyAgreement\nextendedKeyUsage=%s\n' \
            "$eku" >"$d/$name.ext"
        openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
            -days 1 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
    done
    chmod 600 "$d"/*.key
}

# openvpn_start NS ROLE LOCAL REMOTE TAP_ADDR: one p2p TLS endpoint in NS.
# Settings, chosen to match tapbridge: TAP MTU 1500 carrying full 1514-byte
# frames (--mssfix 0: no TCP MSS clamping, tapbridge does none either), outer
# packets larger than the underlay are IP-fragmented (--mtu-disc no; tapbridge
# fragments in its own protocol), AES-256-GCM only, 4 MiB socket buffers,
# txqueuelen 1000, --fast-io, no compression, no DCO (OpenVPN DCO has no tap).
openvpn_start() {
    local ns=$1 role=$2 local_ip=$3 remote_ip=$4 addr=$5 d=$WORK/pki
    local args=(
        --dev tap0 --dev-type tap --proto udp
        --local "$local_ip" --lport 1194 --remote "$remote_ip" --rport 1194
        --ifconfig "$addr" 255.255.255.0
        --tun-mtu "$TAP_MTU" --mssfix 0 --mtu-disc no
        --data-ciphers AES-256-GCM --data-ciphers-fallback AES-256-GCM
        --tls-version-min 1.2 --ca "$d/ca.crt"
        --sndbuf 4194304 --rcvbuf 4194304 --txqueuelen 1000 --fast-io
        --disable-dco --ping 10 --ping-restart 60
        --script-security 1 --verb 3
        --writepid "$WORK/openvpn-$role.pid" --log "$WORK/openvpn-$role.log"
    )
    if [[ "$role" == "server" ]]; then
        args+=(--tls-server --dh none --cert "$d/server.crt" --key "$d/server.key" --remote-cert-tls client)
    else
        args+=(--tls-client --cert "$d/client.crt" --key "$d/client.key" --remote-cert-tls server)
    fi
    # Stopped by teardown_openvpn, or with its namespace on exit.
    ip netns exec "$ns" openvpn "${args[@]}" >/dev/null 2>&1 &
    OPENVPN_PIDS+=("$!")
}

openvpn_ready() {
    grep -q 'Initialization Sequence Completed' "$WORK/openvpn-$1.log"
}

bench_openvpn() {
    tb_heading "OpenVPN $(openvpn --version | head -n1 | cut -d' ' -f2) (tap, UDP, TLS, AES-256-GCM, MTU $TAP_MTU)"
    if ! openvpn_pki; then
        tb_warn "openvpn: generating the throwaway certificates failed"
        return 1
    fi
    openvpn_start "$NS_B" server "$UNDER_B" "$UNDER_A" 198.19.2.2
    openvpn_start "$NS_A" client "$UNDER_A" "$UNDER_B" 198.19.2.1
    local role
    for role in server client; do
        if ! tb_wait_until 30 "openvpn $role initialised" openvpn_ready "$role"; then
            tb_warn "openvpn: $role did not come up; last log lines:"
            tail -n 5 "$WORK/openvpn-$role.log" >&2 || true
            return 1
        fi
    done
    tb_info "$(grep -m1 -o "Data Channel: cipher '[^']*'" "$WORK/openvpn-client.log" || echo 'data channel cipher: see log')"
    TUNNEL_PIDS=("${OPENVPN_PIDS[@]}")
    PID_B=${OPENVPN_PIDS[0]}
    PID_A=${OPENVPN_PIDS[1]}
    DEV_A=tap0
    DEV_B=tap0
    result openvpn mtu "$(ip -n "$NS_A" -o link show tap0 | grep -o 'mtu [0-9]*' | cut -d' ' -f2)"
    measure openvpn 198.19.2.2
}

teardown_openvpn() {
    local pid
    for pid in "${OPENVPN_PIDS[@]}"; do
        tb_stop_pid "$pid"
    done
    OPENVPN_PIDS=()
}

# ---------------------------------------------------------------- vpncloud

VPNCLOUD_PIDS=()

# VpnCloud 2 in switch mode over a TAP, AES-256-GCM only, no port forwarding
# (UPnP), no beacons or statistics. It learns its own address from the default
# route, so each namespace gets one towards the other for this run (nothing
# answers beyond the veth); its --ip sets a wrong address on this kernel, so the
# overlay address is added with ip.
bench_vpncloud() {
    tb_heading "VpnCloud ($("$VPNCLOUD" --version 2>&1 | head -n1); tap, switch, AES-256-GCM)"
    ip -n "$NS_A" route add default via "$UNDER_B" dev veth0
    ip -n "$NS_B" route add default via "$UNDER_A" dev veth0
    local ns local_ip peer_ip addr site
    for site in b a; do
        if [[ "$site" == "a" ]]; then
            ns=$NS_A local_ip=$UNDER_A peer_ip=$UNDER_B addr=198.19.6.1/24
        else
            ns=$NS_B local_ip=$UNDER_B peer_ip=$UNDER_A addr=198.19.6.2/24
        fi
        # Stopped by teardown_vpncloud, or with its namespace on exit.
        PASSWORD=tapbridge-bench ip netns exec "$ns" "$VPNCLOUD" --type tap --mode switch \
            --algorithm aes256 --device vc0 --listen "$local_ip:3210" --peer "$peer_ip:3210" \
            --no-port-forwarding --log-file "$WORK/vpncloud-$site.log" >/dev/null 2>&1 &
        VPNCLOUD_PIDS+=("$!")
        if ! tb_wait_until 10 "VpnCloud's device in $ns" ip -n "$ns" link show vc0; then
            return 1
        fi
        ip -n "$ns" addr add "$addr" dev vc0
        ip -n "$ns" link set vc0 up
    done
    PID_B=${VPNCLOUD_PIDS[0]}
    PID_A=${VPNCLOUD_PIDS[1]}
    DEV_A=vc0
    DEV_B=vc0
    TUNNEL_PIDS=("${VPNCLOUD_PIDS[@]}")
    result vpncloud mtu "$(ip -n "$NS_A" -o link show vc0 | grep -o 'mtu [0-9]*' | cut -d' ' -f2)"
    measure vpncloud 198.19.6.2
}

teardown_vpncloud() {
    local pid
    for pid in "${VPNCLOUD_PIDS[@]}"; do
        tb_stop_pid "$pid"
    done
    VPNCLOUD_PIDS=()
    ip -n "$NS_A" route del default 2>/dev/null || true
    ip -n "$NS_B" route del default 2>/dev/null || true
}

# ---------------------------------------------------------------- boringtun + vxlan

BORINGTUN_PIDS=()
# WireGuard's control sockets live in /var/run/wireguard, shared by every
# namespace: the interface names are unique to this run.
WG_A="tbwga$TB_SUFFIX"
WG_B="tbwgb$TB_SUFFIX"

# boringtun (userspace WireGuard, its default threads) at both ends, set up with
# wg; WireGuard's MTU 1420; kernel VXLAN id 43 between the WireGuard addresses
# carries the layer 2 (MTU 1420 - 50).
bench_boringtun-vxlan() {
    tb_heading "boringtun $("$BORINGTUN" --version 2>&1 | cut -d' ' -f2) + kernel VXLAN (WireGuard MTU 1420, VXLAN MTU 1370)"
    local site ns dev key_a key_b
    key_a=$(wg genkey)
    key_b=$(wg genkey)
    for site in a b; do
        if [[ "$site" == "a" ]]; then ns=$NS_A dev=$WG_A; else ns=$NS_B dev=$WG_B; fi
        # Stopped by teardown_boringtun-vxlan, or with its namespace on exit.
        ip netns exec "$ns" "$BORINGTUN" "$dev" --foreground --disable-drop-privileges \
            --log "$WORK/boringtun-$site.log" >/dev/null 2>&1 &
        BORINGTUN_PIDS+=("$!")
        if ! tb_wait_until 10 "boringtun's $dev in $ns" test -S "/var/run/wireguard/$dev.sock"; then
            return 1
        fi
    done
    ip netns exec "$NS_A" wg set "$WG_A" private-key <(printf '%s\n' "$key_a") listen-port 51820 \
        peer "$(printf '%s\n' "$key_b" | wg pubkey)" allowed-ips 198.19.4.2/32 endpoint "$UNDER_B:51820"
    ip netns exec "$NS_B" wg set "$WG_B" private-key <(printf '%s\n' "$key_b") listen-port 51820 \
        peer "$(printf '%s\n' "$key_a" | wg pubkey)" allowed-ips 198.19.4.1/32 endpoint "$UNDER_A:51820"
    ip -n "$NS_A" addr add 198.19.4.1/24 dev "$WG_A"
    ip -n "$NS_B" addr add 198.19.4.2/24 dev "$WG_B"
    ip -n "$NS_A" link set "$WG_A" mtu 1420 up
    ip -n "$NS_B" link set "$WG_B" mtu 1420 up
    ip -n "$NS_A" link add vx43 type vxlan id 43 remote 198.19.4.2 local 198.19.4.1 dstport 4789 dev "$WG_A"
    ip -n "$NS_B" link add vx43 type vxlan id 43 remote 198.19.4.1 local 198.19.4.2 dstport 4789 dev "$WG_B"
    for ns in "$NS_A" "$NS_B"; do
        ip -n "$ns" link set vx43 mtu 1370 up
    done
    ip -n "$NS_A" addr add 198.19.5.1/24 dev vx43
    ip -n "$NS_B" addr add 198.19.5.2/24 dev vx43
    PID_A=${BORINGTUN_PIDS[0]}
    PID_B=${BORINGTUN_PIDS[1]}
    DEV_A=$WG_A
    DEV_B=$WG_B
    TUNNEL_PIDS=("${BORINGTUN_PIDS[@]}")
    result boringtun-vxlan mtu 1370
    measure boringtun-vxlan 198.19.5.2
}

teardown_boringtun-vxlan() {
    local pid
    ip -n "$NS_A" link del vx43 2>/dev/null || true
    ip -n "$NS_B" link del vx43 2>/dev/null || true
    for pid in "${BORINGTUN_PIDS[@]}"; do
        tb_stop_pid "$pid"
    done
    BORINGTUN_PIDS=()
    rm -f "/var/run/wireguard/$WG_A.sock" "/var/run/wireguard/$WG_B.sock"
}

# ---------------------------------------------------------------- vxlan

bench_vxlan() {
    tb_heading "kernel VXLAN (id 42, dstport 4789, MTU $VXLAN_MTU)"
    ip -n "$NS_A" link add vx42 type vxlan id 42 remote "$UNDER_B" local "$UNDER_A" dstport 4789 dev veth0
    ip -n "$NS_B" link add vx42 type vxlan id 42 remote "$UNDER_A" local "$UNDER_B" dstport 4789 dev veth0
    ip -n "$NS_A" link set vx42 mtu "$VXLAN_MTU"
    ip -n "$NS_B" link set vx42 mtu "$VXLAN_MTU"
    ip -n "$NS_A" addr add 198.19.3.1/24 dev vx42
    ip -n "$NS_B" addr add 198.19.3.2/24 dev vx42
    ip -n "$NS_A" link set vx42 up
    ip -n "$NS_B" link set vx42 up
    TUNNEL_PIDS=()
    result vxlan mtu "$VXLAN_MTU"
    measure vxlan 198.19.3.2
}

teardown_vxlan() {
    ip -n "$NS_A" link del vx42 2>/dev/null || true
    ip -n "$NS_B" link del vx42 2>/dev/null || true
}

# ---------------------------------------------------------------- run

OUT_DIR="$REPO/target/bench"
mkdir -p "$OUT_DIR"
if [[ "$BREAKDOWN" -eq 1 ]]; then
    BREAKDOWN_OUT="$OUT_DIR/breakdown.txt"
    printf 'Where a ping round trip goes, %s, kernel %s, %s CPUs (tests/tools/rtt_breakdown.py)\n\n' \
        "$(date -u +%Y-%m-%dT%H:%MZ)" "$(uname -r)" "$(nproc)" >"$BREAKDOWN_OUT"
fi

for ((RUN = 1; RUN <= RUNS; RUN++)); do
    RESULTS="$WORK/run-$RUN.tsv"
    : >"$RESULTS"
    RESULT_FILES+=("$RESULTS")
    [[ "$RUNS" -eq 1 ]] || tb_heading "Run $RUN of $RUNS"
    for tunnel in "${ALL_TUNNELS[@]}"; do
        selected "$tunnel" || continue
        TUNNEL_PIDS=()
        PID_A="" PID_B="" DEV_A="" DEV_B=""
        if ! "bench_$tunnel"; then
            FAILED=1
            if ! grep -q "^$tunnel"$'\t' "$RESULTS"; then
                result "$tunnel" tcp1 failed
            fi
        fi
        "teardown_$tunnel"
    done
done

tb_heading "Results (${DURATION}s per iperf3 test, $RUNS run(s), $(nproc) CPUs)"
TITLE="Benchmark: tapbridge vs VpnCloud, boringtun + VXLAN, OpenVPN (tap) and kernel VXLAN — \
$(date -u +%Y-%m-%dT%H:%MZ), kernel $(uname -r), $(nproc) CPUs, ${DURATION}s per iperf3 test, \
$RUNS run(s) (median (min–max)), veth underlay MTU $UNDER_MTU."
NOTES="VpnCloud: tap, switch mode, aes256. boringtun: default threads, WireGuard MTU 1420, kernel \
VXLAN over it. OpenVPN: UDP, dev tap, TLS p2p, AES-256-GCM, tun-mtu 1500, mssfix 0, mtu-disc no, \
fast-io, 4 MiB socket buffers, no DCO. CPU = utime+stime of the tunnel processes at both ends \
(kernel VXLAN: n/a; boringtun's excludes the VXLAN above it). Ratios are tapbridge over the other, \
the median of the per-run ratios; above 1 favours tapbridge for throughput/packets, below 1 for RTT/CPU."
python3 "$REPORT" report "$OUT_DIR/latest.md" "$TITLE" "" "$NOTES" -- "${RESULT_FILES[@]}"
if [[ -n "${SUDO_USER:-}" && "$SUDO_USER" != "root" ]]; then
    chown -R "$SUDO_USER" "$OUT_DIR" 2>/dev/null || true
fi
printf '\nmarkdown: %s\n' "$OUT_DIR/latest.md"

if [[ "$FAILED" -ne 0 ]]; then
    printf 'error: at least one tunnel failed to produce numbers (see warnings above)\n' >&2
    exit 1
fi
