#!/bin/bash
#
# End-to-end test of the Debian package (run as root, on a Debian-like system).
#
# Builds the .deb with scripts/build-deb.sh (cargo deb, installed when missing, after
# generating the man pages and completions), checks its file list and control data,
# installs it with dpkg, checks what the maintainer scripts set up (tapbridge group,
# directories) and that the installed binary (genpsk), hook scripts, man pages (man-db's
# `man 8 bridge-ctl`, `man 5 tapbridge.toml`) and units (`systemd-analyze verify`) work; man-db and systemd are
# required (installed when missing), not optional.
# Upgrade: a second package of a higher version is installed over the first while a
# link runs (started by the installed `bridge-ctl link up`, in a network namespace of
# its own): postinst must restart it on the new binary (new PID, not the deleted old
# file) and `status` must answer before and after, and fail cleanly in between. Then
# it removes and purges the package and checks that everything is gone. Touches no
# network configuration outside that namespace. Refuses to run if tapbridge is already
# installed; on exit it purges the package and removes what it created, also on failure.
# Reports through tests/e2e/lib.sh.
#
# TAPBRIDGE_DEB=path/to/file.deb skips the build and tests that file.

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Building the package may mean building cargo-deb and the release binary first: 49
# minutes on a busy two-core machine, from a fresh tree with cargo-deb missing. run_all.sh
# reads this line and gives the test this long plus 60 s (its common limit is 240 s).
: "${E2E_TIME_LIMIT:=3600}"
INSTALLED_BY_US=0
GROUP_EXISTED=0
ETC_EXISTED=0

# deb_cleanup: purge the package if we installed it; remove what we created.
# shellcheck disable=SC2317 # invoked indirectly through tb_defer
deb_cleanup() {
    if ((INSTALLED_BY_US)); then
        dpkg --purge tapbridge >/dev/null 2>&1 || true
    fi
    if ((!ETC_EXISTED)); then
        rm -rf /etc/tapbridge
    fi
    if ((!GROUP_EXISTED)) && getent group tapbridge >/dev/null; then
        groupdel tapbridge || true
    fi
}

e2e_init_no_bridge_ctl
command -v dpkg >/dev/null || e2e_fatal "deb.sh needs dpkg"
tb_need_cmd systemd-analyze systemd
tb_need_cmd man man-db
if dpkg-query -W -f '${Status}' tapbridge 2>/dev/null | grep -q 'ok installed'; then
    e2e_fatal "tapbridge is already installed; deb.sh will not touch an existing installation"
fi
getent group tapbridge >/dev/null && GROUP_EXISTED=1
[[ -e /etc/tapbridge ]] && ETC_EXISTED=1
tb_defer deb_cleanup

mode_owner() { stat -c '%a %U:%G' -- "$1" 2>/dev/null || echo missing; }

# ------------------------------------------------------------------ build

if [[ -n ${TAPBRIDGE_DEB:-} ]]; then
    DEB=$TAPBRIDGE_DEB
else
    "$E2E_ROOT/scripts/build-deb.sh" --output "$E2E_WORK/" >"$E2E_WORK/build.log" 2>&1 ||
        e2e_fatal "scripts/build-deb.sh failed: $(tail -n 5 "$E2E_WORK/build.log")"
    DEB=$(find "$E2E_WORK" -maxdepth 1 -name 'tapbridge_*.deb' | head -n 1)
fi
e2e_check "package built" test -f "$DEB"
VERSION1=$(dpkg-deb -f "$DEB" Version)
# The upgrade: the same files repacked under a higher version.
VERSION2="$VERSION1+upgrade1"
mkdir -p "$E2E_WORK/v2"
dpkg-deb -R "$DEB" "$E2E_WORK/v2/root"
sed -i "s/^Version: .*/Version: $VERSION2/" "$E2E_WORK/v2/root/DEBIAN/control"
dpkg-deb -b "$E2E_WORK/v2/root" "$E2E_WORK/v2/tapbridge_upgrade.deb" >/dev/null
DEB2=$E2E_WORK/v2/tapbridge_upgrade.deb
e2e_check "upgrade package $VERSION2 built" test -f "$DEB2"

# ------------------------------------------------------------------ contents

