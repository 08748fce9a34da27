#!/usr/bin/env bash
#
# fleet_scale.sh — a hub and N branches (default 100), every branch onboarded with
# `bridge-ctl invite` on the hub and `bridge-ctl join` on the branch, none by editing
# the hub's main file (issue 23, item 4).
#
#   sudo ./scripts/fleet_scale.sh [--spokes N] [--pairs N] [--idle SECS]
#
# Rig (namespaces, removed on exit, also on failure or Ctrl-C):
#   [wan] br-wan ── [hub] 198.18.0.1/16, tb-hub 198.19.0.1/16
#             ├──── [s1] 198.18.1.1/16, tb-s1 198.19.1.1/16
#             …     [sI] 198.18.H.L (I = 250 H + L, L in 1..250), TAP 198.19.H.L
#
# Steps, each timed:
#   1. the hub's main file: `hub = true`, no [[peer]]; its checksum is kept;
#   2. `invite hub s1` before the hub is up, `link up hub`, then `invite hub sI` for the
#      others on the running hub (each one reloads it);
#   3. each branch `join`s from its invitation (stdin), gets its TAP address and a
#      control socket in the work dir appended, and comes up (`link up`, 10 at a time);
#      bring-up ends when the hub sees every branch `up`;
#   4. --pairs random branch pairs ping each other through the hub (2 probes each);
#      every pair must answer;
#   5. idle: the hub's RSS (VmRSS) and CPU (utime+stime over --idle seconds, keepalives
#      only) are read from /proc;
#   6. one branch is revoked: its drop-in deleted, the hub reloaded; the time until the
#      hub lists it no more and its pings (to the hub and to another branch) go
#      unanswered must be under 15 s, while every other branch stays `up` at the hub;
#   7. the hub's main file is unchanged.
# Prints one line per figure and a summary; exit status 0 only if every check passed.
# At most N + 1 daemons run; every wait is bounded; everything runs in namespaces with
# addresses from 198.18.0.0/15.
#
# Options:
#   --spokes N   branches (2..=1000, default 100)
#   --pairs N    branch pairs pinged (default 20)
#   --idle SECS  the idle measurement (default 30)
#
# BRIDGE_CTL=PATH uses that binary instead of building target/release/bridge-ctl.

set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/netns.sh
source "$HERE/lib/netns.sh"

SPOKES=100
PAIRS=20
IDLE=30
while (($# > 0)); do
    case "$1" in
    --spokes) SPOKES=$2 ;;
    --pairs) PAIRS=$2 ;;
    --idle) IDLE=$2 ;;
    -h | --help)
        sed -n '3,38p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) tb_die "unknown option $1 (see --help)" ;;
    esac
    shift 2
done
if ! [[ "$SPOKES" =~ ^[0-9]+$ ]] || ((SPOKES < 2 || SPOKES > 1000)); then
    tb_die "--spokes must be 2 to 1000"
fi
[[ "$PAIRS" =~ ^[0-9]+$ && "$IDLE" =~ ^[0-9]+$ ]] || tb_die "--pairs and --idle take numbers"

tb_require_root
tb_install_traps
TB_SUFFIX=$(tb_suffix)
if [[ -z "${BRIDGE_CTL:-}" ]]; then
    tb_build_release BRIDGE_CTL
fi
BIN=$BRIDGE_CTL
WORK=$(mktemp -d /tmp/fleet-scale.XXXXXX)
tb_defer rm -rf "$WORK"
mkdir -p "$WORK/run"
PORT=51901
FAILED=0

ok() { printf 'ok - %s\n' "$*"; }
not_ok() {
    printf 'not ok - %s\n' "$*"
    FAILED=$((FAILED + 1))
}
figure() { printf '# %s\n' "$*"; }
now_ms() { date +%s%3N; }

# Addresses of branch I: 198.18.H.L / 198.19.H.L with I = 250 H + L.
wan_ip() { printf '198.18.%d.%d' $(($1 / 250)) $(($1 % 250 + 1)); }
tap_ip() { printf '198.19.%d.%d' $(($1 / 250)) $(($1 % 250 + 1)); }
# Branch I's index is 1..SPOKES; I = 250 H + (L - 1) with H >= 1 for branches: shift by 250.
spoke_wan() { wan_ip $(($1 + 249)); }
spoke_tap() { tap_ip $(($1 + 249)); }

