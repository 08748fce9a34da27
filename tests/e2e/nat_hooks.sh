#!/bin/bash
#
# End-to-end test of the shipped NAT hooks appliance/hooks/nat-up.sh and nat-down.sh
# (run as root).
#
# For each backend (nft, iptables via the `iptables` alternative, iptables-legacy; the
# last is skipped only when the kernel's configuration says it was built without the
# legacy tables, and fails otherwise) it builds three network namespaces of its own,
# uniquely named and always removed on exit:
#
#   lanhost (eth0 198.19.77.10/24, MTU 1500)
#      |  veth
#   gateway (tb-e2e 198.19.77.1/24, MTU 1400: stands in for the TAP;
#      |     wan0   198.18.77.1/24, forwarding on)
#      |  veth
#   server  (eth0 198.18.77.2/24, no route back to 198.19.77.0/24)
#
# and checks: nat-up.sh succeeds; the lan host reaches the server only thanks to
# MASQUERADE (the server sees the gateway's WAN address); the SYN-ACK's MSS was clamped
# to the overlay MTU; up twice gives an identical rule set; down removes all of its
# rules and leaves the unrelated rules inserted beforehand untouched; down without up
# exits 0; bad settings exit 2 with one sentence. Reports through tests/e2e/lib.sh.

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/tools/kernel_config.sh
source "$E2E_ROOT/tests/tools/kernel_config.sh"

UP="$E2E_ROOT/appliance/hooks/nat-up.sh"
DOWN="$E2E_ROOT/appliance/hooks/nat-down.sh"

e2e_init_no_bridge_ctl
tb_need_cmd nft nftables
tb_need_cmd iptables iptables
tb_need_cmd iptables-legacy iptables
tb_need_cmd ip iproute2
tb_need_cmd python3 python3

# ------------------------------------------------------------------ topology

GW="" LAN="" SRV=""

build() { # build SUFFIX
    tb_ns_add "tbnat-gw-$1" GW
    tb_ns_add "tbnat-lan-$1" LAN
    tb_ns_add "tbnat-srv-$1" SRV
    ip -n "$GW" link add tb-e2e type veth peer name eth0 netns "$LAN"
    ip -n "$GW" link add wan0 type veth peer name eth0 netns "$SRV"
    ip -n "$GW" link set tb-e2e mtu 1400
    ip -n "$GW" addr add 198.19.77.1/24 dev tb-e2e
    ip -n "$GW" addr add 198.18.77.1/24 dev wan0
    ip -n "$LAN" addr add 198.19.77.10/24 dev eth0
    ip -n "$SRV" addr add 198.18.77.2/24 dev eth0
    ip -n "$GW" link set tb-e2e up
    ip -n "$GW" link set wan0 up
    ip -n "$LAN" link set eth0 up
    ip -n "$SRV" link set eth0 up
    ip -n "$LAN" route add default via 198.19.77.1
    ip netns exec "$GW" sysctl -qw net.ipv4.ip_forward=1
}

gw() { ip netns exec "$GW" env "${HOOK_ENV[@]}" "$@"; }

# A one-shot TCP server in the server namespace: writes the peer's address to a file.
start_server() { # start_server OUTFILE
    ip netns exec "$SRV" python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.77.2", 7777))
s.listen(1)
s.settimeout(20)
c, peer = s.accept()
open(sys.argv[1], "w").write(peer[0])
c.sendall(b"x")
c.close()
' "$1" &
    SERVER_PID=$!

    for _ in $(seq 1 100); do
        ip netns exec "$SRV" ss -ltnH 'sport = :7777' | grep -q . && return 0
        sleep 0.05
    done
    return 1
}

# Connect from the lan host; print the MSS the client will send with (TCP_MAXSEG).
client_mss() { # client_mss [CONNECT-TIMEOUT-SECONDS]
    ip netns exec "$LAN" python3 -c '
import socket, sys
s = socket.create_connection(("198.18.77.2", 7777), timeout=float(sys.argv[1]))
s.recv(1)
print(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
' "${1:-10}"
}

# Rule-set snapshots, counters removed so that two snapshots compare by content.
snap_ours() {
    case $BACKEND in
    nft) gw nft -s list table inet tapbridge_e2e 2>/dev/null || true ;;
    *)
        gw "$SAVE" 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' | grep -- 'TB-e2e-' || true
        gw "$SAVE6" 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' | grep -- 'TB-e2e-' || true
        ;;
    esac
}
snap_unrelated() {
    gw nft -s list table inet unrelated 2>/dev/null || true
    gw "$SAVE" -t filter 2>/dev/null | grep -v "^#" | sed "s/\[[0-9]*:[0-9]*\]//" | grep -v -- TB-e2e- || true
}

