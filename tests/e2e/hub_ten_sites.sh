#!/usr/bin/env bash
#
# hub_ten_sites.sh — a hub with 9 spokes, one key per spoke (SPEC §4 [[peer]] psk_file,
# §5 "Identity and keys", `tunnel.hub`).
#
#                                  [wan] br-wan
#        ┌──────────────┬──────────────┼──────── … ───────┐
#   198.18.9.1/24   198.18.9.11/24  198.18.9.12/24     198.18.9.19/24   (wan0)
#      [hub]            [s1]           [s2]       …        [s9]
#   tb 198.19.9.1    198.19.9.11    198.19.9.12   …     198.19.9.19     (one /24)
#
# The hub has `hub = true`, the nine spokes as peers (endpoints set), each with its own
# key file, and a default key (tunnel.psk_file) that no spoke holds. A spoke holds only
# its own key and has one peer, the hub. IPv6 is off in the gateways.
# Checks: all ten links come up; the hub sees its nine peers up and every spoke sees the
# hub up; every spoke pings every other spoke (72 ordered pairs), through the hub (the
# hub's per-peer rx/tx frame counters grow by at least the pings each spoke sent and
# answered). Then s5's key is removed from the hub's config (its [[peer]] keeps name and
# endpoint, so it falls back to the hub's default key) and the hub's link is restarted:
# the other eight spokes come up again and ping each other (56 pairs), while s5 is
# refused: its state stays not `up` at both ends in every sample for 10 s, its pings
# fail, the hub counts s5's initiations as `rx_auth_failed` (no key matches) and s5
# counts the hub's initiations (under the wrong key) the same way; the others' sessions
# with the hub are `up` with at least one handshake since the restart.
#
# Run as root: tests/e2e/hub_ten_sites.sh   (BRIDGE_CTL=... to pick the binary)

# shellcheck disable=SC2317 # the helpers below run indirectly, from e2e_check / e2e_wait
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

PORT=51901
SPOKES=(s1 s2 s3 s4 s5 s6 s7 s8 s9)
VICTIM=s5
declare -A WAN_IP=([hub]=198.18.9.1)
declare -A TAP_IP=([hub]=198.19.9.1)
for i in "${!SPOKES[@]}"; do
    WAN_IP[${SPOKES[i]}]=198.18.9.$((11 + i))
    TAP_IP[${SPOKES[i]}]=198.19.9.$((11 + i))
done

# ---------------------------------------------------------------- WAN and sites
e2e_site wan
NS_WAN=$(e2e_ns wan)
ip -n "$NS_WAN" link add br-wan type bridge
ip -n "$NS_WAN" link set br-wan up
n=0
for s in hub "${SPOKES[@]}"; do
    n=$((n + 1))
    e2e_wan_port "$NS_WAN" "port$n" "$s" "${WAN_IP[$s]}/24"
done

# ---------------------------------------------------------------- keys
# Each site has its own key directory, as each is its own box: the hub holds a key
# per spoke (hub-keys/SPOKE.psk) and a default key no spoke knows; each spoke holds a
# copy of its own key only (SPOKE-keys/own.psk).
mkdir -m 700 "$E2E_WORK/hub-keys"
e2e_new_key "$E2E_WORK/hub-keys/default.psk"
for s in "${SPOKES[@]}"; do
    e2e_new_key "$E2E_WORK/hub-keys/$s.psk"
    mkdir -m 700 "$E2E_WORK/$s-keys"
    install -m 600 "$E2E_WORK/hub-keys/$s.psk" "$E2E_WORK/$s-keys/own.psk"
done

# hub_config [NO_KEY_SPOKE]: the hub's config; NO_KEY_SPOKE's [[peer]] has no key.
hub_config() {
    local args=() s
    for s in "${SPOKES[@]}"; do
        args+=(--peer "$s=${WAN_IP[$s]}:$PORT")
        [[ "$s" == "${1:-}" ]] || args+=(--peer-key "$s=$E2E_WORK/hub-keys/$s.psk")
    done
    e2e_config hub --listen "${WAN_IP[hub]}:$PORT" --address "${TAP_IP[hub]}/24" \
        --psk "$E2E_WORK/hub-keys/default.psk" --hub true "${args[@]}"
}

hub_config
for s in "${SPOKES[@]}"; do
    e2e_config "$s" --listen "${WAN_IP[$s]}:$PORT" --address "${TAP_IP[$s]}/24" \
        --psk "$E2E_WORK/$s-keys/own.psk" --peer "hub=${WAN_IP[hub]}:$PORT" \
        --peer-key "hub=$E2E_WORK/$s-keys/own.psk"
