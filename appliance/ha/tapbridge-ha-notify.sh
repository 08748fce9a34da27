#!/bin/sh
#
# tapbridge-ha-notify.sh [--config FILE] [--bridge-ctl PATH] NAME TYPE INSTANCE STATE [PRIORITY]
#
# keepalived's notify script for a tapbridge high-availability pair: keepalived
# elects, this script tells the daemon (`bridge-ctl role NAME active|standby`).
# Named in the vrrp_instance as
#
#     notify "/usr/lib/tapbridge/ha/tapbridge-ha-notify.sh NAME"
#
# keepalived appends TYPE ("INSTANCE" or "GROUP"), the instance's name, its new
# STATE and its priority. MASTER makes the link active; BACKUP, FAULT and STOP make
# it standby (a box that cannot tell whether it should forward must not). Other
# states are ignored. Runs `bridge-ctl` directly with fixed arguments: nothing from
# keepalived reaches a shell.
#
# --config FILE      the link's configuration file (default /etc/tapbridge/NAME.toml)
# --bridge-ctl PATH  the bridge-ctl to run (default $TAPBRIDGE_BRIDGE_CTL, else
#                    /usr/bin/bridge-ctl)
#
# Exit status: bridge-ctl's (0 done; 1 the daemon did not answer; 2 bad arguments or
# a link without [ha]); 0 for a state that asks nothing.

set -eu
export PATH="${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"
bridge_ctl=${TAPBRIDGE_BRIDGE_CTL:-/usr/bin/bridge-ctl}
config=""

usage() {
    echo "usage: tapbridge-ha-notify.sh [--config FILE] [--bridge-ctl PATH] NAME TYPE INSTANCE STATE [PRIORITY]" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
    --config)
        [ $# -ge 2 ] || usage
        config=$2
        shift 2
        ;;
    --bridge-ctl)
        [ $# -ge 2 ] || usage
        bridge_ctl=$2
        shift 2
        ;;
    --*) usage ;;
    *) break ;;
    esac
done
[ $# -ge 4 ] || usage
name=$1
state=$4
case $name in
'' | *[!A-Za-z0-9_-]*)
    echo "error: link name '$name' must be letters, digits, '-' or '_'." >&2
    exit 2
    ;;
esac

case $state in
MASTER) role=active ;;
BACKUP | FAULT | STOP) role=standby ;;
*)
    echo "tapbridge $name: keepalived state '$state' asks nothing"
    exit 0
    ;;
esac

logger -t tapbridge-ha "link $name: keepalived says $state, setting role $role" 2>/dev/null || true
if [ -n "$config" ]; then
    exec "$bridge_ctl" role --config "$config" "$role"
fi
exec "$bridge_ctl" role "$name" "$role"
