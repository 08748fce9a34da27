#!/usr/bin/env bash
#
# arp_moves.sh — end-to-end test of ARP suppression that never lies (run as
# root; BRIDGE_CTL=path/to/bridge-ctl, default target/release/bridge-ctl).
#
# Rig (tests/e2e/dhcp_lib.sh): site A's TAP is enslaved to br-lan with the
# responder on ([arp] suppress = true); host A 198.19.0.11 sits behind A's
# br-lan. Site B is a plain bridge with host B 198.19.0.20 (the host that
# moves; IPv6 off so that it sends nothing we do not make it send) and host C
# 198.19.0.30. A capture runs on B's TAP. Checks:
#   * host B's binding, learned through the tunnel, answers host A's broadcast
#     request locally; a unicast re-verification (arping's second probe) goes
#     through the tunnel to host B itself;
#   * host B moves to site A's LAN (same MAC and IP) and sends a gratuitous
#     ARP: the very next request from host A is answered by host B alone (site
#     A's arp_replies does not grow), and host B is reachable from host A and,
#     across the tunnel, from host C;
#   * it moves back to site B (relearned), then to site A again announcing
#     itself only by RARP (as QEMU does for a migrated VM): the same holds;
#   * when site B goes away (peer down at site A), its bindings go with it:
#     host C is no longer answered for;
#   * ARP from site B claiming site A's router address, or whose sender MAC is
#     not the Ethernet source, is refused: arp_bindings_refused grows and the
#     claims are not answered.
# Prints "ok - ..." / "not ok - ..." lines; exit 1 on any failure.

set -euo pipefail

# shellcheck source=tests/e2e/dhcp_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/dhcp_lib.sh"

e2e_init
tb_need_cmd tcpdump tcpdump
tb_need_cmd ping iputils-ping
ARPING=""
e2e_need_iputils_arping ARPING

HOST_A=198.19.0.11
HOST_C=198.19.0.30
PCAP="$E2E_WORK/b-arp.pcap"

dl_setup_rig
# Host B sends only what the test makes it send (no IPv6 neighbour traffic).
ip netns exec "$DL_HB" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
    net.ipv6.conf.default.disable_ipv6=1
dl_add_lan_host tbe2e-ha NS_HA
ip -n "$NS_HA" addr add "$HOST_A/24" dev eth0
HOST_A_MAC=$(e2e_mac "$NS_HA" eth0)
tb_ns_add tbe2e-hc NS_HC
tb_veth "$NS_HC" eth0 "$DL_GB" lanc
ip -n "$DL_GB" link set lanc master br-lan
ip -n "$NS_HC" addr add "$HOST_C/24" dev eth0
MAC_B=$DL_HOST_B_MAC

e2e_up b || e2e_fatal "bridge-ctl link up b failed: ${E2E_STDERR%%$'\n'*}"
e2e_capture_start "$DL_GB" tb-b "$PCAP" "arp or rarp" ||
    e2e_fatal "tcpdump could not capture on B's TAP"
e2e_up a || e2e_fatal "bridge-ctl link up a failed: ${E2E_STDERR%%$'\n'*}"
dl_wait_tunnel a || e2e_fatal "the tunnel between site A and site B did not come up"
e2e_ok "both links up, tunnel established, capturing ARP on B's TAP"

# arping_from_a TARGET [ARGS...]: requests from host A (bounded); prints arping's output.
arping_from_a() {
    local target=$1
    shift
    timeout 10 ip netns exec "$NS_HA" "$ARPING" -c 1 -w 3 "$@" -I eth0 "$target" 2>&1
}

# reply_macs OUTPUT: the MACs of all replies, lower case, one a line.
reply_macs() {
    sed -n 's/.*reply from [0-9.]* \[\([0-9A-Fa-f:]*\)\].*/\1/p' <<<"$1" | tr 'A-F' 'a-f'
}

# responses OUTPUT: how many replies arping counted.
responses() {
    sed -n 's/^Received \([0-9]*\) response.*/\1/p' <<<"$1" | head -1
}

# settle: time for a frame that crossed the tunnel to reach B's TAP.
settle() {
    sleep 1
}

# shellcheck disable=SC2317 # invoked indirectly through e2e_check
# learned [IP MAC]: the binding IP → MAC (default: host B's) answers host A's
# broadcast request at site A.
learned() {
    local ip=${1:-$DL_HOST_B} mac=${2:-$MAC_B} before after out
    before=$(e2e_counter a arp_replies)
    out=$(arping_from_a "$ip") || true
    after=$(e2e_counter a arp_replies)
    [[ "$(reply_macs "$out" | head -1)" == "$mac" ]] && ((after > before))
}

