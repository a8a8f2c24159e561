#!/usr/bin/env bash
# Gateway overhead of a remote replica (berth replica over TLS on loopback) vs a local one
# (Unix socket): builds the release binary and runs bench/remote_replica.py (see its docstring).
#
#   bash bench/remote_replica.sh [--seconds 8] [--runs 3]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null 2>&1 || { echo "error: wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
cargo build --release --locked --quiet -p berth
exec python3 bench/remote_replica.py "$@"
