#!/usr/bin/env bash
# Side-by-side scoring benchmark: Berth against the reference scoring server
# (azureml-inference-server-http, `azmlinfsrv`), one worker each, same score.py, same
# interpreter and packages, same request body, same load generator, same machine. Berth runs
# at the v1 defaults (maxConcurrentRequestsPerContainer 1, the headline) and with
# maxConcurrentRequestsPerContainer 64; echo also runs against bench/floor (a plain hyper echo
# server: the HTTP floor).
#
#   bash bench/scoring_compare.sh [--runs 3] [--duration 8] [--scripts echo,digits]
#                                 [--configs defaults,64[,2replicas]] [--markdown FILE] [--keep]
#
# Prepares what it needs, then hands over to bench/scoring_compare.py (stdlib only):
#   - wrk (apt-get install -y wrk when missing; needs root);
#   - a scratch venv target/bench-venv with azureml-inference-server-http and scikit-learn
#     (pip from PyPI; BENCH_VENV and BENCH_PIP_PACKAGES override);
#   - the floor: cargo build --release --offline --manifest-path bench/floor/Cargo.toml
#     (target dir target/bench-floor; its dependencies are the workspace's, so no network);
#   - cargo build --release (target/release/berth). BENCH_REV=<git rev> builds a clean export
#     of that revision instead (target/bench-src/), BERTH_BIN=<path> uses a binary as is.
# Prints figures and ratios; asserts nothing about them. Exits non-zero only when a server
# fails to start, answers an error, or the two servers answer differently.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${BENCH_VENV:-$PWD/target/bench-venv}"
packages="${BENCH_PIP_PACKAGES:-azureml-inference-server-http==1.5.1 scikit-learn==1.9.1}"

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "error: wrk is not installed; install it (apt-get install -y wrk) or run as root" >&2
        exit 1
    fi
    echo "== installing wrk (apt)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv" >&2
    python3 -m venv "$venv"
fi
# shellcheck disable=SC2086
if ! "$venv/bin/python" -c 'import azureml_inference_server_http, sklearn' 2>/dev/null \
    || [ ! -x "$venv/bin/azmlinfsrv" ]; then
    echo "== pip install $packages" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check $packages >&2
fi

if [ -n "${BERTH_BIN:-}" ]; then
    berth="$BERTH_BIN"                      # a binary built elsewhere; no build
elif [ -n "${BENCH_REV:-}" ]; then
    # A clean export of a committed revision (git archive; the repository is not touched),
    # built in its own target dir: for when the working tree is mid-edit.
    rev="$(git rev-parse --short "$BENCH_REV")"
    src="$PWD/target/bench-src/$rev"
    if [ ! -f "$src/Cargo.toml" ]; then
        mkdir -p "$src"
        git archive "$rev" | tar -x -m -C "$src"   # -m: fresh mtimes, so cargo rebuilds
    fi
    echo "== cargo build --release (revision $rev, in $src)" >&2
    CARGO_TARGET_DIR="$PWD/target/bench-src/target" \
        cargo build --release --locked --quiet --manifest-path "$src/Cargo.toml"
    berth="$PWD/target/bench-src/target/release/berth"
else
    echo "== cargo build --release" >&2
    cargo build --release --locked --quiet
    berth="$PWD/target/release/berth"
fi

floor="$PWD/target/bench-floor/release/berth-bench-floor"
if [ ! -x "$floor" ] || [ -n "$(find bench/floor -newer "$floor" -type f 2>/dev/null)" ]; then
    echo "== cargo build --release (bench/floor)" >&2
    CARGO_TARGET_DIR="$PWD/target/bench-floor" \
        cargo build --release --offline --quiet --manifest-path bench/floor/Cargo.toml
fi

exec "$venv/bin/python" bench/scoring_compare.py --venv "$venv" --berth "$berth" \
    --floor "$floor" "$@"
