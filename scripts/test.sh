#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit + the integration binary, which drives
# the real `berth` server and CLI) and the Python tests of the worker shim.
set -euo pipefail
cd "$(dirname "$0")/.."

# Interpreter with inference-schema + numpy so the schema conformance cases run in Rust and Python.
BERTH_TEST_PYTHON="$(bash scripts/schema-python.sh)"
export BERTH_TEST_PYTHON
# uv, so the environment builder's uv path is tested as well as venv + pip.
BERTH_TEST_UV="$(dirname "$BERTH_TEST_PYTHON")/uv"
if [[ ! -x "$BERTH_TEST_UV" ]]; then
    "$BERTH_TEST_PYTHON" -m pip install --quiet uv >&2
fi
export BERTH_TEST_UV

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast "$@"
else
    cargo test --workspace --locked "$@"
fi

python3 -m unittest discover -s python/tests -v

# The SDK against real servers started from the binary the Rust tests just built.
BERTH_BIN="$PWD/target/debug/berth" python3 -m unittest discover -s python/sdk_tests -v

# --- Berth Studio (the web console) in headless Chromium via Playwright; installs both when missing.
STUDIO_PYTHON="$(bash scripts/studio-python.sh)"
BERTH_BIN="$PWD/target/debug/berth" "$STUDIO_PYTHON" -m unittest discover -s python/studio_tests -v
# --- end Berth Studio
