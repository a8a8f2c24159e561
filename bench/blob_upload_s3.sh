#!/usr/bin/env bash
# Model registration into object storage against the local folder: registers one SIZE_MIB model
# (default 1024, i.e. 1 GiB of random bytes) with `curl -F` into a fresh server using the local
# blob folder, then into one using `--blobs s3://...` on moto (scripts/test-s3.sh), and prints
# MiB/s and the server's peak RSS (VmHWM) for each, and the ratios. Prints figures; asserts
# nothing.
#
#   bash bench/blob_upload_s3.sh [SIZE_MIB]
#
# The server is $BERTH_BIN, else target/release/berth when it exists, else target/debug/berth
# (built when missing). The S3 endpoint is $BERTH_TEST_S3_ENDPOINT, else a moto started here.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib="${1:-1024}"
if [[ -n "${BERTH_BIN:-}" ]]; then
    bin="$BERTH_BIN"
elif [[ -x target/release/berth ]]; then
    bin="target/release/berth"
else
    cargo build --quiet -p berth
    bin="target/debug/berth"
fi
endpoint="${BERTH_TEST_S3_ENDPOINT:-$(bash scripts/test-s3.sh $$)}"
bucket="bench-$(date +%s)"
curl -fsS -X PUT "$endpoint/$bucket" >/dev/null

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
model="$work/model.bin"
head -c "$((size_mib << 20))" /dev/urandom >"$model"

# run NAME [server flags...]: prints "NAME seconds peak_rss_kib"
run() {
    local name="$1"
    shift
    local data="$work/data-$name"
    mkdir -p "$data"
    AWS_ENDPOINT_URL="$endpoint" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench NO_COLOR=1 \
        BERTH_LOG=warn,berth_server::blobs=info \
        "$bin" server --data "$data" --addr 127.0.0.1:0 --uv none "$@" \
        >"$work/$name.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 200); do
        [[ -s "$data/config.json" ]] && break
        sleep 0.1
    done
    local url token
    url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$data/config.json")"
    token="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$data/config.json")"
    local start end
    start="$(date +%s.%N)"
    curl -fsS -o /dev/null -H "Authorization: Bearer $token" \
        -F 'metadata={"name":"big","kind":"file","assetName":"model.bin"};type=application/json' \
        -F "content=@$model;type=application/octet-stream" \
        "$url/v1/models"
    end="$(date +%s.%N)"
    local rss
    rss="$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")"
    kill "$pid"
    wait "$pid" || true
    echo "$name $(python3 -c "print(f'{$end - $start:.3f}')") $rss"
}

local_line="$(run local)"
s3_line="$(run s3 --blobs "s3://$bucket/bench?path_style=true")"
# Of the S3 registration, the part spent uploading the hashed file to the bucket.
upload_seconds="$(grep 'uploaded blob' "$work/s3.log" | grep -o 'seconds=[^ ]*' | head -n1 | tr -dc '0-9.' || true)"
python3 - "$size_mib" "$bin" "${upload_seconds:-0}" "$local_line" "$s3_line" <<'PY'
import sys

size_mib, binary, upload_seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
rows = {}
for line in sys.argv[4:]:
    name, seconds, rss_kib = line.split()
    rows[name] = (float(seconds), int(rss_kib))
print(f"model: {size_mib} MiB, server: {binary}")
print(f"{'backend':8} {'seconds':>8} {'MiB/s':>8} {'peak RSS MiB':>13}")
for name, (seconds, rss) in rows.items():
    print(f"{name:8} {seconds:8.2f} {size_mib / seconds:8.1f} {rss / 1024:13.1f}")
(ls, lr), (ss, sr) = rows["local"], rows["s3"]
print(f"s3/local: time x{ss / ls:.2f}, peak RSS x{sr / lr:.2f}")
if upload_seconds:
    print(f"s3 upload phase alone: {upload_seconds:.2f} s, {size_mib / upload_seconds:.1f} MiB/s")
PY
