#!/usr/bin/env bash
#
# dhcp_conflict.sh — end-to-end test of `dhcp.conflict_check` across sites
# (run as root; BRIDGE_CTL=path/to/bridge-ctl, default target/release/bridge-ctl).
#
# Rig (tests/e2e/dhcp_lib.sh), with overlapping pools: BOTH sites run the same
# DHCP/ARP responder (pool 198.19.0.100-199, server 198.19.0.254, and one
# configured responder MAC 02:00:00:00:00:fe, as a copied config would have).
# Client A is cabled to A's br-lan, clients B1 and B2 to B's. All are busybox
# udhcpc WITHOUT `-a`: they do no duplicate address detection of their own.
# A silent host at site B has the static address 198.19.0.101 (in the pool).
# Checks:
#   * client A gets an address X from site A (the first of the pool);
#   * clients B1 and B2 get addresses from site B that are in the pool, differ
#     from X, from the static host's and from each other, although site B's
#     allocator alone would have offered X first: site B's probe for X crossed
#     the tunnel, client A answered, and site B moved on; its probe for .101
#     was answered at site B (status dhcp_probes and dhcp_conflicts grow at
#     site B, and its log says so);
#   * client A still holds X and is the only host that answers for it.
# DL_DHCP_EXTRA=conflict_check=false runs the same checks with the check off,
# to show that they can fail (client B1 then gets X).
# Prints "ok - ..." / "not ok - ..." lines; exit 1 on any failure.

set -euo pipefail

DL_ARP_MAC=02:00:00:00:00:fe
DL_DHCP_EXTRA="${DL_DHCP_EXTRA:-conflict_check=true}"
# shellcheck source=tests/e2e/dhcp_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/dhcp_lib.sh"

e2e_init
tb_need_cmd udhcpc udhcpc
tb_need_cmd busybox busybox
ARPING=""
e2e_need_iputils_arping ARPING
printf '# udhcpc version: %s\n' "$(busybox 2>&1 | head -1)"
printf '# responders: [dhcp] %s\n' "$DL_DHCP_EXTRA"

MAC_A=02:00:00:00:c1:01
MAC_B1=02:00:00:00:c2:01
MAC_B2=02:00:00:00:c2:02
# A host at site B with a static address inside the pool.
MAC_S=02:00:00:00:c2:0f
STATIC=198.19.0.101

dl_setup_rig
# Site B runs the same responder as site A: overlapping pools.
dl_write_config b "$DL_WAN_B:$DL_PORT" a "$DL_WAN_A:$DL_PORT" tb-b br-lan 1

# add_b_host PREFIX VAR MAC: a namespace whose eth0 (MAC) is cabled to B's br-lan.
add_b_host() {
    local prefix=$1 var=$2 mac=$3 port
    tb_ns_add "$prefix" "$var"
    port="p${#TB_CLEANUP[@]}"
    tb_veth "${!var}" eth0 "$DL_GB" "$port"
    ip -n "${!var}" link set eth0 address "$mac"
    ip -n "$DL_GB" link set "$port" master br-lan
}

dl_add_lan_host tbe2e-ca NS_A "$MAC_A"
add_b_host tbe2e-cb1 NS_B1 "$MAC_B1"
add_b_host tbe2e-cb2 NS_B2 "$MAC_B2"
add_b_host tbe2e-sb NS_S "$MAC_S"
ip -n "$NS_S" addr add "$STATIC/24" dev eth0
for ns in "$NS_A" "$NS_B1" "$NS_B2" "$NS_S"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
done

e2e_up a || e2e_fatal "bridge-ctl link up a failed: ${E2E_STDERR%%$'\n'*}"
e2e_up b || e2e_fatal "bridge-ctl link up b failed: ${E2E_STDERR%%$'\n'*}"
dl_wait_tunnel a || e2e_fatal "the tunnel between site A and site B did not come up"
e2e_ok "both sites up with the same pool, tunnel established"

# udhcpc_lease NS DIR: one-shot busybox udhcpc without -a (retries bounded by
# -t/-T, the whole run by timeout); its hook puts the address on eth0 and
# records it in DIR/ip. Prints the address (empty if none).
udhcpc_lease() {
    local ns=$1 dir=$2
    mkdir -p "$dir"
    cat >"$dir/hook.sh" <<EOF
#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
case "\$1" in
deconfig) ip -4 addr flush dev "\$interface" ;;
bound | renew)
    ip addr replace "\$ip/\$subnet" dev "\$interface"
    echo "\$ip" >"$dir/ip"
    ;;
