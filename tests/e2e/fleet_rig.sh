#!/usr/bin/env bash
#
# fleet_rig.sh — scripts/fleet_scale.sh with 20 branches (issue 23, item 4): a hub whose
# main file has no [[peer]] and 20 branches onboarded with invite/join, all up, 10
# sampled branch pairs pinging through the hub, the hub's RSS and idle CPU (10 s) within
# the goals (200 MB, 5 % of one core), one branch revoked by deleting its drop-in and
# reloading (refused within 15 s, the other 19 still up), the main file unchanged. The
# rig creates and removes its own namespaces (198.18.0.0/16) and stops its daemons; its
# ok / not ok lines are printed as notes, and its exit status is the check. The
# 100-branch figures are in docs/performance.md ("A hundred sites").
#
# Run as root: tests/e2e/fleet_rig.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

: "${E2E_TIME_LIMIT:=180}"
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

RIG=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../../scripts" && pwd)/fleet_scale.sh
e2e_run env BRIDGE_CTL="$BIN" timeout -k 10 150 "$RIG" --spokes 20 --pairs 10 --idle 10
while IFS= read -r line; do
    [[ "$line" == ok* || "$line" == "not ok"* || "$line" == "# "* ]] && e2e_note "$line"
done <<<"$E2E_STDOUT"
e2e_expect_rc "scripts/fleet_scale.sh --spokes 20 passes every check" 0
e2e_passed || e2e_note "$(tail -n 5 <<<"$E2E_STDERR")"

e2e_summary
