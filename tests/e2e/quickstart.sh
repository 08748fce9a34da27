#!/bin/bash
#
# quickstart.sh — README.md's quick start, run as written: the commands of every
# ```sh block marked `<!-- quickstart -->` in its "Quick start" section, in order.
# They build two gateways and a LAN host each as network namespaces, make the key,
# write both configurations, check and start both links, get each host an address
# from its own site's DHCP responder (busybox udhcpc), ping across the bridge, show
# the leases and the status, and clean up.
#
# Only two things are changed for the run, both names the README chose for a
# walk-through on an otherwise idle machine: its scratch directory
# /tmp/tapbridge-quickstart becomes one in this test's work dir, and its namespaces
# qs-gw-a, qs-host-a, ... get this run's suffix (qs<suffix>-gw-a, ...), so that
# parallel runs and other tests never meet. bridge-ctl is $BIN, found in PATH as
# `bridge-ctl`. Checked besides the script's exit status: host A's address is from
# site A's pool and host B's from site B's, site A lists host A's lease, both peers
# are up, and the clean-up block leaves no namespace and no daemon behind. The test's
# own clean-up takes the links down and deletes the namespaces if the README's fails.
#
# Run as root: tests/e2e/quickstart.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

: "${E2E_TIME_LIMIT:=120}"
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init
tb_need_cmd busybox busybox

W=$E2E_WORK
README=$E2E_ROOT/README.md
QS=$W/qs
P=qs$TB_SUFFIX

# blocks: the marked ```sh blocks of README.md, each ended by a line "#--block--".
blocks() {
    awk '
        /^<!-- quickstart -->$/ { marked = 1; next }
        marked && /^```sh$/ { inside = 1; marked = 0; next }
        inside && /^```$/ { inside = 0; print "#--block--"; next }
        inside { print }
        NF && !inside { marked = marked && /^$/ }
    ' "$README"
}
# The README's names for this run (see above).
blocks | sed -e "s|/tmp/tapbridge-quickstart|$QS|g" -e "s/qs-\(gw\|host\)-/$P-\1-/g" >"$W/all.sh"
n=$(grep -c '^#--block--$' "$W/all.sh" || true)
e2e_cmp "README.md has the six quick start blocks (network, key, configs, start, use, clean up)" "$n" -eq 6
((n == 6)) || e2e_fatal "README.md's quick start markers are not where this test expects them"
# All but the last block; the last is the clean-up.
awk -v last="$n" '/^#--block--$/ { b++; next } b < last - 1' "$W/all.sh" >"$W/run.sh"
awk -v last="$n" '/^#--block--$/ { b++; next } b == last - 1' "$W/all.sh" >"$W/cleanup.sh"
e2e_check "the last block takes both links down and deletes the namespaces" \
    grep -q 'link down' "$W/cleanup.sh"

# If the README's commands fail half-way, this takes down what they made.
for s in a b; do
    tb_defer tb_ns_del "$P-host-$s"
    tb_defer tb_ns_del "$P-gw-$s"
    tb_defer ip netns exec "$P-gw-$s" timeout -k 5 20 "$BIN" link down --config "$QS/site-$s.toml"
done
mkdir -m 700 "$W/bin"
ln -s "$BIN" "$W/bin/bridge-ctl"

e2e_run env PATH="$W/bin:$PATH" timeout -k 5 90 bash -euo pipefail "$W/run.sh"
e2e_expect_rc "README's quick start (network, key, configs, check, link up, DHCP, ping, leases, status) exits 0" 0
e2e_passed || e2e_fatal "the quick start failed"
e2e_match "host A's udhcpc got a lease" 'lease of 198\.19\.0\.1([0-3][0-9]|4[0-9]) obtained' "$E2E_STDERR$E2E_STDOUT"
e2e_match "the ping crossed the bridge" '3 packets transmitted, [1-3] (packets )?received' "$E2E_STDOUT"
e2e_match "status shows site-b up" 'site-b +198\.18\.0\.2:51901 +up' "$E2E_STDOUT"

# in NS IP...: the IPv4 address of eth0 in NS.
addr_of() { ip -n "$1" -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }'; }
a=$(addr_of "$P-host-a")
b=$(addr_of "$P-host-b")
e2e_match "host A's address ($a) is from site A's pool" '^198\.19\.0\.(1[0-3][0-9]|14[0-9])$' "$a"
e2e_match "host B's address ($b) is from site B's pool" '^198\.19\.0\.(1[5-9][0-9])$' "$b"
e2e_check "host A pings host B ($b) across the bridge" \
    ip netns exec "$P-host-a" timeout 10 ping -c 2 -w 8 "$b"
leases=$(ip netns exec "$P-gw-a" timeout 10 "$BIN" leases --config "$QS/site-a.toml" --json || true)
e2e_match "site A lists host A's lease" "\"ip\": \"$a\"" "$leases"
e2e_check "site B sees site-a up" \
    bash -c "ip netns exec $P-gw-b timeout 10 '$BIN' status --config '$QS/site-b.toml' --json |
        python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[\"peers\"][0][\"state\"] == \"up\" else 1)'"
PID_A=$(ip netns exec "$P-gw-a" timeout 10 "$BIN" status --config "$QS/site-a.toml" --json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["pid"])' || true)

# In the reader's shell, QS is still set from the first block.
e2e_run env QS="$QS" PATH="$W/bin:$PATH" timeout -k 5 60 bash -euo pipefail "$W/cleanup.sh"
e2e_expect_rc "README's clean-up block exits 0" 0
e2e_check_fails "no quick start namespace is left" bash -c "ip netns list | grep -q '^$P-'"
e2e_wait "site A's daemon (pid ${PID_A:-?}) is gone" 10 e2e_pid_gone "${PID_A:-999999999}"
e2e_check "the scratch directory is gone" test ! -e "$QS"

e2e_summary
