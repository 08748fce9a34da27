#!/bin/bash
#
# diagnosis.sh — what each side says when a peer does not come up (issue 24): the
# calling side's "no answer" line, the refusing side's lines for a key it does not
# have and for a name that is not a [[peer]], `bridge-ctl diag`, and hints that name
# the link as the command line did. Sites op and far in namespaces of their own, one
# veth between them.
#
#   * op alone (far runs no daemon): after 5 unanswered handshakes (~15 s) op logs,
#     once, "no answer from far at 198.18.42.2:51942 after 5 handshakes: check the
#     key, the peer name, and that UDP 51942 is open"; status --json has
#     unanswered_handshakes >= 5 and last_attempt_secs, no last_answer_secs;
#     `diag` says "no answer to N handshakes since HH:MM:SS UTC: the peer is down, the
#     key or name is wrong, or UDP 51942 is blocked"; the status table's hint to diag
#     and the "already up" hint repeat --config (and --socket when given);
#   * far with another key: op logs "initiation from 198.18.42.2:51942 with a key this
#     site does not have: ..." and counts rx_unknown_key (within rx_auth_failed); diag
#     names those refusals as a possible cause;
#   * far with the right key: the tunnel comes up, op logs "far answers again, after N
#     unanswered handshakes", diag says "up, last handshake ...";
#   * op's [[peer]] renamed "farx" (reload): op logs "initiation from ... authenticated
#     with peer farx's key, but names itself "far", which is not a [[peer]] here: check
#     the peer name" and counts rx_unknown_peer; diag's cause names both names; far,
#     whose name op's initiations now get wrong, logs the unknown-key line;
#   * far at an address op has no route to: status --json has far's last_send_error
#     and diag says this gateway cannot send to it, with the kernel's reason.
# Bounded: every call under a timeout, the whole test under E2E_TIME_LIMIT (120 s).
#
# Run as root: tests/e2e/diagnosis.sh   (BRIDGE_CTL=... to pick the binary)

set -euo pipefail

: "${E2E_TIME_LIMIT:=120}"
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

e2e_init

W=$E2E_WORK
e2e_site op
e2e_site far
e2e_no_ipv6 "$(e2e_ns op)"
e2e_no_ipv6 "$(e2e_ns far)"
e2e_wan "$(e2e_ns op)" "$(e2e_ns far)" 198.18.42.1/24 198.18.42.2/24
OP_CONF=$(e2e_conf op)
OP_SOCK=$(e2e_sock op)
OP_LOG=$W/run/op.log
FAR_LOG=$W/run/far.log
e2e_new_key "$W/other.psk"

# op_config PEER: op's config, its one peer named PEER at far's address.
op_config() {
    e2e_config op --listen 198.18.42.1:51942 --peer "$1=198.18.42.2:51942" \
        --address 198.19.42.1/24
}
# far_config PSK: far's config with key file PSK.
far_config() {
    e2e_config far --listen 198.18.42.2:51942 --peer op=198.18.42.1:51942 \
        --address 198.19.42.2/24 --psk "$1"
}
# logged FILE REGEX: FILE has a line matching the extended REGEX.
# shellcheck disable=SC2317 # invoked indirectly through e2e_wait
logged() { grep -Eq -- "$2" "$1" 2>/dev/null; }
# diag SITE: bridge-ctl diag of SITE.
diag() { e2e_ctl "$1" 10 diag --config "$(e2e_conf "$1")" 2>&1 || true; }

# ---------------------------------------------------------------- nobody answers
op_config far
e2e_require_up op
NO_ANSWER='no answer from far at 198\.18\.42\.2:51942 after 5 handshakes: check the key, the peer name, and that UDP 51942 is open'
e2e_wait "op logs that far does not answer (after 5 handshakes)" 30 logged "$OP_LOG" "$NO_ANSWER"
e2e_cmp "... once, not per handshake" "$(grep -c 'no answer from far' "$OP_LOG" || true)" -eq 1
e2e_check "status: unanswered_handshakes >= 5, a last attempt, no answer ever" \
    e2e_jq op 'exit(0 if d["peers"][0]["unanswered_handshakes"] >= 5
        and d["peers"][0]["last_attempt_secs"] is not None
        and d["peers"][0]["last_answer_secs"] is None
        and d["peers"][0]["unanswered_secs"] >= 10 else 1)'
out=$(diag op)
while IFS= read -r line; do e2e_note "diag op | $line"; done <<<"$out"
e2e_match "diag: far's likely cause is no answer since a time, naming the port" \
    'likely cause: no answer to [0-9]+ handshakes since [0-9]{2}:[0-9]{2}:[0-9]{2} UTC: the peer is down, the key or name is wrong, or UDP 51942 is blocked' \
    "$out"
e2e_match "diag: far's last attempt and last answer" 'last attempt: [0-9]+s ago; last answer: never' "$out"
e2e_match "diag: unanswered handshakes since when" 'unanswered handshakes: [0-9]+ since [0-9:]+ UTC \(' "$out"
e2e_match "diag: the link's refusals and send errors" 'send errors: 0 datagrams the kernel refused' "$out"

# Hints name the link as the command line did.
out=$(e2e_ctl op 10 status --config "$OP_CONF" 2>&1 || true)
e2e_match "status hints at diag with --config" "1 peer is not up; see \`bridge-ctl diag --config $OP_CONF\` for why" "$out"
out=$(e2e_ctl op 10 status --config "$OP_CONF" --socket "$OP_SOCK" 2>&1 || true)
e2e_match "... and with --socket when it was given" \
    "see \`bridge-ctl diag --config $OP_CONF --socket $OP_SOCK\` for why" "$out"
