#!/usr/bin/env bash
# Where the time goes on one `weftctl bench` configuration and workload (tcp1, the default, or
# udp1400): syscalls per GB moved, by process (every raw_syscalls:sys_enter event; perf's
# own calls left out), and a system-wide cpu-clock profile by process and by symbol. Each is
# one bench run of the workload; the counts cover the whole run (testbed set-up included, a few
# thousand calls), the GB are those the receiver got.
#
#   tools/profile.sh CONFIG [SECONDS] [WORKLOAD]    e.g. tools/profile.sh weft-udp-poll-1t 10
#
# CONFIG is a bench configuration (kernel-vxlan, forwarder, weft-{udp,vxlan}-{uring,poll}-{1,2}t).
# Needs root, perf, iperf3 and a release build (cargo build --release -p engine -p weftctl).
# Leaves its files in $PROFILE_DIR (default: a new directory under /tmp) and says where.
set -euo pipefail
cd "$(dirname "$0")/.."

config=${1:-}
seconds=${2:-10}
workload=${3:-tcp1}
if [ -z "$config" ]; then
    echo "usage: tools/profile.sh CONFIG [SECONDS] [tcp1|udp1400]; CONFIG is a weftctl bench configuration, e.g. weft-udp-poll-1t" >&2
    exit 2
fi
case "$workload" in
tcp1 | udp1400) ;;
*)
    echo "WORKLOAD must be tcp1 or udp1400, not $workload" >&2
    exit 2
    ;;
esac
weftctl=target/release/weftctl
if [ ! -x "$weftctl" ] || [ ! -x target/release/weftd ]; then
    echo "no release build: run cargo build --release -p engine -p weftctl" >&2
    exit 2
fi
if ! command -v perf >/dev/null; then
    echo "perf is not installed (apt-get install linux-perf)" >&2
    exit 2
fi
out=${PROFILE_DIR:-$(mktemp -d /tmp/weft-profile.XXXXXX)}
mkdir -p "$out"

bench() { # $1: a name for the files; the rest: perf record's arguments
    local name=$1
    shift
    perf record -q -a "$@" -o "$out/$name.data" -- \
        "$weftctl" bench --only "$config" --workloads "$workload" --reps 1 --seconds "$seconds" \
        --json "$out/$name.json" >"$out/$name.txt" 2>&1
}

# GB received by iperf3 in the run whose JSON is $1.
gigabytes() {
    python3 - "$1" "$seconds" "$workload" <<'EOF'
import json, sys
path, seconds, workload = sys.argv[1], float(sys.argv[2]), sys.argv[3]
rows = json.load(open(path))["rows"]
figures = {f["metric"]: f["median"] for f in rows[0]["figures"]}
if workload == "tcp1":
    rate = figures["tcp1_gbit_s"] and figures["tcp1_gbit_s"] / 8
else:
    rate = figures["udp1400_rx_kpps"] and figures["udp1400_rx_kpps"] * 1e3 * 1400 / 1e9
if rate is None:
    sys.exit(f"the {workload} run failed: see the .txt file next to {path}")
print(f"{rate * seconds:.3f}")
EOF
}

echo "profile of $config, $workload for $seconds s; files in $out"

bench syscalls -e raw_syscalls:sys_enter
gb=$(gigabytes "$out/syscalls.json")
echo
echo "syscalls per GB moved ($gb GB in the syscall run), by process name (both nodes' together):"
perf script -i "$out/syscalls.data" -F comm 2>/dev/null | awk '$1 != "perf" { print $1 }' |
    sort | uniq -c | sort -rn | head -6 | awk -v gb="$gb" '{ printf "  %-16s %12.0f\n", $2, $1 / gb }'

bench cpu -e cpu-clock -F 2000
gb=$(gigabytes "$out/cpu.json")
echo
echo "cpu-clock samples by process ($gb GB in the profile run):"
perf report -i "$out/cpu.data" --stdio --sort comm 2>/dev/null | grep -E '^ +[0-9]' | head -8
echo
echo "hottest symbols (process, symbol):"
perf report -i "$out/cpu.data" --stdio --sort comm,sym 2>/dev/null | grep -E '^ +[0-9]' | head -25
