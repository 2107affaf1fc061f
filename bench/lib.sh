# bench/lib.sh — the preamble the side-by-side benches share: strict mode, the
# repository root, RUNS and DOCKER defaults, the root and dockerd checks, and
# the release binaries in $bin (SILO_BIN_DIR, else target/release, built if
# missing). Source it with the default RUNS as the first argument.
set -euo pipefail
export LC_ALL=C   # EPOCHREALTIME must use a decimal point
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-$1}
DOCKER=${DOCKER:-/usr/local/bin/docker}
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
[ -x "$DOCKER" ] || { echo "bench: docker CLI not found at $DOCKER (set DOCKER)" >&2; exit 1; }
command -v dockerd >/dev/null || { echo "bench: dockerd is required (apt-get install docker.io)" >&2; exit 1; }
bin=${SILO_BIN_DIR:-$repo/target/release}
if ! [ -x "$bin/silod" ] || ! [ -x "$bin/silo-monitor" ] || ! [ -x "$bin/silo-runtime" ]; then
    echo "bench: building release binaries" >&2
    (cd "$repo" && cargo build --release -p silod -p silo-monitor -p silo-runtime) >&2
fi

# The side-by-side benches' daemons: `bench_work PREFIX ENGINE...` makes
# $work and one private network namespace per engine in it (pinned files;
# `inns ENGINE CMD…` runs in one), `bench_daemons` starts silod and dockerd
# in theirs on `$(sock NAME)` and imports busybox through the script's own
# `dk ENGINE ARGS…`, and `bench_teardown` (run on exit; scripts with more to
# undo call it from their own trap) stops them and removes $work.
bench_work() {
    work=$(mktemp -d "/tmp/$1.XXXXXX")
    shift
    declare -gA pid=() ns=()
    local n
    for n in "$@"; do
        ns[$n]=$work/netns-$n
        touch "${ns[$n]}"
        unshare --net="${ns[$n]}" ip link set lo up
    done
    trap bench_teardown EXIT
}
inns() { local n=$1; shift; nsenter --net="${ns[$n]}" "$@"; }
sock() { echo "$work/$1.sock"; }
bench_teardown() {
    set +e
    local p
    for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null; done
    # `inns … &` records the subshell's pid, not the daemon's: stop every
    # process started with a path in $work as well.
    pkill -TERM -f -- "$work/" 2>/dev/null
    sleep 2
    for p in "${pid[@]}"; do kill -KILL "$p" 2>/dev/null; done
    pkill -KILL -f -- "$work/" 2>/dev/null
    awk -v root="$work" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo \
        | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- \
        | while read -r mp; do umount -l "$mp" 2>/dev/null; done
    rm -rf "$work"
}
# `bench_silod NAME` starts one silod in namespace NAME on `$(sock NAME)`
# (benches with two "hosts" start two).
bench_silod() {
    local n=$1
    inns "$n" "$bin/silod" -H "unix://$(sock "$n")" --data-root "$work/$n-data" --exec-root "$work/$n-x" \
        --monitor "$bin/silo-monitor" --runtime "$bin/silo-runtime" </dev/null >/dev/null 2>"$work/$n.log" &
    pid[$n]=$!
}
bench_rootfs() {
    [ -f "$work/bb.tar" ] && return
    "$repo/scripts/mkrootfs.sh" "$work/rootfs" >/dev/null
    tar -C "$work/rootfs" -cf "$work/bb.tar" .
}
bench_daemons() {
    bench_rootfs
    bench_silod silod
    inns dockerd dockerd -H "unix://$(sock dockerd)" --data-root "$work/dockerd" --exec-root "$work/dx" \
        --pidfile "$work/docker.pid" </dev/null >"$work/dockerd.log" 2>&1 &
    pid[dockerd]=$!
    local n
    for n in "$@"; do
        for _ in $(seq 1 300); do dk "$n" version >/dev/null 2>&1 && break; sleep 0.2; done
        dk "$n" import "$work/bb.tar" busybox:latest >/dev/null
    done
}
