#!/usr/bin/env bash
#
# handshake_attacks.sh — captured handshakes replayed, relayed and misdirected (SPEC §5
# "Identity and keys", protocol v3 in src/tunnel/mod.rs).
#
#                               [wan] br-wan
#        ┌─────────────────┬───────────┴─────┬──────────────────┐
#   198.18.10.1/24    198.18.10.2/24    198.18.10.3/24     198.18.10.66/24   (wan0)
#     [a] hub            [b]               [c]                [x] attacker
#   tb 198.19.10.1    198.19.10.2       198.19.10.3
#                                       + link "b" (C's config named b.toml, C's key,
#                                         port 51902, TAP 198.19.11.3/24)
#
# a is the hub (`hub = true`) with peers b and c (endpoints set), one key each (b.psk,
# c.psk) and a default key nobody else holds; b and c hold only their own key. a and b
# rekey every 5 s. The WAN is captured with tcpdump in the WAN namespace (port of b and
# of c) and the handshake messages are replayed with scapy (tests/tools/handshake_replay.py).
#
# 0. Capture: a comes up first, so its initiations for b and for c are on the wire
#    before b and c answer; then b's initiation and 5-s rekeys. Every captured
#    handshake message is well formed (type 1: 148 bytes, type 2: 88, version 3).
# 1. Replay flood: x replays b's captured handshake messages to a with b's source
#    address spoofed, ≥ 500 per second for 60 s, while a pings b every 100 ms and both
#    ends' status is sampled every 0.5 s. The a–b session is `up` in every sample, a's
#    endpoint for b never changes, ≤ 1 % of the pings are lost, a and b keep rekeying,
#    a counts the replayed initiations as rx_replayed and never rate-limits or answers
#    (handshake_rate_limited and cookie_replies stay 0).
# 2. Impersonation: C brings up a link named "b" (config file b.toml in C's own
#    directory, peer "a", C's own key) and sends frames into it: a refuses it as
#    rx_unknown_peer, never moves b's endpoint, b stays up, no frame with the rogue
#    TAP's MAC reaches a's or b's TAP, the rogue link never comes up. C then replays b's
#    captured initiations from its own address: refused as rx_replayed, no answer, b's
#    endpoint unchanged. Last, a relay: a drops b's initiations (iptables), b restarts
#    and C forwards each of b's fresh initiations (seen on the WAN) to a from C's
#    address; a answers C (the initiation is valid) but never moves b's endpoint to C's
#    address (sampled every 0.25 s, and a's log has no such move).
# 3. Misdirection: a's initiations for b delivered to c are refused by c
#    (rx_auth_failed, no answer); a's initiations for c delivered to C's link named "b"
#    (which holds c's key but is not c) are refused by it too: the responder's name is
#    bound into the handshake.
#
# Run as root: tests/e2e/handshake_attacks.sh   (BRIDGE_CTL=... to pick the binary)

# shellcheck disable=SC2317 # the helpers below run indirectly, from e2e_check / e2e_wait
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

# The flood alone lasts a minute.
: "${E2E_TIME_LIMIT:=230}"
e2e_init
tb_need_cmd tcpdump tcpdump
tb_need_cmd iptables iptables
tb_need_cmd scapy python3-scapy
TOOL="$E2E_ROOT/tests/tools/handshake_replay.py"
# scapy as Debian installs it, for Debian's python3 (python3 on PATH may be another).
SCAPY_PY=python3
if ! python3 -c 'import scapy.all' >/dev/null 2>&1; then
    SCAPY_PY=/usr/bin/python3
    "$SCAPY_PY" -c 'import scapy.all' >/dev/null 2>&1 ||
        e2e_fatal "python3-scapy is installed but neither python3 nor /usr/bin/python3 imports it"
fi

PORT=51901
ROGUE_PORT=51902
FLOOD_RATE=1000
FLOOD_SECS=60
declare -A WAN_IP=([a]=198.18.10.1 [b]=198.18.10.2 [c]=198.18.10.3 [x]=198.18.10.66)
declare -A TAP_IP=([a]=198.19.10.1 [b]=198.19.10.2 [c]=198.19.10.3)
ROGUE_ADDR=198.19.11.3
ROGUE_MAC=02:00:00:e2:0c:0b
A_EP="${WAN_IP[a]}:$PORT"
B_EP="${WAN_IP[b]}:$PORT"

