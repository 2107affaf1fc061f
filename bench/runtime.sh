#!/bin/bash
# bench/runtime.sh — side-by-side timing of silo-runtime, runc and crun on the same
# busybox bundle (args `true`, terminal off, runc spec's default namespaces including
# network). Two measurements, N runs each, runtimes alternated per iteration:
#   run:  `<rt> run` = create + start + wait + delete of a container running `true`
#   exec: `<rt> exec ID true` into a running container whose init is `sleep 1000`
# Prints medians in ms and the ratios silo/runc and silo/crun. Run as root.
#
# Environment: SILO_RUNTIME (default target/release/silo-runtime), RUNS (default 50).
# crun refuses hybrid cgroups while cgroup2 is mounted, so each crun call runs as
#   unshare -m sh -c 'umount /sys/fs/cgroup/unified; exec crun ...'
# and its times include that wrapper; the wrapper's own median is printed too.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-50}
SILO=${SILO_RUNTIME:-$repo/target/release/silo-runtime}
RUNC=$(command -v runc || true)
CRUN=$(command -v crun || true)

[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench: jq is required (apt-get install jq)" >&2; exit 1; }

work=$(mktemp -d /tmp/silo-bench.XXXXXX)
declare -a started=()
cleanup() {
    for entry in "${started[@]}"; do
        name=${entry%%:*}; id=${entry#*:}
        rt_call "$name" delete --force "$id" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# Which runtimes take part.
names=()
if [ -x "$SILO" ] && "$SILO" --version >/dev/null 2>&1; then
    names+=(silo)
else
    echo "bench: silo-runtime not usable at $SILO (build it: cargo build --release -p silo-runtime, or set SILO_RUNTIME); its column is left out" >&2
fi
[ -n "$RUNC" ] && names+=(runc) || echo "bench: runc not installed; its column is left out" >&2
[ -n "$CRUN" ] && names+=(crun) || echo "bench: crun not installed; its column is left out" >&2
[ ${#names[@]} -gt 0 ] || { echo "bench: no runtime to measure" >&2; exit 1; }

# rt_call NAME ARGS... — one runtime invocation with its own --root.
rt_call() {
    local name=$1; shift
    case $name in
        silo) "$SILO" --root "$work/root-silo" "$@" ;;
        runc) "$RUNC" --root "$work/root-runc" "$@" ;;
        crun) unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' sh \
                  "$CRUN" --root "$work/root-crun" "$@" ;;
    esac
}

# The bundle: busybox rootfs + runc's default spec, terminal off, writable root, `true`.
"$repo/scripts/mkrootfs.sh" "$work/bundle/rootfs" >/dev/null
(cd "$work/bundle" && "${RUNC:-$SILO}" spec)
jq '.process.terminal = false | .root.readonly = false | .process.args = ["true"]' \
    "$work/bundle/config.json" > "$work/config.tmp" && mv "$work/config.tmp" "$work/bundle/config.json"

now() { date +%s%N; }
# median FILE — median of the numbers (ns) in FILE, printed in ms with 2 decimals.
median() {
    sort -n "$1" | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.2f\n", m / 1e6 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f\n", a / b }'; }

fail() { echo "bench: $1" >&2; exit 1; }

echo "bench: $RUNS runs per runtime (${names[*]}), alternating" >&2

# 1. run (create + start + wait + delete)
for i in $(seq 1 "$RUNS"); do
    for name in "${names[@]}"; do
        id="b-$name-$i"
        t0=$(now)
        rt_call "$name" run --bundle "$work/bundle" "$id" </dev/null >/dev/null 2>"$work/err" \
            || fail "$name run failed: $(cat "$work/err")"
        t1=$(now)
        echo $((t1 - t0)) >> "$work/run-$name"
    done
done

# Wrapper overhead included in crun's numbers.
if [ -n "$CRUN" ]; then
    for i in $(seq 1 "$RUNS"); do
        t0=$(now)
        unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec true'
        t1=$(now)
        echo $((t1 - t0)) >> "$work/wrapper"
    done
fi

# 2. exec into a running container
mkdir -p "$work/sleep-bundle"
jq --arg root "$work/bundle/rootfs" '.process.args = ["sleep", "1000"] | .root.path = $root' \
    "$work/bundle/config.json" > "$work/sleep-bundle/config.json"
for name in "${names[@]}"; do
    rt_call "$name" run --detach --bundle "$work/sleep-bundle" "sleeper-$name" \
        </dev/null >/dev/null 2>"$work/err" || fail "$name run --detach failed: $(cat "$work/err")"
    started+=("$name:sleeper-$name")
done
for i in $(seq 1 "$RUNS"); do
    for name in "${names[@]}"; do
        t0=$(now)
        rt_call "$name" exec "sleeper-$name" true </dev/null >/dev/null 2>"$work/err" \
            || fail "$name exec failed: $(cat "$work/err")"
        t1=$(now)
        echo $((t1 - t0)) >> "$work/exec-$name"
    done
done

get() { if [ -s "$work/$1" ]; then median "$work/$1"; else echo n/a; fi; }
printf '%-6s %10s %10s %10s %12s %12s\n' op silo_ms runc_ms crun_ms silo/runc silo/crun
for op in run exec; do
    s=$(get "$op-silo"); r=$(get "$op-runc"); c=$(get "$op-crun")
    printf '%-6s %10s %10s %10s %12s %12s\n' "$op" "$s" "$r" "$c" "$(ratio "$s" "$r")" "$(ratio "$s" "$c")"
done
[ -s "$work/wrapper" ] && echo "(crun times include the unshare+umount wrapper: median $(median "$work/wrapper") ms)"
exit 0
