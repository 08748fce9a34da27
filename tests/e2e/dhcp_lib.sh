# shellcheck shell=bash
# The DL_* settings are used by the scripts that source this file.
# shellcheck disable=SC2034
#
# dhcp_lib.sh — the two-site rig shared by tests/e2e/dhcp_clients.sh and
# tests/e2e/arp_suppress.sh: its topology and nothing else. Reporting, running
# commands, config writing and captures come from tests/e2e/lib.sh, which this
# file sources.
#
#   LAN hosts ── br-lan [gw-a] ══ WAN 198.18.0.1/30 ↔ 198.18.0.2/30 ══ [gw-b] br-lan ── host-b
#   (dl_add_lan_host)   tb-a                                              tb-b        198.19.0.20
#
# Site A runs the local responder: [dhcp] (server 198.19.0.254, pool
# 198.19.0.100-199, router/DNS 198.19.0.1, domain branch.example, lease 1h,
# option 121, reservation 02:00:00:00:aa:01 → 198.19.0.10) and [arp]
# (respond 198.19.0.254, suppress). Site B is a plain bridge without responder.
# Neither br-lan carries an address. Sites (lib.sh's e2e_site): a and b, and
# a-tap (site A again in A's namespace, TAP not enslaved). Lease files and
# control sockets live in the work directory $E2E_WORK.

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Addresses of the rig.
DL_WAN_A=198.18.0.1
DL_WAN_B=198.18.0.2
DL_PORT=51901
DL_HOST_B=198.19.0.20
DL_SERVER=198.19.0.254
DL_ROUTER=198.19.0.1
DL_DOMAIN=branch.example
DL_LEASE_SECS=3600
# A client's first lease, until it renews (SHORT_LEASE_SECS in src/responder/dhcp/alloc.rs).
DL_FIRST_LEASE_SECS=300
DL_RESERVED_MAC=02:00:00:00:aa:01
DL_RESERVED_IP=198.19.0.10
# Optional fixed responder MAC for [arp] mac (empty: derived from the TAP MAC).
DL_ARP_MAC="${DL_ARP_MAC:-}"
# Optional further [arp] KEY=VALUE for site A's responder (e.g. suppress_nd=true).
DL_ARP_EXTRA="${DL_ARP_EXTRA:-}"
# Optional further [dhcp] KEY=VALUE for every responder (e.g. conflict_check=false).
DL_DHCP_EXTRA="${DL_DHCP_EXTRA:-}"
# Set by dl_setup_rig: the gateways' and host B's namespaces, host B's MAC.
DL_GA=""
DL_GB=""
DL_HB=""
DL_HOST_B_MAC=""

# dl_write_config NAME LISTEN PEER ENDPOINT IFNAME BRIDGE RESPONDER
# BRIDGE empty: the TAP stays unenslaved. RESPONDER 1: [dhcp] and [arp] sections.
dl_write_config() {
    local name=$1 listen=$2 peer=$3 endpoint=$4 ifname=$5 bridge=$6 responder=$7
    local f opts=()
    f=$(e2e_conf "$name")
    [[ -z "$bridge" ]] || opts+=(--bridge "$bridge")
    if [[ "$responder" == 1 ]]; then
        opts+=(--dhcp enabled=true --dhcp "server_address=$DL_SERVER"
            --dhcp pool=198.19.0.100-198.19.0.199 --dhcp subnet=198.19.0.0/24
            --dhcp "router=$DL_ROUTER" --dhcp "dns=[$DL_ROUTER]" --dhcp "domain=$DL_DOMAIN"
            --dhcp lease_time=1h --dhcp "routes=[198.19.64.0/18 via $DL_ROUTER]"
            --dhcp "search=[$DL_DOMAIN, corp.example]" --dhcp "ntp=[$DL_ROUTER]"
            --dhcp "lease_file=$E2E_WORK/$name.leases"
            --reservation "$DL_RESERVED_MAC=$DL_RESERVED_IP"
            --arp "respond=[$DL_SERVER]" --arp suppress=true --arp binding_timeout=5m)
        [[ -z "$DL_ARP_MAC" ]] || opts+=(--arp "mac=$DL_ARP_MAC")
        [[ -z "$DL_ARP_EXTRA" ]] || opts+=(--arp "$DL_ARP_EXTRA")
        [[ -z "$DL_DHCP_EXTRA" ]] || opts+=(--dhcp "$DL_DHCP_EXTRA")
    fi
    tb_link_config "$f" --ifname "$ifname" --mtu 1500 \
        --listen "$listen" --psk "$E2E_WORK/psk" --keepalive 5s \
        --peer "$peer=$endpoint" "${opts[@]}" --socket "$(e2e_sock "$name")" ||
        e2e_fatal "could not write $f"
    # In the gateway's namespace: check looks for the bridge there.
    e2e_ctl "${name%%-*}" 10 check --config "$f" >/dev/null ||
        e2e_fatal "bridge-ctl check rejected $f"
}