# ---------------------------------------------------------------- WAN and sites
e2e_site wan
NS_WAN=$(e2e_ns wan)
ip -n "$NS_WAN" link add br-wan type bridge
ip -n "$NS_WAN" link set br-wan up
declare -A PORT_OF=()
n=0
for s in a b c x; do
    n=$((n + 1))
    e2e_wan_port "$NS_WAN" "port$n" "$s" "${WAN_IP[$s]}/24"
    PORT_OF[$s]=port$n
done
NS_A=$(e2e_ns a)
NS_C=$(e2e_ns c)
NS_X=$(e2e_ns x)

# ---------------------------------------------------------------- keys and configs
# Each box has its own directory: a holds b's and c's keys and a default key; b and c
# hold their own key only.
mkdir -m 700 "$E2E_WORK/a-dir" "$E2E_WORK/b-dir" "$E2E_WORK/c-dir"
e2e_new_key "$E2E_WORK/a-dir/default.psk"
for s in b c; do
    e2e_new_key "$E2E_WORK/a-dir/$s.psk"
    install -m 600 "$E2E_WORK/a-dir/$s.psk" "$E2E_WORK/$s-dir/own.psk"
done

e2e_config a --listen "$A_EP" --address "${TAP_IP[a]}/24" --psk "$E2E_WORK/a-dir/default.psk" \
    --hub true --rekey-after 5s \
    --peer "b=$B_EP" --peer-key "b=$E2E_WORK/a-dir/b.psk" \
    --peer "c=${WAN_IP[c]}:$PORT" --peer-key "c=$E2E_WORK/a-dir/c.psk"
e2e_config b --listen "$B_EP" --address "${TAP_IP[b]}/24" --psk "$E2E_WORK/b-dir/own.psk" \
    --rekey-after 5s --peer "a=$A_EP" --peer-key "a=$E2E_WORK/b-dir/own.psk"
e2e_config c --listen "${WAN_IP[c]}:$PORT" --address "${TAP_IP[c]}/24" \
    --psk "$E2E_WORK/c-dir/own.psk" --peer "a=$A_EP" --peer-key "a=$E2E_WORK/c-dir/own.psk"

# C's second link, named "b": its config file is b.toml in C's own directory; it holds
# C's key only. Site "rogue" of this script (C's namespace, TAP tb-rogue, socket
# run/rogue.sock), link NAME b.
E2E_NS[rogue]=$NS_C
E2E_CONF[rogue]="$E2E_WORK/c-dir/b.toml"
e2e_config rogue --listen "${WAN_IP[c]}:$ROGUE_PORT" --address "$ROGUE_ADDR/24" --mac "$ROGUE_MAC" \
    --psk "$E2E_WORK/c-dir/own.psk" --peer "a=$A_EP" --peer-key "a=$E2E_WORK/c-dir/own.psk"

for s in a b c; do
    e2e_check "check $s exits 0" e2e_ctl "$s" 10 check --config "$(e2e_conf "$s")"
done
e2e_check "check of C's link named b ($(e2e_conf rogue)) exits 0" \
    e2e_ctl rogue 10 check --config "$(e2e_conf rogue)"

# ---------------------------------------------------------------- helpers

# jget FILE EXPR: evaluate the Python expression EXPR over the JSON in FILE (`d`).
jget() {
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print("null" if v is None else json.dumps(v) if isinstance(v, (dict, list, bool)) else v)
' "$1" "$2"
}

# counter SITE KEY: a counter from SITE's status ("x" when status fails).
counter() {
    e2e_counter "$1" "$2" 2>/dev/null || echo x
}

# capture_start VAR NS IFACE FILE FILTER: e2e_capture_start, its PID into VAR (several
# captures run at once here).
capture_start() {
    local var=$1
    shift
    e2e_capture_start "$@" || e2e_fatal "tcpdump did not start on $2: $(cat "$3.log")"
    printf -v "$var" '%s' "$E2E_CAPTURE_PID"
}

# capture_stop PID: e2e_capture_stop for that capture.
capture_stop() {
    E2E_CAPTURE_PID=$1 e2e_capture_stop
}

