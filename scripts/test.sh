#!/bin/bash
# test.sh — the project's whole check, as CI runs it: formatting, lints, then every
# test of the workspace (unit tests and the integration tests that start real
# containers, including the dockerd ones). Run as root on Debian 12.
# The last lines printed are cargo test's summary lines.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
exec cargo test --workspace
