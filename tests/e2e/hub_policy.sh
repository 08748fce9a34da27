#!/usr/bin/env bash
#
# hub_policy.sh — hub policy at layer 2 (SPEC §4 [[peer]] isolate / max_macs, §5 "Hub
# policy", §6 policy_dropped and per-peer macs): what one spoke may do to the others.
#
#                         [wan] br-wan
#        ┌──────────────┬──────┴───────┬──────────────┐
#   198.18.50.1/24  198.18.50.11/24 198.18.50.12/24 198.18.50.13/24     (wan0)
#      [hub]            [s1]           [s2]           [s3]
#   tb 198.19.50.1   198.19.50.11   198.19.50.12   198.19.50.13         (one /24)
#
# The hub has `hub = true` and storm_pps = 500; s1 has `max_macs = 100`, s3 has
# `isolate = true`. The spokes run storm_pps = 0, so what they flood reaches the hub
# whole (the hub's own limits are what is tested). Frames are written into a spoke's
# TAP with tests/e2e/guard_frames.py, as if from a host on its LAN.
# Checks:
#  - s1 ↔ s2 ping through the hub; s3 reaches the hub's LAN (its TAP) but neither s1
#    nor s2 reaches s3, nor s3 them (isolate);
#  - MAC flood: s1 sends 3,000 broadcasts from 3,000 source MACs: the hub's status
#    shows s1 owning at most max_macs (`macs`), the rest counted in policy_dropped, and
#    s1 still pings s2 (its own MAC stayed its own);
#  - theft: while the hub pings s2 (20 probes), s1 sends 20 frames with s2's MAC as
#    source: the ping loses nothing, and the hub counts the forged frames in
#    policy_dropped;
#  - storm: s1 sends 10,000 broadcasts/s for 2 s: the hub relays to s2 (its tx_frames
#    for s2) at most 1.3 × storm_pps per second of the storm, and at least a second's
#    worth (limited, not blocked); the isolated s3 gets none of them;
#  - reload: s3's `isolate` removed and `bridge-ctl reload` prints "peer s3: policy
#    changed"; s3 now pings s2, and the hub's session with s3 was not restarted (its
#    handshake count is unchanged).
#
# Run as root: tests/e2e/hub_policy.sh   (BRIDGE_CTL=... to pick the binary)

# shellcheck disable=SC2317 # the helpers below run indirectly, from e2e_check / e2e_wait
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
FRAMES="$(dirname -- "${BASH_SOURCE[0]}")/guard_frames.py"

e2e_init

PORT=51901
SPOKES=(s1 s2 s3)
PPS=500
MAX_MACS=100
declare -A WAN_IP=([hub]=198.18.50.1 [s1]=198.18.50.11 [s2]=198.18.50.12 [s3]=198.18.50.13)
declare -A TAP_IP=([hub]=198.19.50.1 [s1]=198.19.50.11 [s2]=198.19.50.12 [s3]=198.19.50.13)

e2e_site wan
NS_WAN=$(e2e_ns wan)
ip -n "$NS_WAN" link add br-wan type bridge
ip -n "$NS_WAN" link set br-wan up
n=0
for s in hub "${SPOKES[@]}"; do
    n=$((n + 1))
    e2e_wan_port "$NS_WAN" "port$n" "$s" "${WAN_IP[$s]}/24"
done

# hub_config ISOLATE_S3: the hub's config; s1 limited to MAX_MACS, s3 isolated if
# ISOLATE_S3 is true.
hub_config() {
    local args=() s f
    for s in "${SPOKES[@]}"; do
        args+=(--peer "$s=${WAN_IP[$s]}:$PORT")
    done
    e2e_config hub --listen "${WAN_IP[hub]}:$PORT" --address "${TAP_IP[hub]}/24" \
        --hub true "${args[@]}" --extra "[guard]"$'\n'"storm_pps = $PPS"
    f=$(e2e_conf hub)
    # The policy keys go into the peers' own tables.
    python3 - "$f" "$MAX_MACS" "$1" <<'EOF'
import sys
path, max_macs, isolate = sys.argv[1], sys.argv[2], sys.argv[3]
extra = {'name = "s1"': f"max_macs = {max_macs}", 'name = "s3"': f"isolate = {isolate}"}
out = []
for line in open(path).read().splitlines():
    out.append(line)
    if line in extra:
        out.append(extra[line])
open(path, "w").write("\n".join(out) + "\n")
EOF
}

hub_config true
for s in "${SPOKES[@]}"; do
    e2e_config "$s" --listen "${WAN_IP[$s]}:$PORT" --address "${TAP_IP[$s]}/24" \
        --peer "hub=${WAN_IP[hub]}:$PORT" --extra "[guard]"$'\n'"storm_pps = 0"
done
e2e_check "check hub exits 0 (max_macs, isolate)" e2e_ctl hub 10 check hub --config "$(e2e_conf hub)"

for s in hub "${SPOKES[@]}"; do
    e2e_require_up "$s"
done
for s in "${SPOKES[@]}"; do
    e2e_wait_peer_up hub "$s" 20
    e2e_wait_peer_up "$s" hub 20
    e2e_passed || e2e_fatal "the tunnel $s ↔ hub did not come up"
done

# frames SITE SECS ARGS...: guard_frames.py ARGS in SITE's namespace, bounded by SECS.
frames() {
    local ns
    ns=$(e2e_ns "$1")
    ip netns exec "$ns" timeout -k 2 "$2" python3 "$FRAMES" "${@:3}"
}

tap_mac() {
    ip netns exec "$(e2e_ns "$1")" cat "/sys/class/net/tb-$1/address"
}

