#!/usr/bin/env bash
#
# host_mode.sh — two gateways, the TAP carrying the addresses itself (no bridge).
#
#   [east] tb-east 198.19.1.1/24 ── wan0 198.18.1.1/30 ══ 198.18.1.2/30 wan0 ── tb-west 198.19.1.2/24 [west]
#
# Checks (SPEC §3–§6): check/link up exit 0; the TAP is up with MTU 1500 and its
# `[interface] addresses`; `routes` with and without `via` are installed; peers come
# up; ping both ways; full-size frames (`ping -M do -s 1472`) cross a 1500-byte WAN
# because the tunnel fragments (`fragmented` on the sender, `reassembled` on the
# receiver); status --json has every §6 key with the right types and sensible values;
# tx/rx counters grew; the human status names the peer and its endpoint; `status`
# without NAME lists both links (in a private mount namespace whose /run/tapbridge is
# the test's socket dir, so the host's /run is untouched); then the same over an
# IPv6 underlay (2001:2::/48).
#
# Run as root: tests/e2e/host_mode.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

PORT=51901
ROUTE_DEV=198.19.64.0/18
ROUTE_VIA=198.19.128.0/18

e2e_site east
e2e_site west
NS_E=$(e2e_ns east)
NS_W=$(e2e_ns west)
e2e_wan "$NS_E" "$NS_W" 198.18.1.1/30 198.18.1.2/30

e2e_config east --listen "198.18.1.1:$PORT" --peer "west=198.18.1.2:$PORT" \
    --address 198.19.1.1/24 --route "$ROUTE_DEV" --route "$ROUTE_VIA via 198.19.1.2" \
    --mtu 1500 --wan-mtu 1500
e2e_config west --listen "198.18.1.2:$PORT" --peer "east=198.18.1.1:$PORT" \
    --address 198.19.1.2/24 --mtu 1500 --wan-mtu 1500

e2e_check "check east exits 0" e2e_ctl east 10 check east --config "$(e2e_conf east)"
e2e_check "check west exits 0" e2e_ctl west 10 check west --config "$(e2e_conf west)"

e2e_require_up east
e2e_require_up west

# --- what link up programmed
link_e=$(ip -n "$NS_E" -o link show dev tb-east 2>&1 || true)
e2e_match "TAP tb-east exists and is up" '<[^>]*\bUP\b[^>]*>' "$link_e"
e2e_match "TAP tb-east has MTU 1500" ' mtu 1500 ' "$link_e"
e2e_match "TAP tb-east carries 198.19.1.1/24" 'inet 198\.19\.1\.1/24 ' \
    "$(ip -n "$NS_E" -o -4 addr show dev tb-east 2>&1 || true)"
e2e_match "TAP tb-west carries 198.19.1.2/24" 'inet 198\.19\.1\.2/24 ' \
    "$(ip -n "$NS_W" -o -4 addr show dev tb-west 2>&1 || true)"
e2e_match "route $ROUTE_DEV (no via) on tb-east" "^$ROUTE_DEV dev tb-east" \
    "$(ip -n "$NS_E" route show "$ROUTE_DEV" 2>&1 || true)"
e2e_match "route $ROUTE_VIA via 198.19.1.2 on tb-east" "^$ROUTE_VIA via 198\.19\.1\.2 dev tb-east" \
    "$(ip -n "$NS_E" route show "$ROUTE_VIA" 2>&1 || true)"

# --- tunnel
e2e_wait_peer_up east west
e2e_passed || e2e_fatal "the tunnel did not come up"
e2e_wait_peer_up west east
e2e_passed || e2e_fatal "the tunnel did not come up"

tx0=$(e2e_peer east west tx_frames || echo x)
rx0=$(e2e_peer east west rx_frames || echo x)
txb0=$(e2e_peer east west tx_bytes || echo x)
rxb0=$(e2e_peer east west rx_bytes || echo x)
for v in tx0 rx0 txb0 rxb0; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || printf -v "$v" '%s' 0
done
frag0=$(e2e_jq east 'd["counters"]["fragmented"]' || echo x)
reas0=$(e2e_jq west 'd["counters"]["reassembled"]' || echo x)

