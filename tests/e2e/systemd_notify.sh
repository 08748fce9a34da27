#!/usr/bin/env bash
#
# systemd_notify.sh — the daemon's side of `Type=notify` (SPEC §3, sd_notify(3)),
# driven the way systemd drives it: `link up NAME --foreground` with $NOTIFY_SOCKET
# pointing at a Unix datagram socket this test listens on, and $WATCHDOG_USEC set.
#
#   [alpha] tb-alpha 198.19.7.1/24 ── wan0 198.18.7.1/30 ══ 198.18.7.2/30 wan0 ── tb-beta [beta]
#
# Checks:
#   * READY=1 arrives, and only once the link is up as `link up` defines it: the TAP
#     exists, the control socket listens, and the (slow, 1 s) up hook has finished;
#   * STATUS= tells how many peers are up, refreshed when the peer comes up;
#   * WATCHDOG=1 keeps arriving at about half of WATCHDOG_USEC;
#   * `bridge-ctl reload` is framed by RELOADING=1 ... READY=1;
#   * SIGTERM: STOPPING=1, a clean exit 0, no TAP left;
#   * an abstract socket ("@name") works as well; without NOTIFY_SOCKET nothing breaks.
# (The unit file itself is checked with `systemd-analyze verify` when the tool exists.)
#
# Run as root: tests/e2e/systemd_notify.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

PORT=51901
W=$E2E_WORK
e2e_site alpha
e2e_site beta
NS_A=$(e2e_ns alpha)
NS_B=$(e2e_ns beta)
e2e_no_ipv6 "$NS_A"
e2e_no_ipv6 "$NS_B"
e2e_wan "$NS_A" "$NS_B" 198.18.7.1/30 198.18.7.2/30

# A slow up hook: READY=1 must wait for it.
cat >"$W/slow-up.sh" <<EOF
#!/bin/sh
sleep 1
: >"$W/hook-done"
EOF
chmod 755 "$W/slow-up.sh"
e2e_config alpha --listen "198.18.7.1:$PORT" --peer "beta=198.18.7.2:$PORT" \
    --address 198.19.7.1/24 --hook-up "$W/slow-up.sh"
e2e_config beta --listen "198.18.7.2:$PORT" --peer "alpha=198.18.7.1:$PORT" \
    --address 198.19.7.2/24
CONF_A=$(e2e_conf alpha)

# The listener: one line per received line, prefixed with what was true on arrival.
cat >"$W/listen.py" <<'EOF'
import os, socket, sys
addr, out, tap, sock, marker = sys.argv[1:6]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
with open(out, "a", buffering=1) as f:
    f.write("LISTENING\n")
    while True:
        msg = s.recv(4096).decode(errors="replace")
        state = "tap=%d sock=%d hook=%d" % (
            os.path.exists("/sys/class/net/" + tap), os.path.exists(sock), os.path.exists(marker))
        for line in msg.split("\n"):
            f.write(state + " " + line + "\n")
EOF

# listen ADDR OUT: start the listener in alpha's namespace (abstract names are per
# network namespace); waits until it is bound.
LISTENER=""
listen() {
    ip netns exec "$NS_A" python3 "$W/listen.py" "$1" "$2" tb-alpha "$(e2e_sock alpha)" \
        "$W/hook-done" &
    LISTENER=$!
    tb_defer tb_stop_pid "$LISTENER"
    tb_wait_until 10 "the notify listener is bound" grep -q LISTENING "$2" 2>/dev/null
}

# foreground ADDR: `link up alpha --foreground` as systemd would start it.
DAEMON=""
foreground() {
    tb_defer e2e_ctl alpha "$E2E_T_DOWN" link down --config "$CONF_A"
    ip netns exec "$NS_A" env NOTIFY_SOCKET="$1" WATCHDOG_USEC=1000000 \
        "$BIN" link up alpha --foreground --config "$CONF_A" >"$W/fg.out" 2>"$W/fg.err" </dev/null &
    DAEMON=$!
    tb_defer tb_stop_pid "$DAEMON"
}

# count PATTERN FILE: lines matching PATTERN (0 when none).
count() { grep -cE -- "$1" "$2" 2>/dev/null || true; }

e2e_require_up beta

