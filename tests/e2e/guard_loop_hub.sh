#!/usr/bin/env bash
#
# guard_loop_hub.sh — loop detection at a hub (SPEC §4 guard.loop_detect, §5 Guards):
# a loop through one branch cuts off that branch's tunnel only, never the hub's other
# branches.
#
#                        [wan] br-wan
#             ┌────────────┼─────────────┐
#      198.18.41.1/24  198.18.41.2/24  198.18.41.3/24          (wan0 of each gateway)
#        [gwa] hub        [gwb]          [gwc]
#   ha ── br-lan       hb ── br-lan   hc ── br-lan             (hosts 198.19.41.10/20/30)
#
# gwa has `hub = true` and gwb, gwc as peers; each branch has the hub as its one peer.
# STP is off on every br-lan (so the loop is real). With all tunnels up, a veth joins
# gwa's and gwb's br-lan ("the backup line") and ha sends one broadcast. Checks: the hub
# detects the loop (loops_detected ≥ 1) and logs it naming gwb; while it lasts, ha and hc
# still reach each other through the tunnel (ARP broadcasts included: the hub still
# floods to gwc), and hb reaches ha over the direct link; once the direct link is removed, ha reaches hb through the tunnel
# again within 10 s. Then a direct link joins gwb's and gwc's br-lan (a loop behind the
# hub, through two branches): the hub detects it within 5 s, logs the pair, and stops
# relaying between gwb and gwc only; ha still reaches hb and hc through the hub, hb and
# hc reach each other over their link, both branches keep their tunnels; once the link
# is removed (hc having talked over it last), hb reaches hc through the hub again.
# Everything is bounded: storm_pps caps what could circulate before detection, and the
# rig is deleted on any exit.
#
# Run as root: tests/e2e/guard_loop_hub.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/guard_lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/guard_lib.sh"

e2e_init

PORT=51901
SITES=(gwa gwb gwc)
declare -A WAN_IP=([gwa]=198.18.41.1 [gwb]=198.18.41.2 [gwc]=198.18.41.3)
declare -A HOST=([gwa]=ha [gwb]=hb [gwc]=hc)
declare -A HOST_IP=([ha]=198.19.41.10 [hb]=198.19.41.20 [hc]=198.19.41.30)
GUARD=$'[guard]\nstorm_pps = 2000\nloop_detect = true'

e2e_site wan
NS_WAN=$(e2e_ns wan)
ip -n "$NS_WAN" link add br-wan type bridge
ip -n "$NS_WAN" link set br-wan up
n=0
for s in "${SITES[@]}"; do
    n=$((n + 1))
    e2e_wan_port "$NS_WAN" "port$n" "$s" "${WAN_IP[$s]}/24"
    ns=$(e2e_ns "$s")
    ip -n "$ns" link add br-lan type bridge
    ip -n "$ns" link set br-lan type bridge forward_delay 0 stp_state 0 mcast_snooping 0
    ip -n "$ns" link set br-lan up
    h=${HOST[$s]}
    e2e_site "$h"
    hns=$(e2e_ns "$h")
    e2e_no_ipv6 "$hns"
    tb_veth "$hns" eth0 "$ns" lan0
    ip -n "$ns" link set lan0 master br-lan
    ip -n "$hns" addr add "${HOST_IP[$h]}/24" dev eth0
done
NS_A=$(e2e_ns gwa)
NS_B=$(e2e_ns gwb)

e2e_config gwa --listen "${WAN_IP[gwa]}:$PORT" --bridge br-lan --hub true \
    --peer "gwb=${WAN_IP[gwb]}:$PORT" --peer "gwc=${WAN_IP[gwc]}:$PORT" --extra "$GUARD"
for s in gwb gwc; do
    e2e_config "$s" --listen "${WAN_IP[$s]}:$PORT" --bridge br-lan \
        --peer "gwa=${WAN_IP[gwa]}:$PORT" --extra "$GUARD"
done
for s in "${SITES[@]}"; do
    e2e_require_up "$s"
done
for s in gwb gwc; do
    e2e_wait_peer_up gwa "$s" 20
    e2e_passed || e2e_fatal "the tunnel gwa ↔ $s did not come up"
    e2e_wait_peer_up "$s" gwa 20
    e2e_passed || e2e_fatal "the tunnel $s ↔ gwa did not come up"
done
e2e_wait "ha reaches hb through the hub's tunnel" 10 e2e_ping1 ha "${HOST_IP[hb]}"
e2e_wait "ha reaches hc through the hub's tunnel" 10 e2e_ping1 ha "${HOST_IP[hc]}"

# dump: after a failed check, the hosts' neighbours, each LAN bridge's learned
# addresses and every gateway's log.
dump() {
    local h s
    for h in ha hb hc; do
        e2e_note "neighbours in $h: $(ip -n "$(e2e_ns "$h")" neigh show 2>&1 | tr '\n' ';')"
    done
    for s in "${SITES[@]}"; do
        e2e_note "$s's br-lan learned: $(bridge -n "$(e2e_ns "$s")" fdb show br br-lan 2>&1 |
            grep -v permanent | tr '\n' ';')"
        e2e_note "$s's counters not zero: $(e2e_json "$s" status 2>&1 | python3 -c '
import json, sys
d = json.load(sys.stdin)
print({k: v for k, v in d["counters"].items() if v})
print([(p["name"], {k: v for k, v in p.items() if isinstance(v, int) and v}) for p in d["peers"]])
' 2>&1 | tr '\n' ' ')"
        e2e_note "$s's log:"
        tail -n 20 "$E2E_WORK/run/$s.log" 2>&1 | sed 's/^/#   /' || true
    done
}