e2e_wait "first ping east → west (ARP through the tunnel)" 10 e2e_ping1 east 198.19.1.2
e2e_check "ping east → west (3 probes)" e2e_ping east 198.19.1.2
e2e_check "ping west → east (3 probes)" e2e_ping west 198.19.1.1
# The routes carry traffic: west owns one address in each routed prefix (on lo).
ip -n "$NS_W" addr add 198.19.64.1/32 dev lo
ip -n "$NS_W" addr add 198.19.128.1/32 dev lo
e2e_check "ping east → 198.19.64.1 (on-link route $ROUTE_DEV dev tb-east)" \
    e2e_ping east 198.19.64.1 -c 2 -i 0.2 -W 2
e2e_check "ping east → 198.19.128.1 (route $ROUTE_VIA via 198.19.1.2)" \
    e2e_ping east 198.19.128.1 -c 2 -i 0.2 -W 2

# --- full-size frames: TAP MTU 1500, WAN MTU 1500, the tunnel fragments
e2e_check "ping -M do -s 1472 east → west (1500-byte IP packets over a 1500-byte WAN)" \
    e2e_ping east 198.19.1.2 -M "do" -s 1472 -c 3 -i 0.2 -W 2
e2e_check "ping -M do -s 1472 west → east" \
    e2e_ping west 198.19.1.1 -M "do" -s 1472 -c 3 -i 0.2 -W 2

frag1=$(e2e_jq east 'd["counters"]["fragmented"]' || echo x)
reas1=$(e2e_jq west 'd["counters"]["reassembled"]' || echo x)
e2e_cmp "east counters.fragmented grew with the big pings ($frag0 → $frag1)" "$frag1" -gt "$frag0"
e2e_cmp "west counters.reassembled grew with the big pings ($reas0 → $reas1)" "$reas1" -gt "$reas0"
e2e_cmp "east counters.fragmented > 0" "$frag1" -gt 0
e2e_cmp "west counters.reassembled > 0" "$reas1" -gt 0
e2e_cmp "east counters.reassembled > 0 (the replies were big too)" \
    "$(e2e_jq east 'd["counters"]["reassembled"]' || echo x)" -gt 0
e2e_cmp "west counters.fragmented > 0 (the replies were big too)" \
    "$(e2e_jq west 'd["counters"]["fragmented"]' || echo x)" -gt 0

# --- status --json
e2e_check "status east --json has every SPEC §6 key with the right type" e2e_schema east
e2e_check "status west --json has every SPEC §6 key with the right type" e2e_schema west
e2e_check "status east --json: name, interface, peer and endpoint are the configured ones" \
    e2e_jq east 'exit(0 if d["name"] == "east" and d["interface"]["name"] == "tb-east"
        and d["interface"]["mtu"] == 1500 and "198.19.1.1/24" in d["interface"]["addresses"]
        and [p["name"] for p in d["peers"]] == ["west"]
        and peer("west")["endpoint"] == "198.18.1.2:51901" else 1)'
e2e_check "status east --json: peer up, handshakes ≥ 1, last_handshake_secs a number" \
    e2e_jq east 'exit(0 if peer("west")["state"] == "up" and peer("west")["handshakes"] >= 1
        and isinstance(peer("west")["last_handshake_secs"], int) else 1)'
e2e_check "status east --json: no authentication failures on a clean link" \
    e2e_jq east 'exit(0 if d["counters"]["rx_auth_failed"] == 0 else 1)'
e2e_cmp "east tx_frames to west grew ($tx0 → …)" "$(e2e_peer east west tx_frames || echo x)" -gt "$tx0"
e2e_cmp "east rx_frames from west grew ($rx0 → …)" "$(e2e_peer east west rx_frames || echo x)" -gt "$rx0"
e2e_cmp "east tx_bytes to west grew by at least 3×1514 ($txb0 → …)" \
    "$(e2e_peer east west tx_bytes || echo x)" -ge "$((txb0 + 3 * 1514))"