# ---------------------------------------------------------------- reach and isolate
e2e_wait "s1 pings s2 through the hub" 10 e2e_ping1 s1 "${TAP_IP[s2]}"
e2e_check "s2 pings s1 through the hub" e2e_ping s2 "${TAP_IP[s1]}"
e2e_wait "s3 (isolated) pings the hub's LAN" 10 e2e_ping1 s3 "${TAP_IP[hub]}"
e2e_check_fails "s3 (isolated) cannot reach s2" e2e_ping s3 "${TAP_IP[s2]}" -c 3 -i 0.3 -W 1
e2e_check_fails "s1 cannot reach s3 (isolated)" e2e_ping s1 "${TAP_IP[s3]}" -c 3 -i 0.3 -W 1

# ---------------------------------------------------------------- MAC flood
pd0=$(e2e_counter hub policy_dropped || echo x)
frames s1 15 storm "tb-s1" 1000 3 0x88b6 random >"$E2E_WORK/flood.out" || true
e2e_note "MAC flood from s1: $(cat "$E2E_WORK/flood.out")"
macs=$(e2e_peer hub s1 macs || echo x)
pd2=$(e2e_counter hub policy_dropped || echo x)
e2e_note "hub: s1 owns $macs MACs, policy_dropped $pd0 → $pd2"
e2e_cmp "hub: s1 owns at most max_macs = $MAX_MACS MACs after 3,000 new ones (macs $macs)" \
    "$macs" -le "$MAX_MACS"
e2e_cmp "hub: s1 owns some MACs (macs $macs ≥ 1)" "$macs" -ge 1
e2e_cmp "hub: the MACs beyond max_macs were dropped and counted (policy_dropped +$(e2e_sum "$pd2" "-$pd0") ≥ 1,000)" \
    "$(e2e_sum "$pd2" "-$pd0")" -ge 1000
e2e_check "s1 still pings s2 after its flood" e2e_ping s1 "${TAP_IP[s2]}"

# ---------------------------------------------------------------- no theft by one frame
S2_MAC=$(tap_mac s2)
e2e_check "the hub pings s2 (learns its MAC)" e2e_ping hub "${TAP_IP[s2]}"
pd1=$(e2e_counter hub policy_dropped || echo x)
frames s1 10 mark "tb-s1" - "$S2_MAC" ff:ff:ff:ff:ff:ff 20 &
thief=$!
tb_defer tb_stop_pid "$thief"
e2e_check "while s1 sends 20 frames from s2's MAC ($S2_MAC), the hub's ping of s2 loses nothing (20 probes)" \
    e2e_ping hub "${TAP_IP[s2]}" -c 20 -i 0.1 -W 1
wait "$thief" || true
pd3=$(e2e_counter hub policy_dropped || echo x)
e2e_cmp "the hub counted the forged frames in policy_dropped ($pd1 → $pd3)" \
    "$(e2e_sum "$pd3" "-$pd1")" -ge 15
# (s1's own MAC table now has s2's MAC on s1's LAN, where the forged frames came
# from: s1 itself cannot reach s2 until that entry ages out, so the flood runs first.)

# ---------------------------------------------------------------- storm
SECS=2
tx2_0=$(e2e_peer hub s2 tx_frames || echo x)
tx3_0=$(e2e_peer hub s3 tx_frames || echo x)
frames s1 $((SECS + 10)) storm "tb-s1" 10000 "$SECS" >"$E2E_WORK/storm.out" || true
sleep 0.5 # frames still queued at the hub
sent_line=$(cat "$E2E_WORK/storm.out")
e2e_note "storm from s1: $sent_line"
sent=$(sed -n 's/^sent \([0-9]*\) .*/\1/p' <<<"$sent_line")
tx2_1=$(e2e_peer hub s2 tx_frames || echo x)
tx3_1=$(e2e_peer hub s3 tx_frames || echo x)
relayed=$(e2e_sum "$tx2_1" "-$tx2_0")
e2e_note "hub → s2 during the storm: $relayed frames (≈ $((${relayed/x/0} / SECS))/s; storm_pps $PPS)"
e2e_cmp "the storm was offered at at least 5,000 frames/s (sent ${sent:-0})" "${sent:-0}" -ge $((5000 * SECS))
e2e_cmp "the hub relayed s1's storm to s2 at ≤ 1.3 × storm_pps ($relayed ≤ $((PPS * 13 * SECS / 10)))" \
    "$relayed" -le $((PPS * 13 * SECS / 10))
e2e_cmp "the hub did relay it, at least a second's worth ($relayed ≥ $PPS)" "$relayed" -ge "$PPS"
e2e_cmp "the isolated s3 got none of it (hub → s3: $(e2e_sum "$tx3_1" "-$tx3_0") frames ≤ 20)" \
    "$(e2e_sum "$tx3_1" "-$tx3_0")" -le 20

# ---------------------------------------------------------------- reload
hs0=$(e2e_peer hub s3 handshakes || echo x)
hub_config false
e2e_check "reload hub exits 0 after s3's isolate is turned off" \
    e2e_ctl hub 10 reload hub --config "$(e2e_conf hub)"
e2e_match "reload prints the policy change" '^peer\.s3\.isolate: true -> ' "$E2E_STDOUT"
e2e_wait "after the reload, s3 pings s2" 10 e2e_ping1 s3 "${TAP_IP[s2]}"
hs1=$(e2e_peer hub s3 handshakes || echo x)
e2e_cmp "the hub's session with s3 was not restarted (handshakes $hs0 → $hs1)" "$hs1" -eq "$hs0"
e2e_check "status hub --json has every SPEC §6 key with the right type" e2e_schema hub

e2e_summary