esac
exit 0
EOF
    chmod 755 "$dir/hook.sh"
    rm -f "$dir/ip"
    timeout 60 ip netns exec "$ns" udhcpc -f -q -n -i eth0 -s "$dir/hook.sh" \
        -t 5 -T 2 -A 1 -p "$dir/udhcpc.pid" >>"$dir/out" 2>&1 || true
    if [[ -f "$dir/ip" ]]; then cat "$dir/ip"; fi
}

# in_pool IP
in_pool() {
    [[ "$1" =~ ^198\.19\.0\.([0-9]+)$ ]] && ((BASH_REMATCH[1] >= 100 && BASH_REMATCH[1] <= 199))
}

show_out() {
    [[ -f "$1/out" ]] && sed 's/^/#   /' "$1/out" | tail -n 20
    return 0
}

# --- 1. client A takes the first address of the shared pool at site A
X=$(udhcpc_lease "$NS_A" "$E2E_WORK/ca")
if in_pool "$X"; then
    e2e_ok "client A got $X from site A"
else
    show_out "$E2E_WORK/ca"
    e2e_fatal "client A got no address in the pool ('$X')"
fi

# --- 2. clients at site B never get X
probes0=$(e2e_counter b dhcp_probes)
conflicts0=$(e2e_counter b dhcp_conflicts)
declare -A got=()
for c in B1 B2; do
    ns_var="NS_$c"
    dir="$E2E_WORK/c${c,,}"
    ip_b=""
    # A client that got nothing at all (a lost frame) tries once more.
    for _ in 1 2; do
        ip_b=$(udhcpc_lease "${!ns_var}" "$dir")
        [[ -z "$ip_b" ]] || break
    done
    got[$c]=$ip_b
    if ! in_pool "$ip_b"; then
        e2e_not_ok "client $c got no address in the pool ('$ip_b')"
        show_out "$dir"
    elif [[ "$ip_b" == "$X" ]]; then
        e2e_not_ok "client $c at site B got $X, the address client A holds at site A"
    elif [[ "$ip_b" == "$STATIC" ]]; then
        e2e_not_ok "client $c at site B got $STATIC, the static host's address at site B"
    else
        e2e_ok "client $c at site B got $ip_b, neither $X (client A at site A) nor $STATIC (static at site B)"
    fi
done
if [[ -n "${got[B1]}" && "${got[B1]}" == "${got[B2]}" ]]; then
    e2e_not_ok "clients B1 and B2 both got ${got[B1]}"
else
    e2e_ok "clients B1 and B2 got different addresses (${got[B1]:-none}, ${got[B2]:-none})"
fi
probes=$(e2e_counter b dhcp_probes)
conflicts=$(e2e_counter b dhcp_conflicts)
printf '# site B: dhcp_probes %s -> %s, dhcp_conflicts %s -> %s\n' \
    "$probes0" "$probes" "$conflicts0" "$conflicts"
e2e_check "site B probed before offering (dhcp_probes $probes0 -> $probes)" \
    test "$probes" -gt "$probes0"
e2e_check "site B found $X and $STATIC in use (dhcp_conflicts $conflicts0 -> $conflicts)" \
    test "$conflicts" -ge "$((conflicts0 + 2))"

# The daemon's log (beside its control socket) names the conflict (rate-limited).
log_b="$E2E_WORK/run/b.log"
e2e_check "site B logged the address in use" grep -q "DHCP address in use by another host" "$log_b"

# --- 3. X is client A's alone
out=$(timeout 10 ip netns exec "$NS_B2" "$ARPING" -c 2 -w 4 -I eth0 "$X" 2>&1) || true
macs=$(sed -n 's/.*reply from [0-9.]* \[\([0-9A-Fa-f:]*\)\].*/\1/p' <<<"$out" | tr 'A-F' 'a-f' | sort -u | tr '\n' ' ')
if [[ "$macs" == "$MAC_A " ]]; then
    e2e_ok "only client A ($MAC_A) answers for $X, seen from site B"
else
    e2e_not_ok "answers for $X from site B: '${macs:-none}', expected $MAC_A only"
    printf '%s\n' "$out" | sed 's/^/#   /'
fi

e2e_summary
