#!/usr/bin/env bash
#
# guard_loop.sh — loop detection (SPEC §4 guard.loop_detect, §5 Guards): when the two
# LANs are also joined by another path, the bridge notices, stops carrying frames
# while the loop lasts, and recovers by itself when the other path goes away.
#
# Rig: tests/e2e/guard_lib.sh, STP off on both br-lan (so the loop is real). With the
# tunnel up, a veth is added between the two br-lan ("the backup line") and ha sends
# one broadcast. Checks: a loop is detected at both sites (loops_detected ≥ 1; the
# detection time is printed); the WAN's packet counters stop growing within 5 s (only
# keepalives and the once-a-second loop probes remain); ha and hb still reach each
# other (over the direct link); once the direct link is removed, ha reaches hb through
# the tunnel again within 10 s (the recovery time is printed).
# Everything is bounded: storm_pps caps what could circulate through the tunnel
# before detection, and the rig (with the direct link) is deleted on any exit.
#
# Run as root: tests/e2e/guard_loop.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/guard_lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/guard_lib.sh"

e2e_init
gl_setup

gl_config $'storm_pps = 2000\nloop_detect = true'
gl_up
e2e_wait "ping ha → hb across the tunnel" 10 e2e_ping1 ha "$GL_HOST_B"
e2e_check "ping ha → hb" e2e_ping ha "$GL_HOST_B"
e2e_cmp "no loop before the direct link (loops_detected)" \
    "$(e2e_counter gwa loops_detected || echo x)" -eq 0

now_ms() {
    date +%s%3N
}

# --- the other path: a direct veth between the two br-lan
tb_veth "$GL_GA" loopa "$GL_GB" loopb
ip -n "$GL_GB" link set loopb master br-lan
w0=$(gl_wan_total)
t0=$(now_ms)
ip -n "$GL_GA" link set loopa master br-lan
gl_frames "$GL_HA" 5 bcast eth0
e2e_wait "gwa detects the loop (loops_detected ≥ 1)" 10 gl_looped gwa
t_detect=$(($(now_ms) - t0))
e2e_note "loop detected at gwa $t_detect ms after the direct link was plugged in"
e2e_wait "gwb detects the loop too" 10 gl_looped gwb

# Frames on the WAN stop growing within 5 s of the loop forming.
sleep "$(awk -v t="$(($(now_ms) - t0))" 'BEGIN { s = (5000 - t) / 1000; print (s > 0 ? s : 0) }')"
w5=$(gl_wan_total)
sleep 3
w8=$(gl_wan_total)
e2e_note "gwa's WAN packets: $((w5 - w0)) in the first 5 s of the loop, $((w8 - w5)) in the 3 s after"
# Left over: each side's loop probe (1/s) and keepalives (2 s) in both directions.
e2e_cmp "the WAN stopped growing within 5 s (≤ 20 packets in 3 s, probes and keepalives)" \
    "$((w8 - w5))" -le 20
e2e_wait "ha still reaches hb while the loop lasts (over the direct link)" 10 \
    e2e_ping ha "$GL_HOST_B" -c 1 -W 1
e2e_passed || gl_dump
e2e_wait "hb still reaches ha while the loop lasts" 10 e2e_ping hb "$GL_HOST_A" -c 1 -W 1
e2e_passed || gl_dump
e2e_cmp "gwa counted frames it refused while the loop lasted (loop_dropped)" \
    "$(e2e_counter gwa loop_dropped || echo 0)" -ge 1

# --- the other path goes away: the tunnel carries traffic again within 10 s
ip -n "$GL_GA" link del loopa
t1=$(now_ms)
# A status call that fails leaves "x", which fails the comparison below.
rx0=$(e2e_peer gwb gwa rx_frames) || rx0=x
e2e_wait "ha reaches hb through the tunnel again within 10 s" 10 e2e_ping1 ha "$GL_HOST_B"
e2e_note "recovered $(($(now_ms) - t1)) ms after the direct link was removed"
e2e_cmp "the ping went through the tunnel (gwb rx_frames from gwa $rx0 → …)" \
    "$(e2e_peer gwb gwa rx_frames || echo x)" -gt "$rx0"
e2e_check "ping hb → ha through the tunnel" e2e_ping hb "$GL_HOST_A"
e2e_cmp "one loop event at gwa" "$(e2e_counter gwa loops_detected || echo x)" -eq 1

e2e_summary
