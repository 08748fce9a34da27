# shellcheck shell=bash
# The GL_* settings are used by the scripts that source this file.
# shellcheck disable=SC2034
#
# guard_lib.sh — the two-site rig shared by tests/e2e/guard_*.sh (the [guard]
# section, SPEC §4/§5): its topology and nothing else. Reporting, running commands,
# config writing come from tests/e2e/lib.sh, which this file sources; raw frames
# from tests/e2e/guard_frames.py (plain AF_PACKET, no third-party modules).
#
#   ha eth0 198.19.40.10 ── br-lan [gwa] wan0 198.18.40.1/30
#                                 ══ 198.18.40.2/30 wan0 [gwb] br-lan ── eth0 198.19.40.20 hb
#
# Both br-lan have STP off, forward delay 0 and multicast snooping off (so every
# multicast is flooded as a plain switch would). IPv6 is off in the gateways and
# hosts (no RS/MLD/ND chatter in the counters); the RA test sends raw frames,
# which need no IPv6 stack. Links are bridged: tb-gwa and tb-gwb are ports of br-lan.

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GL_PORT=51901
GL_WAN_A=198.18.40.1
GL_WAN_B=198.18.40.2
GL_HOST_A=198.19.40.10
GL_HOST_B=198.19.40.20
GL_FRAMES="$(dirname "${BASH_SOURCE[0]}")/guard_frames.py"
# Set by gl_setup: namespaces of the gateways and hosts.
GL_GA=""
GL_GB=""
GL_HA=""
GL_HB=""

# gl_setup: namespaces, WAN, both br-lan with one host each.
gl_setup() {
    e2e_site gwa
    e2e_site gwb
    e2e_site ha
    e2e_site hb
    GL_GA=$(e2e_ns gwa)
    GL_GB=$(e2e_ns gwb)
    GL_HA=$(e2e_ns ha)
    GL_HB=$(e2e_ns hb)
    local ns
    for ns in "$GL_GA" "$GL_GB" "$GL_HA" "$GL_HB"; do
        e2e_no_ipv6 "$ns"
    done
    e2e_wan "$GL_GA" "$GL_GB" "$GL_WAN_A/30" "$GL_WAN_B/30"
    local gw host addr
    for gw in a b; do
        if [[ $gw == a ]]; then
            ns=$GL_GA host=$GL_HA addr=$GL_HOST_A
        else
            ns=$GL_GB host=$GL_HB addr=$GL_HOST_B
        fi
        ip -n "$ns" link add br-lan type bridge
        ip -n "$ns" link set br-lan type bridge forward_delay 0 stp_state 0 mcast_snooping 0
        ip -n "$ns" link set br-lan up
        tb_veth "$host" eth0 "$ns" lan0
        ip -n "$ns" link set lan0 master br-lan
        ip -n "$host" addr add "$addr/24" dev eth0
    done
}

# gl_config GUARD_TOML: write both sites' configs (bridged, responder off) with
# GUARD_TOML (the body of a [guard] section, lines separated by newlines).
gl_config() {
    local guard=$1
    e2e_config gwa --listen "$GL_WAN_A:$GL_PORT" --peer "gwb=$GL_WAN_B:$GL_PORT" \
        --bridge br-lan --extra "[guard]"$'\n'"$guard"
    e2e_config gwb --listen "$GL_WAN_B:$GL_PORT" --peer "gwa=$GL_WAN_A:$GL_PORT" \
        --bridge br-lan --extra "[guard]"$'\n'"$guard"
}

# gl_up: both links up and the tunnel established, or abort the test.
gl_up() {
    e2e_require_up gwa
    e2e_require_up gwb
    e2e_wait_peer_up gwa gwb 20
    e2e_passed || e2e_fatal "the tunnel did not come up"
    e2e_wait_peer_up gwb gwa 20
    e2e_passed || e2e_fatal "the tunnel did not come up"
}

# gl_down: both links down (checked).
gl_down() {
    e2e_check_down "link down gwa" gwa
    e2e_check_down "link down gwb" gwb
}

# gl_wan_packets NS DIR: packets the gateway's wan0 sent (DIR tx) or received (rx).
gl_wan_packets() {
    ip netns exec "$1" cat "/sys/class/net/wan0/statistics/${2}_packets"
}

# gl_wan_total: packets gwa's WAN sent and received.
gl_wan_total() {
    echo $(($(gl_wan_packets "$GL_GA" tx) + $(gl_wan_packets "$GL_GA" rx)))
}

# gl_looped SITE: whether SITE counted a forwarding loop (loops_detected ≥ 1).
# shellcheck disable=SC2317 # invoked indirectly through e2e_wait
gl_looped() {
    local n
    n=$(e2e_counter "$1" loops_detected 2>/dev/null) || return 1
    [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 1))
}

# gl_frames NS SECS ARGS...: run guard_frames.py ARGS in NS, bounded by SECS.
gl_frames() {
    local ns=$1 secs=$2
    shift 2
    ip netns exec "$ns" timeout -k 2 "$secs" python3 "$GL_FRAMES" "$@"
}

# gl_dump: after a failed check, what each bridge and host believes (FDB entries
# on br-lan, neighbour caches), as notes: a failure shows where frames went.
gl_dump() {
    local ns
    for ns in "$GL_GA" "$GL_GB"; do
        e2e_note "bridge fdb in $ns (dynamic entries):"
        bridge -n "$ns" fdb show br br-lan 2>&1 | grep -v permanent | sed 's/^/#   /' || true
    done
    for ns in "$GL_HA" "$GL_HB"; do
        e2e_note "neighbours in $ns: $(ip -n "$ns" neigh show 2>&1 | tr '\n' ';')"
        e2e_note "eth0 in $ns: $(ip -n "$ns" -br link show eth0 2>&1)"
    done
    local site
    for site in gwa gwb; do
        e2e_note "$site's log:"
        tail -n 20 "$E2E_WORK/run/$site.log" 2>&1 | sed 's/^/#   /' || true
    done
}
