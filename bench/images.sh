#!/bin/bash
# bench/images.sh — images side by side: silod and Debian's dockerd (20.10) driven by the
# SAME docker CLI against Debian's docker-registry on 127.0.0.1 (plain HTTP; loopback is
# insecure by default in both daemons).
# The image: 5 layers built from Debian files (a busybox rootfs, /usr/lib/gcc,
# /usr/lib/python3, /usr/libexec, /usr/lib/git-core; about 240 MB unpacked), loaded into
# dockerd from a docker-archive and pushed by dockerd (so the registry holds dockerd's gzip).
#   pull:   `docker pull` into an empty store (image removed and pruned before each run)
#   push:   `docker push` to an empty registry (restarted on a fresh directory each run);
#           silod's copy comes from `docker load` of dockerd's archive each run, so it has
#           only uncompressed layers and must compress them, as dockerd does
#   save:   `docker save -o` of the image
#   load:   `docker load -i` of dockerd's archive of the image, after `docker rmi`
#   unpack: the largest layer (uncompressed tar) unpacked by silo-storage's extractor
#           (crates/silo-storage/examples/unpack.rs) against `tar -xf` of the same file
# Prints medians (ms) and the ratio silod/dockerd (unpack: silo/tar). Run as root.
#
# Environment: RUNS (default 3), DOCKER (default /usr/local/bin/docker), SILO_BIN_DIR (dir
#   with silod, silo-monitor, silo-runtime; default target/release, built if missing).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" 3
command -v docker-registry >/dev/null || { echo "bench: apt-get install docker-registry" >&2; exit 1; }
(cd "$repo" && cargo build --release -q -p silo-storage --example unpack) >&2
unpack=$repo/target/release/examples/unpack

work=$(mktemp -d /tmp/ib.XXXXXX)
names=(silod dockerd)
declare -A pid=()
regpid=
unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
sock() { case $1 in silod) echo "$work/silod/silod.sock" ;; dockerd) echo "$work/dockerd/docker.sock" ;; esac; }
dk() {
    local name=$1; shift
    DOCKER_HOST=unix://$(sock "$name") DOCKER_CONFIG=$work/docker-config-$name timeout -k 5 600 "$DOCKER" "$@"
}

