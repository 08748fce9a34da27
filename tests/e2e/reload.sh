#!/usr/bin/env bash
#
# reload.sh — `bridge-ctl reload` and SIGHUP change a running link with no lost reply.
#
#                 [wan] br-wan 198.18.31.0/24
#         ┌──────────────┼──────────────┐
#   [a] .1 tb-a         [b] .2 tb-b     [c] .3 tb-c        TAPs 198.19.31.{1,2,3}/24
#
# a runs a DHCP responder and starts with one peer, b (each with its own key
# file, renewed every 5 s); c is configured with a as its peer but a does not
# know c yet. A DHCP client (busybox udhcpc) on a's TAP gets a lease with the
# domain and DNS server of a's [dhcp]. With `ping -i 0.01` running a → b the whole
# time, a is reloaded three times: c added (c comes up and answers pings, and a
# and b renew their session after it), the DHCP options domain and dns changed
# (the client, run again, gets the new values), and b's key rotated with a
# two-key file (a by `reload`, b by SIGHUP; a and b renew their session after
# both). Checks: each reload exits 0 and prints its change; the ping still ran
# when the last one was done, and not one ping reply is lost. Then: c removed
# (a's status drops it, c's traffic and handshakes are refused); b moved to
# another address and a told by reload (a reaches b there); a broken file and a
# restart-only change are refused with exit 2 naming file, line and key, and the
# running link is as it was (status JSON equal but for clocks and traffic).
#
# Run as root: tests/e2e/reload.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

PORT=51901
# Bound on waiting for a session renewal: every 5 s plus up to 5 s of jitter, and a
# refused first key costs a 1 s retry.
RENEW_SECS=15
# The options of a's [dhcp] that the second step changes.
DHCP_DOMAIN=before.example
DHCP_DNS=198.19.0.1
e2e_site wan
NS_WAN=$(e2e_ns wan)
ip -n "$NS_WAN" link add br-wan type bridge
ip -n "$NS_WAN" link set br-wan up
e2e_wan_port "$NS_WAN" port-a a 198.18.31.1/24
e2e_wan_port "$NS_WAN" port-b b 198.18.31.2/24
e2e_wan_port "$NS_WAN" port-c c 198.18.31.3/24

e2e_new_key "$E2E_WORK/old.key"
e2e_new_key "$E2E_WORK/new.key"
OLD=$(<"$E2E_WORK/old.key")
NEW=$(<"$E2E_WORK/new.key")
# keyfile NAME LINE...: the key file NAME.psk in the work dir.
keyfile() {
    local name=$1
    shift
    e2e_key_file "$E2E_WORK/$name.psk" "$@"
}
keyfile a-b "$OLD"
keyfile b-a "$OLD"

# a's config, with the peers given (b's endpoint as given), DHCP on with the domain
# and DNS server $DHCP_DOMAIN and $DHCP_DNS.
config_a() {
    e2e_config a --listen "198.18.31.1:$PORT" --address 198.19.31.1/24 \
        --peer-key "b=$E2E_WORK/a-b.psk" --rekey-after 5s "$@"
    sed -i -e 's/^enabled = false/enabled = true/' \
        -e "/^\[dhcp\]\$/a domain = \"$DHCP_DOMAIN\"\ndns = [\"$DHCP_DNS\"]" "$(e2e_conf a)"
}
config_a --peer "b=198.18.31.2:$PORT"
e2e_config b --listen "0.0.0.0:$PORT" --address 198.19.31.2/24 --mac 02:00:00:31:00:02 \
    --peer a --peer-key "a=$E2E_WORK/b-a.psk" --rekey-after 5s
e2e_config c --listen "198.18.31.3:$PORT" --address 198.19.31.3/24 --peer "a=198.18.31.1:$PORT"

for s in a b c; do e2e_require_up "$s"; done
e2e_wait_peer_up a b
e2e_passed || e2e_fatal "the tunnel did not come up"
e2e_wait "first ping a → b" 10 e2e_ping1 a 198.19.31.2