# tool NS ARGS...: the replay tool inside NS (bounded).
tool() {
    local ns=$1
    shift
    ip netns exec "$ns" timeout -k 5 120 "$SCAPY_PY" "$TOOL" "$@"
}

# log_of SITE: the daemon's log (beside its control socket).
log_of() {
    local sock
    sock=$(e2e_sock "$1")
    printf '%s\n' "${sock%.sock}.log"
}

# plain: strip terminal colour codes (the daemon's log has them).
plain() {
    sed 's/\x1b\[[0-9;]*m//g'
}

# ---------------------------------------------------------------- 0. capture
capture_start CAP_B "$NS_WAN" "${PORT_OF[b]}" "$E2E_WORK/port-b.pcap" "udp port $PORT"
capture_start CAP_C "$NS_WAN" "${PORT_OF[c]}" "$E2E_WORK/port-c.pcap" "udp port $PORT"

e2e_require_up a
# a contacts b and c at once and retries (1 s, then 2 s): its initiations for b and for
# c cross the WAN before either answers.
a_sent_initiations() {
    local nb nc
    nb=$(tcpdump -n -r "$E2E_WORK/port-b.pcap" "src host ${WAN_IP[a]} and udp[8] = 1" 2>/dev/null | wc -l)
    nc=$(tcpdump -n -r "$E2E_WORK/port-c.pcap" "src host ${WAN_IP[a]} and udp[8] = 1" 2>/dev/null | wc -l)
    ((nb >= 2 && nc >= 2))
}
e2e_wait "a sends initiations for b and for c before they are up (2 each)" 10 a_sent_initiations
e2e_require_up b
e2e_require_up c
e2e_wait_peer_up a b
e2e_passed || e2e_fatal "the tunnel a ↔ b did not come up"
e2e_wait_peer_up b a
e2e_wait_peer_up a c
e2e_passed || e2e_fatal "the tunnel a ↔ c did not come up"
e2e_wait "first ping a → b" 10 e2e_ping1 a "${TAP_IP[b]}"
e2e_passed || e2e_fatal "no traffic a → b"
e2e_check "ping c → b through the hub" e2e_ping c "${TAP_IP[b]}"

# Two 5-s rekeys of a–b on the wire.
# A status call that fails leaves "x" in a baseline; the checks against it then
# fail (e2e_sum, or a comparison with "x"), rather than comparing with 0.
hs_start=$(e2e_peer a b handshakes) || hs_start=x
# shellcheck disable=SC2317 # invoked indirectly through e2e_wait
a_b_rekeyed() {
    local n
    n=$(e2e_peer a b handshakes) && [[ "$n" =~ ^[0-9]+$ && "$hs_start" =~ ^[0-9]+$ ]] &&
        ((n >= hs_start + 2))
}
e2e_wait "a and b rekey (two more handshakes within 20 s, rekey_after = 5s)" 20 a_b_rekeyed
capture_stop "$CAP_B"
capture_stop "$CAP_C"

e2e_run tool "$NS_WAN" extract "$E2E_WORK/port-b.pcap" "$E2E_WORK/port-b.json"
e2e_expect_rc "the captured handshake messages on b's WAN port are extracted" 0
e2e_note "on b's port: $E2E_STDOUT"
e2e_run tool "$NS_WAN" extract "$E2E_WORK/port-c.pcap" "$E2E_WORK/port-c.json"
e2e_expect_rc "the captured handshake messages on c's WAN port are extracted" 0
e2e_note "on c's port: $E2E_STDOUT"
[[ -s "$E2E_WORK/port-b.json" && -s "$E2E_WORK/port-c.json" ]] || e2e_fatal "no capture to replay"

e2e_check "every captured handshake message is well formed (initiation 148 bytes, response 88, version 3)" \
    jget "$E2E_WORK/port-b.json" 'exit(0 if d and all(m["version"] == 3 and
        m["len"] == {1: 148, 2: 88}[m["type"]] for m in d) else 1)'
n_b_init=$(jget "$E2E_WORK/port-b.json" \
    "sum(1 for m in d if m['src'] == '${WAN_IP[b]}' and m['dst'] == '${WAN_IP[a]}' and m['type'] == 1)")