done

e2e_check "check hub exits 0 (nine [[peer]] psk_file keys, hub = true)" \
    e2e_ctl hub 10 check hub --config "$(e2e_conf hub)"

# ---------------------------------------------------------------- up
for s in hub "${SPOKES[@]}"; do
    e2e_require_up "$s"
done

# e2e_jq_args SITE EXPR NAME...: e2e_jq with the list `names` = NAME... in EXPR.
e2e_jq_args() {
    local site=$1 expr=$2 json
    shift 2
    json=$(e2e_json "$site") || return 1
    python3 -c '
import json, sys
d = json.loads(sys.argv[1])
def peer(name):
    return next(p for p in d["peers"] if p["name"] == name)
names = sys.argv[3:]
v = eval(sys.argv[2])
print("null" if v is None else json.dumps(v) if isinstance(v, (dict, list, bool)) else v)
' "$json" "$expr" "$@"
}

# all_up SITE PEER...: every named peer of SITE is up.
all_up() {
    local site=$1
    shift
    [[ "$(e2e_jq_args "$site" 'all(peer(n)["state"] == "up" for n in names)' "$@")" == true ]]
}

e2e_wait "the hub sees all nine spokes up" 30 all_up hub "${SPOKES[@]}"
e2e_passed || e2e_fatal "the hub's sessions did not come up: $(e2e_json hub | head -c 2000)"
for s in "${SPOKES[@]}"; do
    e2e_wait_peer_up "$s" hub
    e2e_passed || e2e_fatal "the tunnel $s ↔ hub did not come up"
done

# ---------------------------------------------------------------- mesh pings

