#!/usr/bin/env bash
#
# workers.sh — a hub with `workers = 3`: one thread per TAP queue and UDP socket.
#
#                      [wan] br-wan
#          ┌──────────┬────┴─────┬──────────┐
#        [hub]     [spoke0]   [spoke1]   [spoke2]      (one /24 WAN, one /24 overlay)
#   workers = 3   each spoke's WAN address is picked so the hub's steering program
#                 sends its datagrams to worker 0, 1 and 2 respectively
#
# Checks: the hub's TAP has 3 queues, 3 UDP sockets share its port, threads worker-1 and
# worker-2 run beside the first; every session comes up; pings spoke ↔ hub and spoke ↔
# spoke (relayed by the hub); 40 MB from each spoke to the hub arrive with an identical
# sha256, and the CPU time of the hub's threads during each transfer shows it was the
# worker that the steering function names (by far the busiest); 40 MB spoke0 → spoke2
# through the hub intact; no replayed or unauthenticated packets counted; a second link
# with workers on the same port is refused (the port is in use); a reload of
# keepalive is applied while a reload of `workers` is refused (restart-only); link
# down stops every thread and removes the TAP.
#
# Run as root: tests/e2e/workers.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init
tb_need_cmd nc netcat-openbsd

PORT=51901
WORKERS=3
SIZE_MB=40
HUB_WAN=198.18.9.1
HUB_TAP=198.19.9.1

