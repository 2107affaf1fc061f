#!/bin/bash
# bench/engine.sh — side-by-side timing of silod and Debian's dockerd (20.10, its own
# containerd, default runc) driven by the SAME docker CLI, on the SAME busybox image
# (one rootfs tarball from scripts/mkrootfs.sh, `docker import`ed into both daemons).
# Both daemons run on private sockets, data roots and exec roots under one mktemp dir;
# /var/lib/docker and /run/docker.sock are never used. Daemons alternate per iteration.
#   run:     `docker run --rm --network none busybox true`                 (RUNS times)
#   exec:    `docker exec C true` into a running `sleep 100000` container  (RUNS times)
#   start50: 50 concurrent `docker run -d --network none busybox sleep 100000` (ROUNDS)
#   rm50:    50 concurrent `docker rm -f` of those containers                (ROUNDS)
#   startup: restart of each daemon with STARTUP_N (default 1000; 0 skips) created
#            containers on record, until /_ping answers                   (ROUNDS)
#   mon_*:   with the 50 containers idle, per-container supervisor memory from
#            /proc/PID/smaps_rollup: silo-monitor under silod, containerd-shim(-runc-v2)
#            under dockerd. priv = Private_Clean + Private_Dirty; pss = Pss (KiB).
# Prints medians (ms, or KiB for memory) and the ratio silod/dockerd. Run as root.
# Every timed docker call goes through `timeout`, so both columns carry its ~1 ms.
#
# Environment: RUNS (default 20), ROUNDS (default 3), STARTUP_N (default 1000), DOCKER (default
#   /usr/local/bin/docker), SILO_BIN_DIR (dir with silod, silo-monitor, silo-runtime;
#   default target/release, built with `cargo build --release` if anything is missing).
set -euo pipefail
export LC_ALL=C   # EPOCHREALTIME must use a decimal point
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-20}
ROUNDS=${ROUNDS:-3}
STARTUP_N=${STARTUP_N:-1000}
N=50
DOCKER=${DOCKER:-/usr/local/bin/docker}

[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
[ -x "$DOCKER" ] || { echo "bench: docker CLI not found at $DOCKER (set DOCKER)" >&2; exit 1; }
command -v dockerd >/dev/null || { echo "bench: dockerd is required (apt-get install docker.io)" >&2; exit 1; }
command -v containerd >/dev/null || { echo "bench: containerd is required (apt-get install containerd)" >&2; exit 1; }

# Binaries.
if [ -n "${SILO_BIN_DIR:-}" ]; then
    bin=$SILO_BIN_DIR
else
    bin=$repo/target/release
    if ! [ -x "$bin/silod" ] || ! [ -x "$bin/silo-monitor" ] || ! [ -x "$bin/silo-runtime" ]; then
        echo "bench: building release binaries" >&2
        (cd "$repo" && cargo build --release -p silod -p silo-monitor -p silo-runtime) >&2
    fi
fi
for b in silod silo-monitor silo-runtime; do
    [ -x "$bin/$b" ] || { echo "bench: $bin/$b is missing" >&2; exit 1; }
done

# Short on purpose: silo-monitor sockets live at EXEC_ROOT/s/<64 hex id>/attach.sock,
# which must fit in sun_path (108 bytes).
work=$(mktemp -d /tmp/eb.XXXXXX)
tag=${work##*.}
cgparent=silo-engine-bench-$tag
names=(silod dockerd)
declare -A pid=()
unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH

# sock NAME — the daemon's private socket.
sock() { case $1 in silod) echo "$work/silod/silod.sock" ;; dockerd) echo "$work/dockerd/docker.sock" ;; esac; }
# dk NAME ARGS... — the shared docker CLI against one daemon. 120 s limit, then SIGKILL
# 5 s later (`docker run` proxies SIGTERM to the container instead of exiting).
dk() {
    local name=$1 s; shift
    case $name in silod) s=$work/silod/silod.sock ;; *) s=$work/dockerd/docker.sock ;; esac
    DOCKER_HOST=unix://$s DOCKER_CONFIG=$work/docker-config-$name timeout -k 5 120 "$DOCKER" "$@"
}
export -f dk
export DOCKER work

# procs_of NAME — pids of the per-container supervisors that belong to our daemon NAME.
procs_of() {
    local p comm cmd
    for p in /proc/[0-9]*; do
        comm=$(cat "$p/comm" 2>/dev/null) || continue
        case $1:$comm in
            silod:silo-monitor | dockerd:containerd-shim*) ;;
            *) continue ;;
        esac
        cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
        [[ $cmd == *"$work"* ]] && echo "${p#/proc/}"
    done
    return 0
}

stop_daemon() {
    local name=$1 p=${pid[$1]:-} i
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 1 150); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "pid[$name]"
}

