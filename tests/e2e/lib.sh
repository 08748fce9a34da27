# shellcheck shell=bash
#
# lib.sh — shared helpers for the tapbridge end-to-end tests (tests/e2e/*.sh).
#
# The tests drive `bridge-ctl` exactly as an operator (or an acceptance test) would,
# through the contract in SPEC §3–§6: `link up/down NAME --config FILE`, `status
# --json`, `check`, config keys. Source this file from a test that runs with
# `set -euo pipefail`, then call e2e_init. It promises:
#
#   * everything lives in uniquely named network namespaces and one temp dir, all
#     removed on exit, on failure and on Ctrl-C/SIGTERM (via scripts/lib/netns.sh);
#     links are only ever brought down by `bridge-ctl link down` (idempotent, so it is
#     registered before `link up`), and processes are stopped by PID only;
#   * addresses only from 198.18.0.0/15 and 2001:2::/48; nothing in the root namespace;
#   * every wait is bounded, every bridge-ctl call runs under `timeout`, and a
#     watchdog ends the whole script (with cleanup) after E2E_TIME_LIMIT seconds;
#   * output is one `ok - ...` / `not ok - ...` (or `ok - ... # SKIP reason`) line per
#     check and a final summary; the exit status is 0 only if no check failed.
#
# Site model: e2e_site SITE creates a namespace for the gateway of link SITE; the
# link's config is $E2E_WORK/SITE.toml (so NAME = SITE), its TAP is tb-SITE, its
# control socket $E2E_WORK/run/SITE.sock, its UDP port 51901 unless told otherwise.
#
# Every test in tests/e2e reports through this file (one format: the `ok`/`not ok`
# lines and the summary line below), runs its commands through e2e_run/e2e_ctl, writes
# link configs with e2e_config or tb_link_config (scripts/lib/config.sh), and finds a
# daemon's PID in `status --json` (e2e_daemon_pid). A test that does not drive
# bridge-ctl (packaging, NAT hooks) starts with e2e_init_no_bridge_ctl.
#
# Environment: BRIDGE_CTL (default target/release/bridge-ctl, built with `cargo build
# --release` when missing), TB_KEEP=1 (leave everything in place for inspection),
# E2E_TIME_LIMIT (seconds, default 170; a test may set a larger default before
# e2e_init).

if [[ -n "${TB_E2E_LIB_LOADED:-}" ]]; then
    return 0
fi
TB_E2E_LIB_LOADED=1

E2E_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/netns.sh
source "$E2E_ROOT/scripts/lib/netns.sh"
# shellcheck source=scripts/lib/config.sh
source "$E2E_ROOT/scripts/lib/config.sh"

E2E_TEST=$(basename -- "$0" .sh)
E2E_PASSED=0
E2E_FAILED=0
E2E_SKIPPED=0
E2E_DONE=0
E2E_WORK=""
E2E_WATCHDOG=""
# PID of the capture e2e_capture_start runs.
E2E_CAPTURE_PID=""
BIN=""
# Filled by e2e_run: exit status, stdout and stderr of the last command.
E2E_RC=0
E2E_STDOUT=""
E2E_STDERR=""
# SITE -> namespace name.
declare -A E2E_NS=()
# Config file of a site whose link NAME is not the site's name (the NAME is the
# file's stem, and a peer must be named exactly like the other site's link).
declare -A E2E_CONF=()

# Timeouts (seconds) for single bridge-ctl invocations.
E2E_T_UP=30
E2E_T_DOWN=20
E2E_T_STATUS=5

# ---------------------------------------------------------------- reporting
#
# Every check (e2e_check*, e2e_match, e2e_cmp, e2e_wait, e2e_expect_rc, ...) prints
# one line and returns 0 either way, so `set -e` never stops a test at a failed
# check; e2e_passed tells whether the last one passed:
#     e2e_check "..." cmd; if e2e_passed; then ...dependent checks...; fi
#     e2e_wait_peer_up a b; e2e_passed || e2e_fatal "the tunnel did not come up"

# Result of the last check: 0 passed (or skipped), 1 failed.
E2E_LAST=0

# e2e_passed: true if the last check passed.
e2e_passed() {
    return "$E2E_LAST"
}

e2e_ok() {
    E2E_LAST=0
    E2E_PASSED=$((E2E_PASSED + 1))
    printf 'ok - %s\n' "$1"
}

