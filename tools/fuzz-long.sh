#!/usr/bin/env bash
# The long fuzzing run (issue 6): every cargo-fuzz target for FUZZ_MINUTES (default 10) on the
# committed corpus, which grows in place and is then minimised (`cargo fuzz cmin`), so what the
# run found is kept for CI's short runs. Stops at the first crash; the reproducer is in
# fuzz/artifacts/<target>/ (replay: `cargo fuzz run <target> <file>`).
#
#   bash tools/fuzz-long.sh [target ...]      # all targets when none is named
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

minutes=${FUZZ_MINUTES:-10}
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2; exit 1; }
cargo fuzz build
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)

printf '%-14s %8s %12s %10s %10s\n' target minutes executions corpus_in corpus_out
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    before=$(find "corpus/$target" -type f | wc -l)
    log=$(mktemp)
    if ! cargo fuzz run "$target" "corpus/$target" -- \
        -max_total_time=$((minutes * 60)) -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "FAIL: $target crashed; reproducer in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rm -f "$log"
    cargo fuzz cmin "$target" "corpus/$target" >/dev/null 2>&1
    after=$(find "corpus/$target" -type f | wc -l)
    printf '%-14s %8s %12s %10s %10s\n' "$target" "$minutes" "${execs:-?}" "$before" "$after"
done