# ---------------------------------------------------------------- namespaces
tb_heading "rig: a hub and $SPOKES branches"
tb_ns_add fleet-wan NS_WAN
ip -n "$NS_WAN" link add br-wan type bridge
ip -n "$NS_WAN" link set br-wan up
declare -A NS
# site NAME WAN_ADDR: a namespace cabled to br-wan.
site() {
    local name=$1 addr=$2 var="NS_${1//-/_}"
    tb_ns_add "fl-$name" "$var"
    NS[$name]=${!var}
    ip netns exec "${NS[$name]}" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
    ip netns exec "${NS[$name]}" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 || true
    tb_veth "$NS_WAN" "p-$name" "${NS[$name]}" wan0
    ip -n "$NS_WAN" link set "p-$name" master br-wan
    ip -n "${NS[$name]}" addr add "$addr/16" dev wan0
}
site hub 198.18.0.1
for ((i = 1; i <= SPOKES; i++)); do
    site "s$i" "$(spoke_wan "$i")"
done

# ctl SITE SECS ARGS...: bridge-ctl in SITE's namespace, under a timeout.
ctl() {
    local s=$1 secs=$2
    shift 2
    ip netns exec "${NS[$s]}" timeout -k 5 "$secs" "$BIN" "$@"
}
# status_py SITE EXPR: a Python expression over SITE's status --json `d`.
status_py() {
    local json
    json=$(ctl "$1" 10 status --config "$2" --json) || return 1
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$json" "$3"
}

# ---------------------------------------------------------------- the hub
mkdir -m 700 "$WORK/hub"
HUB=$WORK/hub/hub.toml
cat >"$HUB" <<EOF
# scripts/fleet_scale.sh: every branch of this hub is a peer drop-in (hub.d/)
[interface]
name = "tb-hub"
addresses = ["198.19.0.1/16"]

[tunnel]
listen = "198.18.0.1:$PORT"
hub = true
keepalive = "10s"

[control]
socket = "$WORK/run/hub.sock"
EOF
HUB_SUM=$(sha256sum <"$HUB")
tb_defer ctl hub 30 link down --config "$HUB"

declare -A TOKEN
# invite I: invite branch sI; its invitation into TOKEN[I].
invite() {
    TOKEN[$1]=$(ctl hub 30 invite hub "s$1" --config "$HUB" 2>"$WORK/invite.err") ||
        tb_die "invite hub s$1 failed: $(cat "$WORK/invite.err")"
}

tb_heading "onboarding: invite on the hub"
t0=$(now_ms)
invite 1
ctl hub 60 link up --config "$HUB" >/dev/null || tb_die "the hub did not come up"
HUB_PID=$(status_py hub "$HUB" 'd["pid"]')
for ((i = 2; i <= SPOKES; i++)); do
    invite "$i"
done
t1=$(now_ms)
figure "invite: $SPOKES branches in $((t1 - t0)) ms ($(((t1 - t0) / SPOKES)) ms each, each a reload of the running hub after the first)"

tb_heading "onboarding: join on each branch, link up"
t0=$(now_ms)
for ((i = 1; i <= SPOKES; i++)); do
    d=$WORK/s$i
    mkdir -m 700 "$d"
    printf '%s\n' "${TOKEN[$i]}" | ip netns exec "${NS[s$i]}" timeout 20 "$BIN" join - --dir "$d" \
        >/dev/null 2>"$WORK/join.err" || tb_die "join for s$i failed: $(cat "$WORK/join.err")"
    sed -i "s|^\[interface\]\$|[interface]\nname = \"tb-s$i\"\naddresses = [\"$(spoke_tap "$i")/16\"]|" \
        "$d/s$i.toml"
    printf '\n[control]\nsocket = "%s"\n' "$WORK/run/s$i.sock" >>"$d/s$i.toml"
    tb_defer ctl "s$i" 30 link down --config "$d/s$i.toml"
done
t1=$(now_ms)
figure "join: $SPOKES branches in $((t1 - t0)) ms"