# ------------------------------------------------------------------ one backend

run_backend() { # run_backend BACKEND IPTABLES-COMMAND
    BACKEND=$1
    local ipt=$2 before after first second peer mss out rc
    SAVE="$ipt-save" SAVE6="${ipt/iptables/ip6tables}-save"
    e2e_note "backend $BACKEND ($ipt)"
    build "${BACKEND:0:3}${ipt: -3}"
    HOOK_ENV=(TAPBRIDGE_NAME=e2e TAPBRIDGE_INTERFACE=tb-e2e TAPBRIDGE_ADDRESSES="198.19.77.1/24 2001:2::1/64"
        TAPBRIDGE_MTU=1400 TAPBRIDGE_WAN_MTU=1500 TAPBRIDGE_NAT_WAN_IF=wan0
        TAPBRIDGE_LISTEN=0.0.0.0:51977 TAPBRIDGE_BRIDGE=
        TAPBRIDGE_NAT_BACKEND="${BACKEND%%-*}" TAPBRIDGE_NAT_IPTABLES="$ipt"
        TAPBRIDGE_NAT_CONFIG="$E2E_WORK/none.nat")

    # Unrelated rules that must survive: an nft table and an iptables rule.
    gw nft add table inet unrelated
    gw nft add chain inet unrelated keep '{ type filter hook forward priority 10; policy accept; }'
    gw nft add rule inet unrelated keep ip saddr 198.18.200.1 counter drop
    gw "$ipt" -w -A FORWARD -s 198.18.200.2 -j DROP
    before=$(snap_unrelated)

    e2e_check "$BACKEND: down without up exits 0" gw "$DOWN"
    # Without the hook the server cannot answer the overlay: proves the check below
    # can fail.
    if start_server "$E2E_WORK/unused" && client_mss 2 >/dev/null 2>&1; then
        e2e_not_ok "$BACKEND: lan host cannot reach the server before up"
    else
        e2e_ok "$BACKEND: lan host cannot reach the server before up"
    fi
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    e2e_check "$BACKEND: up succeeds" gw "$UP"
    first=$(snap_ours)
    e2e_check "$BACKEND: up created rules" test -n "$first"
    e2e_check "$BACKEND: up twice succeeds" gw "$UP"
    second=$(snap_ours)
    e2e_check "$BACKEND: up twice gives the identical rule set" test "$first" == "$second"
    if [[ $BACKEND == nft ]]; then
        e2e_match "$BACKEND: MSS clamp rule present" 'maxseg size set rt mtu' "$second"
        e2e_match "$BACKEND: masquerade rule present" "ip saddr 198.19.77.0/24 .*masquerade" "$second"
        e2e_match "$BACKEND: the tunnel's UDP port is accepted in input" \
            'hook input .*udp dport 51977 counter .*accept' "$(tr '\n' ' ' <<<"$second")"
    else
        e2e_match "$BACKEND: MSS clamp rule present" '-j TCPMSS --clamp-mss-to-pmtu' "$second"
        e2e_match "$BACKEND: masquerade rule present" '-s 198.19.77.0/24 -o wan0 -j MASQUERADE' "$second"
        e2e_check "$BACKEND: exactly one jump from FORWARD" \
            test "$(grep -c -- '^-A FORWARD -j TB-e2e-FWD$' <<<"$second")" == 2 # IPv4 + IPv6
        e2e_check "$BACKEND: exactly one jump from POSTROUTING" \
            test "$(grep -c -- '^-A POSTROUTING -j TB-e2e-NAT$' <<<"$second")" == 1
        e2e_match "$BACKEND: the tunnel's UDP port is accepted in INPUT" \
            '^-A TB-e2e-IN -p udp -m udp --dport 51977 -j ACCEPT$' "$second"
        e2e_check "$BACKEND: exactly one jump from INPUT" \
            test "$(grep -c -- '^-A INPUT -j TB-e2e-IN$' <<<"$second")" == 2 # IPv4 + IPv6
    fi
    e2e_nomatch "$BACKEND: no TCP port opened for a UDP-only link" \
        'tcp dport 51977|-p tcp -m tcp --dport 51977' "$second"

    # Traffic: the server has no route to the overlay, so the connection only works
    # through MASQUERADE, and the peer it sees must be the gateway's WAN address.
    out="$E2E_WORK/peer-$BACKEND-$ipt"
    if start_server "$out" && mss=$(client_mss); then
        wait "$SERVER_PID" || true
        peer=$(cat "$out" 2>/dev/null || true)
        e2e_check "$BACKEND: lan host reaches the server" test -n "$peer"
        e2e_check "$BACKEND: server sees the gateway's WAN address ($peer)" test "$peer" == 198.18.77.1
        # Unclamped the server's SYN-ACK would carry 1460; the route into the 1400-byte
        # overlay clamps it to at most 1360 (TCP_MAXSEG may subtract options further).
        e2e_check "$BACKEND: SYN-ACK MSS clamped to the overlay MTU (got $mss)" test "$mss" -le 1360
    else
        kill "$SERVER_PID" 2>/dev/null || true
        e2e_not_ok "$BACKEND: lan host reaches the server"
    fi

    e2e_check "$BACKEND: down succeeds" gw "$DOWN"
    e2e_check "$BACKEND: none of its rules remain" test -z "$(snap_ours)"
    # shellcheck disable=SC2016 # expanded by the inner bash
    e2e_check "$BACKEND: the INPUT rule for the tunnel port is gone" \
        bash -c '! { ip netns exec "$1" nft list ruleset; ip netns exec "$1" "$2"; } | grep -q -e "dport 51977"' \
        _ "$GW" "$SAVE"
    # shellcheck disable=SC2016 # expanded by the inner bash
    e2e_check "$BACKEND: no tapbridge objects left anywhere" \
        bash -c '! { ip netns exec "$1" nft list ruleset; ip netns exec "$1" "$2"; } | grep -q -e tapbridge_ -e TB-e2e-' \
        _ "$GW" "$SAVE"
    after=$(snap_unrelated)
    e2e_check "$BACKEND: unrelated rules untouched" test "$before" == "$after"
    e2e_check "$BACKEND: down twice exits 0" gw "$DOWN"

    # Bad settings: exit 2, one sentence, nothing created.
    rc=0
    out=$(gw env TAPBRIDGE_NAT_WAN_IF='wan0;x' "$UP" 2>&1) || rc=$?
    e2e_check "$BACKEND: invalid WAN interface exits 2" test "$rc" == 2
    e2e_check "$BACKEND: invalid WAN interface says so in one line" \
        test "$(wc -l <<<"$out")" == 1 -a "${out#error: }" != "$out"
    e2e_check "$BACKEND: nothing created by a rejected up" test -z "$(snap_ours)"
}

