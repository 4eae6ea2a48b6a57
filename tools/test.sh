#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, every test (root tests included when
# run as root), benches compiled, and every fuzz target run for FUZZ_SECONDS (default 30).
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
            if [ -d "artifacts/$target" ] && [ -n "$(ls -A "artifacts/$target")" ]; then
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