cleanup() {
    set +e
    trap - EXIT INT TERM
    for name in "${names[@]}"; do
        [ -n "${pid[$name]:-}" ] || continue
        ids=$(dk "$name" ps -aq 2>/dev/null)
        [ -n "$ids" ] && echo "$ids" | xargs -r -P 50 -n 1 bash -c 'dk "$0" rm -f "$1" >/dev/null 2>&1' "$name"
    done
    for name in "${names[@]}"; do stop_daemon "$name"; done
    # Supervisors left behind (silod leaves containers running when it stops).
    for name in "${names[@]}"; do
        for p in $(procs_of "$name"); do kill -KILL "$p" 2>/dev/null; done
    done
    # Mounts under the temp dir, deepest first, lazily.
    awk -v root="$work" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo \
        | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- \
        | while read -r mp; do umount -l "$mp" 2>/dev/null; done
    for d in /sys/fs/cgroup/*/"$cgparent"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "bench: $1" >&2
    for f in "$work/silod/silod.log" "$work/dockerd/dockerd.log"; do
        [ -s "$f" ] && { echo "--- tail of $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}

# The image: one tarball for both daemons.
"$repo/scripts/mkrootfs.sh" "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

# The daemons.
mkdir -p "$work/silod" "$work/dockerd"
start_daemon() {
    case $1 in
    silod)
        "$bin/silod" -H "unix://$(sock silod)" --data-root "$work/silod/data" \
            --exec-root "$work/silod/exec" --monitor "$bin/silo-monitor" --runtime "$bin/silo-runtime" \
            </dev/null >/dev/null 2>>"$work/silod/silod.log" &
        pid[silod]=$! ;;
    dockerd)
        dockerd -H "unix://$(sock dockerd)" --data-root "$work/dockerd/data" \
            --exec-root "$work/dockerd/exec" --pidfile "$work/dockerd/docker.pid" \
            --bridge none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
            --userland-proxy=false --cgroup-parent "$cgparent" \
            </dev/null >>"$work/dockerd/dockerd.log" 2>&1 &
        pid[dockerd]=$! ;;
    esac
}
start_daemon silod
start_daemon dockerd
for name in "${names[@]}"; do
    ok=
    for _ in $(seq 1 300); do
        kill -0 "${pid[$name]}" 2>/dev/null || fail "$name exited during startup"
        if dk "$name" version --format '{{.Server.Version}}' >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.2
    done
    [ -n "$ok" ] || fail "$name did not answer on $(sock "$name") within 60 s"
    dk "$name" import "$work/busybox.tar" busybox:latest >/dev/null 2>"$work/err" \
        || fail "$name import failed: $(cat "$work/err")"
done
echo "bench: silod $(dk silod version --format '{{.Server.Version}}'), dockerd $(dk dockerd version --format '{{.Server.Version}}'), client $("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null)" >&2

# Timestamps: ${EPOCHREALTIME/./}000 is the wall clock in ns without a fork (µs resolution).
# median_ms FILE — median of ns values, in ms with 2 decimals; median_raw FILE — as is.
median() {
    sort -n "$1" | awk -v div="$2" -v fmt="$3" '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf fmt "\n", m / div }'
}
median_ms() { median "$1" 1e6 "%.2f"; }
median_raw() { median "$1" 1 "%.0f"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f\n", a / b }'; }
# order I — both daemons, the first one flipped every iteration.
order() { if (( $1 % 2 )); then echo silod dockerd; else echo dockerd silod; fi; }

echo "bench: $RUNS runs of run/exec, $ROUNDS rounds of $N parallel starts/removals" >&2

# 1. run --rm
for i in $(seq 1 "$RUNS"); do
    for name in $(order "$i"); do
        t0=${EPOCHREALTIME/./}000
        dk "$name" run --rm --network none busybox true </dev/null >/dev/null 2>"$work/err" \
            || fail "$name run failed: $(cat "$work/err")"
        t1=${EPOCHREALTIME/./}000
        echo $((t1 - t0)) >> "$work/run-$name"
    done
done

# 2. exec into a running container
for name in "${names[@]}"; do
    dk "$name" run -d --network none --name sleeper busybox sleep 100000 >/dev/null 2>"$work/err" \
        || fail "$name run -d failed: $(cat "$work/err")"
done
for i in $(seq 1 "$RUNS"); do
    for name in $(order "$i"); do
        t0=${EPOCHREALTIME/./}000
        dk "$name" exec sleeper true </dev/null >/dev/null 2>"$work/err" \
            || fail "$name exec failed: $(cat "$work/err")"
        t1=${EPOCHREALTIME/./}000
        echo $((t1 - t0)) >> "$work/exec-$name"
    done
done
for name in "${names[@]}"; do
    dk "$name" rm -f sleeper >/dev/null 2>"$work/err" || fail "$name rm -f sleeper failed: $(cat "$work/err")"
done

# 3. 50 parallel starts, then 50 parallel removals; 4. memory while they idle.
# shellcheck disable=SC2016
start_one='dk "$0" run -d --network none --name "b$1" busybox sleep 100000 >/dev/null 2>"$work/err-$0-$1" || { cat "$work/err-$0-$1" >&2; exit 1; }'
# shellcheck disable=SC2016
rm_one='dk "$0" rm -f "b$1" >/dev/null 2>"$work/err-$0-$1" || { cat "$work/err-$0-$1" >&2; exit 1; }'
for r in $(seq 1 "$ROUNDS"); do
    for name in $(order "$r"); do
        t0=${EPOCHREALTIME/./}000
        seq 1 $N | xargs -P $N -n 1 bash -c "$start_one" "$name" 2>"$work/err" \
            || fail "$name: parallel docker run -d failed: $(head -c 2000 "$work/err")"
        t1=${EPOCHREALTIME/./}000
        echo $((t1 - t0)) >> "$work/start50-$name"
        running=$(dk "$name" ps -q | wc -l)
        [ "$running" -eq $N ] || fail "$name: $running containers running after $N starts"
        if [ "$r" -eq "$ROUNDS" ]; then
            sleep 2   # let them settle into idle
            for p in $(procs_of "$name"); do
                awk '/^Private_(Clean|Dirty):/ { priv += $2 } /^Pss:/ { pss = $2 }
                     END { print priv > "/dev/stdout"; print pss > "/dev/stderr" }' \
                    "/proc/$p/smaps_rollup" >> "$work/priv-$name" 2>> "$work/pss-$name"
            done
            echo "bench: $name: $(wc -l < "$work/priv-$name") supervisor processes measured" >&2
        fi
        t0=${EPOCHREALTIME/./}000
        seq 1 $N | xargs -P $N -n 1 bash -c "$rm_one" "$name" 2>"$work/err" \
            || fail "$name: parallel docker rm -f failed: $(head -c 2000 "$work/err")"
        t1=${EPOCHREALTIME/./}000
        echo $((t1 - t0)) >> "$work/rm50-$name"
        left=$(dk "$name" ps -aq | wc -l)
        [ "$left" -eq 0 ] || fail "$name: $left containers left after $N removals"
    done
done

# 5. Daemon startup with STARTUP_N containers on record (created, not
# running): stop the daemon, start it again, time until /_ping answers
# (curl polling every 1 ms on the socket).
if [ "$STARTUP_N" -gt 0 ] && command -v curl >/dev/null; then
    # shellcheck disable=SC2016
    create_one='dk "$0" create --network none --name "s$1" busybox true >/dev/null 2>"$work/err-$0-$1" || { cat "$work/err-$0-$1" >&2; exit 1; }'
    for name in "${names[@]}"; do
        seq 1 "$STARTUP_N" | xargs -P 8 -n 1 bash -c "$create_one" "$name" 2>"$work/err" \
            || fail "$name: creating $STARTUP_N containers failed: $(head -c 2000 "$work/err")"
    done
    for r in $(seq 1 "$ROUNDS"); do
        for name in $(order "$r"); do
            stop_daemon "$name"
            rm -f "$(sock "$name")"
            t0=${EPOCHREALTIME/./}000
            start_daemon "$name"
            until curl -sf --unix-socket "$(sock "$name")" http://d/_ping >/dev/null 2>&1; do
                kill -0 "${pid[$name]}" 2>/dev/null || fail "$name exited during restart"
                sleep 0.001
            done
            t1=${EPOCHREALTIME/./}000
            echo $((t1 - t0)) >> "$work/startup-$name"
        done
    done
    for name in "${names[@]}"; do
        dk "$name" ps -aq | xargs -r -P 8 -n 50 bash -c 'dk "$0" rm -f "$@" >/dev/null' "$name"
    done
fi

get() { if [ -s "$work/$1" ]; then "$2" "$work/$1"; else echo n/a; fi; }
printf '%-13s %10s %10s %14s\n' row silod dockerd silod/dockerd
for row in run exec start50 rm50 startup; do
    s=$(get "$row-silod" median_ms); d=$(get "$row-dockerd" median_ms)
    printf '%-13s %10s %10s %14s\n' "${row}_ms" "$s" "$d" "$(ratio "$s" "$d")"
done
for row in priv pss; do
    s=$(get "$row-silod" median_raw); d=$(get "$row-dockerd" median_raw)
    printf '%-13s %10s %10s %14s\n' "mon_${row}_kib" "$s" "$d" "$(ratio "$s" "$d")"
done
echo "(medians: run/exec over $RUNS runs, start50/rm50 over $ROUNDS rounds of $N parallel docker CLIs; memory per silo-monitor vs per containerd-shim with $N idle containers; startup: restart until /_ping answers with $STARTUP_N created containers on record, $ROUNDS rounds, warm page cache)"
exit 0
