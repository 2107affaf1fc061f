#!/bin/bash
# bench/network.sh — the cost of a network endpoint at container start, side by
# side: `docker run --rm busybox true` on the default network against the same
# with `--network none`, through silod (nat network: bridge, veth, nftables) and
# Debian's dockerd 20.10 (its default bridge, iptables backend), driven by the
# same docker CLI. Both daemons run inside one private network namespace (pinned
# under a mktemp dir), so the host's network is never touched.
# Prints medians (ms) and the endpoint cost (default - none) of each. Run as root.
# Not yet here: iperf3 container-to-container and through a published port.
# Environment: RUNS (default 20), DOCKER (default /usr/local/bin/docker),
#   SILO_BIN_DIR (default target/release, built if missing).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" 20
work=$(mktemp -d /tmp/nb.XXXXXX)
declare -A pid=()
ns=$work/netns
touch "$ns"
unshare --net="$ns" ip link set lo up
inns() { nsenter --net="$ns" "$@"; }
cleanup() {
    set +e
    for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 2
    for p in "${pid[@]}"; do kill -KILL "$p" 2>/dev/null; done
    awk -v root="$work" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo \
        | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- \
        | while read -r mp; do umount -l "$mp" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
sock() { case $1 in silod) echo "$work/silod.sock" ;; dockerd) echo "$work/docker.sock" ;; esac; }
dk() { local n=$1; shift; DOCKER_HOST=unix://$(sock "$n") timeout -k 5 120 "$DOCKER" "$@"; }
"$repo/scripts/mkrootfs.sh" "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/bb.tar" .
inns "$bin/silod" -H "unix://$(sock silod)" --data-root "$work/silod" --exec-root "$work/sx" \
    --monitor "$bin/silo-monitor" --runtime "$bin/silo-runtime" </dev/null >/dev/null 2>"$work/silod.log" &
pid[silod]=$!
inns dockerd -H "unix://$(sock dockerd)" --data-root "$work/dockerd" --exec-root "$work/dx" \
    --pidfile "$work/docker.pid" </dev/null >"$work/dockerd.log" 2>&1 &
pid[dockerd]=$!
for n in silod dockerd; do
    for _ in $(seq 1 300); do dk "$n" version >/dev/null 2>&1 && break; sleep 0.2; done
    dk "$n" import "$work/bb.tar" busybox:latest >/dev/null
    dk "$n" run --rm busybox true >/dev/null   # makes the default bridge
done
now() { echo "${EPOCHREALTIME/./}000"; }
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f\n", m / 1e6 }'; }
for i in $(seq 1 "$RUNS"); do
    for n in silod dockerd; do
        for mode in default none; do
            args=(run --rm)
            [ "$mode" = none ] && args+=(--network none)
            t0=$(now); dk "$n" "${args[@]}" busybox true >/dev/null; t1=$(now)
            echo $((t1 - t0)) >> "$work/$n-$mode"
        done
    done
done
printf "%-8s %10s %10s %10s\n" engine default none endpoint
for n in silod dockerd; do
    a=$(median "$work/$n-default"); b=$(median "$work/$n-none")
    printf "%-8s %10s %10s %10s\n" "$n" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a - b }')"
done