e2e_cmp "east rx_bytes from west grew by at least 3×1514 ($rxb0 → …)" \
    "$(e2e_peer east west rx_bytes || echo x)" -ge "$((rxb0 + 3 * 1514))"

# --- human status
e2e_run e2e_ctl east "$E2E_T_STATUS" status east --config "$(e2e_conf east)"
e2e_cmp "status east (human) exits 0" "$E2E_RC" -eq 0
e2e_match "status east (human) names peer west" 'west' "$E2E_STDOUT"
e2e_match "status east (human) shows west's endpoint" '198\.18\.1\.2:51901' "$E2E_STDOUT"

# --- status without NAME: every link whose control socket exists in /run/tapbridge
# (a daemon older than the registry is still found).
# A private mount namespace gets a tmpfs /run whose tapbridge/ is our socket dir.
if command -v unshare >/dev/null 2>&1 && unshare --mount --propagation private true 2>/dev/null; then
    # shellcheck disable=SC2016 # expanded by the inner shell
    e2e_run timeout 10 unshare --mount --propagation private sh -c '
        mount -t tmpfs tb-e2e /run && mkdir /run/tapbridge &&
        mount --bind "$1" /run/tapbridge && exec "$2" status' _ "$E2E_WORK/run" "$BIN"
    e2e_cmp "status without NAME exits 0" "$E2E_RC" -eq 0
    e2e_match "status without NAME lists link east" 'east' "$E2E_STDOUT"
    e2e_match "status without NAME lists link west" 'west' "$E2E_STDOUT"
else
    e2e_skip "status without NAME lists every link" "unshare --mount is not available"
fi
# The same without the mount trick: the sockets live in the work dir, and the
# runtime registry (/run/tapbridge/links) is how status finds them.
e2e_run e2e_ctl east "$E2E_T_STATUS" status --json
e2e_cmp "status without NAME (registry) exits 0" "$E2E_RC" -eq 0
e2e_match "status without NAME (registry) lists east, whose socket is in the work dir" \
    '"name": "east"' "$E2E_STDOUT"
e2e_match "status without NAME (registry) lists west" '"name": "west"' "$E2E_STDOUT"

e2e_check_down "link down east exits 0" east
e2e_check_down "link down west exits 0" west

# --- IPv6 underlay
e2e_site east6
e2e_site west6
NS_E6=$(e2e_ns east6)
NS_W6=$(e2e_ns west6)
ip netns exec "$NS_E6" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 ||
    true
ip netns exec "$NS_W6" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 ||
    true
tb_veth "$NS_E6" wan0 "$NS_W6" wan0
if ! ip -n "$NS_E6" addr add 2001:2::1/64 dev wan0 nodad 2>/dev/null ||
    ! ip -n "$NS_W6" addr add 2001:2::2/64 dev wan0 nodad 2>/dev/null; then
    e2e_skip "IPv6 underlay" "IPv6 addresses cannot be configured in a namespace here"
    e2e_summary
fi
e2e_config east6 --listen "[2001:2::1]:$PORT" --peer "west6=[2001:2::2]:$PORT" \
    --address 198.19.6.1/24 --mtu 1500 --wan-mtu 1500
e2e_config west6 --listen "[2001:2::2]:$PORT" --peer "east6=[2001:2::1]:$PORT" \
    --address 198.19.6.2/24 --mtu 1500 --wan-mtu 1500
e2e_require_up east6
e2e_require_up west6
e2e_wait_peer_up east6 west6
if e2e_passed; then
    e2e_wait "IPv6 underlay: ping east6 → west6" 10 e2e_ping1 east6 198.19.6.2
    e2e_check "IPv6 underlay: ping east6 → west6 (3 probes)" e2e_ping east6 198.19.6.2
    e2e_check "IPv6 underlay: ping -M do -s 1472 east6 → west6" \
        e2e_ping east6 198.19.6.2 -M "do" -s 1472 -c 3 -i 0.2 -W 2
    e2e_check "IPv6 underlay: status shows endpoint [2001:2::2]:51901" \
        e2e_jq east6 'exit(0 if peer("west6")["endpoint"] == "[2001:2::2]:51901" else 1)'
fi

e2e_summary