# e2e_not_ok DESC [DETAIL...]: record a failure; DETAIL lines are printed indented.
e2e_not_ok() {
    local desc=$1
    shift
    E2E_LAST=1
    E2E_FAILED=$((E2E_FAILED + 1))
    printf 'not ok - %s\n' "$desc"
    if (($# > 0)); then
        printf '%s\n' "$@" | head -n 20 | sed 's/^/#     /'
    fi
}

e2e_skip() {
    E2E_LAST=0
    E2E_SKIPPED=$((E2E_SKIPPED + 1))
    printf 'ok - %s # SKIP %s\n' "$1" "$2"
}

e2e_note() {
    printf '# %s\n' "$*"
}

e2e_print_summary() {
    local total=$((E2E_PASSED + E2E_FAILED + E2E_SKIPPED))
    printf '# %s: %d checks, %d passed, %d failed, %d skipped\n' \
        "$E2E_TEST" "$total" "$E2E_PASSED" "$E2E_FAILED" "$E2E_SKIPPED"
}

# e2e_summary: print the summary and exit (cleanup runs from the EXIT trap).
e2e_summary() {
    E2E_DONE=1
    e2e_print_summary
    if ((E2E_FAILED > 0 || E2E_PASSED == 0)); then
        exit 1
    fi
    exit 0
}

# e2e_fatal MESSAGE: a failed precondition; later checks would be meaningless.
e2e_fatal() {
    e2e_not_ok "$1"
    E2E_DONE=1
    printf '# aborted: %s\n' "$1"
    e2e_print_summary
    exit 1
}

_e2e_stop_watchdog() {
    if [[ -n "$E2E_WATCHDOG" ]]; then
        kill -TERM "$E2E_WATCHDOG" 2>/dev/null || true
        E2E_WATCHDOG=""
    fi
}

_e2e_on_signal() {
    _e2e_stop_watchdog
    if [[ "$E2E_DONE" -eq 0 ]]; then
        E2E_DONE=1
        printf '# aborted by SIG%s\n' "$1"
        e2e_print_summary
    fi
    tb_on_signal "$1"
}

_e2e_on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    _e2e_stop_watchdog
    if [[ "$E2E_DONE" -eq 0 ]]; then
        printf '# aborted by an unexpected failure (exit status %s)\n' "$rc"
        e2e_print_summary
        if [[ "$rc" -eq 0 ]]; then
            rc=1
        fi
    fi
    tb_cleanup
    exit "$rc"
}

# ---------------------------------------------------------------- running commands

# e2e_run CMD...: run CMD (interruptibly), never fail; set E2E_RC, E2E_STDOUT,
# E2E_STDERR. Output goes through files, not pipes, so a daemon that inherits
# them can never block the test.
e2e_run() {
    E2E_RC=0
    tb_run "$@" >"$E2E_WORK/.stdout" 2>"$E2E_WORK/.stderr" </dev/null || E2E_RC=$?
    E2E_STDOUT=$(cat "$E2E_WORK/.stdout")
    E2E_STDERR=$(cat "$E2E_WORK/.stderr")
}

_e2e_last_output() {
    printf 'exit status %s\n' "$E2E_RC"
    [[ -z "$E2E_STDOUT" ]] || printf 'stdout: %s\n' "$E2E_STDOUT"
    [[ -z "$E2E_STDERR" ]] || printf 'stderr: %s\n' "$E2E_STDERR"
}

# e2e_check DESC CMD...: ok if CMD exits 0.
e2e_check() {
    local desc=$1
    shift
    e2e_run "$@"
    if [[ "$E2E_RC" -eq 0 ]]; then
        e2e_ok "$desc"
        return 0
    fi
    local detail
    detail=$(_e2e_last_output)
    e2e_not_ok "$desc" "$detail"
    return 0
}

# e2e_check_exit DESC CODE CMD...: ok if CMD exits with CODE (E2E_* keep its output).
e2e_check_exit() {
    local desc=$1 code=$2
    shift 2
    e2e_run "$@"
    if [[ "$E2E_RC" -eq "$code" ]]; then
        e2e_ok "$desc"
        return 0
    fi
    local detail
    detail=$(_e2e_last_output)
    e2e_not_ok "$desc" "expected exit status $code" "$detail"
    return 0
}

# e2e_expect_rc DESC WANT: check the exit status of the last e2e_run (or e2e_up /
# e2e_down): WANT is a number or "nonzero".
e2e_expect_rc() {
    local desc=$1 want=$2 detail
    if [[ "$want" == nonzero && "$E2E_RC" -ne 0 ]] || [[ "$E2E_RC" == "$want" ]]; then
        e2e_ok "$desc"
        return 0
    fi
    detail=$(_e2e_last_output)
    e2e_not_ok "$desc" "expected exit status $want" "$detail"
    return 0
}

# e2e_check_fails DESC CMD...: ok if CMD exits non-zero.
e2e_check_fails() {
    local desc=$1
    shift
    e2e_run "$@"
    if [[ "$E2E_RC" -ne 0 ]]; then
        e2e_ok "$desc"
        return 0
    fi
    local detail
    detail=$(_e2e_last_output)
    e2e_not_ok "$desc" "expected a non-zero exit status" "$detail"
    return 0
}

# e2e_match DESC REGEX TEXT: ok if TEXT matches the extended REGEX.
e2e_match() {
    if grep -Eq -- "$2" <<<"$3"; then
        e2e_ok "$1"
        return 0
    fi
    e2e_not_ok "$1" "expected to match: $2" "got: $3"
    return 0
}

# e2e_nomatch DESC REGEX TEXT: ok if TEXT does not match the extended REGEX.
e2e_nomatch() {
    if ! grep -Eq -- "$2" <<<"$3"; then
        e2e_ok "$1"
        return 0
    fi
    e2e_not_ok "$1" "expected not to match: $2" "got: $3"
    return 0
}

# e2e_cmp DESC A OP B: integer comparison (OP one of -eq -ne -lt -le -gt -ge).
e2e_cmp() {
    local desc=$1 a=$2 op=$3 b=$4
    if [[ "$a" =~ ^-?[0-9]+$ && "$b" =~ ^-?[0-9]+$ ]] && test "$a" "$op" "$b"; then
        e2e_ok "$desc"
        return 0
    fi
    e2e_not_ok "$desc" "expected: '$a' $op '$b'"
    return 0
}

# e2e_sum N...: print the sum of the integers N..., or "x" if one of them is not an
# integer (e.g. a status read that failed), so that an e2e_cmp against the result
# fails instead of comparing with a made-up 0. A difference: e2e_sum "$b" "-$a".
e2e_sum() {
    local n s=0
    for n in "$@"; do
        if ! [[ "$n" =~ ^-?(0|[1-9][0-9]*)$ ]]; then
            printf 'x\n'
            return 0
        fi
        s=$((s + n))
    done
    printf '%s\n' "$s"
}

# e2e_wait DESC TIMEOUT CMD...: ok once CMD succeeds, not ok after TIMEOUT seconds.
e2e_wait() {
    local desc=$1 timeout=$2
    shift 2
    if tb_wait_until "$timeout" "$desc" "$@" 2>/dev/null; then
        e2e_ok "$desc"
        return 0
    fi
    e2e_run "$@"
    local detail
    detail=$(_e2e_last_output)
    e2e_not_ok "$desc" "still failing after ${timeout}s; last attempt:" "$detail"
    return 0
}

# ---------------------------------------------------------------- setup

# e2e_init: root check, traps, tools, binary, work dir, PSK, watchdog.
e2e_init() {
    _e2e_begin 1
}

# e2e_init_no_bridge_ctl: the same for a test that does not drive bridge-ctl
# (packaging, NAT hooks): no binary, no PSK, only the tools every test needs.
e2e_init_no_bridge_ctl() {
    _e2e_begin 0
}

# _e2e_begin WITH_BIN: e2e_init (1) or e2e_init_no_bridge_ctl (0).
_e2e_begin() {
    local with_bin=$1
    tb_require_root
    tb_install_traps
    trap _e2e_on_exit EXIT
    # Stop the watchdog first, so it cannot interrupt the cleanup.
    trap '_e2e_on_signal INT' INT
    trap '_e2e_on_signal TERM' TERM
    tb_need_cmd timeout coreutils
    if ((with_bin)); then
        tb_need_cmd ip iproute2
        tb_need_cmd ping iputils-ping
        tb_need_cmd python3 python3
        tb_need_cmd ss iproute2
        _e2e_find_binary
    fi
    E2E_WORK=$(mktemp -d "/tmp/tb-e2e-$E2E_TEST.XXXXXX")
    tb_defer rm -rf "$E2E_WORK"
    chmod 700 "$E2E_WORK"
    mkdir -m 700 "$E2E_WORK/run"
    _e2e_watchdog "${E2E_TIME_LIMIT:-170}"
    if ((!with_bin)); then
        e2e_note "$E2E_TEST: work dir $E2E_WORK, namespace suffix $TB_SUFFIX"
        return 0
    fi
    e2e_note "$E2E_TEST: bridge-ctl $BIN, work dir $E2E_WORK, namespace suffix $TB_SUFFIX"

    e2e_new_key "$E2E_WORK/psk"
}

# e2e_new_key FILE: a fresh key from `bridge-ctl genpsk`, written to FILE 0600; the
# test aborts unless genpsk printed 44 characters of base64.
e2e_new_key() {
    e2e_run "$BIN" genpsk
    if [[ "$E2E_RC" -ne 0 ]] || ! [[ "$E2E_STDOUT" =~ ^[A-Za-z0-9+/]{43}=$ ]]; then
        e2e_fatal "bridge-ctl genpsk prints a 44-character base64 key (got exit $E2E_RC, '${E2E_STDOUT:0:60}'): is $BIN the real bridge-ctl?"
    fi
    e2e_key_file "$1" "$E2E_STDOUT"
}

# e2e_key_file FILE LINE...: a key file (one key per line, e.g. two during a
# rotation), created 0600.
e2e_key_file() {
    local file=$1
    shift
    (umask 077 && printf '%s\n' "$@" >"$file")
}

# BIN: $BRIDGE_CTL, else target/release/bridge-ctl, built when missing.
_e2e_find_binary() {
    local want=${BRIDGE_CTL:-target/release/bridge-ctl}
    if [[ "$want" != /* ]]; then
        if [[ -e "$want" ]]; then
            want="$(pwd)/$want"
        else
            want="$E2E_ROOT/$want"
        fi
    fi
    if [[ ! -x "$want" && -z "${BRIDGE_CTL:-}" ]]; then
        e2e_note "building bridge-ctl (cargo build --release)"
        tb_build_release want
    fi
    [[ -x "$want" ]] || tb_die "bridge-ctl not found or not executable: $want (set BRIDGE_CTL)"
    BIN=$want
}

# _e2e_watchdog SECS: SIGTERM this script (which then cleans up) after SECS.
_e2e_watchdog() {
    local secs=$1 me=$$
    (
        sleep "$secs" >/dev/null 2>&1 &
        s=$!
        trap 'kill "$s" 2>/dev/null; exit 0' TERM
        wait "$s" || exit 0
        printf 'error: %s exceeded its time limit of %ss; stopping\n' "$E2E_TEST" "$secs" >&2
        kill -TERM "$me"
    ) &
    E2E_WATCHDOG=$!
}

# e2e_site SITE: a namespace for the gateway of link SITE.
e2e_site() {
    local site=$1
    # Not a local: tb_ns_add's own locals would shadow it.
    tb_ns_add "tbe2e-$site" _E2E_NEW_NS
    E2E_NS[$site]=$_E2E_NEW_NS
}

# e2e_ns SITE: print the namespace of SITE.
e2e_ns() {
    local ns=${E2E_NS[$1]:-}
    [[ -n "$ns" ]] || tb_die "internal: unknown site $1"
    printf '%s\n' "$ns"
}

# e2e_no_ipv6 NS: disable IPv6 on links created from now on in NS (no RS/MLD noise).
e2e_no_ipv6() {
    ip netns exec "$1" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
}

# e2e_wan NS1 NS2 ADDR1/PLEN ADDR2/PLEN: veth "wan0" in both, MTU 1500, addressed.
e2e_wan() {
    local ns1=$1 ns2=$2 a1=$3 a2=$4 flags=()
    tb_veth "$ns1" wan0 "$ns2" wan0
    ip -n "$ns1" link set wan0 mtu 1500
    ip -n "$ns2" link set wan0 mtu 1500
    if [[ "$a1" == *:* ]]; then
        flags=(nodad)
    fi
    ip -n "$ns1" addr add "$a1" dev wan0 "${flags[@]}"
    ip -n "$ns2" addr add "$a2" dev wan0 "${flags[@]}"
}

# e2e_wan_port NS_WAN PORT SITE ADDR/PLEN: a new site SITE (IPv6 off) whose "wan0" is
# cabled to the bridge br-wan in NS_WAN through the port PORT; MTU 1500, addressed.
e2e_wan_port() {
    local wan=$1 port=$2 site=$3 addr=$4 ns
    e2e_site "$site"
    ns=$(e2e_ns "$site")
    e2e_no_ipv6 "$ns"
    tb_veth "$wan" "$port" "$ns" wan0
    ip -n "$wan" link set "$port" master br-wan
    ip -n "$ns" link set wan0 mtu 1500
    ip -n "$ns" addr add "$addr" dev wan0
}

# e2e_etc_file SITE FILE TEXT: write /etc/netns/NS/FILE, which `ip netns exec NS`
# bind-mounts over /etc/FILE (e.g. hosts, resolv.conf) for SITE's commands and daemon;
# the directory (and /etc/netns, if this made it) is removed on exit. Writing again
# rewrites the same file in place, so a running daemon sees the new text.
e2e_etc_file() {
    local ns dir
    ns=$(e2e_ns "$1")
    dir=/etc/netns/$ns
    if [[ ! -d /etc/netns ]]; then
        mkdir -m 755 /etc/netns
        tb_defer rmdir /etc/netns
    fi
    if [[ ! -d "$dir" ]]; then
        mkdir -m 755 "$dir"
        tb_defer rm -rf "$dir"
    fi
    printf '%s\n' "$3" >"$dir/$2"
}

# e2e_config SITE [--listen ADDR:PORT] [--peer NAME[=ENDPOINT]]... [--address CIDR]...
#     [--route ROUTE]... [--bridge BR] [--mac MAC] [--mtu N] [--wan-mtu N] [--keepalive DUR]
#     [--hook-up PATH]... [--hook-down PATH]... [--psk FILE] [--transport T] [--workers N]
#     [--extra TOML]
# Write $E2E_WORK/SITE.toml (printed path: e2e_conf SITE) with the shared writer
# (tb_link_config), filling in the test defaults: TAP tb-SITE, MTU and WAN MTU 1500,
# keepalive 2s, listen 0.0.0.0:51901, the run's PSK, the DHCP responder off with its
# lease file in the work dir, and SITE's control socket.
e2e_config() {
    local site=$1
    shift
    local listen="0.0.0.0:51901" mtu=1500 wan_mtu=1500 keepalive="2s"
    local psk="$E2E_WORK/psk" extra="" opts=()
    while (($# > 0)); do
        case "$1" in
        --listen) listen=$2 ;;
        --mtu) mtu=$2 ;;
        --wan-mtu) wan_mtu=$2 ;;
        --keepalive) keepalive=$2 ;;
        --psk) psk=$2 ;;
        --extra) extra=$2 ;;
        --peer | --address | --route | --bridge | --mac | --hook-up | --hook-down | \
            --peer-key | --rekey-after | --hub | --transport | --workers)
            opts+=("$1" "$2")
            ;;
        *) tb_die "internal: e2e_config: unknown option $1" ;;
        esac
        shift 2
    done
    local f
    f=$(e2e_conf "$site")
    # The responder stays off; the lease file lives in the work dir, never in /var/lib.
    tb_link_config "$f" --comment "generated by tests/e2e/$E2E_TEST.sh" \
        --ifname "tb-$site" --mtu "$mtu" --listen "$listen" --psk "$psk" \
        --wan-mtu "$wan_mtu" --keepalive "$keepalive" "${opts[@]}" \
        --dhcp enabled=false --dhcp server_address=198.19.0.254 \
        --dhcp pool=198.19.0.100-198.19.0.199 --dhcp subnet=198.19.0.0/24 \
        --dhcp lease_time=1h --dhcp "lease_file=$E2E_WORK/$site.leases" \
        --socket "$(e2e_sock "$site")" || tb_die "internal: e2e_config $site failed"
    [[ -z "$extra" ]] || printf '\n%s\n' "$extra" >>"$f"
}

e2e_conf() {
    printf '%s\n' "${E2E_CONF[$1]:-$E2E_WORK/$1.toml}"
}

e2e_sock() {
    printf '%s/run/%s.sock\n' "$E2E_WORK" "$1"
}

# ---------------------------------------------------------------- driving bridge-ctl

# e2e_ctl SITE SECS ARGS...: run bridge-ctl ARGS inside SITE's namespace under a timeout.
e2e_ctl() {
    local site=$1 secs=$2 ns
    shift 2
    ns=$(e2e_ns "$site")
    ip netns exec "$ns" timeout -k 5 "$secs" "$BIN" "$@"
}

# e2e_up SITE [CONF]: `link up SITE --config CONF` (default: SITE's config); E2E_*
# hold the result. The (idempotent) `link down` is registered first, so a daemon
# that came up although the client failed is still stopped.
e2e_up() {
    local site=$1 conf=${2:-}
    [[ -n "$conf" ]] || conf=$(e2e_conf "$site")
    tb_defer e2e_ctl "$site" "$E2E_T_DOWN" link down --config "$conf"
    e2e_run e2e_ctl "$site" "$E2E_T_UP" link up --config "$conf"
    return "$E2E_RC"
}

# e2e_require_up SITE: e2e_up, checked; abort the test if the link does not come up.
e2e_require_up() {
    if e2e_up "$1"; then
        e2e_ok "link up $1 exits 0 (${E2E_STDOUT%%$'\n'*})"
    else
        local detail
        detail=$(_e2e_last_output)
        e2e_not_ok "link up $1 exits 0" "$detail"
        e2e_fatal "link $1 did not come up"
    fi
}

# e2e_down SITE: `link down SITE --config ...`; E2E_* hold the result.
e2e_down() {
    e2e_run e2e_ctl "$1" "$E2E_T_DOWN" link down --config "$(e2e_conf "$1")"
    return "$E2E_RC"
}

# e2e_check_up DESC SITE / e2e_check_down DESC SITE: link up/down, checked for exit 0.
# (Not `e2e_check DESC e2e_up ...`: e2e_up must run in this shell to register cleanup.)
e2e_check_up() {
    e2e_up "$2" || true
    e2e_expect_rc "$1" 0
}

e2e_check_down() {
    e2e_down "$2" || true
    e2e_expect_rc "$1" 0
}

# e2e_json SITE [COMMAND]: print `COMMAND SITE --json` (default: status; or leases).
e2e_json() {
    e2e_ctl "$1" "$E2E_T_STATUS" "${2:-status}" --config "$(e2e_conf "$1")" --json
}

# e2e_jq SITE EXPR [COMMAND]: evaluate the Python expression EXPR over SITE's status
# JSON (or COMMAND's, e.g. leases) `d` and print the result (None prints as "null").
# peer(NAME) is the peer object.
e2e_jq() {
    local json
    json=$(e2e_json "$1" "${3:-status}") || return 1
    # The JSON on stdin: a hub's status with a thousand peers is larger than one
    # command-line argument may be (128 KiB).
    python3 -c '
import json, sys
text = sys.stdin.read()
try:
    d = json.loads(text)
except ValueError:
    sys.exit("status --json did not print JSON: " + repr(text[:200]))
def peer(name):
    return next(p for p in d["peers"] if p["name"] == name)
try:
    v = eval(sys.argv[1])
except (KeyError, IndexError, TypeError, StopIteration) as e:
    sys.exit(f"status --json lacks what {sys.argv[1]!r} needs: {e!r}")
print("null" if v is None else json.dumps(v) if isinstance(v, (dict, list, bool)) else v)
' "$2" <<<"$json"
}

# e2e_counter SITE KEY: one of SITE's status counters.
e2e_counter() {
    e2e_jq "$1" "d[\"counters\"][\"$2\"]"
}

# e2e_peer SITE PEER FIELD: one field of one peer from status --json.
e2e_peer() {
    e2e_jq "$1" "peer(\"$2\")[\"$3\"]"
}

_e2e_peer_is_up() {
    [[ "$(e2e_peer "$1" "$2" state)" == "up" ]]
}

# e2e_peer_not_up SITE PEER: SITE's status answers and shows PEER in a state other than
# "up" (printed). A status call that fails makes this fail too: it is not "not up".
e2e_peer_not_up() {
    local state
    state=$(e2e_peer "$1" "$2" state) || return 1
    printf 'state %s\n' "$state"
    [[ "$state" != up ]]
}

# e2e_handshakes A B: the handshakes A counts with B plus those B counts with A
# (fails unless both status calls answer with a number).
e2e_handshakes() {
    local x y
    x=$(e2e_peer "$1" "$2" handshakes) && y=$(e2e_peer "$2" "$1" handshakes) &&
        [[ "$x" =~ ^[0-9]+$ && "$y" =~ ^[0-9]+$ ]] && printf '%s\n' "$((x + y))"
}

# e2e_renewed_since A B N: A and B completed more handshakes than N between
# them (see e2e_handshakes), for e2e_wait.
# shellcheck disable=SC2317 # called through e2e_wait
e2e_renewed_since() {
    local n
    n=$(e2e_handshakes "$1" "$2") && [[ "$3" =~ ^[0-9]+$ ]] && ((n > $3))
}

# e2e_counter_above SITE KEY N: SITE's counter KEY is above N (the status call
# answers), for e2e_wait.
# shellcheck disable=SC2317 # called through e2e_wait
e2e_counter_above() {
    local v
    v=$(e2e_counter "$1" "$2") && [[ "$v" =~ ^[0-9]+$ && "$3" =~ ^[0-9]+$ ]] && ((v > $3))
}

# e2e_wait_peer_up SITE PEER [SECS]: checked wait for peers[PEER].state == "up".
e2e_wait_peer_up() {
    e2e_wait "site $1 sees peer $2 up" "${3:-15}" _e2e_peer_is_up "$1" "$2"
}

# e2e_daemon_pid SITE: print the PID of SITE's daemon, the `pid` key of `status
# --json`. Fails unless there is one and it really lives in SITE's namespace.
e2e_daemon_pid() {
    local site=$1 ns pid
    ns=$(e2e_ns "$site")
    pid=$(e2e_jq "$site" 'd["pid"]' 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ "$(ip netns identify "$pid" 2>/dev/null)" == "$ns" ]] || return 1
    printf '%s\n' "$pid"
}

# e2e_pid_gone PID: true when PID no longer exists.
e2e_pid_gone() {
    ! kill -0 "$1" 2>/dev/null
}

# e2e_mac NS IFACE: the interface's MAC, lower case.
e2e_mac() {
    ip -n "$1" -o link show dev "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'
}

# e2e_capture_start NS IFACE FILE FILTER: tcpdump to FILE in the background (bounded
# by the test's time limit); waits until it listens. PID in $E2E_CAPTURE_PID.
e2e_capture_start() {
    local ns=$1 iface=$2 file=$3 filter=$4
    tb_need_cmd tcpdump tcpdump
    timeout "${E2E_TIME_LIMIT:-170}" ip netns exec "$ns" \
        tcpdump -i "$iface" -n -U -Z root -w "$file" "$filter" 2>"$file.log" &
    E2E_CAPTURE_PID=$!
    tb_defer tb_stop_pid "$E2E_CAPTURE_PID"
    tb_wait_until 10 "tcpdump listening on $iface" grep -q 'listening on' "$file.log"
}

# e2e_capture_stop: stop the capture (SIGINT through timeout) and wait for it.
e2e_capture_stop() {
    kill -INT "$E2E_CAPTURE_PID" 2>/dev/null || true
    wait "$E2E_CAPTURE_PID" 2>/dev/null || true
}

# e2e_capture_count FILE FILTER: packets in FILE matching FILTER (so far).
e2e_capture_count() {
    tcpdump -n -r "$1" "$2" 2>/dev/null | wc -l
}

# e2e_capture_seen FILE FILTER: FILE holds a packet matching FILTER.
e2e_capture_seen() {
    (($(e2e_capture_count "$1" "$2") > 0))
}

# e2e_capture_show FILE FILTER: the matching packets, as comment lines.
e2e_capture_show() {
    tcpdump -n -e -r "$1" "$2" 2>/dev/null | sed 's/^/#   /' | head -20
}

# e2e_need_iputils_arping VAR: the path of iputils' arping, whose options and output
# the tests use, into VAR. Debian's separate `arping` package is another tool with
# other options, and may own the `arping` on PATH; so the binary is looked up among
# the files of iputils-arping (installed when missing), then checked by its -V.
e2e_need_iputils_arping() {
    local var=$1 p
    tb_need_pkg iputils-arping
    for p in $(dpkg -L iputils-arping 2>/dev/null | grep -E '/s?bin/arping$' || true); do
        if [[ -x "$p" ]] && timeout 5 "$p" -V 2>&1 </dev/null | grep -q iputils; then
            printf -v "$var" '%s' "$p"
            return 0
        fi
    done
    tb_die "no iputils arping found among the files of package iputils-arping"
}

# e2e_ping SITE DST [PING-ARGS...]: ping from SITE's namespace (default 3 probes).
e2e_ping() {
    local site=$1 dst=$2 ns
    shift 2
    ns=$(e2e_ns "$site")
    if (($# == 0)); then
        set -- -c 3 -i 0.2 -W 2
    fi
    ip netns exec "$ns" timeout 60 ping -n "$@" "$dst"
}

# e2e_ping1 SITE DST: one probe, one second; for tb_wait_until.
e2e_ping1() {
    e2e_ping "$1" "$2" -c 1 -W 1
}

# e2e_schema SITE: check SITE's status --json against SPEC §6 (every key, right
# types); prints the problems and fails if there are any.
e2e_schema() {
    local json
    json=$(e2e_json "$1") || {
        echo "status --json failed"
        return 1
    }
    # The JSON in a file descriptor of its own (stdin is the script): a big
    # hub's status is larger than one argument may be.
    python3 - 3<<<"$json" <<'EOF'
import json, os, re, sys
problems = []
try:
    d = json.loads(os.fdopen(3).read())
except ValueError as e:
    print(f"not JSON: {e}")
    sys.exit(1)

def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)

def need(obj, key, pred, what, where):
    if not isinstance(obj, dict) or key not in obj:
        problems.append(f"{where}.{key}: missing")
    elif not pred(obj[key]):
        problems.append(f"{where}.{key}: expected {what}, got {obj[key]!r}")

is_str = lambda v: isinstance(v, str)
count = lambda v: is_int(v) and v >= 0
need(d, "name", is_str, "a string", "")
need(d, "version", lambda v: is_str(v) and v, "a non-empty string", "")
need(d, "interface", lambda v: isinstance(v, dict), "an object", "")
i = d.get("interface", {})
need(i, "name", is_str, "a string", "interface")
need(i, "mtu", count, "an integer", "interface")
need(i, "mac", lambda v: is_str(v) and re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", v.lower()),
     "a MAC address", "interface")
need(i, "addresses", lambda v: isinstance(v, list) and all(map(is_str, v)), "a list of strings",
     "interface")
need(d, "peers", lambda v: isinstance(v, list) and v, "a non-empty list", "")
for n, p in enumerate(d.get("peers") or []):
    w = f"peers[{n}]"
    need(p, "name", is_str, "a string", w)
    need(p, "endpoint", lambda v: v is None or is_str(v), "a string or null", w)
    need(p, "state", lambda v: v in ("connecting", "up", "down"), "connecting/up/down", w)
    need(p, "last_handshake_secs", lambda v: v is None or count(v), "an integer or null", w)
    for k in ("handshakes", "tx_frames", "rx_frames", "tx_bytes", "rx_bytes"):
        need(p, k, count, "a non-negative integer", w)
    need(p, "path_mtu", lambda v: is_int(v) and 576 <= v <= 9000, "an MTU", w)
    need(p, "transport", lambda v: v in ("udp", "tcp"), "udp/tcp", w)
    need(p, "macs", count, "a non-negative integer", w)
need(d, "role", lambda v: v in ("active", "standby"), "active/standby", "")
need(d, "partner",
     lambda v: v is None or (isinstance(v, dict)
                             and all(k in v for k in ("endpoint", "state", "leases_synced"))),
     "null or {endpoint, state, leases_synced}", "")
need(d, "counters", lambda v: isinstance(v, dict), "an object", "")
for k in ("rx_auth_failed", "rx_replayed", "rx_malformed", "arp_replies", "dhcp_replies",
          "fragmented", "reassembled", "handshake_rate_limited", "rx_unknown_peer",
          "storm_dropped", "guard_dropped", "loops_detected", "policy_dropped"):
    need(d.get("counters", {}), k, count, "a non-negative integer", "counters")
need(d, "leases", lambda v: isinstance(v, list), "a list", "")
for n, l in enumerate(d.get("leases") or []):
    w = f"leases[{n}]"
    need(l, "mac", is_str, "a string", w)
    need(l, "ip", is_str, "a string", w)
    need(l, "expires_in_secs", lambda v: is_int(v), "an integer", w)
print("\n".join(problems))
sys.exit(1 if problems else 0)
EOF
}

# e2e_ns_empty NS: no process lives in NS.
e2e_ns_empty() {
    [[ -z "$(ip netns pids "$1" 2>/dev/null)" ]]
}

# e2e_link_absent NS IFNAME: the interface does not exist in NS.
e2e_link_absent() {
    ! ip -n "$1" link show dev "$2" >/dev/null 2>&1
}

# e2e_no_addr NS ADDR: no interface in NS carries ADDR (any prefix length).
e2e_no_addr() {
    ! ip -n "$1" -o addr show | grep -Fq " $2/"
}

# e2e_no_route NS PREFIX: NS has no route for PREFIX.
e2e_no_route() {
    [[ -z "$(ip -n "$1" route show "$2" 2>/dev/null)" ]]
}

# e2e_nothing_left SITE LABEL ADDR ROUTE...: checks that SITE left no TAP, no
# address, no route and no socket file behind.
e2e_nothing_left() {
    local site=$1 label=$2 addr=$3 ns r
    shift 3
    ns=$(e2e_ns "$site")
    e2e_check "$label: no TAP tb-$site" e2e_link_absent "$ns" "tb-$site"
    e2e_check "$label: no address $addr" e2e_no_addr "$ns" "$addr"
    for r in "$@"; do
        e2e_check "$label: no route $r" e2e_no_route "$ns" "$r"
    done
    e2e_check "$label: no control socket file" test ! -e "$(e2e_sock "$site")"
}
