#!/usr/bin/env bash
#
# three_sites.sh — three gateways on one WAN: the daemon is a learning switch (SPEC §5).
#
#                      [wan] br-wan 
#             ┌──────────┼───────────┐
#   198.18.7.1/24   198.18.7.2/24   198.18.7.3/24       (wan0 of each gateway)
#      [alpha]          [bravo]        [charlie]
#   tb 198.19.7.1    tb 198.19.7.2   tb 198.19.7.3      (one /24 across all three)
#
# Each gateway has the other two as peers (peer name = the other link's NAME, endpoint
# set). IPv6 is off in the gateways so no RS/MLD chatter disturbs the counters.
# Checks: all six peer sessions come up; the first ping alpha → bravo floods its ARP
# broadcast to charlie too; after pings to bravo and charlie (MAC table learned),
# unicast alpha → bravo does not raise alpha's tx_frames towards charlie (nor
# charlie's rx_frames from alpha) while tx_frames towards bravo grows; unicast
# bravo ↔ charlie never touches alpha (alpha's per-peer rx/tx stay put).
#
# Run as root: tests/e2e/three_sites.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

PORT=51901
SITES=(alpha bravo charlie)
declare -A WAN_IP=([alpha]=198.18.7.1 [bravo]=198.18.7.2 [charlie]=198.18.7.3)
declare -A TAP_IP=([alpha]=198.19.7.1 [bravo]=198.19.7.2 [charlie]=198.19.7.3)

e2e_site wan
NS_WAN=$(e2e_ns wan)
ip -n "$NS_WAN" link add br-wan type bridge
ip -n "$NS_WAN" link set br-wan up

n=0
for s in "${SITES[@]}"; do
    n=$((n + 1))
    e2e_wan_port "$NS_WAN" "port$n" "$s" "${WAN_IP[$s]}/24"
done

for s in "${SITES[@]}"; do
    args=()
    for o in "${SITES[@]}"; do
        [[ "$o" == "$s" ]] || args+=(--peer "$o=${WAN_IP[$o]}:$PORT")
    done
    e2e_config "$s" --listen "${WAN_IP[$s]}:$PORT" --address "${TAP_IP[$s]}/24" "${args[@]}"
done
for s in "${SITES[@]}"; do
    e2e_require_up "$s"
done
for s in "${SITES[@]}"; do
    for o in "${SITES[@]}"; do
        if [[ "$o" != "$s" ]]; then
            e2e_wait_peer_up "$s" "$o"
            e2e_passed || e2e_fatal "the tunnel $s ↔ $o did not come up"
        fi
    done
done

# num SITE PEER FIELD: a per-peer counter, or "x" when status fails.
num() {
    local v
    v=$(e2e_peer "$1" "$2" "$3" 2>/dev/null) || v=x
    [[ "$v" =~ ^[0-9]+$ ]] || v=x
    printf '%s\n' "$v"
}

# --- flooding: the first ARP broadcast towards bravo also reaches charlie
c0=$(num alpha charlie tx_frames)
e2e_wait "first ping alpha → bravo" 10 e2e_ping1 alpha "${TAP_IP[bravo]}"
e2e_cmp "alpha's ARP broadcast was flooded to charlie too (tx_frames $c0 → …)" \
    "$(num alpha charlie tx_frames)" -gt "$c0"

# --- learn every MAC everywhere
e2e_check "ping alpha → bravo" e2e_ping alpha "${TAP_IP[bravo]}"
e2e_check "ping alpha → charlie" e2e_ping alpha "${TAP_IP[charlie]}"
e2e_check "ping bravo → charlie" e2e_ping bravo "${TAP_IP[charlie]}"

# Pin every TAP neighbour (permanent ARP entries), so from here on the kernels send no
# ARP probes of their own that would move the counters: only the pings below do.
declare -A TAP_MAC=()
for s in "${SITES[@]}"; do
    TAP_MAC[$s]=$(ip -n "$(e2e_ns "$s")" -o link show dev "tb-$s" | grep -Eo 'link/ether [0-9a-f:]+' |
        cut -d' ' -f2) || true
done
for s in "${SITES[@]}"; do
    for o in "${SITES[@]}"; do
        if [[ "$o" != "$s" && -n "${TAP_MAC[$o]}" ]]; then
            ip -n "$(e2e_ns "$s")" neigh replace "${TAP_IP[$o]}" lladdr "${TAP_MAC[$o]}" \
                dev "tb-$s" nud permanent
        fi
    done
done
# Let a neighbour probe already under way (DELAY state lasts 5 s) finish first.
sleep 6

# --- known unicast goes to one peer only
a_c_tx=$(num alpha charlie tx_frames)
a_b_tx=$(num alpha bravo tx_frames)
c_a_rx=$(num charlie alpha rx_frames)
e2e_check "unicast ping alpha → bravo (10 probes)" \
    e2e_ping alpha "${TAP_IP[bravo]}" -c 10 -i 0.1 -W 2
e2e_cmp "alpha's tx_frames towards bravo grew by ≥ 10" \
    "$(num alpha bravo tx_frames)" -ge "$((${a_b_tx/x/0} + 10))"
e2e_cmp "alpha's tx_frames towards charlie did not change ($a_c_tx)" \
    "$(num alpha charlie tx_frames)" -eq "$a_c_tx"
e2e_cmp "charlie's rx_frames from alpha did not change ($c_a_rx)" \
    "$(num charlie alpha rx_frames)" -eq "$c_a_rx"

# --- bravo ↔ charlie unicast never touches alpha (split horizon, no hub)
a_b_rx=$(num alpha bravo rx_frames)
a_c_rx=$(num alpha charlie rx_frames)
a_b_tx=$(num alpha bravo tx_frames)
a_c_tx=$(num alpha charlie tx_frames)
e2e_check "unicast ping bravo → charlie (10 probes)" \
    e2e_ping bravo "${TAP_IP[charlie]}" -c 10 -i 0.1 -W 2
e2e_cmp "alpha's rx_frames from bravo did not change ($a_b_rx)" "$(num alpha bravo rx_frames)" -eq "$a_b_rx"
e2e_cmp "alpha's rx_frames from charlie did not change ($a_c_rx)" \
    "$(num alpha charlie rx_frames)" -eq "$a_c_rx"
e2e_cmp "alpha's tx_frames towards bravo did not change ($a_b_tx)" "$(num alpha bravo tx_frames)" -eq "$a_b_tx"
e2e_cmp "alpha's tx_frames towards charlie did not change ($a_c_tx)" \
    "$(num alpha charlie tx_frames)" -eq "$a_c_tx"

for s in "${SITES[@]}"; do
    e2e_check "status $s --json has every SPEC §6 key with the right type" e2e_schema "$s"
done

e2e_summary
