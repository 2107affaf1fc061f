#!/bin/bash
# hello.sh — first run on a fresh Debian 12 machine (as root): installs the packages
# silo needs, builds silo-runtime (release), makes a busybox bundle and runs a
# container that prints "hello from silo".
#
# Environment:
#   SILO_RUNTIME=PATH       use this runtime binary instead of building one
#                           (e.g. /usr/sbin/runc to check this script itself)
#   SILO_SKIP_INSTALL=1     do not run apt-get
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" != 0 ]; then
    echo "hello.sh: run as root (containers need it)" >&2
    exit 1
fi

if [ -z "${SILO_SKIP_INSTALL:-}" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends busybox-static libseccomp-dev pkg-config gcc libc6-dev jq
fi

runtime=${SILO_RUNTIME:-}
if [ -z "$runtime" ]; then
    if ! command -v cargo >/dev/null; then
        echo "hello.sh: cargo not found; install Rust >= 1.87 with rustup" >&2
        exit 1
    fi
    cargo build --release -p silo-runtime
    runtime=$(pwd)/target/release/silo-runtime
fi

work=$(mktemp -d /tmp/silo-hello.XXXXXX)
trap 'rm -rf "$work"' EXIT
./scripts/mkrootfs.sh "$work/bundle/rootfs" >/dev/null
"$runtime" spec --bundle "$work/bundle"
jq '.process.terminal = false | .process.args = ["echo", "hello from silo"]' \
    "$work/bundle/config.json" > "$work/config.json"
mv "$work/config.json" "$work/bundle/config.json"

"$runtime" --root "$work/state" run --bundle "$work/bundle" "hello-$$"
