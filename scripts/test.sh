#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit + the integration binary, which drives the real
# `berth` server and CLI), the Python tests of the worker shim, and the SDK against real servers.
# Every stage runs even when an earlier one failed; the closing lines list each skipped test with
# its reason and end with `summary: N passed, N failed, N skipped`. Exits non-zero when anything
# failed. Arguments go to the Rust test runner (e.g. a nextest filter).
#
# Tests pin the tools they depend on: the uv under test is the one installed here
# (BERTH_TEST_UV), the interpreter is the schema venv's (BERTH_TEST_PYTHON), and every server a
# test starts builds environments with venv + pip unless the test gives it that uv. What the
# developer has on PATH does not change what a test sees.
set -euo pipefail
cd "$(dirname "$0")/.."

# Interpreter with inference-schema + numpy so the schema conformance cases run in Rust and Python.
BERTH_TEST_PYTHON="$(bash scripts/schema-python.sh)"
export BERTH_TEST_PYTHON
# uv, so the environment builder's uv path is tested as well as venv + pip.
BERTH_TEST_UV="$(dirname "$BERTH_TEST_PYTHON")/uv"
if [[ ! -x "$BERTH_TEST_UV" ]]; then
    "$BERTH_TEST_PYTHON" -m pip install --quiet --disable-pip-version-check uv >&2
fi
export BERTH_TEST_UV
# One throw-away PostgreSQL for the store tests, stopped when this script exits (tests start their own when unset).
BERTH_TEST_POSTGRES_URL="$(bash scripts/test-postgres.sh $$)" || BERTH_TEST_POSTGRES_URL=""
export BERTH_TEST_POSTGRES_URL

# S3-compatible server (moto) for the object-store blob tests; ends with this script.
BERTH_TEST_S3_ENDPOINT="$(bash scripts/test-s3.sh $$)" || BERTH_TEST_S3_ENDPOINT=""
export BERTH_TEST_S3_ENDPOINT

results="target/test-results"
rm -rf "$results"
mkdir -p "$results"
results="$(cd "$results" && pwd)"
export BERTH_TEST_SKIP_LOG="$results/rust-skips.txt"

set +e
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --features berth/kubernetes --locked --no-fail-fast "$@" 2>&1 | tee "$results/rust.log"
else
    cargo test --workspace --features berth/kubernetes --locked --no-fail-fast "$@" 2>&1 | tee "$results/rust.log"
fi

# Python suites: each leaves py-<name>.json; a suite that leaves none counts as failed.
python_suite() {
    local name="$1" dir="$2" python="${3:-python3}"
    echo "$dir" >"$results/py-$name.expected"
    "$python" scripts/pyunit.py "$dir" "$results/py-$name.json"
}
python_suite shim python/tests
# The SDK against real servers started from the binary the Rust tests just built.
BERTH_BIN="$PWD/target/debug/berth" python_suite sdk python/sdk_tests
# Berth Studio (the web console) in headless Chromium via Playwright; installs both when missing.
if STUDIO_PYTHON="$(bash scripts/studio-python.sh)"; then
    BERTH_BIN="$PWD/target/debug/berth" python_suite studio python/studio_tests "$STUDIO_PYTHON"
else
    echo "python/studio_tests" >"$results/py-studio.expected"
fi
set -e

python3 scripts/test_summary.py "$results"
