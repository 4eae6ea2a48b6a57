#!/usr/bin/env bash
# Issue 14's AF_XDP spike, measured against weftd and kernel VXLAN in one run.
#
# Two namespaces joined by one veth pair (xdpsp-<pid>-a, xdpsp-<pid>-b). Node b always runs
# the kernel's VXLAN device set up as flanneld sets up flannel.1 (id 1, dstport 8472,
# nolearning, udpcsum; tools/src/testbed/mod.rs setup_kernel_vxlan). Node a runs, in turn:
#   kernel     the same kernel VXLAN device
#   weftd      weftd --backend vxlan in static mode (its defaults: poll driver, 2 pump threads)
#   xdp-busy   xdp-spike, busy-polling without ever sleeping
#   xdp-50us   xdp-spike, busy-polling 50 us after the last packet, then poll(2)
# Node a's overlay address is 10.244.1.0 (on its TUN / flannel.1), node b's 10.244.2.0.
# Both veths run with transmit checksum offload off (TX_OFFLOAD=on keeps it; the spike's TCP
# then fails): the kernel completes every checksum before the veth. A frame redirected to
# AF_XDP leaves its skb behind, so a partial inner checksum from the kernel peer would reach
# the TUN unfinished (see README.md).
#
# Per round and configuration: ping (200 x 10 ms, median RTT), a TCP request/response echo
# (1 byte each way, TCP_NODELAY, median), TCP 1 stream a->b and b->a (iperf3, 3 s), UDP 1400 B
# at -b 0 a->b and b->a (iperf3, 3 s, received pps). ROUNDS rounds (default 3) alternate the
# configurations; the table is the medians.
#
# Usage (root): CARGO_TARGET_DIR=/work/target-xdp bash tools/xdp-spike/bench.sh [ROUNDS] [CONFIGS]
# It expects release builds of xdp-spike and weftd in $CARGO_TARGET_DIR/release (it builds
# them when missing). Namespaces and processes are removed on exit, also on failure.
set -euo pipefail

ROUNDS=${1:-3}
CONFIGS=${2:-"kernel weftd xdp-busy xdp-50us"}
SECS=${SECS:-3}
TX_OFFLOAD=${TX_OFFLOAD:-off}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
if [[ ! -x $BIN/xdp-spike || ! -x $BIN/weftd ]]; then
    (cd "$ROOT" && cargo build --release -p xdp-spike -p engine)
fi

P=xdpsp-$$
A=$P-a
B=$P-b
WORK=$(mktemp -d /tmp/$P.XXXX)
RESULTS=$WORK/results.tsv
PIDS=()
MAC_A=02:00:00:00:00:01
MAC_B=02:00:00:00:00:02
VTEP_A=0e:00:00:00:00:01
VTEP_B=0e:00:00:00:00:02
IP_A=192.168.250.1
IP_B=192.168.250.2
OVL_A=10.244.1.0
OVL_B=10.244.2.0