# dl_setup_rig: sites a and b (namespaces $DL_GA, $DL_GB), host B's namespace
# $DL_HB, the WAN, both br-lan, host B, and the configs a.toml (bridged,
# responder), b.toml (bridged, plain) and a-tap/a.toml (site A again as link
# "a", TAP not enslaved, own lease file: tap_win32 style).
dl_setup_rig() {
    e2e_site a
    e2e_site b
    DL_GA=$(e2e_ns a)
    DL_GB=$(e2e_ns b)
    E2E_NS[a-tap]=$DL_GA
    # Site A again: its link must be called "a" too (b names its peer "a").
    mkdir -p "$E2E_WORK/a-tap"
    E2E_CONF[a-tap]="$E2E_WORK/a-tap/a.toml"
    tb_ns_add tbe2e-hb DL_HB
    tb_veth "$DL_GA" wan0 "$DL_GB" wan0
    ip -n "$DL_GA" addr add "$DL_WAN_A/30" dev wan0
    ip -n "$DL_GB" addr add "$DL_WAN_B/30" dev wan0
    local gw
    for gw in "$DL_GA" "$DL_GB"; do
        ip -n "$gw" link add br-lan type bridge
        # No STP/forward delay: ports forward at once.
        ip -n "$gw" link set br-lan type bridge forward_delay 0 stp_state 0
        ip -n "$gw" link set br-lan up
    done
    tb_veth "$DL_HB" eth0 "$DL_GB" lan0
    ip -n "$DL_GB" link set lan0 master br-lan
    ip -n "$DL_HB" addr add "$DL_HOST_B/24" dev eth0
    DL_HOST_B_MAC=$(e2e_mac "$DL_HB" eth0)

    dl_write_config a "$DL_WAN_A:$DL_PORT" b "$DL_WAN_B:$DL_PORT" tb-a br-lan 1
    dl_write_config b "$DL_WAN_B:$DL_PORT" a "$DL_WAN_A:$DL_PORT" tb-b br-lan 0
    dl_write_config a-tap "$DL_WAN_A:$DL_PORT" b "$DL_WAN_B:$DL_PORT" tbw-a "" 1
}

# dl_add_lan_host PREFIX VAR [MAC]: a namespace whose eth0 is cabled to A's br-lan
# (optionally with a fixed MAC); its name goes into the variable VAR.
dl_add_lan_host() {
    local prefix=$1 var=$2 mac=${3:-} port
    tb_ns_add "$prefix" "$var"
    port="p${#TB_CLEANUP[@]}"
    tb_veth "${!var}" eth0 "$DL_GA" "$port"
    if [[ -n "$mac" ]]; then
        ip -n "${!var}" link set eth0 address "$mac"
    fi
    ip -n "$DL_GA" link set "$port" master br-lan
}

# dl_wait_tunnel SITE: SITE (a or a-tap) sees peer b up and b sees peer a up (bounded).
dl_wait_tunnel() {
    tb_wait_until 20 "peer b up at site $1" _e2e_peer_is_up "$1" b &&
        tb_wait_until 20 "peer a up at site b" _e2e_peer_is_up b a
}