n_b_all=$(jget "$E2E_WORK/port-b.json" \
    "sum(1 for m in d if m['src'] == '${WAN_IP[b]}' and m['dst'] == '${WAN_IP[a]}')")
n_a_for_b=$(jget "$E2E_WORK/port-b.json" \
    "sum(1 for m in d if m['src'] == '${WAN_IP[a]}' and m['dst'] == '${WAN_IP[b]}' and m['type'] == 1)")
n_a_for_c=$(jget "$E2E_WORK/port-c.json" \
    "sum(1 for m in d if m['src'] == '${WAN_IP[a]}' and m['dst'] == '${WAN_IP[c]}' and m['type'] == 1)")
e2e_cmp "captured b's initiations for a ($n_b_init)" "$n_b_init" -ge 1
e2e_cmp "captured a's initiations for b ($n_a_for_b)" "$n_a_for_b" -ge 1
e2e_cmp "captured a's initiations for c ($n_a_for_c)" "$n_a_for_c" -ge 1
A_MAC=$(jget "$E2E_WORK/port-b.json" "next(m['dst_mac'] for m in d if m['dst'] == '${WAN_IP[a]}')")
[[ "$A_MAC" =~ ^[0-9a-f:]{17}$ ]] || e2e_fatal "a's WAN MAC not found in the capture ($A_MAC)"
((n_b_init >= 1)) || e2e_fatal "nothing of b's to replay"

# ---------------------------------------------------------------- 1. replay flood
declare -A C0=()
for k in rx_replayed handshake_rate_limited cookie_replies rx_auth_failed rx_unknown_peer; do
    C0[$k]=$(counter a "$k")
done
b_hs0=$(e2e_peer a b handshakes || echo x)
e2e_note "flood: x replays b's $n_b_all captured handshake messages ($n_b_init initiations) to a as b, $FLOOD_RATE/s for $FLOOD_SECS s"

tool "$NS_X" flood --in "$E2E_WORK/port-b.json" --select "${WAN_IP[b]}>${WAN_IP[a]}" \
    --iface wan0 --dst-mac "$A_MAC" --src "$B_EP" --dst "$A_EP" \
    --rate "$FLOOD_RATE" --seconds "$((FLOOD_SECS + 1))" --max "$(((FLOOD_SECS + 1) * FLOOD_RATE))" \
    >"$E2E_WORK/flood.json" 2>"$E2E_WORK/flood.err" &
flood_pid=$!
tb_defer tb_stop_pid "$flood_pid"
# Let scapy start sending before the measurements start.
sleep 1
ip netns exec "$NS_A" timeout 90 ping -n -i 0.1 -c $((FLOOD_SECS * 10)) -W 1 "${TAP_IP[b]}" \
    >"$E2E_WORK/flood-ping.txt" 2>&1 &
ping_pid=$!
tb_defer tb_stop_pid "$ping_pid"
timeout 90 python3 "$TOOL" sample --bin "$BIN" --every 0.5 --seconds "$FLOOD_SECS" \
    --out "$E2E_WORK/flood-samples.jsonl" \
    "a=$NS_A,a,$(e2e_conf a),b" "b=$(e2e_ns b),b,$(e2e_conf b),a" \
    >"$E2E_WORK/flood-sampler.json" 2>"$E2E_WORK/flood-sampler.err" &
sampler_pid=$!
tb_defer tb_stop_pid "$sampler_pid"
rc_f=0 rc_p=0 rc_s=0
wait "$flood_pid" || rc_f=$?
wait "$ping_pid" || rc_p=$?
wait "$sampler_pid" || rc_s=$?

e2e_cmp "the flood ran (exit status $rc_f: $(head -c 300 "$E2E_WORK/flood.err"))" "$rc_f" -eq 0
e2e_note "flood: $(cat "$E2E_WORK/flood.json")"
f_sent=$(jget "$E2E_WORK/flood.json" 'd["sent"]' 2>/dev/null || echo x)
f_pps=$(jget "$E2E_WORK/flood.json" 'int(d["pps"])' 2>/dev/null || echo x)
f_secs=$(jget "$E2E_WORK/flood.json" 'int(d["seconds"])' 2>/dev/null || echo x)
f_init=$(jget "$E2E_WORK/flood.json" 'd["by_type"].get("1", 0)' 2>/dev/null || echo x)
e2e_cmp "the replay rate was ≥ 500 datagrams/s ($f_pps/s, $f_sent sent)" "$f_pps" -ge 500
e2e_cmp "the replay lasted ≥ $FLOOD_SECS s ($f_secs s)" "$f_secs" -ge "$FLOOD_SECS"