cleanup() {
    if [[ -n ${OVERLAY_PID:-} ]]; then
        kill "$OVERLAY_PID" 2>/dev/null || true
        wait "$OVERLAY_PID" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ina() { ip netns exec "$A" "$@"; }
inb() { ip netns exec "$B" "$@"; }

# Waits until $2 appears in file $1 (10 s).
wait_line() {
    for _ in $(seq 100); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "no '$2' in $1:" >&2
    cat "$1" >&2
    return 1
}

# flannel.1 on node $1 (a|b) towards the other node.
kernel_vxlan() {
    local ns=$1 ip=$2 vtep=$3 own=$4 peer_vtep=$5 peer_ip=$6 peer_ovl=$7 peer_net=$8
    ip -n "$ns" link add flannel.1 type vxlan id 1 local "$ip" dev veth0 dstport 8472 nolearning udpcsum
    ip -n "$ns" link set flannel.1 address "$vtep" mtu 1450
    ip -n "$ns" addr add "$own/32" dev flannel.1
    ip -n "$ns" link set flannel.1 up
    ip -n "$ns" neigh replace "$peer_ovl" lladdr "$peer_vtep" dev flannel.1 nud permanent
    ip netns exec "$ns" bridge fdb append "$peer_vtep" dev flannel.1 dst "$peer_ip"
    ip -n "$ns" route replace "$peer_net" via "$peer_ovl" dev flannel.1 onlink
}

setup() {
    ip netns add "$A"
    ip netns add "$B"
    ip -n "$A" link set lo up
    ip -n "$B" link set lo up
    ip link add veth0 netns "$A" address $MAC_A type veth peer name veth0 netns "$B" address $MAC_B
    ip -n "$A" addr add $IP_A/24 dev veth0
    ip -n "$B" addr add $IP_B/24 dev veth0
    ip -n "$A" link set veth0 up
    ip -n "$B" link set veth0 up
    ina "$BIN/xdp-spike" tx-offload veth0 "$TX_OFFLOAD"
    inb "$BIN/xdp-spike" tx-offload veth0 "$TX_OFFLOAD"
    kernel_vxlan "$B" $IP_B $VTEP_B $OVL_B $VTEP_A $IP_A $OVL_A 10.244.1.0/24
    echo "{\"subnet\": \"10.244.2.0/24\", \"public_ip\": \"$IP_B\", \"backend\": \"vxlan\", \"vtep_mac\": \"$VTEP_B\"}" > "$WORK/peers.json"
    # Background processes are started with `ip netns exec` itself (it execs the program), not
    # through ina/inb, so that $! is the program and killing it by PID stops it.
    ip netns exec "$B" iperf3 -s -p 5201 > "$WORK/iperf3-server.log" 2>&1 &
    PIDS+=($!)
    ip netns exec "$B" python3 -c "$ECHO_SERVER" > "$WORK/echo-server.log" 2>&1 &
    PIDS+=($!)
    sleep 0.3
}

ECHO_SERVER='
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen(4)
while True:
    c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = c.recv(1)
        if not b: break
        c.sendall(b)
    c.close()
'
ECHO_CLIENT='
import socket, sys, time, statistics
c = socket.create_connection((sys.argv[1], 7000)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
ts = []
for i in range(2000):
    t = time.perf_counter_ns(); c.sendall(b"x"); c.recv(1); ts.append(time.perf_counter_ns() - t)
print(statistics.median(ts[100:]) / 1000)
'

# Starts configuration $1 on node a; sets OVERLAY_PID (empty for the kernel).
start_a() {
    OVERLAY_PID=
    case $1 in
    kernel)
        kernel_vxlan "$A" $IP_A $VTEP_A $OVL_A $VTEP_B $IP_B $OVL_B 10.244.2.0/24
        ;;
    weftd)
        ip netns exec "$A" "$BIN/weftd" --backend vxlan --public-ip $IP_A --subnet 10.244.1.0/24 \
            --network 10.244.0.0/16 --peers "$WORK/peers.json" --vtep-mac $VTEP_A \
            > "$WORK/weftd.log" 2>&1 &
        OVERLAY_PID=$!
        wait_line "$WORK/weftd.log" "weftd: ready"
        ;;
    xdp-*)
        local spin=1000000000
        [[ $1 == xdp-50us ]] && spin=50
        ip netns exec "$A" "$BIN/xdp-spike" run --dev veth0 --tun xdp0 --local-ip $IP_A --remote-ip $IP_B \
            --local-mac $MAC_A --neigh-mac $MAC_B --vtep-mac $VTEP_A --peer-vtep-mac $VTEP_B \
            --spin-us $spin > "$WORK/$1.log" 2>&1 &
        OVERLAY_PID=$!
        wait_line "$WORK/$1.log" "xdp-spike: ready"
        ip -n "$A" addr add $OVL_A/32 dev xdp0
        ip -n "$A" link set xdp0 mtu 1450 up
        ip -n "$A" route add 10.244.0.0/16 dev xdp0
        ;;
    esac
    sleep 0.5
}

