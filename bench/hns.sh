#!/bin/bash
# bench/hns.sh — what the HNS drivers and the QOS policy cost in throughput
# (iperf3, Debian's, run in the containers' namespaces from the host):
#  - overlay: container to container across two silods ("hosts", each in a
#    network namespace of its own, joined by a veth underlay) against a bare
#    VXLAN link between the same two namespaces (target: at least 0.90);
#  - transparent and l2bridge: a container on the segment of a parent veth
#    to an "outside host" on it, against the parent interface itself
#    (target: at least 0.95);
#  - QOS: the rate a container gets under MaximumOutgoingBandwidthInBytes
#    against the rate set (target: within 10%);
#  - the endpoint cost of each driver at start: `run --rm busybox true` on
#    its network minus the same with `--network none` (medians of RUNS).
# The runs of each comparison are interleaved and reported as medians; single
# runs on two shared cores vary by ±30%. silod only: these compare silo's
# drivers with the bare kernel objects they are made of, not with other
# engines (dockerd has no l2bridge, l2tunnel or HNS policies; its overlay
# needs swarm). Run as root.
# Environment: RUNS (starts per driver, default 15), SECS (iperf3 seconds
#   per run, default 4), REPS (runs per
#   figure, default 5), RATES (QOS rates, default "20mbit 200mbit"),
#   SILO_BIN_DIR (default target/release, built if missing), DOCKER.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" 15
command -v iperf3 >/dev/null || { echo "bench: iperf3 is required (apt-get install iperf3)" >&2; exit 1; }
SECS=${SECS:-4}
REPS=${REPS:-5}
RATES=${RATES:-20mbit 200mbit}
bench_work hb h1 h2 seg
dk() { local n=$1; shift; DOCKER_HOST=unix://$(sock "$n") timeout -k 5 120 "$DOCKER" "$@"; }
api() { local n=$1 m=$2 path=$3 body=${4:-}; curl -sS --unix-socket "$(sock "$n")" -X "$m" -H 'Content-Type: application/json' -d "$body" "http://silod$path"; }
bench_rootfs
for n in h1 h2; do bench_silod "$n"; done
for n in h1 h2; do
    for _ in $(seq 1 300); do dk "$n" version >/dev/null 2>&1 && break; sleep 0.2; done
    dk "$n" import "$work/bb.tar" busybox:latest >/dev/null
done
gbits() { awk '/receiver/ { v = $7; u = $8 } END { if (u == "Mbits/sec") v /= 1000; if (u == "Kbits/sec") v /= 1e6; printf "%.4f", v }'; }
mid() { sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
cpid() { dk "$1" inspect -f '{{.State.Pid}}' "$2"; }
cip() { dk "$1" inspect -f "{{.NetworkSettings.Networks.$3.IPAddress}}" "$2"; }
# iperf3 client from a container's namespace (host $1, container $2) to $3.
from_c() { nsenter --net=/proc/"$(cpid "$1" "$2")"/ns/net iperf3 -c $3 -t "$SECS" | gbits; }
server_c() { nsenter --net=/proc/"$(cpid "$1" "$2")"/ns/net iperf3 -s -D -I "$work/iperf-$1-$2.pid" >/dev/null; }

# ---- the underlay, the bare VXLAN link, the overlay ----
# (ip takes a pinned namespace file where it takes a name.)
inns h1 ip link add under type veth peer name under netns "${ns[h2]}"
inns h1 ip addr add 192.168.220.1/24 dev under; inns h1 ip link set under up
inns h2 ip addr add 192.168.220.2/24 dev under; inns h2 ip link set under up
for h in 1 2; do
    other=$((3 - h))
    inns "h$h" ip link add vxbare type vxlan id 999 dstport 4790 local "192.168.220.$h" nolearning
    inns "h$h" bridge fdb append 00:00:00:00:00:00 dev vxbare dst "192.168.220.$other"
    inns "h$h" ip link set vxbare mtu 1450 up
    inns "h$h" ip addr add "10.251.0.$h/24" dev vxbare
done
inns h2 iperf3 -s -D -B 10.251.0.2 -I "$work/iperf-bare.pid" >/dev/null
dk h1 network create -d overlay -o vni=7001 -o local=192.168.220.1 --subnet 10.252.0.0/24 --ip-range 10.252.0.0/25 ov >/dev/null
dk h2 network create -d overlay -o vni=7001 -o local=192.168.220.2 --subnet 10.252.0.0/24 --ip-range 10.252.0.128/25 ov >/dev/null
dk h1 run -d --name oc1 --network ov busybox sleep 3600 >/dev/null
dk h2 run -d --name oc2 --network ov busybox sleep 3600 >/dev/null
ip1=$(cip h1 oc1 ov); ip2=$(cip h2 oc2 ov)
api h1 POST /hns/networks/ov/remote-endpoints "{\"IPAddress\":\"$ip2\",\"ProviderAddress\":\"192.168.220.2\"}" >/dev/null
api h2 POST /hns/networks/ov/remote-endpoints "{\"IPAddress\":\"$ip1\",\"ProviderAddress\":\"192.168.220.1\"}" >/dev/null
server_c h2 oc2

# ---- an outside host with two segments: parents p0 (transparent, which
# also carries the host's own address for the baseline) and p1 (l2bridge) ----
for i in 0 1; do
    inns h1 ip link add "p$i" type veth peer name "s$i" netns "${ns[seg]}"
    inns seg ip link set "s$i" up
done
inns seg ip addr add 10.253.0.1/24 dev s0
inns seg ip addr add 10.254.0.1/24 dev s1
inns h1 ip addr add 10.253.0.2/24 dev p0; inns h1 ip link set p0 up
inns seg iperf3 -s -D -B 10.253.0.1 -I "$work/iperf-seg0.pid" >/dev/null
inns seg iperf3 -s -D -B 10.254.0.1 -p 5202 -I "$work/iperf-seg1.pid" >/dev/null
dk h1 network create -d transparent -o parent=p0 --subnet 10.253.0.0/24 --ip-range 10.253.0.64/27 --gateway 10.253.0.1 tr >/dev/null
dk h1 network create -d l2bridge -o parent=p1 --subnet 10.254.0.0/24 --gateway 10.254.0.1 l2 >/dev/null
dk h1 run -d --name tc --network tr busybox sleep 3600 >/dev/null
dk h1 run -d --name lc --network l2 busybox sleep 3600 >/dev/null
sleep 0.5

for r in $(seq 1 "$REPS"); do
    inns h1 iperf3 -c 10.251.0.2 -t "$SECS" | gbits >> "$work/bare"; echo >> "$work/bare"
    from_c h1 oc1 "$ip2" >> "$work/overlay"; echo >> "$work/overlay"
    inns h1 iperf3 -c 10.253.0.1 -t "$SECS" | gbits >> "$work/parent"; echo >> "$work/parent"
    from_c h1 tc 10.253.0.1 >> "$work/transparent"; echo >> "$work/transparent"
    from_c h1 lc "10.254.0.1 -p 5202" >> "$work/l2bridge"; echo >> "$work/l2bridge"
done

# ---- QOS: a rate on a nat container's endpoint, iperf3 to the host ----
dk h1 network create --subnet 10.255.0.0/24 qn >/dev/null
dk h1 run -d --name qc --network qn busybox sleep 3600 >/dev/null
inns h1 iperf3 -s -D -B 10.255.0.1 -I "$work/iperf-q.pid" >/dev/null
ep=$(api h1 GET /hns/endpoints | python3 -c 'import json,sys; print([e["ID"] for e in json.load(sys.stdin) if e["IPAddress"].startswith("10.255.0.")][0])')
sleep 0.5
declare -A qfig=()
for rate in $RATES; do
    bytes=$(python3 -c "
r='$rate'.lower(); u={'kbit':1e3,'mbit':1e6,'gbit':1e9}
n=[k for k in u if r.endswith(k)][0]; print(int(float(r[:-len(n)])*u[n]/8))")
    id=$(api h1 POST "/hns/endpoints/$ep/policies" "{\"Type\":\"QOS\",\"Settings\":{\"MaximumOutgoingBandwidthInBytes\":$bytes}}" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["ID"])')
    : > "$work/q-$rate"
    for r in $(seq 1 "$REPS"); do from_c h1 qc 10.255.0.1 >> "$work/q-$rate"; echo >> "$work/q-$rate"; done
    api h1 DELETE "/hns/endpoints/$ep/policies/$id" >/dev/null
    qfig[$rate]="$(mid "$work/q-$rate") $bytes"
done
for f in "$work"/iperf-*.pid; do kill "$(cat "$f")" 2>/dev/null || true; done

# ---- endpoint cost at start, per driver (interleaved) ----
dk h1 network create -d l2tunnel --subnet 10.249.0.0/24 tun >/dev/null
nets=(none qn tr l2 tun ov)
now() { echo "${EPOCHREALTIME/./}000"; }
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f\n", m / 1e6 }'; }
for net in "${nets[@]}"; do dk h1 run --rm --network "$net" busybox true >/dev/null; done
for i in $(seq 1 "$RUNS"); do
    for net in "${nets[@]}"; do
        t0=$(now); dk h1 run --rm --network "$net" busybox true >/dev/null; t1=$(now)
        echo $((t1 - t0)) >> "$work/start-$net"
    done
done

printf "%-44s %8s\n" "throughput (Gbit/s, median of $REPS)" value
printf "%-44s %8s\n" "bare VXLAN link, host to host" "$(mid "$work/bare")"
printf "%-44s %8s\n" "overlay, container to container" "$(mid "$work/overlay")"
printf "%-44s %8s\n" "parent veth, host to outside host" "$(mid "$work/parent")"
printf "%-44s %8s\n" "transparent (macvlan), container to outside" "$(mid "$work/transparent")"
printf "%-44s %8s\n" "l2bridge, container to outside" "$(mid "$work/l2bridge")"
awk -v o="$(mid "$work/overlay")" -v b="$(mid "$work/bare")" -v p="$(mid "$work/parent")" \
    -v t="$(mid "$work/transparent")" -v l="$(mid "$work/l2bridge")" 'BEGIN {
    printf "overlay / bare VXLAN: %.2f; transparent / parent: %.2f; l2bridge / parent: %.2f\n", o / b, t / p, l / p }'
none=$(median "$work/start-none")
printf "%-44s %8s %8s\n" "run --rm (ms, median of $RUNS)" start endpoint
for net in "${nets[@]}"; do
    m=$(median "$work/start-$net")
    printf "%-44s %8s %8s\n" "$net" "$m" "$(awk -v a="$m" -v b="$none" 'BEGIN { printf "%.2f", a - b }')"
done
for rate in $RATES; do
    set -- ${qfig[$rate]}
    awk -v got="$1" -v bytes="$2" -v rate="$rate" 'BEGIN {
        printf "QOS %s (%d bytes/s): measured %.1f Mbit/s, %.3f of the set rate\n", rate, bytes, got * 1000, got * 1e9 / 8 / bytes }'
done
