#!/bin/sh
#
# nat-reapply.sh NAME: put link NAME's NAT rules back after the firewall was reloaded.
#
# `systemctl restart nftables` (or reload) loads /etc/nftables.conf, which usually
# begins with `flush ruleset` and so removes the table nat-up.sh made for the link.
# tapbridge-nat@NAME.service (PartOf=nftables.service) runs this script again after
# every such restart or reload. It asks the running daemon for the environment its
# hooks get (`bridge-ctl hook-env NAME`: TAPBRIDGE_NAME, _INTERFACE, _ADDRESSES, ...)
# and runs nat-up.sh with it, which replaces the link's rules with a fresh copy (it is
# idempotent). When the link is not up there is nothing to re-apply: exit 0.
#
# Exit status: that of nat-up.sh (0 rules in place, 1 a command failed, 2 bad
# settings); 2 as well for a NAME nat-up.sh would refuse.

set -eu
export PATH="${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"
here=$(dirname -- "$(readlink -f -- "$0")")
BRIDGE_CTL=${TAPBRIDGE_BRIDGE_CTL:-/usr/bin/bridge-ctl}

if [ $# -ne 1 ]; then
    echo "usage: nat-reapply.sh NAME" >&2
    exit 2
fi
name=$1
case $name in
'' | *[!A-Za-z0-9_-]*)
    echo "error: link name '$name' must be letters, digits, '-' or '_'." >&2
    exit 2
    ;;
esac

vars=$("$BRIDGE_CTL" hook-env "$name")
if [ -z "$vars" ]; then
    echo "tapbridge $name: link is not up, no NAT rules to re-apply"
    exit 0
fi
# Each line is TAPBRIDGE_KEY=value; exported as data, never evaluated.
while IFS= read -r line; do
    case $line in
    TAPBRIDGE_[A-Z_]*=*)
        # shellcheck disable=SC2163 # exports the variable the line names
        export "$line"
        ;;
    *)
        echo "error: unexpected line from bridge-ctl hook-env: $line" >&2
        exit 1
        ;;
    esac
done <<EOT
$vars
EOT
export TAPBRIDGE_PHASE=up
exec "$here/nat-up.sh"
