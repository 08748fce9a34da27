#!/usr/bin/env bash
#
# nd_suppress.sh — end-to-end test of IPv6 ND suppression (`[arp]
# suppress_nd = true`, RFC 9161 proxy ND) (run as root; BRIDGE_CTL=path/to/
# bridge-ctl, default target/release/bridge-ctl).
#
# Rig (tests/e2e/dhcp_lib.sh): site A's TAP is enslaved to br-lan with the
# responder on (suppress_nd added); hosts A (2001:2::11) and C (2001:2::12)
# sit behind A's br-lan; site B is a plain bridge with host B (2001:2::20).
# A capture runs on B's TAP. Checks:
#   * host A pings host B over IPv6: the NA that crossed the tunnel binds
#     host B's address at site A;
#   * with host A's neighbour cache flushed, and from host C, a ping to host B
#     works, its neighbour solicitation is answered by site A with host B's
#     MAC (nd_replies grows) and B's TAP never sees it;
#   * duplicate address detection for host B's address from host C is not
#     answered: the probe reaches B's TAP, host B defends the address and
#     host C marks it dadfailed; nd_replies does not move;
#   * once site B is down (peer b down at site A), its bindings are gone:
#     host A's solicitation for host B is no longer answered.
# Prints "ok - ..." / "not ok - ..." lines; exit 1 on any failure.

set -euo pipefail

DL_ARP_MAC=02:00:00:00:00:fe
DL_ARP_EXTRA=suppress_nd=true
# shellcheck source=tests/e2e/dhcp_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/dhcp_lib.sh"

e2e_init
tb_need_cmd tcpdump tcpdump
tb_need_cmd ping iputils-ping

V6_A=2001:2::11
V6_C=2001:2::12
V6_B=2001:2::20
PCAP="$E2E_WORK/b-nd.pcap"

dl_setup_rig
dl_add_lan_host tbe2e-ha NS_HA
dl_add_lan_host tbe2e-hc NS_HC
ip -n "$NS_HA" addr add "$V6_A/64" dev eth0 nodad
ip -n "$NS_HC" addr add "$V6_C/64" dev eth0 nodad
ip -n "$DL_HB" addr add "$V6_B/64" dev eth0 nodad
HOST_A_MAC=$(e2e_mac "$NS_HA" eth0)
HOST_C_MAC=$(e2e_mac "$NS_HC" eth0)

e2e_up b || e2e_fatal "bridge-ctl link up b failed: ${E2E_STDERR%%$'\n'*}"
e2e_capture_start "$DL_GB" tb-b "$PCAP" icmp6 || e2e_fatal "tcpdump could not capture on B's TAP"
e2e_up a || e2e_fatal "bridge-ctl link up a failed: ${E2E_STDERR%%$'\n'*}"
dl_wait_tunnel a || e2e_fatal "the tunnel between site A and site B did not come up"
e2e_ok "both links up, tunnel established, capturing ICMPv6 on B's TAP"

# ns_from MAC: tcpdump filter for neighbour solicitations sent by MAC (ND
# carries no extension headers, so the ICMPv6 type is at offset 40).
ns_from() {
    printf 'icmp6 and ip6[40] = 135 and ether src %s' "$1"
}

# ping6 NS DST: one bounded IPv6 ping.
ping6() {
    ip netns exec "$1" timeout 10 ping -6 -n -c 1 -W 2 "$2"
}

# neigh_mac NS ADDR: the link-layer address NS's neighbour cache holds for ADDR.
neigh_mac() {
    ip -n "$1" -6 neigh show "$2" dev eth0 | sed -n 's/.*lladdr \([0-9a-f:]*\).*/\1/p'
}

# settle: give a frame that (wrongly) crossed the tunnel time to reach B's TAP.
settle() {
    sleep 1
}

# --- 1. one exchange binds host B's address at site A
if tb_wait_until 15 "ping $V6_A -> $V6_B" ping6 "$NS_HA" "$V6_B"; then
    e2e_ok "host A ($V6_A) pinged host B ($V6_B) across the tunnel"
else
    e2e_not_ok "host A cannot ping host B over IPv6 across the tunnel"
fi