# shellcheck disable=SC2317 # invoked indirectly through tb_wait_until
# counter_at_least SITE KEY N: SITE's counter KEY is N or more.
counter_at_least() {
    (($(e2e_counter "$1" "$2") >= $3))
}

# shellcheck disable=SC2317 # invoked indirectly through tb_wait_until
# peer_down SITE PEER: SITE sees PEER down.
peer_down() {
    [[ "$(e2e_peer "$1" "$2" state)" == down ]]
}

# shellcheck disable=SC2317 # invoked indirectly through e2e_check
# send_raw NS IFACE HEX: write one Ethernet frame (hex) on IFACE in NS.
send_raw() {
    ip netns exec "$1" timeout 10 python3 -c '
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
s.send(bytes.fromhex(sys.argv[2]))
' "$2" "$3"
}

# hexmac MAC / hexip IP: as hex bytes.
hexmac() { tr -d ':' <<<"$1"; }
hexip() {
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    printf '%02x%02x%02x%02x' "$a" "$b" "$c" "$d"
}

# arp_hex OP ETH_SRC SHA SPA TPA: a broadcast Ethernet/IPv4 ARP frame.
arp_hex() {
    printf 'ffffffffffff%s0806000108000604%04x%s%s000000000000%s' \
        "$(hexmac "$2")" "$1" "$(hexmac "$3")" "$(hexip "$4")" "$(hexip "$5")"
    printf '00%.0s' {1..18} # padding to 60 bytes
}

# rarp_hex MAC: a RARP "reverse request" announcing MAC, as QEMU sends it.
rarp_hex() {
    local m
    m=$(hexmac "$1")
    printf 'ffffffffffff%s8035000108000604000300000000%s00000000%s00000000' "$m" "$m" "$m"
    printf '00%.0s' {1..18}
}

# move_host_b SITE_NS PORT: cable host B (namespace $DL_HB) to SITE_NS's br-lan
# instead of where it was, same MAC and address; it says nothing yet.
move_host_b() {
    local gw=$1 port=$2
    ip -n "$DL_HB" link del eth0 2>/dev/null || true
    tb_veth "$DL_HB" eth0 "$gw" "$port"
    ip -n "$DL_HB" link set eth0 down
    ip -n "$DL_HB" link set eth0 address "$MAC_B"
    ip -n "$DL_HB" link set eth0 up
    ip -n "$gw" link set "$port" master br-lan
    ip -n "$DL_HB" addr add "$DL_HOST_B/24" dev eth0
}

# at_new_place HOW: after host B announced itself at site A by HOW, nothing
# but host B answers for it, and it is reachable from both sites.
at_new_place() {
    local how=$1 before after out n
    before=$(e2e_counter a arp_replies)
    out=$(arping_from_a "$DL_HOST_B") || true
    after=$(e2e_counter a arp_replies)
    n=$(responses "$out")
    if [[ "$(reply_macs "$out")" == "$MAC_B" && "$n" == 1 ]]; then
        e2e_ok "after the $how, arping $DL_HOST_B from host A gets exactly one reply ($MAC_B)"
    else
        e2e_not_ok "after the $how, arping $DL_HOST_B: expected one reply from $MAC_B, got ${n:-no} response(s):"
        printf '%s\n' "$out" | sed 's/^/#   /'
    fi
    e2e_check "after the $how, site A's responder no longer answers for $DL_HOST_B (arp_replies $before -> $after)" \
        test "$after" -eq "$before"
    e2e_check "after the $how, host A reaches host B at site A" \
        ip netns exec "$NS_HA" ping -n -c 2 -i 0.2 -W 2 "$DL_HOST_B"
    if tb_wait_until 10 "ping $HOST_C -> $DL_HOST_B" \
        ip netns exec "$NS_HC" ping -n -c 1 -W 1 "$DL_HOST_B"; then
        e2e_ok "after the $how, host C (site B) reaches host B at site A across the tunnel"
    else
        e2e_not_ok "after the $how, host C cannot reach host B across the tunnel"
    fi
}

# --- 1. learned; a unicast re-verification goes to the host itself
if tb_wait_until 15 "ping $DL_HOST_B -> $HOST_A" \
    ip netns exec "$DL_HB" ping -c 1 -W 1 "$HOST_A"; then
    e2e_ok "host B ($DL_HOST_B) pinged host A ($HOST_A) across the tunnel"
else
    e2e_not_ok "host B cannot ping host A across the tunnel"
fi
e2e_check "site A answers host A's broadcast request for $DL_HOST_B from host B's binding" learned

