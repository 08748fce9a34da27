#!/usr/bin/env bash
#
# run.sh — build every fuzz target of this cargo-fuzz crate and run each one briefly,
# starting from its seed corpus (tests/fuzz/corpus/TARGET). tests/run.sh runs it.
#
#   tests/fuzz/run.sh [TARGET...]      default: every target `cargo fuzz list` names
#
# TB_FUZZ_SECONDS (default 5): how long each target runs (libFuzzer -max_total_time).
#
# cargo-fuzz passes rustc flags that only nightly accepts (-Zsanitizer, ...); the stable
# toolchain takes them with RUSTC_BOOTSTRAP=1, set here for these builds only.
# cargo-fuzz is installed with `cargo install cargo-fuzz --locked` when missing. The
# targets are built optimised, with debug assertions and overflow checks, without a
# sanitizer (the code they reach has no unsafe: Cargo.toml denies unsafe_code, only the
# socket and TAP syscalls allow it) and in 16 codegen units, not cargo-fuzz's one: on
# two cores that builds the tapbridge crate, the long pole, in parallel, at a small
# cost in fuzzing speed that a smoke run does not notice. Build output goes to
# tests/fuzz/target (CARGO_TARGET_DIR moves it). What libFuzzer finds goes to a temporary
# directory, never into the committed corpus. A panic, a failed assertion or a timeout
# fails the run and leaves the input in tests/fuzz/artifacts/TARGET/ (gitignored);
# replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz -s none --codegen-units 16 TARGET FILE
# A target without a seed corpus fails too. Exit status: 0 if every target built and
# ran clean, 1 if not.
set -euo pipefail
cd "$(dirname "$0")/../.."

export RUSTC_BOOTSTRAP=1
secs=${TB_FUZZ_SECONDS:-5}
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || {
    echo "error: TB_FUZZ_SECONDS must be a positive number of seconds, not '$secs'" >&2
    exit 2
}
opts=(--fuzz-dir tests/fuzz --sanitizer none --codegen-units 16)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "# installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir tests/fuzz)
fi
((${#targets[@]} > 0)) || {
    echo "error: cargo fuzz list names no fuzz targets" >&2
    exit 1
}

start=$SECONDS
if (($# > 0)); then
    for t in "${targets[@]}"; do
        cargo fuzz build "${opts[@]}" "$t"
    done
else
    cargo fuzz build "${opts[@]}"
fi
echo "# built ${#targets[@]} fuzz targets in $((SECONDS - start)) s"

# The binaries just built (cargo fuzz run would call cargo build again for each).
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=${CARGO_TARGET_DIR:-tests/fuzz/target}/$host/release
work=$(mktemp -d /tmp/tb-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=0
for t in "${targets[@]}"; do
    seeds=tests/fuzz/corpus/$t
    nseeds=0
    [[ ! -d "$seeds" ]] || nseeds=$(find "$seeds" -maxdepth 1 -type f ! -name '.*' | wc -l)
    if ((nseeds == 0)); then
        echo "not ok - fuzz $t: no seed corpus in $seeds"
        failed=1
        continue
    fi
    mkdir "$work/$t"
    mkdir -p "tests/fuzz/artifacts/$t"
    rc=0
    "$bin_dir/$t" -artifact_prefix="tests/fuzz/artifacts/$t/" -max_total_time="$secs" \
        -print_final_stats=1 "$work/$t" "$seeds" >"$work/$t.log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
    if ((rc == 0)); then
        echo "ok - fuzz $t: ${runs:-?} runs in ${secs} s from $nseeds seeds"
    else
        echo "not ok - fuzz $t (exit $rc)"
        tail -n 40 "$work/$t.log" | sed 's/^/#   /'
        failed=1
    fi
done
exit "$failed"
