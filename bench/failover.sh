#!/usr/bin/env bash
# Leader failover time of `berth server --cluster`: two servers on one
# PostgreSQL database; KILLS times (default 5) the leader is killed with
# `kill -9` and the time until the other server's /readyz reports it leads is
# measured (then the killed one is started again, as a follower). Prints each
# time and the median. The lease lasts 7 s and followers try every second, so
# the bound is about 8 s.
#
#   bash bench/failover.sh [KILLS]
#
# Uses $BERTH_BIN (default target/debug/berth, built if missing) and
# $BERTH_TEST_POSTGRES_URL, else a cluster started with scripts/test-postgres.sh.
# Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

kills="${1:-5}"
bin="${BERTH_BIN:-target/debug/berth}"
[[ -x "$bin" ]] || cargo build --quiet -p berth
admin="${BERTH_TEST_POSTGRES_URL:-$(bash scripts/test-postgres.sh $$)}"
db="berth_failover_$$"
psql "$admin" -qc "CREATE DATABASE $db" >/dev/null
url="${admin%/*}/$db"
work="$(mktemp -d /tmp/berth-failover.XXXXXX)"
declare -a pids
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

start() { # start INDEX: a server with data dir $work/INDEX; waits for its config.json
    local i="$1"
    mkdir -p "$work/$i"
    rm -f "$work/$i/config.json"
    "$bin" server --data "$work/$i" --addr 127.0.0.1:0 --store "$url" --cluster --uv none \
        >>"$work/$i.log" 2>&1 &
    pids[$i]=$!
    for _ in $(seq 200); do [[ -s "$work/$i/config.json" ]] && return 0; sleep 0.05; done
    echo "server $i did not start; see $work/$i.log" >&2
    exit 1
}
endpoint() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$work/$1/config.json"; }
role() { curl -s --max-time 2 "$(endpoint "$1")/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["role"])' 2>/dev/null || echo down; }

start 0
start 1
times=()
for k in $(seq "$kills"); do
    leader=""
    for _ in $(seq 200); do
        for i in 0 1; do [[ "$(role "$i")" == leader ]] && leader="$i"; done
        [[ -n "$leader" ]] && break
        sleep 0.05
    done
    [[ -n "$leader" ]] || { echo "no leader" >&2; exit 1; }
    other=$((1 - leader))
    t0="$(date +%s.%N)"
    kill -9 "${pids[$leader]}"
    wait "${pids[$leader]}" 2>/dev/null || true
    until [[ "$(role "$other")" == leader ]]; do sleep 0.05; done
    t1="$(date +%s.%N)"
    t="$(python3 -c "print(f'{$t1 - $t0:.2f}')")"
    echo "kill $k: server $other leads ${t} s after server $leader was killed"
    times+=("$t")
    start "$leader"
done
median="$(printf '%s\n' "${times[@]}" | sort -n | python3 -c 'import sys, statistics; print(f"{statistics.median(float(l) for l in sys.stdin):.2f}")')"
echo "leader failover, median of $kills kills: ${median} s (lease 7 s, followers try every 1 s)"