ping_summary=$(grep -E 'packets transmitted' "$E2E_WORK/flood-ping.txt" || echo "no summary (exit $rc_p)")
e2e_note "ping a → b every 100 ms during the flood: $ping_summary"
p_tx=$(grep -Eo '^[0-9]+ packets transmitted' <<<"$ping_summary" | grep -Eo '^[0-9]+' || echo x)
p_rx=$(grep -Eo '[0-9]+ received' <<<"$ping_summary" | grep -Eo '^[0-9]+' || echo x)
e2e_cmp "ping a → b sent $((FLOOD_SECS * 10)) probes during the flood ($p_tx)" "$p_tx" -eq $((FLOOD_SECS * 10))
# ≤ 1 % lost: received × 100 ≥ transmitted × 99 (no summary: "x", which fails).
p_rx100=x p_tx99=x
if [[ "$p_tx" =~ ^[0-9]+$ && "$p_rx" =~ ^[0-9]+$ ]]; then
    p_rx100=$((p_rx * 100)) p_tx99=$((p_tx * 99))
fi
e2e_cmp "ping a → b lost ≤ 1 % during the flood ($p_rx of $p_tx answered)" "$p_rx100" -ge "$p_tx99"

e2e_note "status samples (sampler exit $rc_s): $(cat "$E2E_WORK/flood-sampler.json")"
for side in a b; do
    e2e_check "$side's status was sampled every 0.5 s during the flood (≥ $((FLOOD_SECS * 2 - 10)) samples)" \
        jget "$E2E_WORK/flood-sampler.json" \
        "exit(0 if d['$side']['samples'] >= $((FLOOD_SECS * 2 - 10)) else 1)"
    e2e_check "the a–b session is up in every one of $side's samples, no status call failed" \
        jget "$E2E_WORK/flood-sampler.json" \
        "exit(0 if d['$side']['errors'] == 0 and list(d['$side']['states']) == ['up'] else 1)"
done
if ! e2e_passed; then
    e2e_note "samples not up: $(grep -v '"state": "up"' "$E2E_WORK/flood-samples.jsonl" | head -n 5 | tr '\n' ' ')"
fi
e2e_check "a's endpoint for b is $B_EP in every sample" \
    jget "$E2E_WORK/flood-sampler.json" "exit(0 if list(d['a']['endpoints']) == ['$B_EP'] else 1)"
b_hs1=$(e2e_peer a b handshakes || echo x)
# rekey_after = 5s; idle, the sessions are renewed every 6–9 s here: count on 4.
e2e_cmp "a and b kept rekeying during the flood (handshakes $b_hs0 → $b_hs1, ≥ 4 more)" \
    "$b_hs1" -ge "$(e2e_sum "$b_hs0" 4)"

declare -A C1=()
for k in rx_replayed handshake_rate_limited cookie_replies rx_auth_failed rx_unknown_peer; do
    C1[$k]=$(counter a "$k")
done
# 90 % of the replayed initiations ("x" if the flood's report is unreadable).
f_init90=x
[[ ! "$f_init" =~ ^[0-9]+$ ]] || f_init90=$((f_init * 9 / 10))
e2e_note "a's counters before → after the flood: $(for k in "${!C1[@]}"; do printf '%s %s → %s; ' "$k" "${C0[$k]}" "${C1[$k]}"; done)"
e2e_cmp "a counted the replayed initiations as rx_replayed (${C0[rx_replayed]} → ${C1[rx_replayed]}, $f_init replayed)" \
    "${C1[rx_replayed]}" -ge "$(e2e_sum "${C0[rx_replayed]}" "$f_init90")"
e2e_cmp "no replay was charged to the rate limit (handshake_rate_limited ${C0[handshake_rate_limited]} → ${C1[handshake_rate_limited]})" \
    "${C1[handshake_rate_limited]}" -eq "${C0[handshake_rate_limited]}"
