#!/usr/bin/env bash
#
# key_rotation.sh — a per-peer key rotated between two live sites with no lost reply.
#
#   [east] tb-east 198.19.21.1/24 ── wan0 198.18.21.1/30 ══ 198.18.21.2/30 wan0 ── tb-west 198.19.21.2/24 [west]
#
# Each site names the other's key in `[[peer]] psk_file` (the link's own
# tunnel.psk_file is a different key that neither peer uses). Sessions are
# renewed every 5 s. With `ping -i 0.01` running east → west the whole time,
# the rotation of SPEC §5 is done with `bridge-ctl reload`: the new key first
# (old one second) on east, then on west; the old key dropped on east, then on
# west. Checks: every reload exits 0 and names the change; sessions were renewed
# after every step; not one ping reply is lost; a site holding only the old key
# is refused afterwards. Then what reload refuses (exit 2, nothing changed): a
# broken key file, a change that needs a restart (the listen address); and `no change`.
#
# Run as root: tests/e2e/key_rotation.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

PORT=51901
# A session is renewed every 5 s plus up to 5 s of jitter, and a refused first
# key costs a 1 s retry: within 12 s of a step there is always a renewal (the
# bound of each step's wait).
STEP_SECS=12

e2e_site east
e2e_site west
NS_E=$(e2e_ns east)
NS_W=$(e2e_ns west)
e2e_wan "$NS_E" "$NS_W" 198.18.21.1/30 198.18.21.2/30

e2e_new_key "$E2E_WORK/old.key"
e2e_new_key "$E2E_WORK/new.key"
OLD=$(<"$E2E_WORK/old.key")
NEW=$(<"$E2E_WORK/new.key")
# keyfile SITE LINE...: SITE's key file for its peer.
keyfile() {
    local site=$1
    shift
    e2e_key_file "$E2E_WORK/$site-peer.psk" "$@"
}
keyfile east "$OLD"
keyfile west "$OLD"

e2e_config east --listen "198.18.21.1:$PORT" --peer "west=198.18.21.2:$PORT" \
    --peer-key "west=$E2E_WORK/east-peer.psk" --rekey-after 5s --address 198.19.21.1/24
e2e_config west --listen "198.18.21.2:$PORT" --peer "east=198.18.21.1:$PORT" \
    --peer-key "east=$E2E_WORK/west-peer.psk" --rekey-after 5s --address 198.19.21.2/24

e2e_require_up east
e2e_require_up west
e2e_wait_peer_up east west
e2e_passed || e2e_fatal "the tunnel did not come up"
e2e_wait "first ping east → west" 10 e2e_ping1 east 198.19.21.2


# The ping runs through all four steps (each at most STEP_SECS) and a little beyond;
# "ping still running" below checks that it did.
COUNT=$(((4 * STEP_SECS + 4) * 100))
PING_OUT="$E2E_WORK/ping.out"
ip netns exec "$NS_E" ping -n -q -i 0.01 -W 1 -c "$COUNT" 198.19.21.2 >"$PING_OUT" 2>&1 &
PING_PID=$!
tb_defer tb_stop_pid "$PING_PID"
# A second of pinging before the first step (no check depends on its length).
sleep 1

# step SITE DESC LINE...: write SITE's key file, reload SITE, wait for the sessions
# to renew (counted from after the reload, so the renewal is made with the keys
# it set).
step() {
    local site=$1 desc=$2 hs0
    shift 2
    keyfile "$site" "$@"
    e2e_check_exit "reload $site: $desc (exit 0)" 0 \
        e2e_ctl "$site" 20 reload "$site" --config "$(e2e_conf "$site")"
    e2e_match "reload $site names the changed peer" '^peer (east|west): keys changed' "$E2E_STDOUT"
    hs0=$(e2e_handshakes east west) || hs0=x
    e2e_wait "sessions were renewed after: $desc (handshakes > $hs0)" "$STEP_SECS" e2e_renewed_since east west "$hs0"
}

step east "new key first, old second" "$NEW" "$OLD"
step west "new key first, old second" "$NEW" "$OLD"
step east "old key dropped" "$NEW"
step west "old key dropped" "$NEW"
e2e_check "the ping east → west was still running after the last step" kill -0 "$PING_PID"

if wait "$PING_PID"; then ping_rc=0; else ping_rc=$?; fi
summary=$(grep -E 'packets transmitted' "$PING_OUT" || true)
e2e_note "ping during the rotation: $summary"
e2e_match "ping -i 0.01 through the whole rotation: no reply lost" \
    "^$COUNT packets transmitted, $COUNT received, 0% packet loss" "$summary"
e2e_cmp "ping exited 0" "$ping_rc" -eq 0
e2e_wait_peer_up east west 5

# --- the old key is refused now: a site that only has it gets nowhere.
refused0=$(e2e_counter east rx_auth_failed) || refused0=x
e2e_check_down "link down west" west
keyfile west "$OLD"
e2e_check_up "west comes up again with only the old key" west
e2e_wait "east refuses the old key's handshakes (rx_auth_failed > $refused0)" 10 \
    e2e_counter_above east rx_auth_failed "$refused0"
e2e_check "west holding the old key has no session (and west's status answers)" \
    e2e_peer_not_up west east
e2e_check_down "link down west" west
keyfile west "$NEW"
e2e_check_up "west comes up with the new key" west
e2e_wait_peer_up west east 15

# --- what reload refuses: exit 2, and the running link is unchanged.
before=$(e2e_jq east 'd["peers"][0]["endpoint"], d["interface"]' || echo x)
cp "$E2E_WORK/east-peer.psk" "$E2E_WORK/east-peer.psk.good"
keyfile east "not a key"
e2e_check_exit "reload with a broken key file exits 2" 2 \
    e2e_ctl east 20 reload east --config "$(e2e_conf east)"
e2e_match "the error names the config key that points at the file" 'peer\.psk_file' "$E2E_STDERR"
cp "$E2E_WORK/east-peer.psk.good" "$E2E_WORK/east-peer.psk"
cp "$(e2e_conf east)" "$E2E_WORK/east.toml.good"
sed -i 's/^listen = .*/listen = "198.18.21.1:4000"/' "$(e2e_conf east)"
e2e_check_exit "reload of a changed listen address exits 2 (needs a restart)" 2 \
    e2e_ctl east 20 reload east --config "$(e2e_conf east)"
e2e_match "the refusal names the setting and says nothing changed" \
    'tunnel\.listen: differs.*nothing was changed' "$E2E_STDERR"
cp "$E2E_WORK/east.toml.good" "$(e2e_conf east)"
after=$(e2e_jq east 'd["peers"][0]["endpoint"], d["interface"]' || echo x)
if [[ "$before" == "$after" && "$before" != x ]]; then
    e2e_ok "the running link is as it was (endpoint and interface)"
else
    e2e_not_ok "the running link is as it was (endpoint and interface)" "before: $before" "after: $after"
fi
e2e_check_exit "reload without a change exits 0" 0 \
    e2e_ctl east 20 reload east --config "$(e2e_conf east)"
e2e_match "and says so" '^no change$' "$E2E_STDOUT"
e2e_wait "ping east → west after all that" 10 e2e_ping1 east 198.19.21.2

e2e_summary
