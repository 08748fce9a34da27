# shellcheck shell=bash
#
# netns.sh — a small library for network-namespace rigs (demo lab, benchmark).
#
# Source it from a script that runs with `set -euo pipefail`. It promises:
#   * every namespace it creates has a unique name (prefix + random suffix);
#   * everything registered with tb_defer (namespaces, processes, temp dirs) is
#     undone in reverse order exactly once, on normal exit, on failure, and on
#     Ctrl-C / SIGTERM (tb_install_traps);
#   * every wait is bounded (tb_wait_until) and says what it waited for;
#   * nothing is ever added to the root namespace: links are created directly
#     inside the namespaces (`ip -n NS link add ... peer ... netns NS2`);
#   * processes are stopped by PID only, never by name.

# Guard against double sourcing.
if [[ -n "${TB_NETNS_LIB_LOADED:-}" ]]; then
    return 0
fi
TB_NETNS_LIB_LOADED=1

# Cleanup actions, each a shell-quoted command line, run last-in first-out.
TB_CLEANUP=()
# PID of the command tb_run is waiting for (stopped first on a signal).
TB_CHILD=""
TB_CLEANED=0
# Set to 1 to keep namespaces for inspection after the script ends.
TB_KEEP="${TB_KEEP:-0}"

tb_heading() {
    printf '\n\033[1m== %s\033[0m\n' "$*"
}

tb_info() {
    printf '   %s\n' "$*"
}

tb_warn() {
    printf 'warning: %s\n' "$*" >&2
}

# tb_die MESSAGE...: one clear sentence on stderr, exit 1 (cleanup runs via the EXIT trap).
tb_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

tb_require_root() {
    if [[ "$(id -u)" -ne 0 ]]; then
        printf 'error: %s must run as root (it creates network namespaces); run %s as root\n' \
            "$(basename "$0")" "$0" >&2
        exit 2
    fi
}

# tb_suffix: a short random hex suffix for unique names.
tb_suffix() {
    od -An -N3 -tx1 /dev/urandom | tr -d ' \n'
}

# tb_defer CMD [ARGS...]: register a cleanup action (quoted safely, run via eval).
tb_defer() {
    local quoted
    printf -v quoted '%q ' "$@"
    TB_CLEANUP+=("$quoted")
}