learned=$(e2e_counter a nd_bindings_learned)
e2e_check "site A counted the ND bindings it learned from site B (nd_bindings_learned $learned)" \
    test "$learned" -gt 0

# --- 2. host A, neighbour cache flushed, asks again: answered at site A
# check_answered NS NAME MAC: ping host B from NS; its NS must be answered locally.
check_answered() {
    local ns=$1 name=$2 mac=$3 seen_before seen_after before after got
    settle
    seen_before=$(e2e_capture_count "$PCAP" "$(ns_from "$mac")")
    before=$(e2e_counter a nd_replies)
    if ping6 "$ns" "$V6_B" >/dev/null; then
        e2e_ok "$name pings host B ($V6_B)"
    else
        e2e_not_ok "$name cannot ping host B ($V6_B)"
    fi
    after=$(e2e_counter a nd_replies)
    e2e_check "the NS of $name was answered by site A (nd_replies $before -> $after)" \
        test "$after" -gt "$before"
    got=$(neigh_mac "$ns" "$V6_B")
    e2e_check "$name's neighbour cache has host B's MAC $DL_HOST_B_MAC (got '${got:-none}')" \
        test "$got" == "$DL_HOST_B_MAC"
    settle
    seen_after=$(e2e_capture_count "$PCAP" "$(ns_from "$mac")")
    if ((seen_after == seen_before)); then
        e2e_ok "no solicitation from $name crossed the tunnel"
    else
        e2e_not_ok "$((seen_after - seen_before)) solicitations from $name reached B's TAP:"
        e2e_capture_show "$PCAP" "$(ns_from "$mac")"
    fi
}
ip -n "$NS_HA" -6 neigh flush dev eth0
check_answered "$NS_HA" "host A" "$HOST_A_MAC"
check_answered "$NS_HC" "host C" "$HOST_C_MAC"

# --- 3. duplicate address detection is never answered
DAD="$(ns_from "$HOST_C_MAC") and ip6 src ::"
before=$(e2e_counter a nd_replies)
ip -n "$NS_HC" addr add "$V6_B/64" dev eth0
# shellcheck disable=SC2317 # invoked indirectly through tb_wait_until
dad_failed() {
    ip -n "$NS_HC" -6 addr show dev eth0 | grep -A1 "inet6 $V6_B/" | grep -q dadfailed
}
if tb_wait_until 10 "host C's DAD for $V6_B fails" dad_failed; then
    e2e_ok "host B defended $V6_B against host C's DAD: the probe was not answered at site A"
else
    e2e_not_ok "host C's DAD for $V6_B did not fail:"
    ip -n "$NS_HC" -6 addr show dev eth0 | sed 's/^/#   /'
fi
if tb_wait_until 5 "the DAD probe on B's TAP" e2e_capture_seen "$PCAP" "$DAD"; then
    e2e_ok "the DAD probe for $V6_B crossed the tunnel"
else
    e2e_not_ok "the DAD probe for $V6_B never reached B's TAP"
fi
after=$(e2e_counter a nd_replies)
e2e_check "nd_replies unchanged by DAD ($before -> $after)" test "$after" -eq "$before"

# --- 4. the binding (learned again from host B's defence) goes with its peer
ip -n "$NS_HA" -6 neigh flush dev eth0
check_answered "$NS_HA" "host A" "$HOST_A_MAC"
e2e_check_down "site B goes down" b
# shellcheck disable=SC2317 # invoked indirectly through tb_wait_until
peer_b_down() {
    [[ "$(e2e_peer a b state)" == "down" ]]
}
if tb_wait_until 30 "site A sees peer b down" peer_b_down; then
    e2e_ok "site A sees peer b down"
else
    e2e_not_ok "site A never saw peer b down (state '$(e2e_peer a b state)')"
fi
ip -n "$NS_HA" -6 neigh flush dev eth0
before=$(e2e_counter a nd_replies)
ping6 "$NS_HA" "$V6_B" >/dev/null 2>&1 || true
after=$(e2e_counter a nd_replies)
e2e_check "with peer b down its bindings are gone: host A's NS not answered (nd_replies $before -> $after)" \
    test "$after" -eq "$before"

e2e_capture_stop
e2e_summary
