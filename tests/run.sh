#!/usr/bin/env bash
# The project's test command (README: `./tests/run.sh`, as root).
#
# 1. unit, property and integration tests (cargo test; the netlink, TAP and
#    UDP tests need root and run in private network namespaces);
# 2. the fuzz targets (tests/fuzz/run.sh): built with cargo-fuzz (installed when
#    missing), each run for TB_FUZZ_SECONDS (default 5) from its seed corpus;
# 3. the end-to-end tests in tests/e2e against the release binary.
#
# Set TB_E2E_ALL=0 to skip the slow packaging test (it builds a .deb).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "$(id -u)" -ne 0 ]]; then
    echo "error: the tests must run as root (they create network namespaces); run $0 as root" >&2
    exit 2
fi

echo "== cargo test"
cargo test --all-targets
cargo test --release --test tunnel_scale -- --ignored

echo "== fuzz targets"
./tests/fuzz/run.sh

echo "== release build"
cargo build --release --bins
export BRIDGE_CTL="$PWD/target/release/bridge-ctl"

echo "== end-to-end tests"
TB_E2E_ALL="${TB_E2E_ALL:-1}" ./tests/e2e/run_all.sh