# dhcp_client TAG: busybox udhcpc on a's TAP (the responder's own side) until it is
# bound, at most about 10 s; its script records the lease's options, as
# "ip=..|router=..|dns=..|domain=..", in $E2E_WORK/dhcp-TAG.lease (and changes no
# address). Fails if the client got no lease.
# shellcheck disable=SC2317 # called through e2e_check
dhcp_client() {
    local dir="$E2E_WORK/dhcp-$1"
    mkdir -p "$dir"
    cat >"$dir/script" <<EOF
#!/bin/sh
case "\$1" in
bound | renew) echo "ip=\$ip|router=\$router|dns=\$dns|domain=\$domain" >"$dir.lease" ;;
esac
exit 0
EOF
    chmod 755 "$dir/script"
    rm -f "$dir.lease"
    ip netns exec "$(e2e_ns a)" timeout 30 udhcpc -f -q -n -i tb-a -s "$dir/script" \
        -t 5 -T 2 -A 1 -p "$dir/pid" >"$dir/out" 2>&1 || true
    [[ -s "$dir.lease" ]]
}
# dhcp_check TAG DOMAIN DNS: the client's lease TAG carries DOMAIN and DNS.
dhcp_check() {
    local lease
    lease=$(cat "$E2E_WORK/dhcp-$1.lease" 2>/dev/null || true)
    e2e_match "the lease gives domain $2 and DNS server $3 ($lease)" \
        "\\|dns=${3//./\\.}\\|domain=${2//./\\.}\$" "$lease"
}

reload_a() {
    e2e_check_exit "reload a: $1 (exit 0)" 0 e2e_ctl a 20 reload a --config "$(e2e_conf a)"
    e2e_match "reload a prints the change: $2" "$2" "$E2E_STDOUT"
}

e2e_check "udhcpc on a's TAP gets a lease from a's responder" dhcp_client before
dhcp_check before "$DHCP_DOMAIN" "$DHCP_DNS"

# The ping outlasts the three steps below (each bounded by about RENEW_SECS);
# "ping still running" below checks that it did.
COUNT=$(((3 * RENEW_SECS + 6) * 100))
PING_OUT="$E2E_WORK/ping.out"
ip netns exec "$(e2e_ns a)" ping -n -q -i 0.01 -W 1 -c "$COUNT" 198.19.31.2 >"$PING_OUT" 2>&1 &
PING_PID=$!
tb_defer tb_stop_pid "$PING_PID"
# A second of pinging before the first reload (no check depends on its length).
sleep 1

# 1. A third peer; a and b renew their session afterwards (b's settings did not
#    change, so it keeps working through the reload and the next rekey).
config_a --peer "b=198.18.31.2:$PORT" --peer "c=198.18.31.3:$PORT"
hs0=$(e2e_handshakes a b) || hs0=x
reload_a "peer c added" '^peer c: added \(198\.18\.31\.3:51901, 1 key\)$'
e2e_wait_peer_up a c 20
e2e_wait "ping a → c through the added peer" 10 e2e_ping1 a 198.19.31.3
e2e_wait "a and b renew their session after the reload (handshakes > $hs0)" "$RENEW_SECS" \
    e2e_renewed_since a b "$hs0"

# 2. DHCP options (domain, dns): a client sees the new values.
DHCP_DOMAIN=after.example
DHCP_DNS=198.19.0.2
config_a --peer "b=198.18.31.2:$PORT" --peer "c=198.18.31.3:$PORT"
reload_a "domain and dns changed" '^dhcp\.domain: "[a-z.]+" -> "after\.example"$'
e2e_check "after the reload, udhcpc on a's TAP gets a lease again" dhcp_client after
dhcp_check after "$DHCP_DOMAIN" "$DHCP_DNS"

# 3. b's key rotated: the new key first on both ends, a by reload, b by SIGHUP.
keyfile a-b "$NEW" "$OLD"
reload_a "b's key rotated" '^peer b: keys changed \(2 keys, the first initiates\)$'
keyfile b-a "$NEW" "$OLD"
if pid_b=$(e2e_daemon_pid b); then
    kill -HUP "$pid_b"
    e2e_wait "SIGHUP reloads b (its log names the change)" 5 \
        grep -q 'reload: peer a: keys changed (2 keys' "$E2E_WORK/run/b.log"
else
    e2e_not_ok "b's daemon PID from status --json"
fi
# Counted once both ends hold the new key, so the renewal below is made with it.
hs0=$(e2e_handshakes a b) || hs0=x
e2e_wait "sessions are renewed with the new key (handshakes > $hs0)" "$RENEW_SECS" e2e_renewed_since a b "$hs0"
e2e_check "b is still running after SIGHUP" kill -0 "${pid_b:-0}"
e2e_check "the ping a → b was still running after the three reloads" kill -0 "$PING_PID"

wait "$PING_PID" || true
summary=$(grep -E 'packets transmitted' "$PING_OUT" || true)
e2e_note "ping during the three reloads: $summary"
e2e_match "ping -i 0.01 through three reloads: no reply lost" \
    "^$COUNT packets transmitted, $COUNT received, 0% packet loss" "$summary"