# iputils arping switches to unicast to the MAC that answered.
UNICAST_REQ="arp[6:2] = 1 and ether src $HOST_A_MAC and ether dst $MAC_B and arp dst host $DL_HOST_B"
seen_before=$(e2e_capture_count "$PCAP" "$UNICAST_REQ")
before=$(e2e_counter a arp_replies)
out=$(arping_from_a "$DL_HOST_B" -c 2) || true
after=$(e2e_counter a arp_replies)
e2e_check "arping -c 2: the broadcast probe is answered by site A, the unicast one not (arp_replies $before -> $after)" \
    test "$after" -eq $((before + 1))
e2e_check "arping -c 2 gets two replies ($(responses "$out"))" test "$(responses "$out")" = 2
settle
seen_after=$(e2e_capture_count "$PCAP" "$UNICAST_REQ")
if ((seen_after > seen_before)); then
    e2e_ok "the unicast re-verification crossed the tunnel to host B"
else
    e2e_not_ok "the unicast re-verification never reached B's TAP:"
    printf '%s\n' "$out" | sed 's/^/#   /'
fi

# --- 2. host B moves to site A and sends a gratuitous ARP
move_host_b "$DL_GA" mva
e2e_check "host B moved to site A sends a gratuitous ARP" \
    ip netns exec "$DL_HB" timeout 10 "$ARPING" -U -c 1 -w 2 -I eth0 "$DL_HOST_B"
at_new_place "gratuitous ARP"

# --- 3. back to site B (relearned), then to site A announced by RARP only
move_host_b "$DL_GB" mvb
if tb_wait_until 15 "ping $DL_HOST_B -> $HOST_A from site B" \
    ip netns exec "$DL_HB" ping -c 1 -W 1 "$HOST_A"; then
    e2e_ok "host B is back at site B and reaches host A across the tunnel"
else
    e2e_not_ok "host B, back at site B, cannot reach host A"
fi
# Host A's request makes host B answer through the tunnel: relearned.
if tb_wait_until 10 "host B's binding relearned at site A" learned; then
    e2e_ok "site A relearned host B's binding and answers for it again"
else
    e2e_not_ok "site A did not relearn host B's binding"
fi
move_host_b "$DL_GA" mva2
e2e_check "host B moved to site A again sends a RARP announcement" \
    send_raw "$DL_HB" eth0 "$(rarp_hex "$MAC_B")"
at_new_place "RARP announcement"

# --- 4. claims that cannot be true are refused
refused0=$(e2e_counter a arp_bindings_refused)
MAC_C=$(e2e_mac "$NS_HC" eth0)
# Host C claims site A's router address, then sends an ARP whose sender MAC
# is not its Ethernet source.
SPOOF_MAC=52:54:00:de:ad:01
e2e_check "host C sends an ARP claiming the router $DL_ROUTER" \
    send_raw "$NS_HC" eth0 "$(arp_hex 2 "$MAC_C" "$MAC_C" "$DL_ROUTER" "$HOST_A")"
e2e_check "host C sends an ARP with sender MAC $SPOOF_MAC" \
    send_raw "$NS_HC" eth0 "$(arp_hex 1 "$MAC_C" "$SPOOF_MAC" 198.19.0.31 "$HOST_A")"
if tb_wait_until 10 "arp_bindings_refused at site A grows by 2" \
    counter_at_least a arp_bindings_refused $((refused0 + 2)); then
    e2e_ok "both claims refused (arp_bindings_refused $refused0 -> $(e2e_counter a arp_bindings_refused))"
else
    e2e_not_ok "arp_bindings_refused $refused0 -> $(e2e_counter a arp_bindings_refused), expected +2"
fi
for claim in "$DL_ROUTER" 198.19.0.31; do
    out=$(arping_from_a "$claim") || true
    macs=$(reply_macs "$out")
    e2e_check "the refused claim on $claim is not answered at site A (replies: ${macs:-none})" \
        test -z "$macs"
done

e2e_capture_stop

# --- 5. the peer goes down: its bindings are forgotten
if tb_wait_until 10 "host C's binding at site A" learned "$HOST_C" "$MAC_C"; then
    e2e_ok "site A answers for host C ($HOST_C) from its binding"
else
    e2e_not_ok "site A did not learn host C's binding"
fi
e2e_check_down "link down b exits 0" b
if tb_wait_until 30 "peer b down at site A" peer_down a b; then
    e2e_ok "site A sees peer b down"
else
    e2e_not_ok "site A never saw peer b go down (state $(e2e_peer a b state))"
fi
before=$(e2e_counter a arp_replies)
out=$(arping_from_a "$HOST_C") || true
after=$(e2e_counter a arp_replies)
macs=$(reply_macs "$out")
e2e_check "with peer b down, site A no longer answers for host C (replies: ${macs:-none}, arp_replies $before -> $after)" \
    test -z "$macs" -a "$after" -eq "$before"
e2e_summary
