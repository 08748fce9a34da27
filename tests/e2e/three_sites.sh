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
# set); none is a hub (no tunnel.hub). IPv6 is off in the gateways so no RS/MLD chatter
# disturbs the counters. Checks: all six peer sessions come up; the first ping
# alpha → bravo floods its ARP broadcast to charlie too; after pings to bravo and
# charlie (MAC table learned), unicast alpha → bravo does not raise alpha's tx_frames
# towards charlie (nor charlie's rx_frames from alpha) while tx_frames towards bravo
# grows; unicast bravo ↔ charlie goes direct and never touches alpha.
# Split horizon (SPEC §5), end to end: alpha floods marked broadcasts and unknown
# unicasts (EtherType 0x88b5, each frame numbered) from its LAN side; each one
# reaches bravo's and charlie's TAP exactly once, through the direct sessions
# (bravo's and charlie's rx_frames from alpha grow by the flood), and neither
# relays alpha's flood to the other (charlie's rx_frames from bravo, bravo's from
# charlie, and their tx_frames towards each other do not grow by it).
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

# num SITE PEER FIELD: a per-peer counter, or "x" when status fails (so that an
# e2e_cmp with it, or with an e2e_sum of it, fails).
num() {
    local v
    v=$(e2e_peer "$1" "$2" "$3" 2>/dev/null) || v=x
    [[ "$v" =~ ^[0-9]+$ ]] || v=x
    printf '%s\n' "$v"
}

# counters: every per-peer tx_frames/rx_frames of the three sites, on one line.
counters() {
    local s o line=""
    for s in "${SITES[@]}"; do
        for o in "${SITES[@]}"; do
            [[ "$o" == "$s" ]] || line+="$s>$o:$(num "$s" "$o" tx_frames)/$(num "$s" "$o" rx_frames) "
        done
    done
    printf '%s\n' "$line"
}

# quiet: no frame crossed any session in 2 s (no counter moved) and every status
# call answered.
# shellcheck disable=SC2317 # invoked indirectly through e2e_wait
quiet() {
    local c0 c1
    c0=$(counters)
    sleep 2
    c1=$(counters)
    [[ "$c0" == "$c1" && "$c0" != *[:/]x* ]]
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
# A neighbour probe already under way (DELAY state lasts 5 s) may still cross: wait
# until nothing does.
e2e_wait "the sessions are quiet (no counter moves for 2 s)" 20 quiet
e2e_passed || e2e_note "counters: $(counters)"

# --- known unicast goes to one peer only
a_c_tx=$(num alpha charlie tx_frames)
a_b_tx=$(num alpha bravo tx_frames)
c_a_rx=$(num charlie alpha rx_frames)
e2e_check "unicast ping alpha → bravo (10 probes)" \
    e2e_ping alpha "${TAP_IP[bravo]}" -c 10 -i 0.1 -W 2
e2e_cmp "alpha's tx_frames towards bravo grew by ≥ 10 ($a_b_tx → …)" \
    "$(num alpha bravo tx_frames)" -ge "$(e2e_sum "$a_b_tx" 10)"
e2e_cmp "alpha's tx_frames towards charlie did not change ($a_c_tx)" \
    "$(num alpha charlie tx_frames)" -eq "$a_c_tx"
e2e_cmp "charlie's rx_frames from alpha did not change ($c_a_rx)" \
    "$(num charlie alpha rx_frames)" -eq "$c_a_rx"

# --- known unicast bravo ↔ charlie goes direct: it never touches alpha
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

# --- split horizon: a flood from alpha's side reaches bravo and charlie once each,
# through the direct sessions, and neither passes it on to the other.
N=5
# What alpha's LAN sends: N broadcasts and N unicasts to a MAC that no site has
# learned, from a host MAC behind alpha, EtherType 0x88b5 (local experimental),
# numbered by the payload "tbsplit-b-NN" / "tbsplit-u-NN".
FLOOD_PY='
import socket, sys
iface, n = sys.argv[1], int(sys.argv[2])
src = bytes.fromhex("02000007000a")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for kind, dst in (("b", b"\xff" * 6), ("u", bytes.fromhex("02000007ffff"))):
    for i in range(n):
        s.send(dst + src + b"\x88\xb5" + f"tbsplit-{kind}-{i:02d}".encode().ljust(46, b"\0"))
'
# markers FILE: the marks of the frames captured in FILE (pcap) with how often each
# came, sorted ("tbsplit-b-00=1 tbsplit-b-01=1 ..."); "pcap: ..." if FILE is unreadable.
markers() {
    python3 -c '
import collections, re, struct, sys
try:
    data = open(sys.argv[1], "rb").read()
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}[data[:4]]
except (OSError, KeyError) as e:
    sys.exit(f"pcap: {e!r}")
seen, off = collections.Counter(), 24
while off + 16 <= len(data):
    caplen = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
    frame = data[off + 16:off + 16 + caplen]
    off += 16 + caplen
    m = re.match(rb"tbsplit-[bu]-[0-9]{2}", frame[14:])
    if frame[12:14] == b"\x88\xb5" and m:
        seen[m.group().decode()] += 1
print(" ".join(f"{k}={v}" for k, v in sorted(seen.items())))
' "$1" 2>&1
}
# marked FILE: how many marked frames FILE holds so far.
# shellcheck disable=SC2317 # invoked indirectly through e2e_wait
marked() {
    markers "$1" | tr ' ' '\n' | awk -F= '{ n += $2 } END { print n + 0 }'
}
# shellcheck disable=SC2317 # invoked indirectly through e2e_wait
marked_ge() {
    (($(marked "$1") >= $2))
}
want=""
for kind in b u; do
    for ((i = 0; i < N; i++)); do
        want+="${want:+ }$(printf 'tbsplit-%s-%02d=1' "$kind" "$i")"
    done
