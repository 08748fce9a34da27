#!/usr/bin/env bash
#
# bench.sh — tapbridge vs OpenVPN (tap mode) vs kernel VXLAN, in one run.
#
#   ./scripts/bench.sh [--quick] [--duration N] [--only tapbridge|openvpn|vxlan]
#
# Two network namespaces joined by one veth (MTU 1500, 198.18.1.1 <-> 198.18.1.2).
# Over that same veth, one tunnel at a time:
#   tapbridge  bridge-ctl in host mode, TAP 198.19.1.1/24 <-> .2, MTU 1500
#   tapbridge-tcp  the same with tunnel.transport = "tcp" (the TCP fallback)
#   openvpn    OpenVPN 2.6, UDP, dev tap, TLS (throwaway CA/certs), AES-256-GCM
#              data channel, TAP 198.19.2.1/24 <-> .2, MTU 1500
#   vxlan      kernel VXLAN id 42, dstport 4789, 198.19.3.1/24 <-> .2, MTU 1450
#              (unencrypted L2-over-UDP: the ceiling)
# For each: iperf3 TCP 1 stream and 4 streams, UDP 64-byte datagrams at full
# speed (packets/s received by the server), ping RTT (100 at 10 ms), and the
# CPU seconds (utime+stime, both ends) the tunnel processes used during the
# TCP and UDP tests, and how much of the whole machine stayed idle during the
# single-stream test (room for another worker?). Prints one table with the ratios tapbridge/openvpn and
# tapbridge/vxlan and writes it as markdown to target/bench/latest.md.
#
# Options:
#   --quick         2 s per iperf3 test (default 10 s)
#   --duration N    N s per iperf3 test
#   --only NAME     run one tunnel (tapbridge, tapbridge-tcp, openvpn or vxlan);
#                   repeatable
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
    sed -n '3,30p' "$0" | sed 's/^# \{0,1\}//'
}

DURATION=10
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
    --only)
        [[ $# -ge 2 && "$2" =~ ^(tapbridge|tapbridge-tcp|openvpn|vxlan)$ ]] || {
            printf 'error: --only needs one of tapbridge, tapbridge-tcp, openvpn, vxlan\n' >&2
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
    SELECTED=(tapbridge tapbridge-tcp openvpn vxlan)
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
tb_info "iperf3 $(iperf3 --version | head -n1 | cut -d' ' -f2)"

if selected tapbridge || selected tapbridge-tcp; then
    tb_bridge_ctl BIN
fi

WORK=$(mktemp -d /tmp/tapbridge-bench.XXXXXX)
tb_defer rm -rf "$WORK"
chmod 700 "$WORK"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# result TUNNEL METRIC VALUE
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

# measure TUNNEL SERVER_IP: the whole battery, results into $RESULTS.
measure() {
    local tunnel=$1 server=$2 before after idle_before v bad=0
    tb_info "waiting for $server to answer through $tunnel"
    if ! tb_wait_until 20 "$tunnel overlay ping to $server" \
        ip netns exec "$NS_A" ping -c 1 -W 1 "$server"; then
        tb_warn "$tunnel: no ping through the tunnel; skipping its measurements"
        return 1
    fi

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

    tb_info "ping, 100 x 10 ms"
    if tb_run ip netns exec "$NS_A" timeout 30 ping -q -c 100 -i 0.01 -W 2 "$server" \
        >"$WORK/$tunnel-ping.txt" 2>&1; then
        v=$(python3 "$REPORT" ping "$WORK/$tunnel-ping.txt") && result "$tunnel" rtt "$v"
    else
        result "$tunnel" rtt failed
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
    done
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

for tunnel in tapbridge tapbridge-tcp openvpn vxlan; do
    selected "$tunnel" || continue
    TUNNEL_PIDS=()
    if ! "bench_$tunnel"; then
        FAILED=1
        if ! grep -q "^$tunnel"$'\t' "$RESULTS"; then
            result "$tunnel" tcp1 failed
        bad=1
        fi
    fi
    "teardown_$tunnel"
done

tb_heading "Results (${DURATION}s per iperf3 test, one run, $(nproc) CPUs)"
OUT_DIR="$REPO/target/bench"
mkdir -p "$OUT_DIR"
TITLE="Benchmark: tapbridge vs OpenVPN (tap) vs kernel VXLAN — $(date -u +%Y-%m-%dT%H:%MZ), \
kernel $(uname -r), $(nproc) CPUs, ${DURATION}s per iperf3 test, veth underlay MTU $UNDER_MTU."
NOTES="OpenVPN: UDP, dev tap, TLS p2p, AES-256-GCM, tun-mtu 1500, mssfix 0, mtu-disc no, \
fast-io, 4 MiB socket buffers, no DCO. CPU = utime+stime of the tunnel processes at both ends \
(VXLAN runs in the kernel: n/a). Ratios above 1 favour tapbridge for throughput/packets, below 1 for RTT/CPU."
python3 "$REPORT" report "$RESULTS" "$OUT_DIR/latest.md" "$TITLE" "" "$NOTES"
if [[ -n "${SUDO_USER:-}" && "$SUDO_USER" != "root" ]]; then
    chown -R "$SUDO_USER" "$OUT_DIR" 2>/dev/null || true
fi
printf '\nmarkdown: %s\n' "$OUT_DIR/latest.md"

if [[ "$FAILED" -ne 0 ]]; then
    printf 'error: at least one tunnel failed to produce numbers (see warnings above)\n' >&2
    exit 1
fi
