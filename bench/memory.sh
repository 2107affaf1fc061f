#!/bin/bash
# bench/memory.sh — silod's resident memory and threads after each burst of
# 100 concurrent `docker run --rm --network none busybox true`, then after
# 15 s idle. Uses the release binaries in target/release (SILO_BIN_DIR
# overrides) and a private socket, data root and exec root. Run as root.
# Environment: B (bursts, default 20), N (runs per burst, default 100),
#   DOCKER (default /usr/local/bin/docker).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=${B:-20}
N=${N:-100}
DOCKER=${DOCKER:-/usr/local/bin/docker}
b=${SILO_BIN_DIR:-$repo/target/release}
[ "$(id -u)" = 0 ] || { echo "memory.sh: run as root" >&2; exit 1; }
for x in silod silo-monitor silo-runtime; do
    [ -x "$b/$x" ] || { echo "memory.sh: $b/$x is missing (cargo build --release)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/mm.XXXXXX)
pid=
cleanup() {
    set +e
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && sleep 1
    awk -v root="$work" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo | sort -r \
        | while read -r m; do umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT
"$repo/scripts/mkrootfs.sh" "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/bb.tar" .
"$b/silod" -H "unix://$work/s.sock" --data-root "$work/d" --exec-root "$work/x" \
    --monitor "$b/silo-monitor" --runtime "$b/silo-runtime" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do [ -S "$work/s.sock" ] && break; sleep 0.1; done
export DOCKER_HOST="unix://$work/s.sock" DOCKER
"$DOCKER" import "$work/bb.tar" busybox:latest >/dev/null
sample() { echo "$1 rss_kb=$(awk '/VmRSS/{print $2}' "/proc/$pid/status") threads=$(ls "/proc/$pid/task" | wc -l)"; }
sample start
for i in $(seq "$B"); do
    seq "$N" | xargs -P "$N" -I{} timeout -s KILL 120 "$DOCKER" run --rm --network none busybox true >/dev/null 2>&1 || true
    sleep 1
    sample "burst $i"
done
sleep 15
sample "idle 15s"
