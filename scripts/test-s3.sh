#!/usr/bin/env bash
# Starts an S3-compatible server (moto) for the object-store blob tests and prints its endpoint.
# Usage: BERTH_TEST_S3_ENDPOINT="$(bash scripts/test-s3.sh $$)" — the server stops once the
# process with that pid (the test script) has ended. Installs moto into target/moto-venv when
# no interpreter here has it.
set -euo pipefail
cd "$(dirname "$0")/.."
parent="${1:-$PPID}"

has_moto() { "$1" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; }

venv="target/moto-venv"
if has_moto "$venv/bin/python"; then
    python="$venv/bin/python"
elif has_moto python3; then
    python="python3"
else
    echo "test-s3.sh: installing moto[server] into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]' >&2
    python="$venv/bin/python"
fi

mkdir -p target/tmp
out="$(mktemp target/tmp/moto.XXXXXX)"
nohup "$python" scripts/moto_server.py --parent "$parent" >"$out" 2>&1 </dev/null &
for _ in $(seq 1 100); do
    endpoint="$(head -n1 "$out" 2>/dev/null || true)"
    if [[ "$endpoint" == http://* ]]; then
        echo "$endpoint"
        exit 0
    fi
    sleep 0.2
done
echo "test-s3.sh: moto did not start:" >&2
cat "$out" >&2
exit 1
