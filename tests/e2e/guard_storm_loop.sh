#!/usr/bin/env bash
#
# guard_storm_loop.sh — a storm must not switch loop detection off (SPEC §5 Guards;
# issue 28). A loop usually shows itself as a storm, so the guard that stops loops
# has to work during and after one.
#
# Rig: tests/e2e/guard_lib.sh (STP off, so the loop is real), default [guard].
# Part 1, storm then loop: ha sends a 4 s broadcast storm (20,000 frames/s, ether
# type 0x88b5, the IEEE experimental type loop probes use too, each frame from a
# made-up source MAC, so the storm fills both MAC tables); 2 s after it ends a veth
# joins the two br-lan and ha sends one broadcast. Nothing crossed before the storm,
# so the hosts' MACs are learned only after it. (Before the fix, a full table of
# fresh entries learned nothing new: no MAC move was seen, no probe sent, no loop
# found.) Part 2, the links restarted,
# a storm running while the loop forms: the same veth is plugged in 2 s into a 10 s
# storm. Checks, each part: both gateways count a loop within 5 s, and the tunnel
# then carries at most 60 packets in 2 s (probes and keepalives only; the storm and
# the circulating broadcast stay out of it).
#
# Run as root: tests/e2e/guard_storm_loop.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/guard_lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/guard_lib.sh"

e2e_init
gl_setup
tb_veth "$GL_GA" loopa "$GL_GB" loopb
ip -n "$GL_GB" link set loopb master br-lan

# storm SECS: ha's storm in the background; its PID in storm_pid.
storm() {
    gl_frames "$GL_HA" $(($1 + 5)) storm eth0 20000 "$1" 0x88b5 random >>"$E2E_WORK/storm.out" &
    storm_pid=$!
    tb_defer tb_stop_pid "$storm_pid"
}
# loop_checks WHAT: plug the direct link in, send one broadcast, and check that both
# sites detect the loop within 5 s and that the tunnel then goes quiet.
loop_checks() {
    local what=$1 t0 w0 w1
    t0=$(date +%s%3N)
    ip -n "$GL_GA" link set loopa master br-lan
    gl_frames "$GL_HA" 5 bcast eth0
    e2e_wait "$what: gwa detects the loop within 5 s" 5 gl_looped gwa
    e2e_wait "$what: gwb detects the loop within 5 s" 5 gl_looped gwb
    if e2e_passed; then
        e2e_note "$what: both sites counted the loop $(($(date +%s%3N) - t0)) ms after the link was plugged in"
    fi
    w0=$(gl_wan_total)
    sleep 2
    w1=$(gl_wan_total)
    e2e_cmp "$what: the tunnel carried at most 60 packets in 2 s once the loop was found ($((w1 - w0)))" \
        "$((w1 - w0))" -le 60
    # (Not gl_dump: the bridges' tables hold thousands of the storm's addresses.)
    e2e_passed || e2e_note "gwa: $(tail -n 3 "$E2E_WORK/run/gwa.log" | tr '\n' ' ')"
    ip -n "$GL_GA" link set loopa nomaster
}

gl_config ""
gl_up

# --- part 1: the storm first, then the loop
storm 4
wait "$storm_pid" || true
e2e_note "storm: $(tail -n 1 "$E2E_WORK/storm.out")"
e2e_cmp "storm control dropped part of the storm (storm_dropped)" \
    "$(e2e_counter gwa storm_dropped || echo 0)" -ge 1000
sleep 2
loop_checks "storm, then loop"

# --- part 2: fresh links, the loop forms while a storm runs
gl_down
gl_up
e2e_cmp "fresh links count no loop" "$(e2e_counter gwa loops_detected || echo x)" -eq 0
storm 10
sleep 2
loop_checks "loop during a storm"
tb_stop_pid "$storm_pid"

e2e_summary