stop_a() {
    if [[ -n ${OVERLAY_PID:-} ]]; then
        kill "$OVERLAY_PID"
        wait "$OVERLAY_PID" 2>/dev/null || true
        OVERLAY_PID=
    fi
    # The kernel's device, or weftd's TUN (weftd leaves it behind for a successor to adopt).
    ip -n "$A" link del flannel.1 2>/dev/null || true
}

# iperf3 JSON -> a figure: tcp -> Gbit/s received; udp -> received kpps.
iperf_figure() {
    python3 -c '
import json, sys
kind = sys.argv[1]
try:
    d = json.load(sys.stdin)
    e = d["end"]
    if kind == "tcp":
        print("%.2f" % (e["sum_received"]["bits_per_second"] / 1e9))
    else:
        s = e["sum"]
        print("%.1f" % ((s["packets"] - s["lost_packets"]) / s["seconds"] / 1e3))
except Exception as x:
    print("nan")
' "$1"
}

measure() {
    local cfg=$1 round=$2 v
    v=$(ina ping -c 200 -i 0.01 $OVL_B | python3 -c '
import re, sys, statistics
t = [float(m) for m in re.findall(r"time=([0-9.]+)", sys.stdin.read())]
print("%.0f %d" % (statistics.median(t) * 1000, 200 - len(t)) if t else "nan 200")
') || v="nan 200"
    printf '%s\t%s\tping_us\t%s\n' "$cfg" "$round" "${v% *}" >> "$RESULTS"
    printf '%s\t%s\tping_lost\t%s\n' "$cfg" "$round" "${v#* }" >> "$RESULTS"
    v=$(ina timeout 30 python3 -c "$ECHO_CLIENT" $OVL_B 2>/dev/null) || v=nan
    printf '%s\t%s\trr_us\t%s\n' "$cfg" "$round" "$v" >> "$RESULTS"
    for dir in ab ba; do
        local rev=""
        [[ $dir == ba ]] && rev=-R
        v=$(ina timeout 20 iperf3 -c $OVL_B -p 5201 -t "$SECS" $rev -J | iperf_figure tcp) || v=nan
        printf '%s\t%s\ttcp_%s_gbps\t%s\n' "$cfg" "$round" "$dir" "$v" >> "$RESULTS"
        v=$(ina timeout 20 iperf3 -c $OVL_B -p 5201 -t "$SECS" $rev -u -b 0 -l 1400 -J | iperf_figure udp) || v=nan
        printf '%s\t%s\tudp1400_%s_kpps\t%s\n' "$cfg" "$round" "$dir" "$v" >> "$RESULTS"
    done
}

setup
echo "namespaces $A $B; results in $RESULTS"
for round in $(seq "$ROUNDS"); do
    for cfg in $CONFIGS; do
        start_a "$cfg"
        measure "$cfg" "$round"
        stop_a
        echo "round $round $cfg: $(grep -P "^$cfg\t$round\t" "$RESULTS" | cut -f3,4 | tr '\t\n' '= ')"
    done
done
for log in "$WORK"/xdp-*.log; do
    [[ -e $log ]] && { echo "== $(basename "$log")"; cat "$log"; }
done
python3 - "$RESULTS" "$CONFIGS" <<'PY'
import sys, statistics, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
cfgs = sys.argv[2].split()
metrics = list(dict.fromkeys(r[2] for r in rows))
vals = collections.defaultdict(list)
for c, _, m, v in rows:
    vals[(c, m)].append(float(v))
print("| metric | " + " | ".join(cfgs) + " |")
print("| --- |" + " --- |" * len(cfgs))
for m in metrics:
    cells = []
    for c in cfgs:
        xs = vals[(c, m)]
        good = [x for x in xs if x == x]
        med = statistics.median(good) if good else float("nan")
        cells.append("%g (%s)" % (med, ", ".join("%g" % x for x in xs)))
    print("| %s | %s |" % (m, " | ".join(cells)))
PY