# 4. c removed: gone from a's status, refused afterwards.
failed0=$(e2e_counter a rx_auth_failed || echo x)
unknown0=$(e2e_counter a rx_unknown_session || echo x)
config_a --peer "b=198.18.31.2:$PORT"
reload_a "peer c removed" '^peer c: removed$'
names=$(e2e_jq a '[p["name"] for p in d["peers"]]' || echo x)
e2e_match "a's status lists only b now ($names)" '^\["b"\]$' "$names"
if e2e_ping1 a 198.19.31.3 || e2e_ping1 c 198.19.31.1; then
    e2e_not_ok "a and c cannot reach each other after the removal"
else
    e2e_ok "a and c cannot reach each other after the removal"
fi
# c's keepalives hit a session a forgot; once c gives up on it (three
# keepalive intervals), its new handshakes match no key of a.
e2e_wait "c's traffic is refused as an unknown session" 10 e2e_counter_above a rx_unknown_session "$unknown0"
e2e_wait "c's new handshakes are refused" 20 e2e_counter_above a rx_auth_failed "$failed0"
e2e_check "c has no session with a (and c's status answers)" e2e_peer_not_up c a
e2e_wait "ping a → b still works" 5 e2e_ping1 a 198.19.31.2

# 5. b moves to another address (and no longer calls a); a learns it by reload.
e2e_check_down "link down b" b
ip -n "$(e2e_ns b)" addr add 198.18.31.12/24 dev wan0
e2e_config b --listen "198.18.31.12:$PORT" --address 198.19.31.2/24 --mac 02:00:00:31:00:02 \
    --peer a --peer-key "a=$E2E_WORK/b-a.psk" --rekey-after 5s
e2e_require_up b
# Showing that a does NOT reach b at its new address before the reload needs time
# to pass: a keeps calling b's old address.
sleep 2
e2e_check "b at its new address is not reached by a before the reload (and b's status answers)" \
    e2e_peer_not_up b a
config_a --peer "b=198.18.31.12:$PORT"
reload_a "b's endpoint changed" '^peer b: endpoint 198\.18\.31\.2:51901 -> 198\.18\.31\.12:51901$'
e2e_wait_peer_up a b 10
ep=$(e2e_peer a b endpoint || echo x)
e2e_match "a's status shows b's new endpoint ($ep)" '^198\.18\.31\.12:51901$' "$ep"
e2e_wait "ping a → b at b's new address" 10 e2e_ping1 a 198.19.31.2

# 6. Refusals change nothing: a broken file, a setting that needs a restart.
# The status without clocks and traffic counters (and the handshake count:
# with rekey_after 5 s a rekey may fall between the two snapshots).
snapshot() {
    e2e_jq a '{k: v for k, v in d.items() if k not in ("uptime_secs", "counters")} | {"peers": [{k: v for k, v in p.items() if k not in ("handshakes", "last_handshake_secs", "last_attempt_secs", "last_answer_secs", "unanswered_secs", "tx_frames", "rx_frames", "tx_bytes", "rx_bytes")} for p in d["peers"]], "leases": [(l["mac"], l["ip"]) for l in d["leases"]]}'
}
before=$(snapshot || echo x)
cp "$(e2e_conf a)" "$E2E_WORK/a.toml.good"
printf '[tunnel]\nkeepalive = "3s"\n' >>"$(e2e_conf a)"
e2e_check_exit "reload of a broken file exits 2" 2 e2e_ctl a 20 reload a --config "$(e2e_conf a)"
e2e_match "the error names file, line and column" "a\.toml:[0-9]+:[0-9]+" "$E2E_STDERR"
cp "$E2E_WORK/a.toml.good" "$(e2e_conf a)"
sed -i 's/^mtu = 1500/mtu = 1400/' "$(e2e_conf a)"
e2e_check_exit "reload of interface.mtu exits 2" 2 e2e_ctl a 20 reload a --config "$(e2e_conf a)"
e2e_match "the refusal names file, line, key and says nothing changed" \
    'a\.toml:[0-9]+:[0-9]+: interface\.mtu: differs from the running link.*nothing was changed' "$E2E_STDERR"
cp "$E2E_WORK/a.toml.good" "$(e2e_conf a)"
after=$(snapshot || echo x)
if [[ "$before" == "$after" && "$before" != x ]]; then
    e2e_ok "the running link is as it was (status JSON equal but for clocks and traffic)"
else
    e2e_not_ok "the running link is as it was" "before: $before" "after: $after"
fi
e2e_check_exit "reload without a change exits 0" 0 e2e_ctl a 20 reload a --config "$(e2e_conf a)"
e2e_match "and says so" '^no change$' "$E2E_STDOUT"
e2e_wait "ping a → b after all that" 10 e2e_ping1 a 198.19.31.2

e2e_summary