dpkg-deb -c "$DEB" | awk '{ print $1, $NF }' >"$E2E_WORK/contents"
# shellcheck disable=SC2317 # invoked indirectly through e2e_check
expect_file() { # expect_file MODE PATH
    grep -qxF -- "$1 ./$2" "$E2E_WORK/contents"
}
for f in usr/bin/bridge-ctl \
    usr/lib/tapbridge/scripts/nat-up.sh \
    usr/lib/tapbridge/scripts/nat-down.sh \
    usr/lib/tapbridge/scripts/nat-reapply.sh \
    usr/lib/tapbridge/ha/tapbridge-ha-notify.sh; do
    e2e_check "contains $f (0755)" expect_file -rwxr-xr-x "$f"
done
for f in lib/systemd/system/tapbridge@.service \
    lib/systemd/system/tapbridge-nat@.service \
    usr/share/bash-completion/completions/bridge-ctl \
    usr/share/zsh/vendor-completions/_bridge-ctl \
    usr/share/fish/vendor_completions.d/bridge-ctl.fish \
    usr/lib/tapbridge/scripts/lib/nat.sh \
    usr/share/doc/tapbridge/examples/hq.toml \
    usr/share/doc/tapbridge/examples/hq.nat \
    usr/share/doc/tapbridge/examples/branch.toml \
    usr/share/doc/tapbridge/monitoring/tapbridge.rules.yml \
    usr/share/doc/tapbridge/monitoring/tapbridge.dashboard.json \
    usr/share/doc/tapbridge/examples/60-tapbridge.conf \
    usr/share/doc/tapbridge/examples/ha/keepalived.conf \
    usr/lib/tmpfiles.d/tapbridge.conf \
    usr/share/doc/tapbridge/copyright; do
    e2e_check "contains $f (0644)" expect_file -rw-r--r-- "$f"
done

# Man pages (cargo-deb may gzip them).
for c in "" -link -link-up -link-down -status -leases -check -genpsk -reload -version; do
    e2e_check "contains the man page bridge-ctl$c.8" \
        grep -qE -- "^-rw-r--r-- \./usr/share/man/man8/bridge-ctl$c\.8(\.gz)?\$" "$E2E_WORK/contents"
done

e2e_check "contains the man page tapbridge.toml.5" \
    grep -qE -- "^-rw-r--r-- \./usr/share/man/man5/tapbridge\.toml\.5(\.gz)?\$" "$E2E_WORK/contents"
# IPv4 forwarding is opt-in: the drop-in is an example, never installed where sysctl reads.
e2e_nomatch "no sysctl drop-in is active (nothing under a sysctl.d)" 'sysctl\.d' \
    "$(cat "$E2E_WORK/contents")"

dpkg-deb -f "$DEB" Recommends >"$E2E_WORK/recommends"
e2e_check "recommends nftables | iptables" grep -qF 'nftables | iptables' "$E2E_WORK/recommends"
e2e_check "suggests keepalived (high availability)" \
    test "$(dpkg-deb -f "$DEB" Suggests)" == keepalived
dpkg-deb -e "$DEB" "$E2E_WORK/control"
for s in postinst prerm postrm; do
    e2e_check "has maintainer script $s" test -x "$E2E_WORK/control/$s"
done

# ------------------------------------------------------------------ install

dpkg -i "$DEB" >"$E2E_WORK/install.log" 2>&1 && INSTALLED_BY_US=1
e2e_check "dpkg -i succeeds" test "$INSTALLED_BY_US" == 1
# shellcheck disable=SC2317 # invoked indirectly through e2e_check
group_exists() { getent group tapbridge >/dev/null; }
e2e_check "postinst created the tapbridge group" group_exists
e2e_check "/etc/tapbridge is 0750 root:tapbridge" test "$(mode_owner /etc/tapbridge)" == "750 root:tapbridge"
e2e_check "/var/lib/tapbridge is 0700 root:root" test "$(mode_owner /var/lib/tapbridge)" == "700 root:root"
e2e_check "/run/tapbridge exists" test -d /run/tapbridge
e2e_check "bridge-ctl is installed and executable" test -x /usr/bin/bridge-ctl

e2e_match "installed bridge-ctl genpsk prints a 44-character base64 key" '^[A-Za-z0-9+/]{43}=$' \
    "$(/usr/bin/bridge-ctl genpsk 2>&1 || true)"

