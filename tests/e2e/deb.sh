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
# Reports through tests/e2e/lib.sh.
#
# TAPBRIDGE_DEB=path/to/file.deb skips the build and tests that file.

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Building the package may mean building cargo-deb and the release binary first;
# run_all.sh bounds the test with its own (shorter) limit.
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
    if ! cargo deb --version >/dev/null 2>&1; then
        cargo install --locked cargo-deb
    fi
    (cd "$E2E_ROOT" && cargo deb --output "$E2E_WORK/")
    DEB=$(find "$E2E_WORK" -maxdepth 1 -name 'tapbridge_*.deb' | head -n 1)
fi
e2e_check "package built" test -f "$DEB"

# ------------------------------------------------------------------ contents

dpkg-deb -c "$DEB" | awk '{ print $1, $NF }' >"$E2E_WORK/contents"
# shellcheck disable=SC2317 # invoked indirectly through e2e_check
expect_file() { # expect_file MODE PATH
    grep -qxF -- "$1 ./$2" "$E2E_WORK/contents"
}
for f in usr/bin/bridge-ctl \
    usr/lib/tapbridge/scripts/nat-up.sh \
    usr/lib/tapbridge/scripts/nat-down.sh; do
    e2e_check "contains $f (0755)" expect_file -rwxr-xr-x "$f"
done
for f in lib/systemd/system/tapbridge@.service \
    usr/lib/tapbridge/scripts/lib/nat.sh \
    usr/share/doc/tapbridge/examples/hq.toml \
    usr/share/doc/tapbridge/examples/hq.nat \
    usr/share/doc/tapbridge/examples/branch.toml \
    usr/share/doc/tapbridge/monitoring/tapbridge.rules.yml \
    usr/share/doc/tapbridge/monitoring/tapbridge.dashboard.json \
    usr/lib/sysctl.d/60-tapbridge.conf \
    usr/lib/tmpfiles.d/tapbridge.conf \
    usr/share/doc/tapbridge/copyright; do
    e2e_check "contains $f (0644)" expect_file -rw-r--r-- "$f"
done

dpkg-deb -f "$DEB" Recommends >"$E2E_WORK/recommends"
e2e_check "recommends nftables | iptables" grep -qF 'nftables | iptables' "$E2E_WORK/recommends"
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

if /usr/bin/bridge-ctl --help 2>/dev/null | grep -q genpsk; then
    psk=$(/usr/bin/bridge-ctl genpsk)
    e2e_match "bridge-ctl genpsk prints a 44-character base64 key" '^[A-Za-z0-9+/]{43}=$' "$psk"
else
    e2e_skip "bridge-ctl genpsk prints a 44-character base64 key" \
        "this build's CLI does not offer it yet"
fi

# The installed hooks find their library; bad input is refused without touching anything.
rc=0
TAPBRIDGE_NAME='not valid' /usr/lib/tapbridge/scripts/nat-down.sh 2>"$E2E_WORK/hook.err" || rc=$?
e2e_check "installed nat-down.sh runs and rejects a bad name (exit 2)" test "$rc" == 2
e2e_check "installed nat-down.sh explains in one sentence" grep -q '^error: TAPBRIDGE_NAME' "$E2E_WORK/hook.err"

if command -v systemd-analyze >/dev/null; then
    e2e_check "installed unit passes systemd-analyze verify" \
        systemd-analyze verify /lib/systemd/system/tapbridge@check.service
fi

# ------------------------------------------------------------------ remove and purge

if ((!ETC_EXISTED)); then
    printf '# operator data\n' >/etc/tapbridge/keep.toml
fi
printf 'lease data\n' >/var/lib/tapbridge/test.leases

e2e_check "dpkg -r succeeds" dpkg -r tapbridge
for f in /usr/bin/bridge-ctl /lib/systemd/system/tapbridge@.service \
    /usr/lib/tapbridge/scripts/nat-up.sh /usr/lib/tapbridge/scripts/lib/nat.sh \
    /usr/lib/sysctl.d/60-tapbridge.conf /usr/lib/tmpfiles.d/tapbridge.conf \
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
