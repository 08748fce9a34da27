#!/usr/bin/env bash
#
# The monitoring files the package ships (appliance/monitoring/), checked with
# Prometheus' own tool; no network, no daemon. Run as root (it installs the
# `prometheus` package for promtool when missing).
#
# Checks: `promtool check rules` accepts tapbridge.rules.yml and every alert has
# summary and description annotations; `promtool test rules` passes the unit tests
# in tapbridge.rules.test.yml (synthetic series that make the peer-down,
# handshake-age, auth-failure, pool-full, pool-exhausted, reload-refused and
# scrape-down alerts fire, healthy series that must not), and fails on a copy whose
# thresholds were changed (so the tests can fail); tapbridge.dashboard.json is a
# Grafana dashboard: valid JSON, unique panel ids, every panel with a query, on the
# $datasource variable. That every metric name the rules and the dashboard use is
# one the daemon exports is checked against a live scrape in tests/e2e/metrics.sh.
# Reports through tests/e2e/lib.sh; exit 1 on any failure.

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MON="$E2E_ROOT/appliance/monitoring"

e2e_init_no_bridge_ctl
tb_need_pkg prometheus python3
tb_need_cmd promtool prometheus

e2e_check "promtool check rules tapbridge.rules.yml" promtool check rules "$MON/tapbridge.rules.yml"
alerts=$(grep -c '^ *- alert: ' "$MON/tapbridge.rules.yml" || true)
summaries=$(grep -c '^ *summary: ' "$MON/tapbridge.rules.yml" || true)
descriptions=$(grep -c '^ *description: ' "$MON/tapbridge.rules.yml" || true)
e2e_cmp "at least the five alerts the issue asks for ($alerts)" "$alerts" -ge 5
e2e_cmp "every alert has a summary" "$summaries" -eq "$alerts"
e2e_cmp "every alert has a description" "$descriptions" -eq "$alerts"
for name in TapbridgePeerDown TapbridgeHandshakeStale TapbridgeAuthFailures \
    TapbridgeDhcpPoolNearlyFull TapbridgeScrapeDown; do
    e2e_match "alert $name is defined" "alert: $name\$" "$(cat "$MON/tapbridge.rules.yml")"
    e2e_match "alert $name has a unit test" "alertname: $name\$" \
        "$(cat "$MON/tapbridge.rules.test.yml")"
done

e2e_run bash -c "cd '$MON' && promtool test rules tapbridge.rules.test.yml"
e2e_expect_rc "promtool test rules: the alerts fire on the synthetic series, and only there" 0

# The same tests against rules that wait too long and set the pool bar too high
# must fail: the tests observe the rules, they do not merely parse.
mkdir "$E2E_WORK/mutant"
cp "$MON/tapbridge.rules.yml" "$MON/tapbridge.rules.test.yml" "$E2E_WORK/mutant/"
sed -i -e '0,/for: 2m/s//for: 10m/' -e 's/> 0\.9$/> 0.96/' "$E2E_WORK/mutant/tapbridge.rules.yml"
e2e_run bash -c "cd '$E2E_WORK/mutant' && promtool test rules tapbridge.rules.test.yml"
e2e_expect_rc "promtool test rules fails on rules with other thresholds" nonzero
e2e_match "... in the peer-down test" 'alertname: TapbridgePeerDown' "$E2E_STDOUT$E2E_STDERR"
e2e_match "... and in the pool-full test" 'alertname: TapbridgeDhcpPoolNearlyFull' \
    "$E2E_STDOUT$E2E_STDERR"

e2e_check "the dashboard is a Grafana dashboard with a query in every panel" \
    python3 - "$MON/tapbridge.dashboard.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["title"] and d["uid"] and d["schemaVersion"] >= 30, "title, uid, schemaVersion"
names = [v["name"] for v in d["templating"]["list"]]
assert "datasource" in names and "link" in names, names
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), f"duplicate panel ids {ids}"
graphs = [p for p in d["panels"] if p["type"] != "row"]
assert len(graphs) >= 10, len(graphs)
for p in graphs:
    assert p["title"] and p["targets"], f"panel {p['id']} has no title or query"
    assert p["datasource"]["uid"] == "${datasource}", p["title"]
    for t in p["targets"]:
        assert t["expr"].strip(), p["title"]
        assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
PY

e2e_summary
