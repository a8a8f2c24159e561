#!/usr/bin/env bash
# Worker round trips against the limit: how much slower is scoring a trivial echo run() through
# the real supervisor, client, Unix socket and shim than calling the same run() in-process?
#
#   bash bench/worker_roundtrip.sh [REQUESTS] [CALLS]
#
# Builds crates/berth-worker/examples/roundtrip.rs in release and runs it (REQUESTS round trips,
# default 20,000: sequential, then 8 and 64 concurrent callers on one worker); then imports
# crates/berth-worker/fixtures/scripts/echo/score.py in one Python process and calls run(raw)
# CALLS times (default 1,000,000; best of 5) with the same body; then prints the ratios.
# The interpreter is $BERTH_TEST_PYTHON, else python3. Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

requests="${1:-20000}"
calls="${2:-1000000}"
python="${BERTH_TEST_PYTHON:-python3}"
script="crates/berth-worker/fixtures/scripts/echo/score.py"

cargo build --release --locked --quiet -p berth-worker --example roundtrip
socket="$(cargo run --release --locked --quiet -p berth-worker --example roundtrip -- \
    --requests "$requests" --python "$python")"

inproc="$("$python" - "$script" "$calls" <<'PY'
import importlib.util
import json
import sys
import time

path, calls = sys.argv[1], int(sys.argv[2])
spec = importlib.util.spec_from_file_location("score", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.init()
run, dumps = module.run, json.dumps
raw = '{"data": [[1.0, 2.0, 3.0]]}'  # the body the round trips send


def best_of(repeats, body):
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        body()
        best = min(best, time.perf_counter() - started)
    return best


def calls_only():
    for _ in range(calls):
        run(raw)


def calls_and_json():
    for _ in range(calls):
        dumps(run(raw))


calls_only()  # warm up
elapsed = best_of(5, calls_only)
print(f"inprocess_calls_per_s: {calls / elapsed:.0f}")
print(f"inprocess_us_per_call: {elapsed / calls * 1e6:.4f}")
elapsed = best_of(5, calls_and_json)
print(f"inprocess_with_json_dumps_us_per_call: {elapsed / calls * 1e6:.4f}")
PY
)"

echo "# worker round trips (Rust client -> Unix socket -> shim -> run()), $requests requests"
echo "$socket"
echo "# the same run() called in-process, $calls calls, best of 5"
echo "$inproc"

figure() { printf '%s\n%s\n' "$socket" "$inproc" | awk -F': ' -v key="$1" '$1 == key { print $2 }'; }
seq_us="$(figure sequential_us_per_request)"
seq_rps="$(figure sequential_rps)"
c64_rps="$(figure concurrency64_rps)"
call_us="$(figure inprocess_us_per_call)"
call_rate="$(figure inprocess_calls_per_s)"
json_us="$(figure inprocess_with_json_dumps_us_per_call)"
c64_us="$(figure concurrency64_us_per_request)"
echo "# ratios"
awk -v seq_us="$seq_us" -v call_us="$call_us" -v seq_rps="$seq_rps" -v c64_rps="$c64_rps" \
    -v call_rate="$call_rate" -v json_us="$json_us" -v c64_us="$c64_us" 'BEGIN {
    printf "round_trip_time_over_inprocess_call_time: %.0f\n", seq_us / call_us
    printf "round_trip_time_over_inprocess_call_with_json_dumps_time: %.0f\n", seq_us / json_us
    printf "concurrency64_time_per_request_over_inprocess_call_with_json_dumps_time: %.0f\n", c64_us / json_us
    printf "inprocess_calls_per_s_over_sequential_rps: %.0f\n", call_rate / seq_rps
    printf "inprocess_calls_per_s_over_concurrency64_rps: %.0f\n", call_rate / c64_rps
}'
