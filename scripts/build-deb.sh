#!/usr/bin/env bash
#
# build-deb.sh: build the Debian package of tapbridge.
#
#   scripts/build-deb.sh [CARGO-DEB OPTIONS...]
#   scripts/build-deb.sh --output /tmp/pkgs/ --deb-version 0.1.0-2
#
# Builds the release binary, generates what the package ships but the source tree does
# not hold (the man pages bridge-ctl(8), bridge-ctl-*(8) and tapbridge.toml(5), and the bash, zsh and fish
# completions, with `bridge-ctl generate-manpages` / `generate-completions` into
# target/assets/), then runs `cargo deb --no-build` with the given options (default
# output: target/debian/). cargo-deb is installed with `cargo install` when missing.
# Prints the path of the .deb on the last line.

set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install --locked cargo-deb
fi
cargo build --release --locked --bin bridge-ctl
assets=target/assets
rm -rf "$assets"
target/release/bridge-ctl generate-manpages "$assets/man" >/dev/null
target/release/bridge-ctl generate-completions "$assets/completions" >/dev/null
cargo deb --no-build "$@"
