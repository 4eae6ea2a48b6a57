#!/usr/bin/env bash
# Runs the README's commands on a fresh Debian root file system, as a newcomer's machine has
# it: Debian minbase (debootstrap), gcc for the crates that build C and iproute2 (what a fresh
# machine of this kind brings), the host's Rust toolchain mounted read-only, an empty cargo
# home (every crate downloaded again), a clean clone of HEAD and a clean target directory.
# No protoc, ethtool, ping, iperf3, iptables or etcd: the script checks they are absent first.
#
#   sudo bash tools/fresh-machine.sh            # the demo (README's first command)
#   sudo bash tools/fresh-machine.sh --tests    # then the test command too (tools/test.sh)
#
# FRESH_ROOT (default /var/tmp/weft-fresh-root) is kept between runs (debootstrap takes a few
# minutes); everything mounted is unmounted on exit. Needs root, debootstrap and the Debian
# mirror.
set -euo pipefail
cd "$(dirname "$0")/.."

root=${FRESH_ROOT:-/var/tmp/weft-fresh-root}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
toolchain=$(rustc --print sysroot)
run_tests=false
[ "${1:-}" = --tests ] && run_tests=true

[ "$(id -u)" = 0 ] || { echo "fresh-machine.sh: run as root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "fresh-machine.sh: apt-get install debootstrap" >&2; exit 1; }

if [ ! -x "$root/usr/bin/apt-get" ]; then
    echo "==> debootstrap (minbase) into $root"
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
fi

mounted=()
cleanup() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -l "${mounted[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT
bind() { # bind SRC DST [ro]
    mkdir -p "$2"
    mount --bind "$1" "$2"
    mounted+=("$2")
    if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}
# The root a mount point of its own, so that `ip netns exec` can make it a slave mount there.
bind "$root" "$root"
bind /proc "$root/proc"
bind /sys "$root/sys"
bind /dev "$root/dev"
bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"

echo "==> what a fresh machine brings: gcc, iproute2 (and CA certificates for crates.io)"
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
chroot "$root" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends gcc libc6-dev iproute2 ca-certificates >/dev/null

# This machine's own certificate authorities (a network egress proxy may sign crates.io's
# certificate), as a fresh machine of this kind has them.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
fi

# The toolchain, read-only at the same path; an empty cargo home whose bin has the toolchain's
# programs (what rustup's proxies would run).
bind "$rustup_home" "$root$rustup_home" ro
rm -rf "$root/root/.cargo" "$root/work"
mkdir -p "$root/root/.cargo/bin" "$root/work"
for p in "$toolchain"/bin/*; do ln -s "$p" "$root/root/.cargo/bin/"; done
[ -x /usr/local/bin/cargo-nextest ] && cp /usr/local/bin/cargo-nextest "$root/root/.cargo/bin/"
git clone -q --no-hardlinks "$PWD" "$root/work/weft"
git -C "$root/work/weft" checkout -q "$(git rev-parse HEAD)"

inside() {
    chroot "$root" env -i HOME=/root TERM=dumb CI="${CI:-false}" \
        PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        bash -c "cd /work/weft && $1"
}

echo "==> absent, as on a fresh machine:"
inside 'for t in protoc ethtool ping iperf3 iptables etcd tcpdump; do
            if command -v $t >/dev/null; then echo "  $t is present: not a fresh machine" >&2; exit 1; fi
            printf "  %s" $t
        done; echo'

echo "==> the README's first command, timed"
demo=$(awk '/^```sh$/ {getline; print; exit}' README.md)
echo "    $demo"
start=$(date +%s)
inside "$demo"
echo "==> demo done in $(($(date +%s) - start)) s (clean build included)"

if $run_tests; then
    cmd=$(awk '/<!-- test-command -->/ {found=1; next} found && /^```/ {if (inblock) exit; inblock=1; next} found && inblock {print; exit}' README.md)
    echo "==> the README's test command: $cmd"
    start=$(date +%s)
    inside "$cmd"
    echo "==> tests done in $(($(date +%s) - start)) s"
fi
