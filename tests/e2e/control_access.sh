#!/bin/bash
#
# End-to-end test of the control socket's access policy (SPEC §3, §5 `[control]`):
# root and members of control.admin_group may do everything; members of control.group
# may read (status, leases) but not change (reload, link down); anyone else is
# refused. The caller's groups come from SO_PEERGROUPS, so real users are needed:
# the test creates three (uniquely named, removed afterwards, also on failure):
#
#   reader  in the `group`
#   admin   in `admin_group` only (the socket file belongs to `group`; an ACL entry
#           lets `admin_group` open it)
#   nobody  in neither
#
# and drives bridge-ctl as each of them (runuser) against a link running in a
# namespace of its own. Reports through tests/e2e/lib.sh.

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init
tb_need_cmd runuser util-linux
tb_need_cmd useradd passwd

SFX=$TB_SUFFIX
G_READ="tbr$SFX"
G_ADMIN="tba$SFX"
U_READ="tbur$SFX"
U_ADMIN="tbua$SFX"
U_NONE="tbun$SFX"

groupadd "$G_READ"
tb_defer groupdel "$G_READ"
groupadd "$G_ADMIN"
tb_defer groupdel "$G_ADMIN"
mkuser() { # mkuser USER [GROUPS]
    if [[ -n "${2:-}" ]]; then
        useradd -M -N -s /usr/sbin/nologin -G "$2" "$1"
    else
        useradd -M -N -s /usr/sbin/nologin "$1"
    fi
    tb_defer userdel "$1"
}
mkuser "$U_READ" "$G_READ"
mkuser "$U_ADMIN" "$G_ADMIN"
mkuser "$U_NONE"

# The config, the socket and the program the users run live where the three users
# can reach them: the work dir is root's alone, and the build tree may be too (a
# clone in /root, mode 0700). The key file stays in the work dir.
PUB=$(mktemp -d /tmp/tb-e2e-ctl.XXXXXX)
tb_defer rm -rf "$PUB"
chmod 755 "$PUB"
USER_BIN="$PUB/bridge-ctl"
install -m 0755 "$BIN" "$USER_BIN"

SITE=ca # E2E_CONF below spells it out
e2e_site "$SITE"
E2E_CONF[ca]="$PUB/ca.toml"
e2e_config "$SITE" --peer "cb=198.18.0.2:51901"
CONF=$(e2e_conf "$SITE")
SOCK="$PUB/$SITE.sock"
sed -i "s|^socket = .*|socket = \"$SOCK\"\ngroup = \"$G_READ\"\nadmin_group = \"$G_ADMIN\"|" "$CONF"
chmod 644 "$CONF"

e2e_check "check accepts control.group and control.admin_group that exist" \
    "$BIN" check --config "$CONF"
e2e_require_up "$SITE"

mode=$(stat -c '%a %U %G' "$SOCK")
e2e_match "the socket is 0660 root:$G_READ" "^660 root $G_READ\$" "$mode"
# shellcheck disable=SC2016 # expanded by python
e2e_check "the socket has an ACL entry for $G_ADMIN" \
    python3 -c 'import os, sys; os.getxattr(sys.argv[1], "system.posix_acl_access")' "$SOCK"

# shellcheck disable=SC2317 # called through e2e_check
as() { # as USER ARGS...: bridge-ctl ARGS as USER, in the link's namespace
    local user=$1
    shift
    ip netns exec "$(e2e_ns "$SITE")" timeout -k 5 20 runuser -u "$user" -- "$USER_BIN" "$@"
}

# Reader: may read, may not change.
e2e_check "a member of control.group may read status" as "$U_READ" status --config "$CONF" --json
e2e_match "status as a reader is the link's" '"name": *"ca"' "$E2E_STDOUT"
e2e_check "a member of control.group may read leases" as "$U_READ" leases --config "$CONF"
e2e_check_fails "a member of control.group may not reload" as "$U_READ" reload --config "$CONF"
e2e_match "reload as a reader says why, in one line" \
    "^error: .*permission denied: \`reload\` changes the link and needs root or membership in control.admin_group" \
    "$E2E_STDERR"
e2e_check_fails "a member of control.group may not take the link down" \
    as "$U_READ" link down --config "$CONF"
e2e_match "link down as a reader says why" "permission denied: \`link down\`" "$E2E_STDERR"
e2e_check "after the reader's link down the link is still up" \
    "$BIN" status --config "$CONF" --json

# Nobody: refused outright.
e2e_check_fails "a user in neither group may not read status" as "$U_NONE" status --config "$CONF"
e2e_match "status as an outsider is refused with permission denied" \
    '^error: .*[Pp]ermission denied' "$E2E_STDERR"
e2e_check_fails "a user in neither group may not take the link down" \
    as "$U_NONE" link down --config "$CONF"
# The file mode stops outsiders at connect; the daemon's own check (their groups from
# SO_PEERGROUPS) must stop them too, should the mode ever be wider.
chmod 666 "$SOCK"
e2e_check_fails "with the socket opened to all, the daemon still refuses an outsider" \
    as "$U_NONE" status --config "$CONF"
e2e_match "the daemon's refusal names the groups" \
    'is not root and not a member of control.group or control.admin_group' "$E2E_STDERR"
e2e_check_fails "with the socket opened to all, an outsider still cannot take the link down" \
    as "$U_NONE" link down --config "$CONF"
chmod 660 "$SOCK"

# Admin: everything.
e2e_check "a member of control.admin_group may read status" as "$U_ADMIN" status --config "$CONF"
e2e_check "a member of control.admin_group may reload" as "$U_ADMIN" reload --config "$CONF"
e2e_match "reload as an admin answers" 'no change' "$E2E_STDOUT"
e2e_check "a member of control.admin_group may take the link down" \
    as "$U_ADMIN" link down --config "$CONF"
e2e_wait "the link is down after the admin's link down" 15 test ! -e "$SOCK"

e2e_summary