out=$(e2e_ctl op 10 diag --config "$OP_CONF" --socket "$OP_SOCK" 2>&1 || true)
e2e_match "diag --socket asks that socket" '^link op: pid [0-9]+' "$out"
e2e_check_exit "a second link up is refused" 1 e2e_ctl op 20 link up --config "$OP_CONF"
e2e_match "... with a hint that names the link by --config" \
    "already up \(pid [0-9]+\); take it down first with \`bridge-ctl link down --config $OP_CONF\`" \
    "$E2E_STDERR"

# ---------------------------------------------------------------- another key
far_config "$W/other.psk"
e2e_require_up far
e2e_wait "op logs far's initiations under a key it does not have" 15 logged "$OP_LOG" \
    'initiation from 198\.18\.42\.2:51942 with a key this site does not have: check that both sites use the same key file, and that the sender.s \[\[peer\]\] for this site is named "op"'
e2e_check "op counts them in rx_unknown_key, within rx_auth_failed, not as unknown peers" \
    e2e_jq op 'exit(0 if 0 < d["counters"]["rx_unknown_key"] <= d["counters"]["rx_auth_failed"]
        and d["counters"]["rx_unknown_peer"] == 0 else 1)'
e2e_match "diag names them as a possible cause" \
    'this site refused [0-9]+ initiations with a key it does not have: if they are this peer.s, the two sites. keys differ or it calls this site by another name than "op"' \
    "$(diag op)"
e2e_check "far got no answer (silence on the wire): op is not up for it" e2e_peer_not_up far op

# ---------------------------------------------------------------- the right key
e2e_down far || true
far_config "$W/psk"
e2e_require_up far
e2e_wait_peer_up op far 20
e2e_wait "op logs that far answers again" 10 logged "$OP_LOG" \
    'far answers again, after [0-9]+ unanswered handshakes'
e2e_match "diag: far is up" 'likely cause: up, last handshake [0-9]+s ago' "$(diag op)"
e2e_check "status: no unanswered handshakes, a last answer" \
    e2e_jq op 'exit(0 if d["peers"][0]["unanswered_handshakes"] == 0
        and d["peers"][0]["last_answer_secs"] is not None else 1)'

# ---------------------------------------------------------------- a wrong peer name
op_config farx
e2e_run e2e_ctl op 20 reload --config "$OP_CONF"
e2e_expect_rc "op reloads with its peer renamed farx" 0
# far starts over, so its next initiations come at once.
e2e_down far || true
e2e_require_up far
e2e_wait "op logs far's initiation: authenticated, but a name that is not a [[peer]]" 15 \
    logged "$OP_LOG" \
    'initiation from 198\.18\.42\.2:51942 authenticated with peer farx.s key, but names itself "far", which is not a \[\[peer\]\] here: check the peer name'
e2e_check "op counts it in rx_unknown_peer" e2e_counter_above op rx_unknown_peer 0
e2e_check "status: farx's last refusal is unknown_peer, naming far" \
    e2e_jq op 'exit(0 if (d["peers"][0]["last_refusal"] or {}).get("reason") == "unknown_peer"
        and d["peers"][0]["last_refusal"].get("name") == "far"
        and d["peers"][0]["refused_handshakes"] > 0 else 1)'
e2e_match "diag: the cause names both names" \
    'likely cause: 198\.18\.42\.2:51942 names itself "far" with this peer.s key, and this site calls it "farx": a \[\[peer\]\] name must be the other site.s link name' \
    "$(diag op)"
e2e_wait "far logs op's initiations for farx as a key it does not have (the name is in the hint)" \
    20 logged "$FAR_LOG" \
    'initiation from 198\.18\.42\.1:51942 with a key this site does not have: .*named "far"'
e2e_check_fails "no log line carries the key" grep -qF -- "$(tr -d '\n' <"$W/psk")" "$OP_LOG" "$FAR_LOG"

# ---------------------------------------------------------------- an address op has no route to
# far goes away; op's peer far is now at 198.18.43.2, which op's namespace has no
# route to: the kernel refuses op's initiations, and diag says so.
e2e_down far || true
e2e_config op --listen 198.18.42.1:51942 --peer "far=198.18.43.2:51942" --address 198.19.42.1/24
e2e_run e2e_ctl op 20 reload --config "$OP_CONF"
e2e_expect_rc "op reloads with far at an address it has no route to" 0
# shellcheck disable=SC2317 # invoked indirectly through e2e_wait
send_error_seen() {
    e2e_jq op 'exit(0 if (d["peers"][0]["last_send_error"] or {}).get("to") == "198.18.43.2:51942"
        else 1)' 2>/dev/null
}
e2e_wait "status: far's last_send_error names 198.18.43.2:51942" 10 send_error_seen
out=$(diag op)
e2e_match "diag: the cause is that this gateway cannot send to far" \
    'likely cause: this gateway cannot send to 198\.18\.43\.2:51942: the kernel refused [0-9]+s ago \([A-Za-z ]+ \(os error [0-9]+\)\)' \
    "$out"
e2e_match "diag: far's last send error" 'last send error: [0-9]+s ago, to 198\.18\.43\.2:51942: ' "$out"

e2e_down op || true
e2e_summary
