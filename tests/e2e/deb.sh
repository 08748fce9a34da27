#!/bin/bash
#
# End-to-end test of the Debian package (run as root, on a Debian-like system).
#
# Builds the .deb with `cargo deb` (installing cargo-deb when it is missing), checks its
# file list and control data, installs it with dpkg, checks what the maintainer scripts
# set up (tapbridge group, directories) and that the installed binary, hook scripts and
# unit work, then removes and purges it and checks that everything is gone. Touches no
# network configuration. Refuses to run if tapbridge is already installed; on exit it
# purges the package and removes what it created, also on failure.
# Prints "N passed, N failed".
#
# TAPBRIDGE_DEB=path/to/file.deb skips the build and tests that file.

set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d)
PASSED=0
FAILED=0
INSTALLED_BY_US=0
GROUP_EXISTED=0
ETC_EXISTED=0

cleanup() {
    if ((INSTALLED_BY_US)); then
        dpkg --purge tapbridge >/dev/null 2>&1 || true
    fi
    if ((!ETC_EXISTED)); then
        rm -rf /etc/tapbridge
    fi
    if ((!GROUP_EXISTED)) && getent group tapbridge >/dev/null; then
        groupdel tapbridge || true
    fi
    rm -rf -- "$WORK"
}
trap cleanup EXIT

[[ $(id -u) == 0 ]] || { echo "error: deb.sh must run as root." >&2; exit 1; }
command -v dpkg >/dev/null || { echo "error: deb.sh needs dpkg." >&2; exit 1; }
if dpkg-query -W -f '${Status}' tapbridge 2>/dev/null | grep -q 'ok installed'; then
    echo "error: tapbridge is already installed; deb.sh will not touch an existing installation." >&2
    exit 1
fi
getent group tapbridge >/dev/null && GROUP_EXISTED=1
[[ -e /etc/tapbridge ]] && ETC_EXISTED=1

pass() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$1"; }
check() { # check DESCRIPTION COMMAND...
    local desc=$1
    shift
    if "$@"; then pass "$desc"; else fail "$desc"; fi
}
mode_owner() { stat -c '%a %U:%G' -- "$1" 2>/dev/null || echo missing; }

# ------------------------------------------------------------------ build

if [[ -n ${TAPBRIDGE_DEB:-} ]]; then
    DEB=$TAPBRIDGE_DEB
else
    if ! cargo deb --version >/dev/null 2>&1; then
        cargo install --locked cargo-deb
    fi
    (cd "$ROOT" && cargo deb --output "$WORK/")
    DEB=$(find "$WORK" -maxdepth 1 -name 'tapbridge_*.deb' | head -n 1)
fi
check "package built" test -f "$DEB"

# ------------------------------------------------------------------ contents

dpkg-deb -c "$DEB" | awk '{ print $1, $NF }' >"$WORK/contents"
expect_file() { # expect_file MODE PATH
    grep -qxF -- "$1 ./$2" "$WORK/contents"
}
for f in usr/bin/bridge-ctl \
    usr/lib/tapbridge/scripts/nat-up.sh \
    usr/lib/tapbridge/scripts/nat-down.sh; do
    check "contains $f (0755)" expect_file -rwxr-xr-x "$f"
done
for f in lib/systemd/system/tapbridge@.service \
    usr/lib/tapbridge/scripts/lib/nat.sh \
    usr/share/doc/tapbridge/examples/hq.toml \
    usr/share/doc/tapbridge/examples/hq.nat \
    usr/share/doc/tapbridge/examples/branch.toml \
    usr/lib/sysctl.d/60-tapbridge.conf \
    usr/lib/tmpfiles.d/tapbridge.conf \
    usr/share/doc/tapbridge/copyright; do
    check "contains $f (0644)" expect_file -rw-r--r-- "$f"
done

dpkg-deb -f "$DEB" Recommends >"$WORK/recommends"
check "recommends nftables | iptables" grep -qF 'nftables | iptables' "$WORK/recommends"
dpkg-deb -e "$DEB" "$WORK/control"
for s in postinst prerm postrm; do
    check "has maintainer script $s" test -x "$WORK/control/$s"
done

# ------------------------------------------------------------------ install

dpkg -i "$DEB" >"$WORK/install.log" 2>&1 && INSTALLED_BY_US=1
check "dpkg -i succeeds" test "$INSTALLED_BY_US" == 1
group_exists() { getent group tapbridge >/dev/null; }
check "postinst created the tapbridge group" group_exists
check "/etc/tapbridge is 0750 root:tapbridge" test "$(mode_owner /etc/tapbridge)" == "750 root:tapbridge"
check "/var/lib/tapbridge is 0700 root:root" test "$(mode_owner /var/lib/tapbridge)" == "700 root:root"
check "/run/tapbridge exists" test -d /run/tapbridge
check "bridge-ctl is installed and executable" test -x /usr/bin/bridge-ctl

if /usr/bin/bridge-ctl --help 2>/dev/null | grep -q genpsk; then
    psk=$(/usr/bin/bridge-ctl genpsk)
    check "bridge-ctl genpsk prints a 44-character base64 key" \
        grep -qE '^[A-Za-z0-9+/]{43}=$' <<<"$psk"
else
    echo "skip bridge-ctl genpsk: this build's CLI does not offer it yet"
fi

# The installed hooks find their library; bad input is refused without touching anything.
rc=0
TAPBRIDGE_NAME='not valid' /usr/lib/tapbridge/scripts/nat-down.sh 2>"$WORK/hook.err" || rc=$?
check "installed nat-down.sh runs and rejects a bad name (exit 2)" test "$rc" == 2
check "installed nat-down.sh explains in one sentence" grep -q '^error: TAPBRIDGE_NAME' "$WORK/hook.err"

if command -v systemd-analyze >/dev/null; then
    check "installed unit passes systemd-analyze verify" \
        systemd-analyze verify /lib/systemd/system/tapbridge@check.service
fi

# ------------------------------------------------------------------ remove and purge

if ((!ETC_EXISTED)); then
    printf '# operator data\n' >/etc/tapbridge/keep.toml
fi
printf 'lease data\n' >/var/lib/tapbridge/test.leases

check "dpkg -r succeeds" dpkg -r tapbridge
for f in /usr/bin/bridge-ctl /lib/systemd/system/tapbridge@.service \
    /usr/lib/tapbridge/scripts/nat-up.sh /usr/lib/tapbridge/scripts/lib/nat.sh \
    /usr/lib/sysctl.d/60-tapbridge.conf /usr/lib/tmpfiles.d/tapbridge.conf \
    /usr/share/doc/tapbridge/examples/hq.toml; do
    check "removed $f" test ! -e "$f"
done
check "dpkg --purge succeeds" dpkg --purge tapbridge
INSTALLED_BY_US=0
check "purge removed /var/lib/tapbridge" test ! -e /var/lib/tapbridge
check "purge removed /usr/lib/tapbridge" test ! -e /usr/lib/tapbridge
not_installed() { ! dpkg-query -W -f '${Status}' tapbridge 2>/dev/null | grep -q installed; }
check "package is gone from dpkg's database" not_installed
if ((!ETC_EXISTED)); then
    check "purge kept the operator's /etc/tapbridge/keep.toml" test -f /etc/tapbridge/keep.toml
fi

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
