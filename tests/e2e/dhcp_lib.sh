# shellcheck shell=bash
# The DL_* settings are used by the scripts that source this file.
# shellcheck disable=SC2034
#
# dhcp_lib.sh — the two-site rig shared by tests/e2e/dhcp_clients.sh and
# tests/e2e/arp_suppress.sh (source it; it sources scripts/lib/netns.sh).
#
#   LAN hosts ── br-lan [gw-a] ══ WAN 198.18.0.1/30 ↔ 198.18.0.2/30 ══ [gw-b] br-lan ── host-b
#   (dl_add_lan_host)   tb-a                                              tb-b        198.19.0.20
#
# Site A runs the local responder: [dhcp] (server 198.19.0.254, pool
# 198.19.0.100-199, router/DNS 198.19.0.1, domain branch.example, lease 1h,
# option 121, reservation 02:00:00:00:aa:01 → 198.19.0.10) and [arp]
# (respond 198.19.0.254, suppress). Site B is a plain bridge without responder.
# Neither br-lan carries an address. Lease files and control sockets live in
# the temporary directory $DL_WORK.
#
# Promises: every namespace, process and file it creates is removed on exit,
# on failure and on Ctrl-C (netns.sh traps); every wait is bounded; processes
# are stopped by PID only; only 198.18.0.0/15 addresses are used; nothing is
# added to the root namespace.
#
# Reporting: dl_ok / dl_not_ok / dl_check print TAP-style "ok - ..." and
# "not ok - ..." lines; dl_finish prints the summary and exits 1 on any failure.

# shellcheck source=scripts/lib/netns.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib/netns.sh"

DL_ROOT=$(tb_repo_root)
DL_PASSED=0
DL_FAILED=0

# Addresses of the rig.
DL_WAN_A=198.18.0.1
DL_WAN_B=198.18.0.2
DL_PORT=51901
DL_HOST_B=198.19.0.20
DL_SERVER=198.19.0.254
DL_ROUTER=198.19.0.1
DL_DOMAIN=branch.example
DL_LEASE_SECS=3600
DL_RESERVED_MAC=02:00:00:00:aa:01
DL_RESERVED_IP=198.19.0.10
# Optional fixed responder MAC for [arp] mac (empty: derived from the TAP MAC).
DL_ARP_MAC="${DL_ARP_MAC:-}"

dl_ok() {
    DL_PASSED=$((DL_PASSED + 1))
    printf 'ok - %s\n' "$*"
}

dl_not_ok() {
    DL_FAILED=$((DL_FAILED + 1))
    printf 'not ok - %s\n' "$*"
}

# dl_check DESCRIPTION CMD [ARGS...]: ok if CMD succeeds, not ok otherwise.
dl_check() {
    local desc=$1
    shift
    if "$@"; then dl_ok "$desc"; else dl_not_ok "$desc"; fi
}

# dl_fatal MESSAGE: a failure after which the rest cannot run; exits 1.
dl_fatal() {
    dl_not_ok "$*"
    printf '# %d passed, %d failed (aborted)\n' "$DL_PASSED" "$DL_FAILED"
    exit 1
}

dl_finish() {
    printf '# %d passed, %d failed\n' "$DL_PASSED" "$DL_FAILED"
    if ((DL_FAILED > 0)); then
        exit 1
    fi
    exit 0
}

