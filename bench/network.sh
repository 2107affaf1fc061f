#!/bin/bash
# bench/network.sh — the cost of a network endpoint at container start, side by
# side: `docker run --rm busybox true` on the default network against the same
# with `--network none`, through silod (nat network: bridge, veth, nftables),
# Debian's dockerd 20.10 (its default bridge, iptables backend), both driven by
# the same docker CLI, and Podman 4.3 (netavark) when it is installed (its own
# CLI, runc, cgroupfs, nofile within this host's hard limit). Each daemon runs in a private network namespace of its own
# (pinned under a mktemp dir), so the host's network is never touched and
# dockerd's iptables (FORWARD policy DROP once br_netfilter is loaded) never
# sees silod's bridges.
# Prints medians (ms) and the endpoint cost (default - none) of each.
# Then throughput with iperf3 (Debian's, run in the containers' network
# namespaces from the host, so the image needs no iperf3): container to
# container on the default network against a bare veth pair between two
# namespaces, and from the host through a published port (silod: nftables
# DNAT; dockerd: its default, docker-proxy on 127.0.0.1). Run as root.
# Environment: RUNS (default 20), DOCKER (default /usr/local/bin/docker),
#   SILO_BIN_DIR (default target/release, built if missing), SECS (iperf3
#   seconds per run, default 5), REPS (iperf3 runs per figure, median; 3),
#   HNS (0: skip bench/hns.sh, the overlay, transparent, l2bridge and QOS
#   figures, which it runs at its end).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" 20
engines=(silod dockerd)
command -v podman >/dev/null && engines+=(podman)
bench_work nb "${engines[@]}"
cleanup() {
    [ -n "${bare:-}" ] && { ip netns del "$bare-a"; ip netns del "$bare-b"; } 2>/dev/null
    bench_teardown
}
trap cleanup EXIT
# One engine's CLI: the docker CLI for silod and dockerd, podman's own (in
# its namespace, with private storage) for podman.
dk() {
    local n=$1; shift
    if [ "$n" = podman ]; then
        local sub=$1; shift
        local extra=()
        [ "$sub" = run ] && extra=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
        inns podman timeout -k 5 120 podman --root "$work/podman" --runroot "$work/px" \
            --runtime runc --cgroup-manager cgroupfs --events-backend none \
            --network-backend netavark "$sub" "${extra[@]}" "$@"
    else
        DOCKER_HOST=unix://$(sock "$n") timeout -k 5 120 "$DOCKER" "$@"
    fi
}
bench_daemons "${engines[@]}"
for n in "${engines[@]}"; do
    dk "$n" run --rm busybox true >/dev/null   # makes the default bridge
done
now() { echo "${EPOCHREALTIME/./}000"; }
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f\n", m / 1e6 }'; }
for i in $(seq 1 "$RUNS"); do
    for n in "${engines[@]}"; do
        for mode in default none; do
            args=(run --rm)
            [ "$mode" = none ] && args+=(--network none)
            t0=$(now); dk "$n" "${args[@]}" busybox true >/dev/null; t1=$(now)
            echo $((t1 - t0)) >> "$work/$n-$mode"
        done
    done
done
printf "%-8s %10s %10s %10s\n" engine default none endpoint
for n in "${engines[@]}"; do
    a=$(median "$work/$n-default"); b=$(median "$work/$n-none")
    printf "%-8s %10s %10s %10s\n" "$n" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a - b }')"
done

# ---- throughput (iperf3) ----
command -v iperf3 >/dev/null || { echo "bench: iperf3 is required (apt-get install iperf3)" >&2; exit 1; }
SECS=${SECS:-5}
REPS=${REPS:-3}
gbits() { awk '/receiver/ { v = $7; u = $8 } END { if (u == "Mbits/sec") v /= 1000; printf "%.2f", v }'; }
# Single runs on two shared cores vary by ±30%, so every server is set up
# first and the runs are interleaved (veth, each engine, again…) REPS
# times; each figure is the median of its runs.
bare=silo-bench-$$
ip netns add "$bare-a"; ip netns add "$bare-b"
ip -n "$bare-a" link add va type veth peer name vb netns "$bare-b"
ip -n "$bare-a" addr add 10.250.0.1/24 dev va; ip -n "$bare-a" link set va up; ip -n "$bare-a" link set lo up
ip -n "$bare-b" addr add 10.250.0.2/24 dev vb; ip -n "$bare-b" link set vb up; ip -n "$bare-b" link set lo up
ip netns exec "$bare-b" iperf3 -s -D -B 10.250.0.2 -I "$work/iperf-bare.pid" >/dev/null
declare -A pa=() ipb=()
for n in "${engines[@]}"; do
    dk "$n" rm -f ipa ipb >/dev/null 2>&1 || true
    dk "$n" run -d --name ipa busybox sleep 600 >/dev/null
    dk "$n" run -d --name ipb -p 15201:5201 busybox sleep 600 >/dev/null
    pa[$n]=$(dk "$n" inspect -f '{{.State.Pid}}' ipa)
    pb=$(dk "$n" inspect -f '{{.State.Pid}}' ipb)
    ipb[$n]=$(dk "$n" inspect -f '{{.NetworkSettings.IPAddress}}' ipb)
    nsenter --net=/proc/"$pb"/ns/net iperf3 -s -D -I "$work/iperf-$n.pid" >/dev/null
done
sleep 0.5
for r in $(seq 1 "$REPS"); do
    ip netns exec "$bare-a" iperf3 -c 10.250.0.2 -t "$SECS" | gbits >> "$work/tp-veth"; echo >> "$work/tp-veth"
    for n in "${engines[@]}"; do
        nsenter --net=/proc/"${pa[$n]}"/ns/net iperf3 -c "${ipb[$n]}" -t "$SECS" | gbits >> "$work/tp-c2c-$n"
        echo >> "$work/tp-c2c-$n"
        inns "$n" iperf3 -c 127.0.0.1 -p 15201 -t "$SECS" | gbits >> "$work/tp-pub-$n"
        echo >> "$work/tp-pub-$n"
    done
done
mid() { sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for f in "$work"/iperf-*.pid; do kill "$(cat "$f")" 2>/dev/null || true; done
for n in "${engines[@]}"; do dk "$n" rm -f ipa ipb >/dev/null 2>&1 || true; done
veth=$(mid "$work/tp-veth")
echo
printf "%-34s" "throughput (Gbit/s, median of $REPS)"; printf " %8s" "${engines[@]}" veth; echo
printf "%-34s" "container to container"; for n in "${engines[@]}"; do printf " %8s" "$(mid "$work/tp-c2c-$n")"; done; printf " %8s\n" "$veth"
printf "%-34s" "host 127.0.0.1 -> published port"; for n in "${engines[@]}"; do printf " %8s" "$(mid "$work/tp-pub-$n")"; done; printf " %8s\n" "-"
awk -v s="$(mid "$work/tp-c2c-silod")" -v v="$veth" -v p="$(mid "$work/tp-pub-silod")" -v d="$(mid "$work/tp-pub-dockerd")" 'BEGIN {
    printf "silod container-to-container / bare veth: %.2f; silod / dockerd through a published port: %.2f\n", s / v, p / d }'

# ---- the other HNS drivers and QOS (bench/hns.sh), after this bench's
# daemons are gone; HNS=0 skips it ----
cleanup
trap - EXIT
[ "${HNS:-1}" = 0 ] || exec "$repo/bench/hns.sh"
