#!/usr/bin/env bash
#
# guard_dhcp_ra.sh — the DHCP and RA guards and the BPDU policy (SPEC §4
# guard.dhcp_guard/ra_guard/bpdu, §5 Guards): another site's DHCP server and IPv6
# router never reach local clients; spanning-tree BPDUs cross only when asked.
#
# Rig: tests/e2e/guard_lib.sh (two bridged sites, host ha at site A, hb at site B).
# At site B, hb runs a DHCP server (guard_frames.py dhcp-server: answers every
# DISCOVER with a broadcast OFFER and an 802.1Q-tagged copy) and a router
# (guard_frames.py ra: router advertisements and DHCPv6 ADVERTISEs, untagged and
# tagged) and a bridge sending BPDUs (guard_frames.py bpdu). At site A, ha runs a DHCP
# client and counts server messages and BPDUs on its eth0.
# Checks, guards on and bpdu = "drop": ha's DISCOVERs cross the tunnel but no OFFER,
# RA, DHCPv6 server message or BPDU comes back; gwa counts them in guard_dropped;
# unicast still works. Then guards off and bpdu = "forward" (links restarted): the
# same messages do reach ha, guard_dropped 0.
#
# Run as root: tests/e2e/guard_dhcp_ra.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/guard_lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/guard_lib.sh"

e2e_init
gl_setup

# run_round: servers at B, client and counter at A, for 6 s; sets OFFERS and SEEN.
run_round() {
    local server_pid ra_pid bpdu_pid count_out="$E2E_WORK/count.out"
    gl_frames "$GL_HB" 12 dhcp-server eth0 9 &
    server_pid=$!
    tb_defer tb_stop_pid "$server_pid"
    gl_frames "$GL_HB" 12 ra eth0 9 &
    ra_pid=$!
    tb_defer tb_stop_pid "$ra_pid"
    gl_frames "$GL_HB" 12 bpdu eth0 9 &
    bpdu_pid=$!
    tb_defer tb_stop_pid "$bpdu_pid"
    sleep 0.5
    gl_frames "$GL_HA" 10 count eth0 6 >"$count_out" &
    local count_pid=$!
    tb_defer tb_stop_pid "$count_pid"
    OFFERS=$(gl_frames "$GL_HA" 10 dhcp-client eth0 6 || echo x)
    wait "$count_pid" || true
    SEEN=$(cat "$count_out")
    wait "$server_pid" "$ra_pid" "$bpdu_pid" || true
}

# seen KIND: the count of KIND in $SEEN.
seen() {
    sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$SEEN"
}

# --- guards on
gl_config $'dhcp_guard = true\nra_guard = true\nbpdu = "drop"'
gl_up
e2e_check "status gwa --json has every SPEC §6 key, the guard counters too" e2e_schema gwa
e2e_wait "ping ha → hb across the tunnel" 10 e2e_ping1 ha "$GL_HOST_B"
# A status call that fails leaves "x", which fails the comparison below.
b_rx0=$(e2e_peer gwb gwa rx_frames) || b_rx0=x
run_round
e2e_note "guards on: offers=$OFFERS, on ha's eth0: $SEEN"
e2e_cmp "guards on: ha's DISCOVERs crossed the tunnel (gwb rx_frames $b_rx0 → …)" \
    "$(e2e_peer gwb gwa rx_frames || echo x)" -ge "$(e2e_sum "$b_rx0" 5)"
e2e_cmp "guards on: no DHCPOFFER from site B reached ha's client" "$OFFERS" -eq 0
e2e_cmp "guards on: no DHCPv4 server message on ha's eth0" "$(seen dhcpv4)" -eq 0
e2e_cmp "guards on: no router advertisement on ha's eth0" "$(seen ra)" -eq 0
e2e_cmp "guards on: no DHCPv6 server message on ha's eth0" "$(seen dhcpv6)" -eq 0
e2e_cmp "bpdu = drop: no BPDU from site B on ha's eth0" "$(seen bpdu)" -eq 0
dropped=$(e2e_counter gwa guard_dropped || echo 0)
e2e_cmp "guards on: gwa counted them in guard_dropped ($dropped, ≥ 40 expected)" "$dropped" -ge 40
e2e_check "guards on: unicast ping ha → hb still works" e2e_ping ha "$GL_HOST_B"
gl_down

# --- guards off
gl_config $'dhcp_guard = false\nra_guard = false\nbpdu = "forward"'
gl_up
e2e_wait "ping ha → hb across the tunnel" 10 e2e_ping1 ha "$GL_HOST_B"
run_round
e2e_note "guards off: offers=$OFFERS, on ha's eth0: $SEEN"
e2e_cmp "guards off: DHCPOFFERs from site B reach ha's client" "$OFFERS" -ge 2
e2e_cmp "guards off: router advertisements reach ha" "$(seen ra)" -ge 10
e2e_cmp "guards off: DHCPv6 server messages reach ha" "$(seen dhcpv6)" -ge 10
e2e_cmp "bpdu = forward: BPDUs from site B reach ha" "$(seen bpdu)" -ge 10
e2e_cmp "guards off: guard_dropped stays 0" "$(e2e_counter gwa guard_dropped || echo x)" -eq 0

e2e_summary
