#!/usr/bin/env python3
"""Gateway overhead of observability: the same echo service with metrics only
(always on) vs request logging (with bodies) + data collection on, measured
with wrk (requests/s, p50 and p99).

Prints figures, asserts nothing. Usage:

    cargo build --release && python3 bench/observability_overhead.py [--seconds 5] [--runs 3] [--connections 1]

Needs `wrk` (`apt-get install -y wrk`). Both services run one replica of the same
`score.py` on one server; runs alternate between them and the medians are compared.
Metrics cannot be turned off: "all off" is the cost of the metrics alone.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import re
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCORE = b"import json\ndef init():\n    pass\ndef run(raw):\n    return json.loads(raw)\n"
ROW = json.dumps([[float(i % 17) for i in range(64)]])
UNITS = {"us": 1.0, "ms": 1000.0, "s": 1e6}


def call(host: str, port: int, token: str, method: str, path: str, body: bytes | None, ctype: str) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise SystemExit(f"{method} {path} -> {response.status}: {data[:300]!r}")
    return json.loads(data) if data else {}


def percentile(out: str, label: str) -> float:
    match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
    return float(match.group(1)) * UNITS[match.group(2)]


def wrk(url: str, seconds: int, connections: int, workdir: Path) -> tuple[float, float, float]:
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(ROW)}\n"
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"errors during the run:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, percentile(out, "50"), percentile(out, "99")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="berth-obs-bench-") as tmp:
        work = Path(tmp)
        data = work / "data"
        proc = subprocess.Popen(
            [str(args.binary), "server", "--data", str(data), "--addr", "127.0.0.1:0", "--log", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            while not (data / "config.json").exists():
                time.sleep(0.02)
            config = json.loads((data / "config.json").read_text())
            host, port = config["endpoint"].removeprefix("http://").rsplit(":", 1)
            port_n, token = int(port), config["token"]
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w") as tar:
                info = tarfile.TarInfo("score.py")
                info.size = len(SCORE)
                tar.addfile(info, io.BytesIO(SCORE))
            snapshot = call(host, port_n, token, "POST", "/v1/snapshots", archive.getvalue(), "application/x-tar")
            on = {"appInsightsEnabled": True, "requestLogBodies": True, "dataCollection": {"storageEnabled": True}}
            for name, extra in (("plain-echo", {}), ("observed-echo", on)):
                accepted = call(host, port_n, token, "POST", "/v1/services", json.dumps({
                    "name": name,
                    "inferenceConfig": {"entryScript": "score.py", "sourceSnapshot": snapshot["id"]},
                    "deploymentConfig": {"computeType": "local", "numReplicas": 1,
                                         "maxConcurrentRequestsPerContainer": max(1, args.connections),
                                         **extra},
                }).encode(), "application/json")
                op = accepted["operation"]["id"]
                while call(host, port_n, token, "GET", f"/v1/operations/{op}", None, "application/json")["state"] == "Running":
                    time.sleep(0.05)
            base = config["endpoint"]
            urls = {"off": f"{base}/api/v1/service/plain-echo/score",
                    "on": f"{base}/api/v1/service/observed-echo/score"}
            results: dict[str, list[tuple[float, float, float]]] = {"off": [], "on": []}
            for url in urls.values():
                wrk(url, 2, args.connections, work)  # warm-up
            for _ in range(args.runs):
                for mode, url in urls.items():
                    results[mode].append(wrk(url, args.seconds, args.connections, work))

            def med(mode: str, i: int) -> float:
                return statistics.median(r[i] for r in results[mode])

            print(f"echo score.py, 1 replica, wrk -t1 -c{args.connections}, {args.runs} runs of {args.seconds} s, medians")
            for mode, label in (("off", "metrics only (all off)"), ("on", "request log with bodies + data collection")):
                print(f"{label}: {med(mode, 0):,.0f} req/s, p50 {med(mode, 1):.0f} us, p99 {med(mode, 2):.0f} us")
            print(f"ratio on/off: throughput {med('on', 0) / med('off', 0):.3f}, "
                  f"p50 {med('on', 1) - med('off', 1):+.0f} us, p99 {med('on', 2) - med('off', 2):+.0f} us "
                  f"({(1 / med('on', 0) - 1 / med('off', 0)) * 1e6:+.1f} us per request from throughput)")
            metrics = http.client.HTTPConnection(host, port_n, timeout=30)
            metrics.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
            text = metrics.getresponse().read().decode()
            for line in text.splitlines():
                if line.startswith(("berth_datacollection_dropped_total", "berth_request_log_dropped_total")):
                    print(line)
            lines = sum(1 for p in (data / "datacollection").rglob("*.jsonl") for _ in p.open())
            print(f"data collection lines written: {lines:,}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
