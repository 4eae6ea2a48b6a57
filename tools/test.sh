#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, every test (root tests included when
# run as root), benches compiled, and every fuzz target run for FUZZ_SECONDS (default 30).
#
# First it brings what the tests run beyond the Rust toolchain, only what is missing and only
# as root: Debian packages with apt-get (etcd-server etcd-client iperf3 iptables procps openssl
# iproute2 wireguard-go wireguard-tools) and `cargo install cargo-fuzz --locked`. Quiet when it works; a failed install
# prints its output and stops the run.
#
# Outside CI a missing tool or missing root makes the affected step print why and skip; with
# CI=true the same lack is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
ci=${CI:-false}

step() { printf '\n==> %s\n' "$*"; }
lack() {
    if [ "$ci" = true ]; then
        echo "FAIL: $* (required in CI)" >&2
        exit 1
    fi
    echo "SKIP: $*"
}

# Output of "$@" only when it fails, and then the run stops.
quietly() {
    local log
    log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then
        echo "FAIL: $* failed:" >&2
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
}

# Whether a command is on PATH or in an sbin directory (which the tests search too).
have() {
    command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

step "what the tests run"
# command:package for every program a test runs (grep the tests for Command::new, exec_checked
# and on_path before changing this list). The testbed pings and measures with weftctl's own
# code: no iputils-ping, ethtool or iperf3 for it; iperf3 is for `weftctl bench`'s test, and
# wireguard-go and wg for its userspace-peer row.
needs=(
    ip:iproute2 bridge:iproute2 ss:iproute2
    etcd:etcd-server etcdctl:etcd-client
    iperf3:iperf3
    wireguard-go:wireguard-go wg:wireguard-tools
    iptables:iptables iptables-save:iptables iptables-restore:iptables
    kill:procps
    openssl:openssl
)
missing=()
packages=()
for need in "${needs[@]}"; do
    if ! have "${need%%:*}"; then
        missing+=("${need%%:*}")
        case " ${packages[*]} " in
        *" ${need#*:} "*) ;;
        *) packages+=("${need#*:}") ;;
        esac
    fi
done
fuzz=true
have cargo-fuzz || fuzz=false
if [ ${#missing[@]} -eq 0 ] && $fuzz; then
    echo "all there"
elif [ "$(id -u)" != 0 ]; then
    what=()
    [ ${#missing[@]} -eq 0 ] || what+=("${missing[*]} (apt-get install ${packages[*]})")
    $fuzz || what+=("cargo-fuzz (cargo install cargo-fuzz --locked)")
    lack "not installed, and installing needs root: ${what[0]}${what[1]:+; ${what[1]}}"
else
    if [ ${#missing[@]} -gt 0 ]; then
        if ! command -v apt-get >/dev/null; then
            lack "not installed: ${missing[*]}, and no apt-get to install ${packages[*]}"
        else
            echo "installing ${packages[*]} (for ${missing[*]})"
            export DEBIAN_FRONTEND=noninteractive
            quietly apt-get update
            quietly apt-get install -y --no-install-recommends "${packages[@]}"
            for cmd in "${missing[@]}"; do
                if ! have "$cmd"; then
                    echo "FAIL: $cmd is still missing after apt-get install ${packages[*]}" >&2
                    exit 1
                fi
            done
        fi
    fi
    if ! $fuzz; then
        echo "installing cargo-fuzz"
        quietly cargo install cargo-fuzz --locked
        have cargo-fuzz || lack "cargo install put cargo-fuzz where PATH does not look (\$CARGO_HOME/bin)"
    fi
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "benches compile"
cargo bench --workspace --no-run --quiet

step "fuzz targets, ${FUZZ_SECONDS}s each"
if command -v cargo-fuzz >/dev/null; then
    (
        cd fuzz
        export RUSTC_BOOTSTRAP=1
        cargo fuzz build
        for target in $(cargo fuzz list); do
            echo "--- fuzz $target"
            # Run on a copy of the committed seed corpus so CI does not grow the tree.
            work=$(mktemp -d)
            cp -r "corpus/$target/." "$work/" 2>/dev/null || true
            cargo fuzz run "$target" "$work" -- \
                -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 2>&1 |
                grep -E '^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|INFO: Done)' || true
            rm -rf "$work"
            # libFuzzer also saves inputs that merely ran slowly (slow-unit-*, more than 10 s:
            # a loaded machine); only crashes, leaks, timeouts and out-of-memory fail the run.
            for slow in "artifacts/$target"/slow-unit-*; do
                [ -e "$slow" ] || continue
                echo "note: $target: a slow input (kept as fuzz/$slow)"
            done
            if [ -d "artifacts/$target" ] &&
                [ -n "$(find "artifacts/$target" -type f ! -name 'slow-unit-*')" ]; then
                echo "FAIL: fuzz target $target found a crash: fuzz/artifacts/$target" >&2
                exit 1
            fi
        done
    )
else
    lack "cargo-fuzz is not installed (cargo install cargo-fuzz)"
fi

step "tests"
if [ "$(id -u)" != 0 ]; then
    lack "not root: tests that need TUN, netns or etcd will skip"
fi
# The testbed tests (tools/tests) run target/debug/weftd and target/debug/weftctl: build every
# binary first, so they never test a stale weftd.
cargo build --workspace --bins --quiet
cargo test --workspace --doc --quiet
# Last, so that its summary line closes the run.
cargo nextest run --workspace --no-fail-fast
