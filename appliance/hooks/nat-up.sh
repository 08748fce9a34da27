#!/bin/bash
#
# nat-up.sh: tapbridge "up" hook that connects a link to the box's firewall.
#
#   [hooks]
#   up   = ["/usr/lib/tapbridge/scripts/nat-up.sh"]
#   down = ["/usr/lib/tapbridge/scripts/nat-down.sh"]
#
# What it sets up, for the overlay interface (the TAP, or the bridge it is enslaved to):
#   * MASQUERADE of the overlay's IPv4 subnet(s) leaving through the WAN interface;
#   * FORWARD acceptance overlay -> WAN, WAN -> overlay for established/related
#     connections, and both ways between the overlay and each LAN interface;
#   * TCP MSS clamping of forwarded SYNs in and out of the overlay to the route's
#     path MTU (or to a fixed value), so TCP never needs fragments through the tunnel;
#   * INPUT acceptance of the tunnel's own UDP port (from TAPBRIDGE_LISTEN), and of the
#     same TCP port when TAPBRIDGE_TRANSPORT is tcp or auto.
#
# Where the rules live:
#   * nftables (default when `nft` is installed): one table `inet tapbridge_NAME` of its
#     own with the chains mss_clamp (forward, priority mangle), forward and input
#     (priority filter - 5) and postrouting (nat, priority srcnat + 10, so the box's own SNAT rules
#     win). Note: in nftables an accept is final only inside its own table; if the box's
#     ruleset drops forwarded traffic, allow the overlay there (or use the iptables
#     backend, whose chain is jumped to first in FORWARD).
#   * iptables (when nft is missing, or forced): chains `TB-NAME-FWD` and `TB-NAME-IN`
#     (filter, IPv4 and, when ip6tables exists, IPv6; jumped to from the top of FORWARD
#     and INPUT) and `TB-NAME-NAT`
#     (nat, appended to POSTROUTING). Works with iptables-nft and iptables-legacy.
# Nothing else is ever touched. Running it twice gives the same rules once; if it fails
# half way it removes what it added and exits non-zero, which fails `link up`.
#
# Input, from the daemon (SPEC §4):
#   TAPBRIDGE_NAME        link name (1-21 of A-Z a-z 0-9 - _; names the table/chains)
#   TAPBRIDGE_INTERFACE   the TAP device
#   TAPBRIDGE_ADDRESSES   space-separated CIDRs of the TAP (IPv4 ones give the subnet)
#   TAPBRIDGE_BRIDGE      the bridge the TAP is enslaved to (empty: none); the overlay
#   TAPBRIDGE_LISTEN      the tunnel's UDP address:port; the port is opened in INPUT
#   TAPBRIDGE_TRANSPORT   udp, tcp or auto; with tcp/auto the TCP port is opened too
#   TAPBRIDGE_MTU, TAPBRIDGE_WAN_MTU   not needed: clamping follows the route's MTU
# Settings, as environment variables or as KEY=value lines (value optionally in double
# quotes, # comments) in /etc/tapbridge/NAME.nat (path overridable with
# TAPBRIDGE_NAT_CONFIG). That file is parsed, never sourced: unknown keys are errors, and
# it must be owned by root and not writable by group or others. The environment wins.
#   TAPBRIDGE_NAT_WAN_IF      WAN interface (default: that of the IPv4 default route);
#                             one that does not exist is refused (exit 2)
#   TAPBRIDGE_NAT_SUBNET      space-separated IPv4 CIDRs to masquerade
#                             (default: the IPv4 networks of TAPBRIDGE_ADDRESSES)
#   TAPBRIDGE_NAT_LAN_IF      space-separated LAN interfaces to forward to/from (default: none)
#   TAPBRIDGE_NAT_BRIDGE      the overlay bridge, if not TAPBRIDGE_BRIDGE; rules match it
#   TAPBRIDGE_NAT_MASQUERADE  yes (default) or no: forwarding and clamping only
#   TAPBRIDGE_NAT_MSS         pmtu (default) or a fixed MSS from 536 to 65495
#   TAPBRIDGE_NAT_BACKEND     auto (default: nft if installed, else iptables), nft, iptables
#   TAPBRIDGE_NAT_IPTABLES    iptables (default), iptables-nft or iptables-legacy
#
# Exit status: 0 rules in place, 1 a command failed, 2 bad settings. Needs CAP_NET_ADMIN
# (and CAP_NET_RAW for iptables-legacy). IPv4 forwarding is not switched on here: it is
# the operator's opt-in (/usr/share/doc/tapbridge/examples/60-tapbridge.conf into
# /etc/sysctl.d/); the hook only warns when it is off.

set -euo pipefail
# A daemon may run hooks with a bare environment; nft and iptables live in sbin.
export PATH="${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"
TB_LIB_DIR=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib
# shellcheck source=lib/nat.sh
. "$TB_LIB_DIR/nat.sh"

tb_common
tb_up_settings
tb_pick_backend
case $TB_BACKEND in
nft) tb_nft_up ;;
iptables) tb_ipt_up ;;
esac
if [[ $(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo 1) == 0 ]]; then
    printf 'warning: net.ipv4.ip_forward is 0, so nothing is forwarded between the overlay and %s; enable it with the sysctl drop-in /usr/share/doc/tapbridge/examples/60-tapbridge.conf\n' "$TB_WAN" >&2
fi
printf 'tapbridge %s: %s rules up (overlay %s, WAN %s, tunnel port %s)\n' "$TB_NAME" "$TB_BACKEND" \
    "$TB_OVL" "$TB_WAN" "${TB_PORT:-not opened}"