# The installed hooks find their library; bad input is refused without touching anything.
rc=0
TAPBRIDGE_NAME='not valid' /usr/lib/tapbridge/scripts/nat-down.sh 2>"$E2E_WORK/hook.err" || rc=$?
e2e_check "installed nat-down.sh runs and rejects a bad name (exit 2)" test "$rc" == 2
e2e_check "installed nat-down.sh explains in one sentence" grep -q '^error: TAPBRIDGE_NAME' "$E2E_WORK/hook.err"

e2e_check "installed unit passes systemd-analyze verify" \
    systemd-analyze verify /lib/systemd/system/tapbridge@check.service
e2e_check "installed tapbridge-nat@ unit passes systemd-analyze verify" \
    systemd-analyze verify /lib/systemd/system/tapbridge-nat@check.service
e2e_check "the man page is on disk (/usr/share/man/man8/bridge-ctl.8*; dpkg's path-exclude may drop it)" \
    compgen -G '/usr/share/man/man8/bridge-ctl.8*'
e2e_match "man 8 bridge-ctl shows the installed page" '^NAME' \
    "$(MANWIDTH=80 man 8 bridge-ctl 2>&1 || true)"
e2e_match "man 5 tapbridge.toml shows the installed page" '^SEE ALSO' \
    "$(MANWIDTH=80 man 5 tapbridge.toml 2>&1 || true)"
e2e_match "the unit's Documentation= names the man pages" '^Documentation=man:bridge-ctl\(8\).*man:tapbridge\.toml\(5\)' \
    "$(cat /lib/systemd/system/tapbridge@.service)"

# ------------------------------------------------------------------ upgrade

# A link brought up by the installed bridge-ctl, detached, in a namespace of its own,
# with its config in /etc/tapbridge and its socket in /run/tapbridge (the defaults).
UPG=upg-$TB_SUFFIX
tb_ns_add tbdeb NS_UPG
# shellcheck disable=SC2317 # invoked indirectly through tb_defer
upg_cleanup() {
    if [[ -x /usr/bin/bridge-ctl ]]; then
        ip netns exec "$NS_UPG" timeout 30 /usr/bin/bridge-ctl link down "$UPG" >/dev/null 2>&1 || true
    fi
    rm -f "/etc/tapbridge/$UPG.toml" "/etc/tapbridge/$UPG.psk"
}
tb_defer upg_cleanup
(umask 077 && /usr/bin/bridge-ctl genpsk >"/etc/tapbridge/$UPG.psk")
cat >"/etc/tapbridge/$UPG.toml" <<EOF
# generated by tests/e2e/deb.sh
[interface]
name = "tb-upg"
addresses = ["198.19.11.1/24"]

[tunnel]
listen = "0.0.0.0:51911"
psk_file = "/etc/tapbridge/$UPG.psk"

[[peer]]
name = "far"
endpoint = "198.18.11.2:51911"
EOF
e2e_check "installed nat-reapply.sh skips a link that is not up (exit 0)" \
    /usr/lib/tapbridge/scripts/nat-reapply.sh "$UPG"
# upg_pid: the "pid" of the link's `status --json` (nothing if it does not answer).
upg_pid() {
    timeout 10 /usr/bin/bridge-ctl status "$UPG" --json 2>/dev/null |
        sed -n 's/^  "pid": \([0-9]*\),\{0,1\}$/\1/p'
}
e2e_check "link up $UPG with the installed bridge-ctl (in $NS_UPG)" \
    ip netns exec "$NS_UPG" timeout 60 /usr/bin/bridge-ctl link up "$UPG"
PID1=$(upg_pid)
e2e_match "status --json of $UPG answers with a pid" '^[0-9]+$' "$PID1"