e2e_cmp "no replay was answered with a cookie (cookie_replies ${C0[cookie_replies]} → ${C1[cookie_replies]})" \
    "${C1[cookie_replies]}" -eq "${C0[cookie_replies]}"
e2e_cmp "no replay was taken for another peer (rx_unknown_peer ${C0[rx_unknown_peer]} → ${C1[rx_unknown_peer]})" \
    "${C1[rx_unknown_peer]}" -eq "${C0[rx_unknown_peer]}"

# ---------------------------------------------------------------- 2. impersonation
capture_start CAP_TA "$NS_A" tb-a "$E2E_WORK/tap-a.pcap" "ether src $ROGUE_MAC"
capture_start CAP_TB "$(e2e_ns b)" tb-b "$E2E_WORK/tap-b.pcap" "ether src $ROGUE_MAC"
unk0=$(counter a rx_unknown_peer)
b_tx0=$(e2e_peer b a tx_frames || echo x)
b_rx0=$(e2e_peer a b rx_frames || echo x)

e2e_check_up "C brings up its own link named b (b.toml in C's directory, C's key, peer a)" rogue
e2e_note "$E2E_STDOUT"
e2e_check "C's link calls itself b (status name)" e2e_jq rogue 'exit(0 if d["name"] == "b" else 1)'
# Frames into the rogue link: ARP for an address behind it (unanswered).
e2e_run ip netns exec "$NS_C" timeout 20 ping -n -c 6 -i 0.5 -W 1 -I tb-rogue 198.19.11.1
unknown_peer_grew() {
    (($(counter a rx_unknown_peer) > unk0))
}
e2e_wait "a refuses C's initiations naming it b and counts them (rx_unknown_peer > $unk0)" 15 \
    unknown_peer_grew

# Misdirection with the same key: a's initiations for c delivered to C's link named b.
ra0=$(counter rogue rx_auth_failed)
e2e_run tool "$NS_X" send --in "$E2E_WORK/port-c.json" --select "${WAN_IP[a]}>${WAN_IP[c]}:1" \
    --bind "${WAN_IP[x]}:40010" --dst "${WAN_IP[c]}:$ROGUE_PORT" --count 10 --rate 50
e2e_expect_rc "x delivers 10 of a's initiations for c to C's link named b" 0
e2e_note "$E2E_STDOUT"
e2e_check "C's link named b (holding c's key) sent no answer to them" \
    python3 -c 'import json, sys; sys.exit(0 if json.loads(sys.argv[1])["replies"] == {} else 1)' "$E2E_STDOUT"
ra1=$(counter rogue rx_auth_failed)
e2e_cmp "C's link named b refuses a's initiations for c: the responder's name is bound (rx_auth_failed $ra0 → $ra1)" \
    "$ra1" -ge "$(e2e_sum "$ra0" 10)"

bad=()
for ((i = 0; i < 10; i++)); do
    ep=$(e2e_peer a b endpoint 2>/dev/null || echo error)
    st=$(e2e_peer a b state 2>/dev/null || echo error)
    rs=$(e2e_peer rogue a state 2>/dev/null || echo error)
    [[ "$ep" == "$B_EP" && "$st" == up && "$rs" != up && "$rs" != error ]] ||
        bad+=("sample $i: a sees b at $ep, $st; C's link b sees a $rs")
    sleep 0.5
