#!/usr/bin/env bash
# Prints the path of a Python interpreter that has Playwright for Python, for the console's
# browser tests (python/studio_tests), and makes sure headless Chromium from the system
# packages is installed at /usr/bin/chromium (apt-get, as root or through sudo, when missing):
#
#   BERTH_BIN=$PWD/target/debug/berth "$(bash scripts/studio-python.sh)" -m unittest discover -s python/studio_tests
#
# Playwright is pointed at /usr/bin/chromium; it never downloads a browser (`playwright install`
# is not run). The venv lives at ${BERTH_STUDIO_VENV:-target/studio-venv}, created from
# ${BERTH_STUDIO_BASE_PYTHON:-python3} and filled from PyPI on first use; later runs reuse it.
# stdout carries only the interpreter's absolute path; progress and errors go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${BERTH_STUDIO_VENV:-target/studio-venv}"
base="${BERTH_STUDIO_BASE_PYTHON:-python3}"
probe='import playwright.sync_api'

fail() {
    echo "studio-python: $*" >&2
    exit 1
}

if [[ ! -x /usr/bin/chromium ]]; then
    echo "studio-python: installing chromium (apt-get)" >&2
    sudo_cmd=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || fail "chromium is missing and this user cannot install it: run \`apt-get install -y chromium\` as root"
        sudo_cmd=(sudo -n)
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends chromium >&2 \
        || { "${sudo_cmd[@]}" apt-get update >&2 && DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends chromium >&2; } \
        || fail "apt-get could not install chromium"
fi

python="$venv/bin/python"
if [[ -x "$python" ]] && "$python" -c "$probe" >/dev/null 2>&1; then
    echo "$(cd "$venv" && pwd)/bin/python"
    exit 0
fi
echo "studio-python: building $venv with playwright (pip, PyPI)" >&2
if ! "$python" -c pass >/dev/null 2>&1; then
    "$base" -m venv --clear "$venv" >&2 \
        || fail "could not create a venv at $venv with $base (is its venv module installed?)"
fi
"$python" -m pip install --quiet --disable-pip-version-check playwright >&2 \
    || fail "pip could not install playwright into $venv (is PyPI reachable?)"
"$python" -c "$probe" >&2 || fail "playwright installed into $venv but does not import"
echo "$(cd "$venv" && pwd)/bin/python"
