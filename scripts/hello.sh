#!/bin/bash
# hello.sh — first run on a fresh Debian 12 machine (as root): installs the
# packages silo needs, builds silo (release), starts silod, imports a busybox
# image made from Debian's busybox-static as busybox:latest, and runs
#   silo run --rm busybox echo hello
#
# silod keeps running afterwards (socket /run/silo/silod.sock, data
# /var/lib/silo, log /run/silo/silod.log), so you can go on with
#   ./target/release/silo ps -a
#   DOCKER_HOST=unix:///run/silo/silod.sock docker run --rm busybox echo hi
#
# Environment: SILO_SKIP_INSTALL=1 skips apt-get.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" != 0 ]; then
    echo "hello.sh: run as root (containers need it)" >&2
    exit 1
fi

if [ -z "${SILO_SKIP_INSTALL:-}" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends busybox-static libseccomp-dev pkg-config gcc libc6-dev nftables iproute2
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
    echo "hello.sh: cargo not found; install Rust >= 1.87 with rustup" >&2
    exit 1
fi
cargo build --release -p silod -p silo-monitor -p silo-runtime -p silo
bin=$(pwd)/target/release
sock=/run/silo/silod.sock

# Start silod unless one already answers on the socket.
if ! "$bin/silo" -H "unix://$sock" version >/dev/null 2>&1; then
    mkdir -p /run/silo
    nohup "$bin/silod" -H "unix://$sock" >/run/silo/silod.log 2>&1 &
    for _ in $(seq 1 100); do
        [ -S "$sock" ] && break
        sleep 0.05
    done
fi

# busybox:latest from Debian's busybox-static, imported once.
if ! "$bin/silo" -H "unix://$sock" image inspect busybox:latest >/dev/null 2>&1; then
    work=$(mktemp -d /tmp/silo-hello.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    ./scripts/mkrootfs.sh "$work/rootfs" >/dev/null
    tar -C "$work/rootfs" -cf "$work/busybox.tar" .
    "$bin/silo" -H "unix://$sock" import "$work/busybox.tar" busybox:latest >/dev/null
fi

"$bin/silo" -H "unix://$sock" run --rm --network none busybox echo hello