run_backend nft iptables
run_backend iptables iptables
# The legacy tables: iptables-legacy comes with the iptables package (checked above), and
# the kernel loads the modules on demand (iptables-legacy runs modprobe, from kmod). A
# kernel built without them is the one reason to skip; anything else fails.
tb_ns_add tbnat-probe NS_PROBE
rc=0
{ ip netns exec "$NS_PROBE" iptables-legacy -w -t nat -S &&
    ip netns exec "$NS_PROBE" ip6tables-legacy -w -t filter -S; } >/dev/null 2>"$E2E_WORK/legacy.err" || rc=$?
if ((rc == 0)); then
    run_backend iptables-legacy iptables-legacy
elif lacks=$(tb_kernel_lacks NETFILTER_XTABLES NETFILTER_XTABLES_LEGACY IP_NF_IPTABLES \
    IP_NF_IPTABLES_LEGACY IP_NF_NAT IP6_NF_IPTABLES IP6_NF_IPTABLES_LEGACY); then
    e2e_skip "backend iptables-legacy" "this kernel is built without the legacy tables ($lacks is not set)"
else
    e2e_not_ok "backend iptables-legacy: its tables answer in a namespace (exit $rc)" \
        "$(cat "$E2E_WORK/legacy.err")" \
        "the kernel's configuration does not say it lacks them: IP_NF_IPTABLES_LEGACY=$(tb_kernel_config IP_NF_IPTABLES_LEGACY)," \
        "IP_NF_NAT=$(tb_kernel_config IP_NF_NAT), IP6_NF_IPTABLES_LEGACY=$(tb_kernel_config IP6_NF_IPTABLES_LEGACY)"
fi

# ------------------------------------------------------------------ the daemon's bridge