done

declare -A CAP=()
for s in bravo charlie; do
    e2e_capture_start "$(e2e_ns "$s")" "tb-$s" "$E2E_WORK/flood-$s.pcap" 'ether proto 0x88b5' ||
        e2e_fatal "tcpdump did not start on tb-$s"
    CAP[$s]=$E2E_CAPTURE_PID
done
e2e_wait "the sessions are quiet before the flood (no counter moves for 2 s)" 20 quiet
e2e_passed || e2e_note "counters: $(counters)"
# SITE PEER FIELD GROWTH: the per-peer counters the flood must move, and by how much.
FLOOD_COUNTERS=(
    "alpha bravo tx_frames $((2 * N))" "alpha charlie tx_frames $((2 * N))"
    "bravo alpha rx_frames $((2 * N))" "charlie alpha rx_frames $((2 * N))"
    "bravo charlie tx_frames 0" "charlie bravo rx_frames 0"
    "charlie bravo tx_frames 0" "bravo charlie rx_frames 0"
)
declare -A BEFORE=()
for c in "${FLOOD_COUNTERS[@]}"; do
    read -r s o f _ <<<"$c"
    BEFORE[$s.$o.$f]=$(num "$s" "$o" "$f")
done
e2e_check "alpha's LAN side sends $N marked broadcasts and $N marked unknown unicasts" \
    ip netns exec "$(e2e_ns alpha)" python3 -c "$FLOOD_PY" tb-alpha "$N"
for s in bravo charlie; do
    e2e_wait "$s's TAP receives alpha's $((2 * N)) flooded frames" 10 \
        marked_ge "$E2E_WORK/flood-$s.pcap" $((2 * N))
done
# Showing that nothing more comes needs time to pass: a relayed copy would follow
# the direct one within milliseconds; give it a second.
sleep 1
for s in bravo charlie; do
    E2E_CAPTURE_PID=${CAP[$s]} e2e_capture_stop
    got=$(markers "$E2E_WORK/flood-$s.pcap")
    if [[ "$got" == "$want" ]]; then
        e2e_ok "each of alpha's $((2 * N)) flooded frames reached $s's TAP exactly once"
    else
        e2e_not_ok "each of alpha's $((2 * N)) flooded frames reached $s's TAP exactly once" \
            "want: $want" "got:  $got"
    fi
done
for c in "${FLOOD_COUNTERS[@]}"; do
    read -r s o f grow <<<"$c"
    if [[ "$f" == tx_frames ]]; then what="$s's tx_frames towards $o"; else what="$s's rx_frames from $o"; fi
    if ((grow > 0)); then what+=" grew by the flood, $grow"; else what+=" did not grow (no relay)"; fi
    e2e_cmp "split horizon: $what (${BEFORE[$s.$o.$f]} → …)" \
        "$(num "$s" "$o" "$f")" -eq "$(e2e_sum "${BEFORE[$s.$o.$f]}" "$grow")"
done

for s in "${SITES[@]}"; do
    e2e_check "status $s --json has every SPEC §6 key with the right type" e2e_schema "$s"
done

e2e_summary