# --- the other path: a direct veth between gwa's and gwb's br-lan
tb_veth "$NS_A" loopa "$NS_B" loopb
ip -n "$NS_B" link set loopb master br-lan
ip -n "$NS_A" link set loopa master br-lan
gl_frames "$(e2e_ns ha)" 5 bcast eth0
e2e_wait "the hub detects the loop (loops_detected ≥ 1)" 10 gl_looped gwa
# no_loop_through PEER: the hub's log has no loop start naming PEER.
# shellcheck disable=SC2317 # invoked indirectly through e2e_check
no_loop_through() {
    ! grep -q "forwarding loop: .*peer=$1" "$E2E_WORK/run/gwa.log"
}
e2e_check "the hub's log names gwb as the peer the loop runs through" \
    grep -q 'forwarding loop: .*peer=gwb' "$E2E_WORK/run/gwa.log"
e2e_passed || dump
e2e_check "and names no loop through gwc" no_loop_through gwc

# While it lasts: gwc's tunnel is untouched. Flush the hosts' neighbour caches so the
# pings need ARP broadcasts, which the hub must still flood to gwc.
for h in ha hc; do
    ip -n "$(e2e_ns "$h")" neigh flush dev eth0
done
e2e_wait "ha reaches hc through the hub while the loop through gwb lasts" 10 \
    e2e_ping ha "${HOST_IP[hc]}" -c 1 -W 1
e2e_passed || dump
e2e_check "hc reaches ha too" e2e_ping hc "${HOST_IP[ha]}"
e2e_wait "hb reaches ha while the loop lasts (over the direct link)" 10 \
    e2e_ping hb "${HOST_IP[ha]}" -c 1 -W 1
e2e_passed || dump
e2e_cmp "the hub refused frames to or from gwb meanwhile (loop_dropped)" \
    "$(e2e_counter gwa loop_dropped || echo 0)" -ge 1

# --- the other path goes away: gwb's tunnel carries traffic again within 10 s
ip -n "$NS_A" link del loopa
rx0=$(e2e_peer gwb gwa rx_frames || echo 0)
e2e_wait "ha reaches hb through the tunnel again within 10 s" 10 e2e_ping1 ha "${HOST_IP[hb]}"
e2e_cmp "the ping went through the tunnel (gwb rx_frames from gwa $rx0 → …)" \
    "$(e2e_peer gwb gwa rx_frames || echo 0)" -gt "$rx0"
e2e_check "ping hc → hb through the hub" e2e_ping hc "${HOST_IP[hb]}"

# --- a loop behind the hub: a direct veth between gwb's and gwc's br-lan. Frames go
# round gwb → hub → gwc → the direct link → gwb; the hub's probe for gwb reaches gwc's
# LAN, gwc sends it back marked, and the hub stops relaying between gwb and gwc only.
NS_C=$(e2e_ns gwc)
pairs0=$(e2e_counter gwa loops_detected || echo 0)
tb_veth "$NS_B" pairb "$NS_C" pairc
ip -n "$NS_B" link set pairb master br-lan
ip -n "$NS_C" link set pairc master br-lan
gl_frames "$(e2e_ns hb)" 5 bcast eth0
# pair_looped: the hub detected another loop since the phase started.
# shellcheck disable=SC2317 # invoked indirectly through e2e_wait
pair_looped() {
    local n
    n=$(e2e_counter gwa loops_detected) && [[ "$n" =~ ^[0-9]+$ ]] && ((n > pairs0))
}
e2e_wait "the hub detects the loop between gwb's and gwc's LANs within 5 s" 5 pair_looped
e2e_check "the hub's log names the pair" \
    grep -q 'forwarding loop between two peers: .*peer=gw[bc] other=gw[bc]' "$E2E_WORK/run/gwa.log"
e2e_passed || dump
e2e_check "and no loop through gwc alone" no_loop_through gwc
for h in ha hb hc; do
    ip -n "$(e2e_ns "$h")" neigh flush dev eth0
done
e2e_wait "ha reaches hb through the hub while gwb and gwc are joined" 10 \
    e2e_ping ha "${HOST_IP[hb]}" -c 1 -W 1
e2e_passed || dump
e2e_wait "ha reaches hc through the hub too" 10 e2e_ping ha "${HOST_IP[hc]}" -c 1 -W 1
e2e_passed || dump
e2e_wait "hb reaches hc over their own path" 10 e2e_ping hb "${HOST_IP[hc]}" -c 1 -W 1
e2e_check "gwb keeps its tunnel to the hub (up)" _e2e_peer_is_up gwb gwa
e2e_check "gwc keeps its tunnel to the hub (up)" _e2e_peer_is_up gwc gwa
# hc talks over the pair link last, so gwb has just seen it on its local side while
# hb's neighbour entry for it stays valid: once the link goes, gwb's LAN bridge has
# lost hc's port and floods hb's unicast to the TAP, and gwb must send it on (to the
# hub) after the switch's 5 s LOCAL_HOLD instead of keeping it home for the table's
# 300 s ageing.
ip -n "$(e2e_ns hc)" neigh flush dev eth0
e2e_check "hc reaches hb over the pair link (gwb sees hc on its LAN last)" \
    e2e_ping hc "${HOST_IP[hb]}" -c 1 -W 1
ip -n "$NS_B" link del pairb
e2e_wait "the pair loop ends and hb reaches hc through the hub again" 15 \
    e2e_ping hb "${HOST_IP[hc]}" -c 1 -W 1
e2e_passed || dump

e2e_summary
