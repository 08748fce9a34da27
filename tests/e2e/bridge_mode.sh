#!/usr/bin/env bash
#
# bridge_mode.sh — the appliance set-up: the TAP enslaved to the gateway's LAN bridge.
#
#   hosta eth0 198.19.2.10/24 ── lan0 br-lan [gwa] wan0 198.18.2.1/30
#                                          ══ 198.18.2.2/30 wan0 [gwb] br-lan lan0 ── eth0 198.19.2.20/24 hostb
#
# Checks: link up with `[interface] bridge = "br-lan"`; `ip link` shows the TAP as
# `master br-lan` and up; peers come up; LAN host pings LAN host across the bridge
# (small and full-size 1500-byte frames); the peer's counters show the traffic; link
# down removes the TAP but leaves the operator's br-lan and its other port alone.
#
# Run as root: tests/e2e/bridge_mode.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

PORT=51901

e2e_site gwa
e2e_site gwb
e2e_site hosta
e2e_site hostb
NS_GA=$(e2e_ns gwa)
NS_GB=$(e2e_ns gwb)
e2e_wan "$NS_GA" "$NS_GB" 198.18.2.1/30 198.18.2.2/30

# lan GW HOST HOST_ADDR: br-lan in GW with the LAN host's veth as a port.
lan() {
    local gw=$1 host=$2 addr=$3
    ip -n "$gw" link add br-lan type bridge
    tb_veth "$host" eth0 "$gw" lan0
    ip -n "$gw" link set lan0 master br-lan
    ip -n "$gw" link set br-lan up
    ip -n "$host" link set eth0 mtu 1500
    ip -n "$host" addr add "$addr" dev eth0
}
lan "$NS_GA" "$(e2e_ns hosta)" 198.19.2.10/24
lan "$NS_GB" "$(e2e_ns hostb)" 198.19.2.20/24

e2e_config gwa --listen "198.18.2.1:$PORT" --peer "gwb=198.18.2.2:$PORT" --bridge br-lan \
    --mtu 1500 --wan-mtu 1500
e2e_config gwb --listen "198.18.2.2:$PORT" --peer "gwa=198.18.2.1:$PORT" --bridge br-lan \
    --mtu 1500 --wan-mtu 1500

e2e_check "check gwa exits 0" e2e_ctl gwa 10 check gwa --config "$(e2e_conf gwa)"
e2e_require_up gwa
e2e_require_up gwb

for gw in gwa gwb; do
    ns=$(e2e_ns "$gw")
    link=$(ip -n "$ns" -o link show dev "tb-$gw" 2>&1 || true)
    e2e_match "tb-$gw is enslaved: 'master br-lan' in ip -n $gw link" ' master br-lan ' "$link"
    e2e_match "tb-$gw is up" '<[^>]*\bUP\b[^>]*>' "$link"
    e2e_match "tb-$gw has MTU 1500" ' mtu 1500 ' "$link"
done

e2e_wait_peer_up gwa gwb

e2e_passed || e2e_fatal "the tunnel did not come up"
e2e_wait_peer_up gwb gwa
e2e_passed || e2e_fatal "the tunnel did not come up"

# A status call that fails leaves "x", which fails the comparison below.
tx0=$(e2e_peer gwa gwb tx_frames) || tx0=x

e2e_wait "first ping hosta → hostb (ARP across the bridge)" 10 e2e_ping1 hosta 198.19.2.20
e2e_check "ping hosta → hostb (3 probes)" e2e_ping hosta 198.19.2.20
e2e_check "ping hostb → hosta (3 probes)" e2e_ping hostb 198.19.2.10
e2e_check "ping -M do -s 1472 hosta → hostb (full-size frames across the bridge)" \
    e2e_ping hosta 198.19.2.20 -M "do" -s 1472 -c 3 -i 0.2 -W 2
e2e_cmp "gwa tx_frames to gwb grew by ≥ 6 ($tx0 → …)" \
    "$(e2e_peer gwa gwb tx_frames || echo x)" -ge "$(e2e_sum "$tx0" 6)"
e2e_check "status gwa --json has every SPEC §6 key with the right type" e2e_schema gwa

e2e_check_down "link down gwa exits 0" gwa
e2e_check "after link down: tb-gwa is gone" e2e_link_absent "$NS_GA" tb-gwa
e2e_check "after link down: br-lan (not the link's) is still there" \
    ip -n "$NS_GA" link show dev br-lan
e2e_match "after link down: lan0 is still a port of br-lan" ' master br-lan ' \
    "$(ip -n "$NS_GA" -o link show dev lan0 2>&1 || true)"
e2e_check "after link down: no control socket file" test ! -e "$(e2e_sock gwa)"

e2e_summary