# ping_all SRC DST...: ping every DST's TAP address from SRC at once, 3 replies each
# within 10 s; prints the destinations that failed, fails if any did.
ping_all() {
    local src=$1 ns d bad=() pids=() i=0
    shift
    ns=$(e2e_ns "$src")
    for d in "$@"; do
        ip netns exec "$ns" timeout 20 ping -n -q -c 3 -i 0.2 -w 10 "${TAP_IP[$d]}" \
            >"$E2E_WORK/ping.$src.$d" 2>&1 &
        pids+=($!)
    done
    for d in "$@"; do
        wait "${pids[i]}" || bad+=("$d ($(grep -Eo '[0-9]+ received' "$E2E_WORK/ping.$src.$d" || echo 'no summary'))")
        i=$((i + 1))
    done
    if ((${#bad[@]} > 0)); then
        printf 'no 3 replies within 10 s from: %s\n' "${bad[*]}"
        return 1
    fi
}

# others SITE LIST...: LIST without SITE.
others() {
    local me=$1 o
    shift
    for o in "$@"; do
        [[ "$o" == "$me" ]] || printf '%s\n' "$o"
    done
}

# hub_frames TAG: the hub's rx_frames and tx_frames of every spoke, from one status
# call, into FR[TAG.rx.SPOKE] and FR[TAG.tx.SPOKE] ("x" when unknown).
declare -A FR=()
hub_frames() {
    local tag=$1 s rx tx
    for s in "${SPOKES[@]}"; do
        FR[$tag.rx.$s]=x
        FR[$tag.tx.$s]=x
    done
    while read -r s rx tx; do
        FR[$tag.rx.$s]=$rx
        FR[$tag.tx.$s]=$tx
    done < <(e2e_jq_args hub '"\n".join("%s %s %s" % (n, peer(n)["rx_frames"], peer(n)["tx_frames"])
        for n in names)' "${SPOKES[@]}" || true)
}

hub_frames before
t0=$SECONDS
for s in "${SPOKES[@]}"; do
    mapfile -t dst < <(others "$s" "${SPOKES[@]}")
    e2e_check "$s pings the 8 other spokes through the hub (3 replies each)" ping_all "$s" "${dst[@]}"
done
e2e_note "72 spoke-to-spoke pings took $((SECONDS - t0)) s"

# Each spoke sent 8 × 3 echo requests and answered 8 × 3: at least 48 frames each way
# crossed its session with the hub.
hub_frames after
for s in "${SPOKES[@]}"; do
    for d in rx tx; do
        b=${FR[before.$d.$s]} a=${FR[after.$d.$s]}
        e2e_cmp "hub: ${d}_frames of peer $s grew by ≥ 48 ($b → $a)" "$a" -ge "$((${b/x/0} + 48))"
    done
done

e2e_check "status hub --json has every SPEC §6 key with the right type" e2e_schema hub
e2e_check "hub: no refused handshakes so far (rx_auth_failed, rx_unknown_peer, rx_replayed = 0)" \
    e2e_jq hub 'exit(0 if all(d["counters"][k] == 0 for k in
        ("rx_auth_failed", "rx_unknown_peer", "rx_replayed")) else 1)'

# ---------------------------------------------------------------- remove s5's key
hub_config "$VICTIM"
# shellcheck disable=SC2016 # expanded by the inner shell
e2e_check "$VICTIM's key is gone from the hub's config" \
    bash -c '! grep -q "hub-keys/$1.psk" "$2"' _ "$VICTIM" "$(e2e_conf hub)"
e2e_check "check hub exits 0 without $VICTIM's key (it falls back to the default key)" \
    e2e_ctl hub 10 check hub --config "$(e2e_conf hub)"
v_auth0=$(e2e_counter "$VICTIM" rx_auth_failed || echo x)
e2e_check_down "hub: link down" hub
e2e_check_up "hub: link up again, without $VICTIM's key" hub
mapfile -t REST < <(others "$VICTIM" "${SPOKES[@]}")

e2e_wait "the hub sees the other eight spokes up again" 30 all_up hub "${REST[@]}"
for s in "${REST[@]}"; do
    e2e_wait_peer_up "$s" hub 20
done

# The victim's session with the old hub instance dies (nothing authentic for 3 ×
# keepalive); from then on it is never up again, at either end.
victim_not_up() {
    [[ "$(e2e_peer "$VICTIM" hub state)" != up ]]
}
e2e_wait "$VICTIM sees the hub not up (its old session died)" 20 victim_not_up
samples=0 bad=()
for ((i = 0; i < 20; i++)); do
    sv=$(e2e_peer "$VICTIM" hub state 2>/dev/null || echo error)
    sh=$(e2e_peer hub "$VICTIM" state 2>/dev/null || echo error)
    samples=$((samples + 1))
    [[ "$sv" != up && "$sv" != error && "$sh" != up && "$sh" != error ]] ||
        bad+=("sample $i: $VICTIM sees hub $sv, hub sees $VICTIM $sh")
    sleep 0.5
done
if ((${#bad[@]} == 0)); then
    e2e_ok "$VICTIM is not up at either end in any of $samples samples over 10 s"
else
    e2e_not_ok "$VICTIM is not up at either end in any of $samples samples over 10 s" "${bad[@]}"
fi
e2e_check "hub: $VICTIM has no handshake since the restart" \
    e2e_jq hub "exit(0 if peer('$VICTIM')['handshakes'] == 0 else 1)"

hub_auth_failed() {
    local v
    v=$(e2e_counter hub rx_auth_failed) || return 1
    ((v > 0))
}
victim_auth_failed() {
    local v
    v=$(e2e_counter "$VICTIM" rx_auth_failed) || return 1
    ((v > v_auth0))
}
e2e_wait "hub: $VICTIM's initiations are refused and counted (rx_auth_failed > 0)" 20 hub_auth_failed
e2e_wait "$VICTIM: the hub's initiations under the wrong key are refused and counted (rx_auth_failed > $v_auth0)" \
    20 victim_auth_failed
e2e_note "hub counters: $(e2e_jq hub 'd["counters"]' || echo '?')"
e2e_note "$VICTIM counters: $(e2e_jq "$VICTIM" 'd["counters"]' || echo '?')"
e2e_check "hub: no initiation was taken for another spoke's (rx_unknown_peer = 0)" \
    test "$(e2e_counter hub rx_unknown_peer)" = 0

e2e_check_fails "$VICTIM can no longer reach the hub (ping fails)" \
    e2e_ping "$VICTIM" "${TAP_IP[hub]}" -c 3 -i 0.3 -W 1
mapfile -t vdst < <(others "$VICTIM" "${SPOKES[@]}")
e2e_check_fails "$VICTIM can no longer reach any other spoke" ping_all "$VICTIM" "${vdst[@]:0:2}"

t0=$SECONDS
for s in "${REST[@]}"; do
    mapfile -t dst < <(others "$s" "${REST[@]}")
    e2e_check "after the restart: $s pings the 7 other keyed spokes (3 replies each)" \
        ping_all "$s" "${dst[@]}"
done
e2e_note "56 spoke-to-spoke pings took $((SECONDS - t0)) s"
e2e_check "after the restart: the other eight spokes each completed a handshake with the new hub" \
    e2e_jq_args hub 'exit(0 if all(peer(n)["state"] == "up" and peer(n)["handshakes"] >= 1
        for n in names) else 1)' "${REST[@]}"

e2e_summary