e2e_note "TAPBRIDGE_BRIDGE"
HOOK_ENV=(TAPBRIDGE_NAME=e2e TAPBRIDGE_INTERFACE=tb-e2e TAPBRIDGE_ADDRESSES=198.19.77.1/24
    TAPBRIDGE_BRIDGE=br-e2e TAPBRIDGE_LISTEN="[::]:51978" TAPBRIDGE_NAT_WAN_IF=wan0
    TAPBRIDGE_TRANSPORT=auto TAPBRIDGE_NAT_BACKEND=nft TAPBRIDGE_NAT_CONFIG="$E2E_WORK/none.nat")
BACKEND=nft
e2e_check "bridge: up with the TAP enslaved to a bridge" gw "$UP"
rules=$(gw nft list table inet tapbridge_e2e 2>/dev/null | tr '\n' ' ' || true)
e2e_match "bridge: rules match the bridge" 'iifname "br-e2e" oifname "wan0"' "$rules"
e2e_nomatch "bridge: rules do not match the enslaved TAP" '"tb-e2e"' "$rules"
e2e_match "bridge: the IPv6 listen address's port is opened" 'udp dport 51978' "$rules"
e2e_match "bridge: transport auto opens the same TCP port" 'tcp dport 51978' "$rules"
e2e_check "bridge: down" gw "$DOWN"
rc=0
out=$(gw env TAPBRIDGE_LISTEN='0.0.0.0:99999' "$UP" 2>&1) || rc=$?
e2e_check "bridge: an invalid TAPBRIDGE_LISTEN exits 2" test "$rc" == 2
e2e_match "bridge: an invalid TAPBRIDGE_LISTEN is named" "TAPBRIDGE_LISTEN '0.0.0.0:99999'" "$out"
rc=0
out=$(gw env TAPBRIDGE_TRANSPORT=quic "$UP" 2>&1) || rc=$?
e2e_check "bridge: an invalid TAPBRIDGE_TRANSPORT exits 2" test "$rc" == 2
e2e_match "bridge: an invalid TAPBRIDGE_TRANSPORT is named" "TAPBRIDGE_TRANSPORT 'quic'" "$out"

# ------------------------------------------------------------------ settings file

e2e_note "settings file"
HOOK_ENV=(TAPBRIDGE_NAME=e2e TAPBRIDGE_INTERFACE=tb-e2e TAPBRIDGE_ADDRESSES=198.19.77.1/24
    TAPBRIDGE_NAT_BACKEND=nft TAPBRIDGE_NAT_CONFIG="$E2E_WORK/e2e.nat")
printf '# test\nTAPBRIDGE_NAT_WAN_IF=wan0\nTAPBRIDGE_NAT_SUBNET="198.19.78.0/24 198.19.90.5/24"\nTAPBRIDGE_NAT_MSS=1300\n' >"$E2E_WORK/e2e.nat"
chmod 0644 "$E2E_WORK/e2e.nat"
BACKEND=nft
e2e_check "settings file: up with settings from the file" gw "$UP"
# shellcheck disable=SC2016 # expanded by the inner bash
e2e_check "settings file: subnets and MSS taken from the file" \
    bash -c 'ip netns exec "$1" nft list table inet tapbridge_e2e | grep -q "ip saddr { 198.19.78.0/24, 198.19.90.0/24 }" &&
             ip netns exec "$1" nft list table inet tapbridge_e2e | grep -q "maxseg size set 1300"' _ "$GW"
e2e_check "settings file: down" gw "$DOWN"
chmod 0666 "$E2E_WORK/e2e.nat"
rc=0
gw "$UP" 2>/dev/null || rc=$?
e2e_check "settings file: world-writable file refused (exit 2)" test "$rc" == 2
chmod 0644 "$E2E_WORK/e2e.nat"
printf 'PATH=/tmp\n' >"$E2E_WORK/e2e.nat"
rc=0
gw "$UP" 2>/dev/null || rc=$?
e2e_check "settings file: unknown key refused (exit 2)" test "$rc" == 2
# shellcheck disable=SC2016 # the $(...) must reach the file literally
printf 'TAPBRIDGE_NAT_WAN_IF=$(touch %s/pwned)\n' "$E2E_WORK" >"$E2E_WORK/e2e.nat"
rc=0
gw "$UP" 2>/dev/null || rc=$?
e2e_check "settings file: command substitution is data, not code" test "$rc" == 2 -a ! -e "$E2E_WORK/pwned"

e2e_summary