t0=$(now_ms)
pids=()
for ((i = 1; i <= SPOKES; i++)); do
    ctl "s$i" 60 link up --config "$WORK/s$i/s$i.toml" >"$WORK/s$i/up.out" 2>&1 &
    pids+=($!)
    if ((${#pids[@]} == 10)); then
        for p in "${pids[@]}"; do wait "$p" || true; done
        pids=()
    fi
done
for p in "${pids[@]}"; do wait "$p" || true; done
t_up=$(now_ms)
all_up() {
    [[ "$(status_py hub "$HUB" "sum(p['state'] == 'up' for p in d['peers'])")" == "$SPOKES" ]]
}
if tb_wait_until 60 "the hub sees all $SPOKES branches up" all_up; then
    t1=$(now_ms)
    ok "every branch is up at the hub"
    figure "bring-up: $SPOKES link ups (10 at a time) in $((t_up - t0)) ms; all $SPOKES up at the hub $((t1 - t_up)) ms after the last link up returned ($((t1 - t0)) ms in all)"
else
    not_ok "every branch is up at the hub ($(status_py hub "$HUB" "sum(p['state'] == 'up' for p in d['peers'])") of $SPOKES)"
fi

# ---------------------------------------------------------------- pings
tb_heading "sampled pings between branches, through the hub"
answered=0
for ((k = 0; k < PAIRS; k++)); do
    a=$((RANDOM % SPOKES + 1))
    b=$((RANDOM % SPOKES + 1))
    ((a != b)) || b=$((a % SPOKES + 1))
    if ip netns exec "${NS[s$a]}" timeout 20 ping -n -c 2 -i 0.2 -W 2 "$(spoke_tap "$b")" >/dev/null 2>&1; then
        answered=$((answered + 1))
    else
        printf '#   s%d -> s%d: no answer\n' "$a" "$b"
    fi
done
if ((answered == PAIRS)); then
    ok "all $PAIRS sampled branch pairs answered"
else
    not_ok "$answered of $PAIRS sampled branch pairs answered"
fi

# ---------------------------------------------------------------- idle
tb_heading "the hub at rest, $IDLE s"
hz=$(getconf CLK_TCK)
c0=$(tb_cpu_ticks "$HUB_PID")
sleep "$IDLE"
c1=$(tb_cpu_ticks "$HUB_PID")
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$HUB_PID/status")
cpu=$(python3 -c "print(f'{100 * ($c1 - $c0) / $hz / $IDLE:.2f}')")
figure "hub idle with $SPOKES branches (keepalive 10s): RSS $((rss / 1024)) MiB ($rss KiB), CPU $cpu % of one core over $IDLE s"
if ((rss <= 200 * 1024)); then
    ok "hub RSS $((rss / 1024)) MiB <= 200 MiB"
else
    not_ok "hub RSS $((rss / 1024)) MiB > 200 MiB"
fi
if python3 -c "import sys; sys.exit(0 if $cpu <= 5 else 1)"; then
    ok "hub idle CPU $cpu % <= 5 %"
else
    not_ok "hub idle CPU $cpu % > 5 %"
fi

# ---------------------------------------------------------------- revoke
V=$(((SPOKES + 1) / 2))
tb_heading "revoking s$V"
rm "$WORK/hub/hub.d/s$V.toml" "$WORK/hub/hub.d/s$V.psk"
t0=$(now_ms)
out=$(ctl hub 30 reload --config "$HUB" 2>&1) || not_ok "reload after deleting s$V's drop-in: $out"
figure "reload: $out"
# revoked: the hub lists s$V no more and nothing of s$V's passes: its pings to the hub
# and to another branch go unanswered. (s$V itself notices only after three keepalive
# intervals, 30 s, that the hub stopped answering.)
revoked() {
    [[ "$(status_py hub "$HUB" "any(p['name'] == 's$V' for p in d['peers'])")" == False ]] &&
        ! ip netns exec "${NS[s$V]}" timeout 5 ping -n -c 1 -W 1 198.19.0.1 >/dev/null 2>&1 &&
        ! ip netns exec "${NS[s$V]}" timeout 5 ping -n -c 1 -W 1 "$(spoke_tap 1)" >/dev/null 2>&1
}
if tb_wait_until 15 "s$V is refused" revoked; then
    t1=$(now_ms)
    ok "s$V is refused within 15 s of the reload"
    figure "revocation: s$V refused $((t1 - t0)) ms after the reload began"
else
    not_ok "s$V is still served 15 s after the reload"
fi
others=$(status_py hub "$HUB" "sum(p['state'] == 'up' for p in d['peers'])")
listed=$(status_py hub "$HUB" "len(d['peers'])")
if [[ "$others" == $((SPOKES - 1)) && "$listed" == $((SPOKES - 1)) ]]; then
    ok "the other $((SPOKES - 1)) branches stay up at the hub"
else
    not_ok "after the revocation $others of $listed listed branches are up (want $((SPOKES - 1)))"
fi
a=$((V % SPOKES + 1))
b=$((a % SPOKES + 1))
if ip netns exec "${NS[s$a]}" timeout 20 ping -n -c 2 -i 0.2 -W 2 "$(spoke_tap "$b")" >/dev/null 2>&1; then
    ok "s$a still pings s$b through the hub"
else
    not_ok "s$a no longer pings s$b through the hub"
fi

if [[ "$(sha256sum <"$HUB")" == "$HUB_SUM" ]]; then
    ok "the hub's main file was never edited"
else
    not_ok "the hub's main file changed"
fi

if ((FAILED == 0)); then
    printf '# all checks passed\n'
else
    printf '# %d check(s) failed\n' "$FAILED"
    exit 1
fi