# Poll `status` all through the upgrade: each call must answer or fail cleanly (exit 1,
# one "error:" line) while the link restarts; never hang, crash or print garbage.
POLL_LOG=$E2E_WORK/poll.log
POLL_STOP=$E2E_WORK/poll.stop
: >"$POLL_LOG"
(
    while [[ ! -e "$POLL_STOP" ]]; do
        out=$(timeout 10 /usr/bin/bridge-ctl status "$UPG" 2>&1) && rc=0 || rc=$?
        printf '%s %s\n' "$rc" "${out%%$'\n'*}" >>"$POLL_LOG"
        sleep 0.1
    done
) &
POLLER=$!
tb_defer tb_stop_pid "$POLLER"
sleep 0.5
rc=0
dpkg -i "$DEB2" >"$E2E_WORK/upgrade.log" 2>&1 || rc=$?
sleep 0.5
: >"$POLL_STOP"
wait "$POLLER" 2>/dev/null || true
e2e_cmp "dpkg -i of $VERSION2 over $VERSION1 succeeds" "$rc" -eq 0
e2e_check "the installed version is $VERSION2" \
    test "$(dpkg-query -W -f '${Version}' tapbridge 2>/dev/null)" == "$VERSION2"
e2e_match "postinst said it restarted the link" "restarted link $UPG" "$(cat "$E2E_WORK/upgrade.log")"
PID2=$(upg_pid)
e2e_match "after the upgrade the link answers status with a pid" '^[0-9]+$' "$PID2"
e2e_check "the daemon was restarted (pid $PID1 -> $PID2)" test "$PID1" != "$PID2"
# (Reaped by PID 1, which may take a moment.)
e2e_wait "the old daemon is gone" 5 e2e_pid_gone "$PID1"
e2e_match "the new daemon runs the installed binary, not the replaced one" '^/usr/bin/bridge-ctl$' \
    "$(readlink "/proc/$PID2/exe" 2>&1 || true)"
e2e_check "the new daemon runs in the link's namespace" \
    test "$(ip netns identify "$PID2" 2>/dev/null)" == "$NS_UPG"
e2e_match "status --json has the version" '"version": "[0-9]' \
    "$(timeout 10 /usr/bin/bridge-ctl status "$UPG" --json 2>&1 || true)"
e2e_match "bridge-ctl version answers" '^bridge-ctl [0-9]' "$(/usr/bin/bridge-ctl version 2>&1 || true)"
polls=$(wc -l <"$POLL_LOG")
answered=$(grep -c '^0 link ' "$POLL_LOG" || true)
refused=$(grep -cE '^1 error: ' "$POLL_LOG" || true)
e2e_note "status during the upgrade: $polls calls, $answered answered, $refused refused while the link restarted"
e2e_cmp "status during the upgrade: every call answered or failed cleanly" \
    "$((answered + refused))" -eq "$polls"
e2e_match "status answered right before the upgrade" '^0 link ' "$(head -n 1 "$POLL_LOG")"
e2e_match "status answered right after the upgrade" '^0 link ' "$(tail -n 1 "$POLL_LOG")"
e2e_check "link down $UPG" ip netns exec "$NS_UPG" timeout 30 /usr/bin/bridge-ctl link down "$UPG"

# ------------------------------------------------------------------ remove and purge

if ((!ETC_EXISTED)); then
    printf '# operator data\n' >/etc/tapbridge/keep.toml
fi
printf 'lease data\n' >/var/lib/tapbridge/test.leases

e2e_check "dpkg -r succeeds" dpkg -r tapbridge
for f in /usr/bin/bridge-ctl /lib/systemd/system/tapbridge@.service \
    /usr/lib/tapbridge/scripts/nat-up.sh /usr/lib/tapbridge/scripts/lib/nat.sh \
    /usr/share/doc/tapbridge/examples/60-tapbridge.conf /usr/lib/tmpfiles.d/tapbridge.conf \
    /usr/share/doc/tapbridge/examples/hq.toml; do
    e2e_check "removed $f" test ! -e "$f"
done
e2e_check "dpkg --purge succeeds" dpkg --purge tapbridge
INSTALLED_BY_US=0
e2e_check "purge removed /var/lib/tapbridge" test ! -e /var/lib/tapbridge
e2e_check "purge removed /usr/lib/tapbridge" test ! -e /usr/lib/tapbridge
# shellcheck disable=SC2317 # invoked indirectly through e2e_check
not_installed() { ! dpkg-query -W -f '${Status}' tapbridge 2>/dev/null | grep -q installed; }
e2e_check "package is gone from dpkg's database" not_installed
if ((!ETC_EXISTED)); then
    e2e_check "purge kept the operator's /etc/tapbridge/keep.toml" test -f /etc/tapbridge/keep.toml
fi

e2e_summary
