#!/usr/bin/env bash
#
# run_all.sh — run the end-to-end tests (as root) and summarise.
#
#   tests/e2e/run_all.sh [TEST...]     (as root) e.g. run_all.sh host_mode lifecycle
#
# Without arguments it runs every tests/e2e/*.sh except the *lib.sh libraries and itself; the
# packaging and NAT-hook tests (deb.sh, nat_hooks.sh) only with TB_E2E_ALL=1. Unless
# BRIDGE_CTL is set, it first runs `cargo build --release` once (so no test uses a
# stale binary) and hands the result to every test. Each test runs under a hard
# time limit (E2E_RUN_TIMEOUT, default 240 s); a test that needs longer says so with its
# own watchdog's default, a line `: "${E2E_TIME_LIMIT:=SECONDS}"` (tests/e2e/lib.sh), and
# then gets SECONDS + 60, so that its watchdog fires first and it cleans up after itself
# (deb.sh: building the .deb on a fresh machine). The summary uses the tests' own format
# (tests/e2e/lib.sh): one ok / not ok line per test. Exit status: 0 if every test
# passed, 1 if any failed, 2 on usage errors.

set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$HERE/lib.sh"

case "${1:-}" in
-h | --help)
    sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

tb_require_root

tests=()
if (($# > 0)); then
    for t in "$@"; do
        t=${t%.sh}
        [[ -f "$HERE/$t.sh" && "$t" != lib && "$t" != *_lib && "$t" != run_all ]] || {
            printf 'error: no such end-to-end test: %s\n' "$t" >&2
            exit 2
        }
        tests+=("$HERE/$t.sh")
    done
else
    for f in "$HERE"/*.sh; do
        case "$(basename "$f")" in
        lib.sh | *_lib.sh | run_all.sh) continue ;;
        nat_hooks.sh | deb.sh)
            [[ "${TB_E2E_ALL:-0}" == 1 ]] || continue
            ;;
        esac
        tests+=("$f")
    done
fi

tb_build_release BRIDGE_CTL
export BRIDGE_CTL
printf '# bridge-ctl: %s\n' "$BRIDGE_CTL"

default_limit=${E2E_RUN_TIMEOUT:-240}
# test_limit FILE: FILE's hard limit: the default, or more if its watchdog asks for more.
test_limit() {
    local own
    # shellcheck disable=SC2016 # the $ and braces are the test's text, not expansions
    own=$(sed -n 's/^: "${E2E_TIME_LIMIT:=\([0-9][0-9]*\)}".*/\1/p' "$1" | head -n 1)
    if [[ -n "$own" ]] && ((own + 60 > default_limit)); then
        echo $((own + 60))
    else
        echo "$default_limit"
    fi
}
results=()
for t in "${tests[@]}"; do
    name=$(basename "$t" .sh)
    limit=$(test_limit "$t")
    printf '\n# ==== %s\n' "$name"
    ((limit == default_limit)) || printf '# %s: time limit %ss (its own)\n' "$name" "$limit"
    start=$SECONDS
    rc=0
    tb_run timeout -k 30 "$limit" bash "$t" </dev/null || rc=$?
    took=$((SECONDS - start))
    if [[ "$rc" -eq 0 ]]; then
        results+=("0 $name (${took}s)")
    else
        [[ "$rc" -ne 124 ]] || printf '# %s: killed after %ss\n' "$name" "$limit"
        results+=("1 $name (exit $rc, ${took}s)")
    fi
done

printf '\n# ==== summary\n'
for r in "${results[@]}"; do
    if [[ "${r%% *}" == 0 ]]; then
        e2e_ok "${r#* }"
    else
        e2e_not_ok "${r#* }"
    fi
done
e2e_print_summary
((E2E_FAILED == 0))