# dl_init: root check, traps, tools, binary, temporary directory ($DL_WORK).
dl_init() {
    if [[ "$(id -u)" -ne 0 ]]; then
        printf 'error: %s must run as root (it creates network namespaces)\n' "$(basename "$0")" >&2
        exit 1
    fi
    tb_install_traps
    tb_need_cmd ip iproute2
    tb_need_cmd python3 python3
    tb_need_cmd tcpdump tcpdump
    tb_need_cmd unshare util-linux
    BRIDGE_CTL=${BRIDGE_CTL:-target/release/bridge-ctl}
    if [[ "$BRIDGE_CTL" != /* ]]; then
        BRIDGE_CTL="$DL_ROOT/$BRIDGE_CTL"
    fi
    [[ -x "$BRIDGE_CTL" ]] ||
        dl_fatal "bridge-ctl binary $BRIDGE_CTL is missing (run cargo build --release or set BRIDGE_CTL)"
    DL_WORK=$(mktemp -d /tmp/tapbridge-e2e-dhcp.XXXXXX)
    tb_defer rm -rf "$DL_WORK"
    chmod 700 "$DL_WORK"
}

# dl_ctl NS ARGS...: run bridge-ctl inside namespace NS, bounded.
dl_ctl() {
    local ns=$1
    shift
    timeout 30 ip netns exec "$ns" "$BRIDGE_CTL" "$@"
}

# dl_write_config NAME LISTEN PEER ENDPOINT IFNAME BRIDGE RESPONDER
# BRIDGE empty: the TAP stays unenslaved. RESPONDER 1: [dhcp] and [arp] sections.
dl_write_config() {
    local name=$1 listen=$2 peer=$3 endpoint=$4 ifname=$5 bridge=$6 responder=$7
    local f="$DL_WORK/$name.toml"
    {
        printf '[interface]\nname = "%s"\nmtu = 1500\n' "$ifname"
        [[ -n "$bridge" ]] && printf 'bridge = "%s"\n' "$bridge"
        printf '\n[tunnel]\nlisten = "%s"\npsk_file = "%s"\nkeepalive = "5s"\n' \
            "$listen" "$DL_WORK/rig.psk"
        printf '\n[[peer]]\nname = "%s"\nendpoint = "%s"\n' "$peer" "$endpoint"
        if [[ "$responder" == 1 ]]; then
            cat <<EOF

[dhcp]
enabled = true
server_address = "$DL_SERVER"
pool = "198.19.0.100-198.19.0.199"
subnet = "198.19.0.0/24"
router = "$DL_ROUTER"
dns = ["$DL_ROUTER"]
domain = "$DL_DOMAIN"
lease_time = "1h"
routes = ["198.19.64.0/18 via $DL_ROUTER"]
lease_file = "$DL_WORK/$name.leases"
[[dhcp.reservation]]
mac = "$DL_RESERVED_MAC"
ip = "$DL_RESERVED_IP"

[arp]
respond = ["$DL_SERVER"]
suppress = true
binding_timeout = "5m"
EOF
            [[ -n "$DL_ARP_MAC" ]] && printf 'mac = "%s"\n' "$DL_ARP_MAC"
        fi
        printf '\n[control]\nsocket = "%s"\n' "$DL_WORK/$name.sock"
    } >"$f"
    "$BRIDGE_CTL" check "$name" --config "$f" >/dev/null || dl_fatal "bridge-ctl check rejected $f"
}

# dl_setup_rig: namespaces $DL_GA, $DL_GB, $DL_HB, the WAN, both br-lan, host B,
# the PSK and the configs a.toml (bridged, responder), b.toml (bridged, plain)
# and a-tap.toml (site A again, TAP not enslaved, own lease file: tap_win32 style).
dl_setup_rig() {
    tb_ns_add tbe2e-gwa DL_GA
    tb_ns_add tbe2e-gwb DL_GB
    tb_ns_add tbe2e-hb DL_HB
    tb_veth "$DL_GA" wan0 "$DL_GB" wan0
    ip -n "$DL_GA" addr add "$DL_WAN_A/30" dev wan0
    ip -n "$DL_GB" addr add "$DL_WAN_B/30" dev wan0
    local gw
    for gw in "$DL_GA" "$DL_GB"; do
        ip -n "$gw" link add br-lan type bridge
        # No STP/forward delay: ports forward at once.
        ip -n "$gw" link set br-lan type bridge forward_delay 0 stp_state 0
        ip -n "$gw" link set br-lan up
    done
    tb_veth "$DL_HB" eth0 "$DL_GB" lan0
    ip -n "$DL_GB" link set lan0 master br-lan
    ip -n "$DL_HB" addr add "$DL_HOST_B/24" dev eth0
    DL_HOST_B_MAC=$(dl_mac "$DL_HB" eth0)

    (umask 077 && "$BRIDGE_CTL" genpsk >"$DL_WORK/rig.psk") || dl_fatal "bridge-ctl genpsk failed"
    dl_write_config a "$DL_WAN_A:$DL_PORT" b "$DL_WAN_B:$DL_PORT" tb-a br-lan 1
    dl_write_config b "$DL_WAN_B:$DL_PORT" a "$DL_WAN_A:$DL_PORT" tb-b br-lan 0
    dl_write_config a-tap "$DL_WAN_A:$DL_PORT" b "$DL_WAN_B:$DL_PORT" tbw-a "" 1
}

# dl_add_lan_host PREFIX VAR [MAC]: a namespace whose eth0 is cabled to A's br-lan
# (optionally with a fixed MAC); its name goes into the variable VAR.
dl_add_lan_host() {
    local prefix=$1 var=$2 mac=${3:-} port
    tb_ns_add "$prefix" "$var"
    port="p${#TB_CLEANUP[@]}"
    tb_veth "${!var}" eth0 "$DL_GA" "$port"
    if [[ -n "$mac" ]]; then
        ip -n "${!var}" link set eth0 address "$mac"
    fi
    ip -n "$DL_GA" link set "$port" master br-lan
}

# dl_mac NS IFACE: the interface's MAC, lower case.
dl_mac() {
    ip -n "$1" -o link show dev "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'
}

# dl_link_up SITE NS: start the daemon for SITE detached inside NS.
dl_link_up() {
    local site=$1 ns=$2
    tb_defer dl_ctl "$ns" link down "$site" --config "$DL_WORK/$site.toml"
    dl_ctl "$ns" link up "$site" --config "$DL_WORK/$site.toml"
}

# dl_link_down SITE NS
dl_link_down() {
    dl_ctl "$2" link down "$1" --config "$DL_WORK/$1.toml"
}

# dl_json SITE NS COMMAND EXPR: run `bridge-ctl COMMAND SITE --json` and print
# the Python expression EXPR evaluated with the parsed object as `d`.
dl_json() {
    local site=$1 ns=$2 cmd=$3 expr=$4
    dl_ctl "$ns" "$cmd" "$site" --config "$DL_WORK/$site.toml" --json |
        python3 -c "import json,sys; d=json.load(sys.stdin); print($expr)"
}

# dl_counter SITE NS KEY: one status counter.
dl_counter() {
    dl_json "$1" "$2" status "d['counters']['$3']"
}

dl_peer_up() {
    [[ "$(dl_json "$1" "$2" status "d['peers'][0]['state']")" == up ]]
}

# dl_wait_tunnel: both sites report their peer up (bounded).
dl_wait_tunnel() {
    tb_wait_until 20 "peer b up at site ${1:-a}" dl_peer_up "${1:-a}" "$DL_GA" &&
        tb_wait_until 20 "peer a up at site b" dl_peer_up b "$DL_GB"
}

# dl_daemon_pids SITE NS: the PID of SITE's daemon, the "pid" key of status --json.
dl_daemon_pids() {
    local pid
    pid=$(dl_json "$1" "$2" status "d['pid']") || return 0
    if [[ "$pid" =~ ^[0-9]+$ && "$(ip netns identify "$pid" 2>/dev/null)" == "$2" ]]; then
        printf '%s\n' "$pid"
    fi
}

# dl_capture_start NS IFACE FILE FILTER: tcpdump to FILE in the background
# (bounded to 170 s); waits until it listens. PID in $DL_CAPTURE_PID.
dl_capture_start() {
    local ns=$1 iface=$2 file=$3 filter=$4
    timeout 170 ip netns exec "$ns" tcpdump -i "$iface" -n -U -Z root -w "$file" "$filter" \
        2>"$file.log" &
    DL_CAPTURE_PID=$!
    tb_defer tb_stop_pid "$DL_CAPTURE_PID"
    tb_wait_until 10 "tcpdump listening on $iface" grep -q 'listening on' "$file.log"
}

# dl_capture_stop: stop the capture (SIGINT through timeout) and wait for it.
dl_capture_stop() {
    kill -INT "$DL_CAPTURE_PID" 2>/dev/null || true
    wait "$DL_CAPTURE_PID" 2>/dev/null || true
}

# dl_capture_count FILE FILTER: packets in FILE matching FILTER (so far).
dl_capture_count() {
    tcpdump -n -r "$1" "$2" 2>/dev/null | wc -l
}

# dl_capture_seen FILE FILTER: FILE holds a packet matching FILTER.
dl_capture_seen() {
    (($(dl_capture_count "$1" "$2") > 0))
}

# dl_capture_show FILE FILTER: the matching packets, as comment lines.
dl_capture_show() {
    tcpdump -n -e -r "$1" "$2" 2>/dev/null | sed 's/^/#   /' | head -20
}