# ---------------------------------------------------------------- path socket
N1=$W/notify1.log
listen "$W/notify.sock" "$N1"
foreground "$W/notify.sock"
e2e_wait "READY=1 arrives" 20 grep -q 'READY=1$' "$N1"
ready=$(grep -m1 'READY=1$' "$N1" || true)
e2e_match "at READY=1 the TAP exists" 'tap=1' "$ready"
e2e_match "at READY=1 the control socket exists" 'sock=1' "$ready"
e2e_match "at READY=1 the up hook has finished" 'hook=1' "$ready"
e2e_cmp "no READY=1 before the hook finished" "$(count 'hook=0 READY=1' "$N1")" -eq 0
e2e_match "READY=1 comes with a STATUS= summary" 'STATUS=link alpha up' "$(cat "$N1")"
e2e_wait_peer_up alpha beta
e2e_wait "STATUS= says the peer is up" 10 grep -q 'STATUS=link up, 1 peer, 1 up' "$N1"

before=$(count 'WATCHDOG=1' "$N1")
sleep 3
after=$(count 'WATCHDOG=1' "$N1")
# WATCHDOG_USEC=1 s: fed every 0.5 s, so about 6 in 3 s; at least 4 allows for load.
e2e_cmp "WATCHDOG=1 keeps arriving (3 s: $before -> $after)" "$((after - before))" -ge 4

e2e_check "reload exits 0" e2e_ctl alpha 10 reload alpha --config "$CONF_A"
e2e_wait "RELOADING=1 then READY=1 around the reload" 5 \
    bash -c "grep -E 'RELOADING=1|READY=1' '$N1' | tail -n 2 | tr '\n' ' ' | grep -qE 'RELOADING=1 .*READY=1'"

kill -TERM "$DAEMON"
rc=0
tb_wait_until 30 "the daemon exits after SIGTERM" e2e_pid_gone "$DAEMON" || rc=1
e2e_check "the daemon exits after SIGTERM" test "$rc" == 0
wait "$DAEMON" 2>/dev/null && rc=0 || rc=$?
e2e_cmp "the daemon's exit status is 0" "$rc" -eq 0
e2e_check "STOPPING=1 was sent" grep -q 'STOPPING=1' "$N1"
e2e_check "no TAP left after SIGTERM" e2e_link_absent "$NS_A" tb-alpha
tb_stop_pid "$LISTENER"

# ---------------------------------------------------------------- abstract socket
rm -f "$W/hook-done"
N2=$W/notify2.log
ABSTRACT="@tbe2e-notify-$$"
listen "$ABSTRACT" "$N2"
foreground "$ABSTRACT"
e2e_wait "READY=1 arrives on an abstract socket ($ABSTRACT)" 20 grep -q 'READY=1$' "$N2"
e2e_match "abstract socket: at READY=1 the TAP exists and the hook finished" 'tap=1 sock=1 hook=1' \
    "$(grep -m1 'READY=1$' "$N2" || true)"
kill -TERM "$DAEMON"
tb_wait_until 30 "the daemon exits" e2e_pid_gone "$DAEMON" || true
e2e_check "abstract socket: STOPPING=1 was sent" grep -q 'STOPPING=1' "$N2"
tb_stop_pid "$LISTENER"

# ---------------------------------------------------------------- unit file
if command -v systemd-analyze >/dev/null; then
    # Verified as installed, with the binary where the unit expects it: a copy of the
    # unit whose ExecStart/ExecReload name this build's binary.
    mkdir -p "$W/units"
    sed "s|/usr/bin/bridge-ctl|$BIN|g" "$E2E_ROOT/appliance/tapbridge@.service" \
        >"$W/units/tapbridge@.service"
    # The man pages its Documentation= names, as installed ones (MANPATH).
    "$BIN" generate-manpages "$W/man-gen" >/dev/null
    mkdir -p "$W/man/man8" "$W/man/man5"
    mv "$W"/man-gen/*.8 "$W/man/man8/"
    mv "$W"/man-gen/*.5 "$W/man/man5/"
    e2e_check "systemd-analyze verify tapbridge@.service" \
        env MANPATH="$W/man" systemd-analyze verify "$W/units/tapbridge@e2e.service"
    e2e_match "the unit is Type=notify with a watchdog" 'WatchdogSec=' \
        "$(grep -E '^(Type=notify|WatchdogSec=)' "$E2E_ROOT/appliance/tapbridge@.service" | tr '\n' ' ')"
else
    e2e_skip "systemd-analyze verify tapbridge@.service" "systemd-analyze is not installed"
fi

e2e_summary
