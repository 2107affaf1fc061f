# bench/lib.sh — the preamble the side-by-side benches share: strict mode, the
# repository root, RUNS and DOCKER defaults, the root and dockerd checks, and
# the release binaries in $bin (SILO_BIN_DIR, else target/release, built if
# missing). Source it with the default RUNS as the first argument.
set -euo pipefail
export LC_ALL=C   # EPOCHREALTIME must use a decimal point
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-$1}
DOCKER=${DOCKER:-/usr/local/bin/docker}
[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
[ -x "$DOCKER" ] || { echo "bench: docker CLI not found at $DOCKER (set DOCKER)" >&2; exit 1; }
command -v dockerd >/dev/null || { echo "bench: dockerd is required (apt-get install docker.io)" >&2; exit 1; }
bin=${SILO_BIN_DIR:-$repo/target/release}
if ! [ -x "$bin/silod" ] || ! [ -x "$bin/silo-monitor" ] || ! [ -x "$bin/silo-runtime" ]; then
    echo "bench: building release binaries" >&2
    (cd "$repo" && cargo build --release -p silod -p silo-monitor -p silo-runtime) >&2
fi
