#!/usr/bin/env bash
# Prints the path of a Python interpreter that has `inference-schema` and `numpy` (and, for the
# no-code scorer tests, `onnx`, `onnxruntime` and `scikit-learn`), so that the worker conformance
# cases needing them run instead of being skipped:
#
#   BERTH_TEST_PYTHON=$(bash scripts/schema-python.sh) python3 -m unittest discover -s python/tests
#
# The interpreter lives in a venv at ${BERTH_SCHEMA_VENV:-target/schema-venv} (relative paths are
# taken from the repository root), created from ${BERTH_SCHEMA_BASE_PYTHON:-python3} and filled
# from PyPI with pip on first use; later runs reuse it. stdout carries only the interpreter's
# absolute path; progress and errors go to stderr. Exits non-zero when the venv cannot be built.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${BERTH_SCHEMA_VENV:-target/schema-venv}"
base="${BERTH_SCHEMA_BASE_PYTHON:-python3}"
packages=("inference-schema>=1.8,<2" "numpy" "onnx" "onnxruntime" "scikit-learn")
probe='import inference_schema.schema_decorators, numpy, onnx, onnxruntime, sklearn'

fail() {
    echo "schema-python: $*" >&2
    exit 1
}

python="$venv/bin/python"
if [[ -x "$python" ]] && "$python" -c "$probe" >/dev/null 2>&1; then
    echo "$(cd "$venv" && pwd)/bin/python"
    exit 0
fi

echo "schema-python: building $venv with ${packages[*]} (pip, PyPI)" >&2
if ! "$python" -c pass >/dev/null 2>&1; then
    # Missing, or left behind by an interpreter that is gone: (re)create it.
    "$base" -m venv --clear "$venv" >&2 \
        || fail "could not create a venv at $venv with $base (is its venv module installed?)"
fi
"$python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2 \
    || fail "pip could not install ${packages[*]} into $venv (is PyPI reachable?)"
"$python" -c "$probe" >&2 || fail "${packages[*]} installed into $venv but do not import"
echo "$(cd "$venv" && pwd)/bin/python"