done
if ((${#bad[@]} == 0)); then
    e2e_ok "in 10 samples over 5 s: a sees b up at $B_EP, C's link named b is never up"
else
    e2e_not_ok "in 10 samples over 5 s: a sees b up at $B_EP, C's link named b is never up" "${bad[@]}"
fi
e2e_note "a's counters: $(e2e_jq a 'd["counters"]' || echo '?')"
e2e_note "C's link named b: $(e2e_jq rogue '(d["name"], d["peers"], d["counters"])' | head -c 700 || echo '?')"
capture_stop "$CAP_TA"
capture_stop "$CAP_TB"
e2e_cmp "no frame from C's link named b reached a's TAP" \
    "$(tcpdump -n -r "$E2E_WORK/tap-a.pcap" 2>/dev/null | wc -l)" -eq 0
e2e_cmp "no frame from C's link named b reached b's TAP" \
    "$(tcpdump -n -r "$E2E_WORK/tap-b.pcap" 2>/dev/null | wc -l)" -eq 0
b_rx1=$(e2e_peer a b rx_frames || echo x)
sleep 1
b_tx1=$(e2e_peer b a tx_frames || echo x)
# At most what b itself sent meanwhile (b's own traffic, e.g. a guard probe,
# may be nonzero; b's count is read before and after a's): nothing of C's was
# taken as b's.
e2e_cmp "a took no frame as b's that b did not send (a: rx from b $b_rx0 → $b_rx1; b: tx to a $b_tx0 → $b_tx1)" \
    "$(e2e_sum "$b_rx1" "-$b_rx0")" -le "$(e2e_sum "$b_tx1" "-$b_tx0")"
e2e_match "a logs the refusal with C's address" "handshake refused.*${WAN_IP[c]}:$ROGUE_PORT|${WAN_IP[c]}:$ROGUE_PORT.*handshake refused" \
    "$(grep -a 'handshake refused' "$(log_of a)" | plain || true)"
e2e_check_down "C's link named b goes down" rogue

# --- b's captured initiations replayed from C's own address
rep0=$(counter a rx_replayed)
e2e_run tool "$NS_C" send --in "$E2E_WORK/port-b.json" --select "${WAN_IP[b]}>${WAN_IP[a]}:1" \
    --bind "${WAN_IP[c]}:40000" --dst "$A_EP" --count 200 --rate 200
e2e_expect_rc "C replays b's captured initiations to a from its own address (200)" 0
e2e_note "$E2E_STDOUT"
e2e_check "a sent no answer to C's replays" \
    python3 -c 'import json, sys; sys.exit(0 if json.loads(sys.argv[1])["replies"] == {} else 1)' "$E2E_STDOUT"
rep1=$(counter a rx_replayed)
e2e_cmp "a counted C's replays as rx_replayed ($rep0 → $rep1)" "$rep1" -ge "$(e2e_sum "$rep0" 200)"
e2e_check "a's endpoint for b is still $B_EP and b is up" \
    e2e_jq a "exit(0 if peer('b')['endpoint'] == '$B_EP' and peer('b')['state'] == 'up' else 1)"

# --- b's fresh initiations relayed from C's address (a never sees b's own)
ip netns exec "$NS_A" iptables -w 5 -I INPUT -i wan0 -s "${WAN_IP[b]}" -p udp --dport "$PORT" \
    -m u32 --u32 "0>>22&0x3C@8>>24=1" -j DROP
tb_defer ip netns exec "$NS_A" iptables -w 5 -F INPUT
(
    timeout 40 ip netns exec "$NS_WAN" tcpdump -i "${PORT_OF[b]}" -n -U -w - \
        "udp and src host ${WAN_IP[b]} and dst host ${WAN_IP[a]} and dst port $PORT" \
        2>"$E2E_WORK/relay-tcpdump.log" |
        tool "$NS_C" relay --bind "${WAN_IP[c]}:40001" --dst "$A_EP" \
            --select "${WAN_IP[b]}>${WAN_IP[a]}" --seconds 20 >"$E2E_WORK/relay.json" 2>"$E2E_WORK/relay.err"
) &
relay_pid=$!
tb_defer tb_stop_pid "$relay_pid"
tb_wait_until 10 "tcpdump listening for the relay" grep -q 'listening on' "$E2E_WORK/relay-tcpdump.log" ||
    e2e_fatal "the relay's tcpdump did not start: $(cat "$E2E_WORK/relay-tcpdump.log")"
sleep 1
timeout 40 python3 "$TOOL" sample --bin "$BIN" --every 0.25 --seconds 18 \
    --out "$E2E_WORK/relay-samples.jsonl" "a=$NS_A,a,$(e2e_conf a),b" \
    >"$E2E_WORK/relay-sampler.json" 2>"$E2E_WORK/relay-sampler.err" &
rsampler_pid=$!
tb_defer tb_stop_pid "$rsampler_pid"
# b restarts: it initiates at once and retries, and a never gets those initiations.
e2e_check_down "b: link down" b
e2e_check_up "b: link up again (its initiations now reach a only through C)" b
rc=0
wait "$rsampler_pid" || rc=$?
wait "$relay_pid" || true
e2e_note "relay: $(cat "$E2E_WORK/relay.json" 2>/dev/null || echo none) $(head -c 300 "$E2E_WORK/relay.err")"
e2e_note "a's log about C's relay address: $(grep -a "${WAN_IP[c]}:40001" "$(log_of a)" | plain | head -n 5 | tr '\n' ' ')"
e2e_note "a's b while relaying: $(cat "$E2E_WORK/relay-sampler.json" 2>/dev/null || echo none)"
relayed=$(jget "$E2E_WORK/relay.json" 'd["relayed"]' 2>/dev/null || echo x)
answered=$(jget "$E2E_WORK/relay.json" \
    "sum(v for k, v in d['replies'].items() if k.startswith('$A_EP:2'))" 2>/dev/null || echo x)
e2e_cmp "C relayed b's fresh initiations to a from its own address ($relayed)" "$relayed" -ge 1
# Not every one: a relayed initiation that arrives after b's answer to a's own initiation
# (which tells a b's newer clock) is stale by then, and refused as such.
e2e_cmp "a answered the relayed initiations at C's address (they are valid; $answered responses)" \
    "$answered" -ge 1
e2e_check "a never moved b's endpoint to C while C relayed: $B_EP in every sample (sampler exit $rc)" \
    jget "$E2E_WORK/relay-sampler.json" \
    "exit(0 if d['a']['samples'] >= 40 and d['a']['errors'] == 0 and list(d['a']['endpoints']) == ['$B_EP'] else 1)"
withheld=$(ip netns exec "$NS_A" iptables -w 5 -L INPUT -v -n -x | awk '$3 == "DROP" { print $1 }')
e2e_cmp "a's firewall withheld b's own initiations meanwhile (${withheld:-?} dropped)" "${withheld:-x}" -ge 1
ip netns exec "$NS_A" iptables -w 5 -F INPUT
e2e_wait_peer_up a b 20
e2e_wait_peer_up b a 20
e2e_check "after the relay: a's endpoint for b is $B_EP" \
    e2e_jq a "exit(0 if peer('b')['endpoint'] == '$B_EP' else 1)"
e2e_wait "after the relay: ping a → b" 10 e2e_ping1 a "${TAP_IP[b]}"
e2e_nomatch "a's log never shows b's endpoint moved to C's address" \
    "endpoint moved.*${WAN_IP[c]}" "$(grep -a 'endpoint moved' "$(log_of a)" | plain || true)"
e2e_nomatch "a's log never shows b's endpoint moved to the attacker's address" \
    "endpoint moved.*${WAN_IP[x]}" "$(grep -a 'endpoint moved' "$(log_of a)" | plain || true)"

# ---------------------------------------------------------------- 3. misdirection
caf0=$(counter c rx_auth_failed)
cunk0=$(counter c rx_unknown_peer)
e2e_run tool "$NS_X" send --in "$E2E_WORK/port-b.json" --select "${WAN_IP[a]}>${WAN_IP[b]}:1" \
    --bind "${WAN_IP[x]}:40020" --dst "${WAN_IP[c]}:$PORT" --count 20 --rate 50
e2e_expect_rc "x delivers a's initiations for b to c (20)" 0
e2e_note "$E2E_STDOUT"
e2e_check "c sent no answer to them" \
    python3 -c 'import json, sys; sys.exit(0 if json.loads(sys.argv[1])["replies"] == {} else 1)' "$E2E_STDOUT"
caf1=$(counter c rx_auth_failed)
e2e_cmp "c refused a's initiations for b and counted them (rx_auth_failed $caf0 → $caf1)" \
    "$caf1" -ge "$(e2e_sum "$caf0" 20)"
e2e_cmp "c took none of them for a's (rx_unknown_peer $cunk0 → …)" "$(counter c rx_unknown_peer)" -eq "$cunk0"
e2e_check "c still sees a up" _e2e_peer_is_up c a
e2e_check "ping c → b through the hub after all attacks" e2e_ping c "${TAP_IP[b]}"

e2e_note "a's counters at the end: $(e2e_jq a 'd["counters"]' || echo '?')"
e2e_note "c's counters at the end: $(e2e_jq c 'd["counters"]' || echo '?')"
e2e_check "status a --json has every SPEC §6 key with the right type" e2e_schema a

e2e_summary
