#!/usr/bin/env bash
# dhcp_corrupt_leases.sh — a lease file that cannot be parsed never keeps the
# link down (SPEC §5, DHCP): site A of the dhcp_lib.sh rig starts with garbage
# in its lease file.
#
# Checks:
#   * `link up` succeeds;
#   * the garbage is set aside as <file>.corrupt-<unix time>, byte for byte,
#     and the original name no longer holds it;
#   * a busybox udhcpc client on A's LAN gets a lease from the pool, listed by
#     `leases --json`, and the lease file is rewritten as a valid version 2
#     file holding it;
#   * a lease file that is a directory (unreadable as a file) is set aside
#     too, after `link down`.
#
# Prints "ok - ..." / "not ok - ..." lines; exit 1 on any failure.

set -euo pipefail

# shellcheck source=tests/e2e/dhcp_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/dhcp_lib.sh"

e2e_init
tb_need_cmd udhcpc udhcpc

dl_setup_rig
LEASES="$E2E_WORK/a.leases"
GARBAGE=$'{"version": 2, "leases": [ \x01\x02 this is not a lease file'
printf '%s' "$GARBAGE" >"$LEASES"
chmod 600 "$LEASES"

# set_aside: the one <file>.corrupt-* path (empty if none or several).
set_aside() {
    local f=("$LEASES".corrupt-*)
    if ((${#f[@]} == 1)) && [[ -e "${f[0]}" ]]; then printf '%s\n' "${f[0]}"; fi
}

e2e_check_up "link up a succeeds with a corrupt lease file" a
aside=$(set_aside)
if [[ -n "$aside" && "$(cat "$aside")" == "$GARBAGE" ]]; then
    e2e_ok "the corrupt file is kept as ${aside##*/} with its content"
else
    e2e_not_ok "no ${LEASES##*/}.corrupt-<time> with the original content: $(ls "$E2E_WORK")"
fi
if [[ ! -e "$LEASES" || "$(cat "$LEASES")" != "$GARBAGE" ]]; then
    e2e_ok "the lease file no longer holds the garbage"
else
    e2e_not_ok "the garbage is still at ${LEASES##*/}"
fi

# A client on A's LAN: one-shot udhcpc; the hook only records what it got.
dl_add_lan_host tbe2e-cl NS_CL
CLIENT_MAC=$(e2e_mac "$NS_CL" eth0)
HOOK="$E2E_WORK/hook.sh"
GOT="$E2E_WORK/got"
# shellcheck disable=SC2016 # the hook expands them, not this shell
printf '#!/bin/sh\ncase "$1" in bound | renew) echo "$ip" >"%s" ;; esac\nexit 0\n' \
    "$GOT" >"$HOOK"
chmod 755 "$HOOK"
timeout 60 ip netns exec "$NS_CL" udhcpc -f -q -n -i eth0 -s "$HOOK" -t 5 -T 2 -A 1 \
    -p "$E2E_WORK/udhcpc.pid" >"$E2E_WORK/udhcpc.out" 2>&1 || true
got=$(cat "$GOT" 2>/dev/null || true)
e2e_match "udhcpc gets a lease from the pool ('$got')" '^198\.19\.0\.1[0-9][0-9]$' "$got"
listed=$(e2e_jq a "next((l['ip'] for l in d['leases'] if l['mac'].lower()=='$CLIENT_MAC'), '')" \
    leases || true)
e2e_check "leases --json lists it ($listed)" test -n "$got" -a "$listed" == "$got"
e2e_check "the lease file is a valid version 2 file holding it" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["version"] == 2, d
assert any(l["ip"] == sys.argv[2] and l["mac"].lower() == sys.argv[3] for l in d["leases"]), d
' "$LEASES" "$got" "$CLIENT_MAC"

# Unreadable: a directory where the file should be.
e2e_check_down "link down a" a
rm -f "$LEASES" "$LEASES".corrupt-*
mkdir "$LEASES"
e2e_check_up "link up a succeeds when the lease file is a directory" a
aside=$(set_aside)
e2e_check "the directory is set aside (${aside##*/})" test -n "$aside" -a -d "$aside" -a ! -e "$LEASES"

e2e_summary