# tb_cleanup: run all deferred actions in reverse order, ignoring their failures.
tb_cleanup() {
    if [[ "$TB_CLEANED" -eq 1 ]]; then
        return 0
    fi
    TB_CLEANED=1
    if [[ "$TB_KEEP" == "1" ]]; then
        tb_warn "TB_KEEP=1: leaving namespaces and files in place"
        return 0
    fi
    local i
    for ((i = ${#TB_CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${TB_CLEANUP[i]}" >/dev/null 2>&1 || true
    done
    TB_CLEANUP=()
}

tb_on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    tb_cleanup
    exit "$rc"
}

tb_on_signal() {
    local sig=$1
    trap - EXIT INT TERM
    printf '\ninterrupted (%s): cleaning up\n' "$sig" >&2
    if [[ -n "$TB_CHILD" ]]; then
        tb_stop_pid "$TB_CHILD"
    fi
    tb_cleanup
    if [[ "$sig" == "INT" ]]; then
        exit 130
    fi
    exit 143
}

# tb_install_traps: clean up on EXIT, INT and TERM. Call once, early.
tb_install_traps() {
    trap tb_on_exit EXIT
    trap 'tb_on_signal INT' INT
    trap 'tb_on_signal TERM' TERM
}

# tb_run CMD [ARGS...]: run CMD and return its status, staying interruptible.
# Bash defers (and, when the child catches SIGINT itself as ping does, skips) an
# INT trap while a foreground command runs; `wait` on a background child is
# interrupted at once, so Ctrl-C always reaches the cleanup trap.
tb_run() {
    local rc=0
    "$@" &
    TB_CHILD=$!
    wait "$TB_CHILD" || rc=$?
    TB_CHILD=""
    return "$rc"
}

# tb_need_cmd CMD PACKAGE: install PACKAGE with apt-get, quietly, if CMD is missing.
tb_need_cmd() {
    local cmd=$1 pkg=$2
    if command -v "$cmd" >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        tb_die "'$cmd' is missing and apt-get is not available; install package '$pkg' yourself"
    fi
    tb_info "installing $pkg (for $cmd)"
    if ! DEBIAN_FRONTEND=noninteractive tb_run timeout 600 apt-get install -y -q \
        -o DPkg::Lock::Timeout=300 --no-install-recommends "$pkg" >/dev/null; then
        tb_die "could not install package '$pkg' with apt-get"
    fi
    command -v "$cmd" >/dev/null 2>&1 || tb_die "package '$pkg' installed but '$cmd' is still missing"
}

# tb_pkg_installed PKG: true if the Debian package PKG is installed.
tb_pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# tb_need_pkg PKG...: install, with apt-get, quietly, those of the Debian packages
# that are not installed. For tools whose options or output a script relies on, the
# package is what counts: another package may provide a command of the same name.
tb_need_pkg() {
    local pkg need=()
    for pkg in "$@"; do
        tb_pkg_installed "$pkg" || need+=("$pkg")
    done
    ((${#need[@]} > 0)) || return 0
    command -v apt-get >/dev/null 2>&1 ||
        tb_die "package(s) ${need[*]} missing and apt-get is not available; install them yourself"
    tb_info "installing ${need[*]}"
    if ! DEBIAN_FRONTEND=noninteractive tb_run timeout 600 apt-get install -y -q \
        -o DPkg::Lock::Timeout=300 --no-install-recommends "${need[@]}" >/dev/null; then
        tb_die "could not install package(s) ${need[*]} with apt-get"
    fi
}

# tb_wait_until TIMEOUT_SECS WHAT CMD [ARGS...]: poll CMD every 0.1 s until it
# succeeds; fail (return 1, with a message naming WHAT) after TIMEOUT_SECS.
tb_wait_until() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    while ! tb_run "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            tb_warn "timed out after ${timeout}s waiting for: $what"
            return 1
        fi
        sleep 0.1
    done
}

# tb_ns_add PREFIX: create namespace PREFIX-<suffix> with lo up, register its
# removal, and print its name. Call as: ns=$(tb_ns_add demo-a) is NOT possible
# (a subshell cannot register cleanup), so the name goes into the variable named
# by the second argument: tb_ns_add demo-a NS_A
tb_ns_add() {
    local prefix=$1 var=$2 name
    name="${prefix}-${TB_SUFFIX}"
    ip netns add "$name" || tb_die "could not create network namespace $name"
    tb_defer tb_ns_del "$name"
    ip -n "$name" link set lo up
    printf -v "$var" '%s' "$name"
}

# tb_ns_del NAME: stop every process still living in NAME (by PID), then delete it.
tb_ns_del() {
    local ns=$1 pid
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
        tb_stop_pid "$pid"
    done
    ip netns del "$ns" 2>/dev/null || true
}

# tb_veth NS1 IF1 NS2 IF2: a veth pair created inside NS1 with its peer in NS2,
# both up. It never exists in the root namespace.
tb_veth() {
    local ns1=$1 if1=$2 ns2=$3 if2=$4
    ip -n "$ns1" link add "$if1" type veth peer name "$if2" netns "$ns2" ||
        tb_die "could not create veth pair $ns1/$if1 <-> $ns2/$if2"
    ip -n "$ns1" link set "$if1" up
    ip -n "$ns2" link set "$if2" up
}

# tb_stop_pid PID: SIGTERM, wait up to 5 s, then SIGKILL. Only for PIDs we started.
tb_stop_pid() {
    local pid=$1 i
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# tb_cpu_ticks PID: utime+stime of PID (all its threads) in clock ticks.
tb_cpu_ticks() {
    local pid=$1 stat rest
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    # Field 2 (comm) may contain spaces; everything after the last ')' is fixed.
    rest=${stat##*) }
    # shellcheck disable=SC2086 # word splitting of the numeric fields is the point
    set -- $rest
    # After comm: $1 = state (field 3), so utime (field 14) is ${12}, stime ${13}.
    printf '%s\n' "$((${12} + ${13}))"
}

# tb_repo_root: the repository root (the parent of scripts/).
tb_repo_root() {
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    (cd "$here/../.." && pwd)
}

# tb_find_cargo: print a usable cargo path. Under sudo the invoking user's
# ~/.cargo/bin is usually not on PATH, so look there too.
tb_find_cargo() {
    local home
    if command -v cargo >/dev/null 2>&1; then
        command -v cargo
        return 0
    fi
    if [[ -n "${SUDO_USER:-}" ]]; then
        home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        if [[ -x "$home/.cargo/bin/cargo" ]]; then
            printf '%s\n' "$home/.cargo/bin/cargo"
            return 0
        fi
    fi
    if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        printf '%s\n' "$HOME/.cargo/bin/cargo"
        return 0
    fi
    return 1
}

# tb_build_release VAR: build target/release/bridge-ctl and store its path in VAR.
# BRIDGE_CTL=/path/to/bridge-ctl skips the build. Under sudo the build runs as
# the invoking user, so target/ does not become root-owned.
tb_build_release() {
    local var=$1 root cargo bin
    if [[ -n "${BRIDGE_CTL:-}" ]]; then
        [[ -x "$BRIDGE_CTL" ]] || tb_die "BRIDGE_CTL=$BRIDGE_CTL is not an executable file"
        printf -v "$var" '%s' "$BRIDGE_CTL"
        return 0
    fi
    root=$(tb_repo_root)
    cargo=$(tb_find_cargo) || tb_die "cargo not found (install Rust, or set BRIDGE_CTL=/path/to/bridge-ctl)"
    if [[ -n "${SUDO_USER:-}" && "$SUDO_USER" != "root" ]]; then
        tb_run sudo -u "$SUDO_USER" -H "$cargo" build --release --quiet \
            --manifest-path "$root/Cargo.toml" --bin bridge-ctl ||
            tb_die "cargo build --release failed"
    else
        tb_run "$cargo" build --release --quiet --manifest-path "$root/Cargo.toml" --bin bridge-ctl ||
            tb_die "cargo build --release failed"
    fi
    bin="${CARGO_TARGET_DIR:-$root/target}/release/bridge-ctl"
    [[ -x "$bin" ]] || tb_die "build finished but $bin is missing"
    printf -v "$var" '%s' "$bin"
}

# tb_bridge_ctl VAR: tb_build_release VAR, with a heading saying which it does and
# the path it settled on (the scripts' first step).
tb_bridge_ctl() {
    if [[ -n "${BRIDGE_CTL:-}" ]]; then
        tb_heading "Using BRIDGE_CTL"
    else
        tb_heading "Building bridge-ctl (cargo build --release)"
    fi
    tb_build_release "$1"
    tb_info "${!1}"
}

# tb_build_example VAR NAME [debug]: examples/NAME.rs (a test or benchmark tool,
# not installed) into VAR: $TB_EXAMPLE_DIR/NAME when set (e.g. prebuilt), else
# built with `cargo build --release --example NAME` (with `debug`: the debug build,
# which `cargo test --all-targets` has already made, so a test costs no release
# build of the dev-dependencies).
tb_build_example() {
    local var=$1 name=$2 profile=${3:-release} root cargo bin args=()
    if [[ -n "${TB_EXAMPLE_DIR:-}" ]]; then
        bin="$TB_EXAMPLE_DIR/$name"
        [[ -x "$bin" ]] || tb_die "TB_EXAMPLE_DIR has no executable $name"
        printf -v "$var" '%s' "$bin"
        return 0
    fi
    root=$(tb_repo_root)
    cargo=$(tb_find_cargo) || tb_die "cargo not found (install Rust, or set TB_EXAMPLE_DIR)"
    [[ "$profile" == debug ]] || args+=(--release)
    if [[ -n "${SUDO_USER:-}" && "$SUDO_USER" != "root" ]]; then
        tb_run sudo -u "$SUDO_USER" -H "$cargo" build "${args[@]}" --quiet \
            --manifest-path "$root/Cargo.toml" --example "$name" ||
            tb_die "cargo build --example $name failed"
    else
        tb_run "$cargo" build "${args[@]}" --quiet --manifest-path "$root/Cargo.toml" \
            --example "$name" || tb_die "cargo build --example $name failed"
    fi
    bin="${CARGO_TARGET_DIR:-$root/target}/$profile/examples/$name"
    [[ -x "$bin" ]] || tb_die "build finished but $bin is missing"
    printf -v "$var" '%s' "$bin"
}

# A suffix shared by every namespace of one run.
TB_SUFFIX="$(tb_suffix)"