stop_pid() {
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
cleanup() {
    set +e
    trap - EXIT INT TERM
    for name in "${names[@]}"; do [ -n "${pid[$name]:-}" ] && stop_pid "${pid[$name]}"; done
    [ -n "$regpid" ] && stop_pid "$regpid"
    awk -v root="$work" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo \
        | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- \
        | while read -r mp; do umount -l "$mp" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() {
    echo "bench: $1" >&2
    for f in "$work/silod/silod.log" "$work/dockerd/dockerd.log" "$work/registry.log"; do
        [ -s "$f" ] && { echo "--- tail of $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}

# The registry, on a fresh storage directory each time it starts.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
start_registry() {
    [ -n "$regpid" ] && stop_pid "$regpid"
    rm -rf "$work/registry"
    mkdir -p "$work/registry"
    cat > "$work/registry/config.yml" <<CFG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry/data
  delete:
    enabled: true
http:
  addr: $reg
CFG
    docker-registry serve "$work/registry/config.yml" </dev/null >>"$work/registry.log" 2>&1 &
    regpid=$!
    for _ in $(seq 1 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0
        sleep 0.1
    done
    fail "docker-registry did not listen on $reg"
}

# The image, as a docker-archive of 5 uncompressed layers.
echo "bench: building the image" >&2
mkdir -p "$work/img/layers"
"$repo/scripts/mkrootfs.sh" "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/img/layers/1.tar" .
i=2
for d in /usr/lib/gcc /usr/lib/python3 /usr/libexec /usr/lib/git-core; do
    tar -C / -cf "$work/img/layers/$i.tar" "${d#/}"
    i=$((i + 1))
done
python3 - "$work/img" <<'PY'
import hashlib, json, os, sys
root = sys.argv[1]
diff_ids = []
for n in range(1, 6):
    h = hashlib.sha256()
    with open(f"{root}/layers/{n}.tar", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    diff_ids.append("sha256:" + h.hexdigest())
cfg = {"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
       "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
       "history": [{"created": "2026-01-01T00:00:00Z", "created_by": f"layer {n}"} for n in range(1, 6)]}
data = json.dumps(cfg).encode()
cid = hashlib.sha256(data).hexdigest()
open(f"{root}/{cid}.json", "wb").write(data)
json.dump([{"Config": f"{cid}.json", "RepoTags": ["bench/big:1"],
            "Layers": [f"layers/{n}.tar" for n in range(1, 6)]}], open(f"{root}/manifest.json", "w"))
PY
tar -C "$work/img" -cf "$work/image.tar" .
largest=$(ls -S "$work"/img/layers/*.tar | head -1)
echo "bench: image $(du -sh "$work/image.tar" | cut -f1) in 5 layers; largest layer $(du -sh "$largest" | cut -f1)" >&2

# The daemons.
mkdir -p "$work/silod" "$work/dockerd"
"$bin/silod" -H "unix://$(sock silod)" --data-root "$work/silod/data" --exec-root "$work/silod/exec" \
    --monitor "$bin/silo-monitor" --runtime "$bin/silo-runtime" </dev/null >/dev/null 2>>"$work/silod/silod.log" &
pid[silod]=$!
dockerd -H "unix://$(sock dockerd)" --data-root "$work/dockerd/data" --exec-root "$work/dockerd/exec" \
    --pidfile "$work/dockerd/docker.pid" --bridge none --iptables=false --ip6tables=false \
    --ip-forward=false --ip-masq=false --userland-proxy=false </dev/null >>"$work/dockerd/dockerd.log" 2>&1 &
pid[dockerd]=$!
for name in "${names[@]}"; do
    ok=
    for _ in $(seq 1 300); do
        kill -0 "${pid[$name]}" 2>/dev/null || fail "$name exited during startup"
        if dk "$name" version >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.2
    done
    [ -n "$ok" ] || fail "$name did not answer"
done
start_registry
image=$reg/bench/big:1
dk dockerd load -i "$work/image.tar" >/dev/null || fail "dockerd load failed"
dk dockerd tag bench/big:1 "$image"
dk dockerd push "$image" >/dev/null || fail "dockerd push failed"

now() { echo "${EPOCHREALTIME/./}000"; }
median() {
    sort -n "$1" | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.0f\n", m / 1e6 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f\n", a / b }'; }
timed() { # timed FILE CMD... — appends the wall time in ns
    local out=$1 t0 t1; shift
    t0=$(now); "$@" >/dev/null 2>"$work/err" || fail "$* failed: $(cat "$work/err")"; t1=$(now)
    echo $((t1 - t0)) >> "$out"
}
clean_pull() { # remove the image and everything it had
    local name=$1
    dk "$name" rmi -f "$image" >/dev/null 2>&1 || true
    dk "$name" image prune -af >/dev/null 2>&1 || true
}

echo "bench: $RUNS runs each" >&2
for i in $(seq 1 "$RUNS"); do
    # pull
    for name in silod dockerd; do
        clean_pull "$name"
        sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
        timed "$work/pull-$name" dk "$name" pull "$image"
    done
    # push (fresh registry; silod's copy freshly loaded, uncompressed)
    for name in silod dockerd; do
        start_registry
        if [ "$name" = silod ]; then
            dk silod rmi -f "$image" bench/big:1 >/dev/null 2>&1 || true
            dk silod image prune -af >/dev/null 2>&1 || true
            dk silod load -i "$work/image.tar" >/dev/null 2>"$work/err" || fail "silod load failed: $(cat "$work/err")"
            dk silod tag bench/big:1 "$image"
        fi
        timed "$work/push-$name" dk "$name" push "$image"
    done
    # save and load
    for name in silod dockerd; do
        rm -f "$work/saved-$name.tar"
        timed "$work/save-$name" dk "$name" save -o "$work/saved-$name.tar" "$image"
    done
    for name in silod dockerd; do
        dk "$name" rmi -f bench/big:1 >/dev/null 2>&1 || true
        dk "$name" rmi -f "$image" >/dev/null 2>&1 || true
        dk "$name" image prune -af >/dev/null 2>&1 || true
        timed "$work/load-$name" dk "$name" load -i "$work/image.tar"
        dk "$name" tag bench/big:1 "$image"
    done
    # unpack vs tar -x
    rm -rf "$work/u1" "$work/u2"; mkdir "$work/u1" "$work/u2"
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    timed "$work/unpack-silo" "$unpack" "$largest" "$work/u1"
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    timed "$work/unpack-tar" tar -C "$work/u2" -xf "$largest"
done

printf "%-8s %10s %10s %8s\n" metric silod dockerd ratio
for m in pull push save load; do
    a=$(median "$work/$m-silod"); b=$(median "$work/$m-dockerd")
    printf "%-8s %10s %10s %8s\n" "$m" "$a" "$b" "$(ratio "$a" "$b")"
done
a=$(median "$work/unpack-silo"); b=$(median "$work/unpack-tar")
printf "%-8s %10s %10s %8s   (silo extractor vs tar -x)\n" unpack "$a" "$b" "$(ratio "$a" "$b")"
