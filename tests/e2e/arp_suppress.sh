#!/usr/bin/env bash
#
# arp_suppress.sh — end-to-end test of the local ARP responder and ARP
# suppression (run as root; BRIDGE_CTL=path/to/bridge-ctl, default
# target/release/bridge-ctl).
#
# Rig (tests/e2e/dhcp_lib.sh): site A's TAP is enslaved to br-lan with the
# responder on ([arp] respond = 198.19.0.254, mac 02:00:00:00:00:fe,
# suppress = true); host A 198.19.0.11 sits behind A's br-lan; site B is a
# plain bridge with host B 198.19.0.20. A capture runs on B's TAP. Checks:
#   * `arping 198.19.0.254` from host A is answered with the responder's MAC,
#     arp_replies grows, and no ARP for 198.19.0.254 crosses the tunnel;
#   * after host B has pinged host A (so A learned host B's binding from the
#     ARP that crossed), `arping 198.19.0.20` from host A is answered locally
#     with host B's MAC: arp_replies grows and B's TAP never sees the request;
#   * a request for an unused address is flooded: B's TAP sees it.
# Prints "ok - ..." / "not ok - ..." lines; exit 1 on any failure.

set -euo pipefail

DL_ARP_MAC=02:00:00:00:00:fe
# shellcheck source=tests/e2e/dhcp_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/dhcp_lib.sh"

e2e_init
tb_need_cmd tcpdump tcpdump
tb_need_cmd unshare util-linux
tb_need_cmd ping iputils-ping
ARPING=""
e2e_need_iputils_arping ARPING
printf '# arping version: %s (%s)\n' "$("$ARPING" -V 2>&1 | head -1)" "$ARPING"

HOST_A=198.19.0.11
UNUSED=198.19.0.77
PCAP="$E2E_WORK/b-arp.pcap"

dl_setup_rig
dl_add_lan_host tbe2e-ha NS_HA
ip -n "$NS_HA" addr add "$HOST_A/24" dev eth0
HOST_A_MAC=$(e2e_mac "$NS_HA" eth0)

e2e_up b || e2e_fatal "bridge-ctl link up b failed: ${E2E_STDERR%%$'\n'*}"
e2e_capture_start "$DL_GB" tb-b "$PCAP" arp || e2e_fatal "tcpdump could not capture on B's TAP"
e2e_up a || e2e_fatal "bridge-ctl link up a failed: ${E2E_STDERR%%$'\n'*}"
dl_wait_tunnel a || e2e_fatal "the tunnel between site A and site B did not come up"
e2e_ok "both links up, tunnel established, capturing ARP on B's TAP"

# arping_from_a TARGET: one request from host A (bounded); prints arping's output.
arping_from_a() {
    timeout 10 ip netns exec "$NS_HA" "$ARPING" -c 1 -w 3 -I eth0 "$1" 2>&1
}

# reply_mac OUTPUT: the MAC of the first reply, lower case.
reply_mac() {
    sed -n 's/.*reply from [0-9.]* \[\([0-9A-Fa-f:]*\)\].*/\1/p' <<<"$1" | head -1 | tr 'A-F' 'a-f'
}

# settle: give a frame that (wrongly) crossed the tunnel time to reach B's TAP
# before a capture is checked for its absence.
settle() {
    sleep 1
}

# --- 1. our own address: answered at once, never tunneled
before=$(e2e_counter a arp_replies)
out=$(arping_from_a "$DL_SERVER") || true
mac=$(reply_mac "$out")
if [[ "$mac" == "$DL_ARP_MAC" ]]; then
    e2e_ok "arping $DL_SERVER from host A is answered with the responder MAC $mac"
else
    e2e_not_ok "arping $DL_SERVER: expected a reply from $DL_ARP_MAC, got '${mac:-none}'"
    printf '%s\n' "$out" | sed 's/^/#   /'
fi
after=$(e2e_counter a arp_replies)
e2e_check "arp_replies grew ($before -> $after)" test "$after" -gt "$before"
settle
n=$(e2e_capture_count "$PCAP" "arp host $DL_SERVER")
if ((n == 0)); then
    e2e_ok "no ARP for $DL_SERVER crossed the tunnel"
else
    e2e_not_ok "$n ARP frames for $DL_SERVER reached B's TAP:"
    e2e_capture_show "$PCAP" "arp host $DL_SERVER"
fi

# --- 2. suppression: host B's binding, learned through the tunnel, answers locally
if tb_wait_until 15 "ping $DL_HOST_B -> $HOST_A" \
    ip netns exec "$DL_HB" ping -c 1 -W 1 "$HOST_A"; then
    e2e_ok "host B ($DL_HOST_B) pinged host A ($HOST_A) across the tunnel"
else
    e2e_not_ok "host B cannot ping host A across the tunnel"
fi
REQ_FOR_B="arp[6:2] = 1 and ether src $HOST_A_MAC and arp dst host $DL_HOST_B"
seen_before=$(e2e_capture_count "$PCAP" "$REQ_FOR_B")
before=$(e2e_counter a arp_replies)
out=$(arping_from_a "$DL_HOST_B") || true
mac=$(reply_mac "$out")
if [[ "$mac" == "$DL_HOST_B_MAC" ]]; then
    e2e_ok "arping $DL_HOST_B from host A is answered with host B's MAC $mac"
else
    e2e_not_ok "arping $DL_HOST_B: expected host B's MAC $DL_HOST_B_MAC, got '${mac:-none}'"
    printf '%s\n' "$out" | sed 's/^/#   /'
fi
after=$(e2e_counter a arp_replies)
e2e_check "suppression: the answer came from site A's responder (arp_replies $before -> $after)" \
    test "$after" -gt "$before"
settle
seen_after=$(e2e_capture_count "$PCAP" "$REQ_FOR_B")
if ((seen_after == seen_before)); then
    e2e_ok "suppression: host A's request for $DL_HOST_B did not cross the tunnel"
else
    e2e_not_ok "suppression: host A's request for $DL_HOST_B reached B's TAP:"
    e2e_capture_show "$PCAP" "$REQ_FOR_B"
fi

# --- 3. an unknown target is flooded
REQ_UNUSED="arp[6:2] = 1 and ether src $HOST_A_MAC and arp dst host $UNUSED"
before=$(e2e_counter a arp_replies)
out=$(arping_from_a "$UNUSED") || true
mac=$(reply_mac "$out")
e2e_check "arping $UNUSED (unused) gets no answer" test -z "$mac"
if tb_wait_until 5 "the request for $UNUSED on B's TAP" e2e_capture_seen "$PCAP" "$REQ_UNUSED"; then
    e2e_ok "the request for the unknown target $UNUSED was flooded: B's TAP saw it"
else
    e2e_not_ok "the request for the unknown target $UNUSED never reached B's TAP"
fi
after=$(e2e_counter a arp_replies)
e2e_check "arp_replies unchanged for the unknown target ($before -> $after)" \
    test "$after" -eq "$before"

e2e_capture_stop
e2e_summary
