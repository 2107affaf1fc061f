#!/bin/bash
# bench/cri.sh — one pod's life through the Kubernetes CRI, as the kubelet
# drives it: RunPodSandbox + CreateContainer + StartContainer +
# StopPodSandbox + RemovePodSandbox, one busybox container running `sleep`,
# CRI logs on. The same client (crates/silo-cri/examples/cri-bench.rs, a
# tonic client) drives silod and containerd 1.6 (Debian's, its CRI plugin
# on a private socket and root, runc, overlayfs, a pause image of busybox
# running `sleep`). Both use the same CNI bridge + host-local config
# (Debian's containernetworking-plugins), each in a network namespace of
# its own. Runs are interleaved; figures are medians, and the target is
# silo at most 0.25x containerd's time. A second row times `kubectl exec`
# as a node serves it: one `echo` through each streaming server over
# SPDY/3.1 (the Exec call, the upgrade, the streams, to the GOAWAY), in a
# running pod, from the engine's own network namespace. Run as root.
# Environment: RUNS (pods per engine, default 30), SILO_BIN_DIR, DOCKER.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" 30
command -v containerd >/dev/null || { echo "bench: containerd is required (apt-get install containerd)" >&2; exit 1; }
[ -x /usr/lib/cni/bridge ] || { echo "bench: CNI plugins are required (apt-get install containernetworking-plugins)" >&2; exit 1; }
client=$repo/target/release/examples/cri-bench
if ! [ -x "$client" ]; then
    (cd "$repo" && cargo build --release -p silo-cri --features client --example cri-bench) >&2
fi
bench_work cri silod containerd
dk() { local n=$1; shift; DOCKER_HOST=unix://$(sock "$n") timeout -k 5 120 "$DOCKER" "$@"; }
for n in silod containerd; do
    mkdir -p "$work/$n-net.d"
    cat >"$work/$n-net.d/10-bench.conflist" <<EOF
{"cniVersion":"0.4.0","name":"bench","plugins":[{"type":"bridge","bridge":"cni0","isGateway":true,
 "ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16"}]],"dataDir":"$work/$n-ipam"}}]}
EOF
done
bench_rootfs
inns silod "$bin/silod" -H "unix://$(sock silod)" --data-root "$work/silod-data" --exec-root "$work/sx" \
    --monitor "$bin/silo-monitor" --runtime "$bin/silo-runtime" --cni-conf-dir "$work/silod-net.d" \
    --cni-bin-dir /usr/lib/cni </dev/null >/dev/null 2>"$work/silod.log" &
pid[silod]=$!
for _ in $(seq 1 300); do dk silod version >/dev/null 2>&1 && break; sleep 0.2; done
dk silod import "$work/bb.tar" busybox:latest >/dev/null
# containerd's sandbox image: busybox running sleep (no registry here).
mkdir "$work/pause"
printf 'FROM busybox\nENTRYPOINT ["sleep", "2147483647"]\n' >"$work/pause/Dockerfile"
dk silod build -q -t silo.bench/pause:1 "$work/pause" >/dev/null 2>&1
dk silod save -o "$work/images.tar" busybox:latest silo.bench/pause:1

cat >"$work/containerd.toml" <<EOF
version = 2
root = "$work/ctd-root"
state = "$work/ctd-state"
[grpc]
  address = "$(sock containerd)"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "silo.bench/pause:1"
  enable_selinux = false
  # The pause container's oom_score_adj is -998, which root without
  # CAP_SYS_RESOURCE may not set: keep it at containerd's own (as silo clamps).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/containerd-net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
EOF
inns containerd containerd --config "$work/containerd.toml" </dev/null >"$work/containerd.log" 2>&1 &
pid[containerd]=$!
for _ in $(seq 1 300); do [ -S "$(sock containerd)" ] && break; sleep 0.2; done
ctr -a "$(sock containerd)" -n k8s.io images import --all-platforms "$work/images.tar" >/dev/null
crisock() { case $1 in silod) echo "$work/sx/cri.sock" ;; containerd) sock containerd ;; esac; }
# Warm up each (first pulls of layers into caches, first CNI run).
for n in silod containerd; do
    "$client" "$(crisock "$n")" busybox:latest 2 "$work/$n-logs" >/dev/null \
        || { echo "bench: $n failed; its log ends:" >&2; tail -20 "$work/$n.log" >&2; exit 1; }
done
for n in silod containerd; do : >"$work/$n.ms"; done
for _ in $(seq 1 "$RUNS"); do
    for n in silod containerd; do
        "$client" "$(crisock "$n")" busybox:latest 1 "$work/$n-logs" >>"$work/$n.ms"
    done
done
for n in silod containerd; do
    inns "$n" "$client" exec "$(crisock "$n")" busybox:latest "$RUNS" >"$work/$n.exec.ms" \
        || { echo "bench: exec on $n failed; its log ends:" >&2; tail -20 "$work/$n.log" >&2; exit 1; }
done
mid() { sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
row() {
    local s c
    s=$(mid "$work/silod$2.ms")
    c=$(mid "$work/containerd$2.ms")
    printf '%-44s %10.1f %12.1f %8.3f\n' "$1" "$s" "$c" "$(echo "$s $c" | awk '{ printf "%.3f", $1 / $2 }')"
}
printf '%-44s %10s %12s %8s\n' "CRI (ms, median of $RUNS)" silo containerd ratio
row "run+create+start+stop+remove pod" ""
row "exec echo over SPDY (kubectl exec)" .exec
echo "(target: pod lifecycle ratio <= 0.25; CNI bridge + host-local for both; containerd $(containerd --version | awk '{ print $3 }'), runc, overlayfs)"