# The spoke WAN addresses: one the hub steers to worker 0, 1 and 2 each.
mapfile -t SPOKE_WAN < <(python3 "$E2E_ROOT/tests/tools/steer.py" pick 198.18.9 "$PORT" "$WORKERS")
((${#SPOKE_WAN[@]} == WORKERS)) || tb_die "could not pick one spoke address per worker"
SPOKES=(spoke0 spoke1 spoke2)

e2e_site wan
NS_WAN=$(e2e_ns wan)
ip -n "$NS_WAN" link add br-wan type bridge
ip -n "$NS_WAN" link set br-wan up
e2e_wan_port "$NS_WAN" port0 hub "$HUB_WAN/24"
for i in 0 1 2; do
    e2e_wan_port "$NS_WAN" "port$((i + 1))" "${SPOKES[$i]}" "${SPOKE_WAN[$i]}/24"
done
NS_HUB=$(e2e_ns hub)

args=()
for i in 0 1 2; do
    args+=(--peer "${SPOKES[$i]}=${SPOKE_WAN[$i]}:$PORT")
done
e2e_config hub --listen "0.0.0.0:$PORT" --address "$HUB_TAP/24" --hub true \
    --workers "$WORKERS" "${args[@]}"
for i in 0 1 2; do
    e2e_config "${SPOKES[$i]}" --listen "${SPOKE_WAN[$i]}:$PORT" \
        --address "198.19.9.$((i + 2))/24" --peer "hub=$HUB_WAN:$PORT"
done
for s in hub "${SPOKES[@]}"; do
    e2e_require_up "$s"
done
for s in "${SPOKES[@]}"; do
    e2e_wait_peer_up hub "$s"
    e2e_passed || e2e_fatal "the tunnel hub ↔ $s did not come up"
    e2e_wait_peer_up "$s" hub
    e2e_passed || e2e_fatal "the tunnel $s ↔ hub did not come up"
done
PID=$(e2e_daemon_pid hub) || e2e_fatal "no daemon PID for the hub"

# ---------------------------------------------------------------- what was built
queues=$(ip netns exec "$NS_HUB" bash -c 'ls -d /sys/class/net/tb-hub/queues/rx-* | wc -l')
e2e_cmp "the hub's TAP has $WORKERS queues" "$queues" -eq "$WORKERS"
sockets=$(ip netns exec "$NS_HUB" ss -Huanp "sport = :$PORT" | grep -c "pid=$PID,")
e2e_cmp "$WORKERS UDP sockets of the daemon share port $PORT" "$sockets" -eq "$WORKERS"

# worker_tid N: the thread of worker N (the first worker is the daemon's main thread).
worker_tid() {
    local t
    if (($1 == 0)); then
        printf '%s\n' "$PID"
        return
    fi
    for t in /proc/"$PID"/task/*; do
        if [[ "$(cat "$t/comm" 2>/dev/null)" == "worker-$1" ]]; then
            printf '%s\n' "${t##*/}"
            return
        fi
    done
    return 1
}
declare -A TID
for w in 0 1 2; do
    TID[$w]=$(worker_tid "$w" || true)
done
e2e_match "threads worker-1 and worker-2 run beside the first" '^[0-9]+ [0-9]+$' \
    "${TID[1]} ${TID[2]}"

# ---------------------------------------------------------------- connectivity
for i in 0 1 2; do
    e2e_wait "ping ${SPOKES[$i]} → hub" 10 e2e_ping1 "${SPOKES[$i]}" "$HUB_TAP"
    e2e_check "ping hub → ${SPOKES[$i]}" e2e_ping hub "198.19.9.$((i + 2))"
done
e2e_wait "ping spoke0 → spoke2 (relayed by the hub)" 10 e2e_ping1 spoke0 198.19.9.4
e2e_check "ping spoke1 → spoke0 (relayed by the hub)" e2e_ping spoke1 198.19.9.2

# ---------------------------------------------------------------- transfers
src="$E2E_WORK/blob"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom >"$src"
sum_src=$(sha256sum <"$src" | cut -d' ' -f1)

# runtime_ms TID: the thread's time on a CPU so far, in ms (/proc/…/schedstat).
runtime_ms() {
    local ns
    read -r ns _ <"/proc/$PID/task/$1/schedstat" || ns=0
    printf '%s\n' "$((ns / 1000000))"
}

# send_blob FROM IP: $src with nc from FROM's namespace to IP:5001.
# shellcheck disable=SC2317 # called indirectly, by e2e_check
send_blob() {
    timeout 60 ip netns exec "$(e2e_ns "$1")" nc -N "$2" 5001 <"$src"
}

# transfer FROM TO_SITE TO_IP TAG: $SIZE_MB MB with nc from FROM to TO_IP:5001 in
# TO_SITE (kept as blob.TAG); checks the sha256.
transfer() {
    local from=$1 to=$2 ip=$3 dst="$E2E_WORK/blob.$4" nc_pid
    timeout 60 ip netns exec "$(e2e_ns "$to")" nc -l -N "$ip" 5001 >"$dst" &
    nc_pid=$!
    tb_defer tb_stop_pid "$nc_pid"
    tb_wait_until 10 "nc listening in $to" \
        ip netns exec "$(e2e_ns "$to")" bash -c "ss -ltn | grep -q '$ip:5001'"
    e2e_check "$from sends $SIZE_MB MB to $to" send_blob "$from" "$ip"
    wait "$nc_pid" || true
    e2e_match "$from → $to: identical sha256" "^$sum_src\$" "$(sha256sum <"$dst" | cut -d' ' -f1)"
}

for i in 0 1 2; do
    declare -A before=() spent=()
    for w in 0 1 2; do
        before[$w]=$(runtime_ms "${TID[$w]}")
    done
    transfer "${SPOKES[$i]}" hub "$HUB_TAP" "$i"
    for w in 0 1 2; do
        spent[$w]=$(($(runtime_ms "${TID[$w]}") - before[$w]))
    done
    e2e_note "hub threads' CPU during ${SPOKES[$i]}'s transfer: worker 0 ${spent[0]} ms," \
        "worker 1 ${spent[1]} ms, worker 2 ${spent[2]} ms"
    busiest_elsewhere=0
    for w in 0 1 2; do
        ((w == i || spent[$w] <= busiest_elsewhere)) || busiest_elsewhere=${spent[$w]}
    done
    e2e_cmp "${SPOKES[$i]}'s traffic was worker $i's (over 5x any other worker's CPU)" \
        "${spent[$i]}" -gt "$((5 * busiest_elsewhere + 5))"
done
transfer spoke0 spoke2 198.19.9.4 relay

e2e_cmp "the hub counted no replayed packets" "$(e2e_counter hub rx_replayed)" -eq 0
e2e_cmp "the hub counted no unauthenticated packets" "$(e2e_counter hub rx_auth_failed)" -eq 0

# ---------------------------------------------------------------- port in use
# A second link with workers on the hub's port is refused, as with one worker
# (SO_REUSEPORT alone would let it join the hub's group and take its datagrams).
E2E_NS[hub2]=$NS_HUB
e2e_config hub2 --listen "0.0.0.0:$PORT" --address 198.19.10.1/24 --workers 2 \
    --peer "spoke0=${SPOKE_WAN[0]}:$PORT"
e2e_up hub2 || true
e2e_cmp "a second link with 2 workers on port $PORT is refused (exit 1)" "$E2E_RC" -eq 1
e2e_match "… naming the port" "cannot listen on UDP 0\.0\.0\.0:$PORT" "$E2E_STDERR"
e2e_check "ping spoke2 → hub still crosses" e2e_ping spoke2 "$HUB_TAP"

# ---------------------------------------------------------------- reload and down
conf=$(e2e_conf hub)
sed -i 's/^keepalive = .*/keepalive = "3s"/' "$conf"
e2e_check "reload of keepalive is applied" e2e_ctl hub 20 reload --config "$conf"
sed -i "s/^workers = .*/workers = 2/" "$conf"
e2e_check_fails "reload of workers is refused" e2e_ctl hub 20 reload --config "$conf"
e2e_match "… saying it needs a restart" 'tunnel\.workers.*restart' "$E2E_STDOUT$E2E_STDERR"
e2e_wait "ping spoke1 → hub after the refused reload" 10 e2e_ping1 spoke1 "$HUB_TAP"
sed -i "s/^workers = .*/workers = $WORKERS/" "$conf"

e2e_check_down "link down hub exits 0" hub
e2e_wait "the hub's daemon and all its threads are gone" 10 e2e_pid_gone "$PID"
e2e_check "the hub's TAP is gone" e2e_link_absent "$NS_HUB" tb-hub

e2e_summary
