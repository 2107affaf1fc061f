#!/bin/bash
# bench/build.sh — image builds side by side: the same multi-stage Dockerfile
# (14 steps: ARG, FROM, ARG, WORKDIR, COPY of FILES files, four RUNs, ENV,
# FROM, COPY --from, LABEL, CMD) built through the docker CLI's classic
# builder by silod and by Debian's dockerd, cold (--no-cache, with one
# context file changed so no layer can be reused) and fully cached, each
# daemon in a private network namespace of its own. Prints medians (ms)
# and ratios.
# Run as root.
# Environment: RUNS (default 5), FILES (default 3000), DOCKER (default
#   /usr/local/bin/docker), SILO_BIN_DIR (default target/release, built if
#   missing).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" 5
FILES=${FILES:-3000}
bench_work bb silod dockerd
dk() { local n=$1; shift; DOCKER_BUILDKIT=0 DOCKER_HOST=unix://$(sock "$n") timeout -k 5 600 "$DOCKER" "$@"; }
bench_daemons silod dockerd
# The context: FILES small files and the Dockerfile.
ctx=$work/ctx
mkdir -p "$ctx/files"
for i in $(seq 1 "$FILES"); do echo "file $i" > "$ctx/files/f$i.txt"; done
cat > "$ctx/Dockerfile" <<'DF'
ARG BASE=busybox
FROM ${BASE} AS build
ARG N=1
WORKDIR /src
COPY files/ ./files/
RUN find files -type f | wc -l > count
RUN cat files/* | sha256sum > sums
ENV MODE=release
RUN echo "$N $MODE" > n
RUN ls -l files | tail -1 > last
FROM busybox
COPY --from=build /src/count /src/sums /src/n /out/
LABEL app=bench
CMD ["cat", "/out/count"]
DF
now() { echo "${EPOCHREALTIME/./}000"; }
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f\n", m / 1e6 }'; }
for i in $(seq 1 "$RUNS"); do
    # A new context each run: a cold build must make every layer anew
    # (the same COPY content would find its layer already stored).
    echo "run $i" > "$ctx/files/f1.txt"
    for n in silod dockerd; do
        t0=$(now); dk "$n" build --no-cache -q -t bench:cold "$ctx" >/dev/null; t1=$(now)
        echo $((t1 - t0)) >> "$work/$n-cold"
        t0=$(now); dk "$n" build -q -t bench:warm "$ctx" >/dev/null; t1=$(now)
        echo $((t1 - t0)) >> "$work/$n-cached"
    done
done
[ "$(dk silod run --rm bench:warm)" = "$FILES" ] || { echo "bench: silod's image is wrong" >&2; exit 1; }
printf "%-8s %12s %12s\n" engine cold-ms cached-ms
for n in silod dockerd; do
    printf "%-8s %12s %12s\n" "$n" "$(median "$work/$n-cold")" "$(median "$work/$n-cached")"
done
awk -v sc="$(median "$work/silod-cold")" -v dc="$(median "$work/dockerd-cold")" \
    -v sw="$(median "$work/silod-cached")" -v dw="$(median "$work/dockerd-cached")" 'BEGIN {
    printf "silod/dockerd: cold %.2f (target <= 0.5), cached %.2f (target <= 0.2)\n", sc / dc, sw / dw }'
