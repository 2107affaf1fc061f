#!/bin/bash
# test.sh — the project's whole check, as CI runs it: formatting, lints, then every
# test of the workspace (unit tests and the integration tests that start real
# containers, including the dockerd ones), then the Docker SDK for Python tests
# (tests/sdk, pytest in a venv). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== Docker SDK for Python (tests/sdk)"
# A venv of our own, so the SDK and pytest come from PyPI whatever the host has.
venv=${SILO_VENV:-/var/tmp/silo-venv}
if ! "$venv/bin/python" -c 'import docker, pytest, grpc, grpc_tools' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'docker>=7,<8' 'pytest>=8' 'grpcio>=1.60,<2' 'grpcio-tools>=1.60,<2'
fi
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/sdk
