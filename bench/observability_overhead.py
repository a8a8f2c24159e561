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
import json
import shutil
import statistics
from pathlib import Path

from benchlib import ROOT, running_server, wrk

SCORE = b"import json\ndef init():\n    pass\ndef run(raw):\n    return json.loads(raw)\n"
ROW = json.dumps([[float(i % 17) for i in range(64)]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    with running_server(args.binary, prefix="berth-obs-bench-") as (_, api, data):
        work = data.parent
        snapshot = api.snapshot(SCORE)
        on = {"appInsightsEnabled": True, "requestLogBodies": True, "dataCollection": {"storageEnabled": True}}
        for name, extra in (("plain-echo", {}), ("observed-echo", on)):
            api.create(name, snapshot, {"computeType": "local", "numReplicas": 1,
                                        "maxConcurrentRequestsPerContainer": max(1, args.connections),
                                        **extra})
        base = api.endpoint
        urls = {"off": f"{base}/api/v1/service/plain-echo/score",
                "on": f"{base}/api/v1/service/observed-echo/score"}
        results: dict[str, list[tuple[float, float, float]]] = {"off": [], "on": []}
        for url in urls.values():
            wrk(url, 2, args.connections, work, ROW)  # warm-up
        for _ in range(args.runs):
            for mode, url in urls.items():
                results[mode].append(wrk(url, args.seconds, args.connections, work, ROW))

        def med(mode: str, i: int) -> float:
            return statistics.median(r[i] for r in results[mode])

        print(f"echo score.py, 1 replica, wrk -t1 -c{args.connections}, {args.runs} runs of {args.seconds} s, medians")
        for mode, label in (("off", "metrics only (all off)"), ("on", "request log with bodies + data collection")):
            print(f"{label}: {med(mode, 0):,.0f} req/s, p50 {med(mode, 1):.0f} us, p99 {med(mode, 2):.0f} us")
        print(f"ratio on/off: throughput {med('on', 0) / med('off', 0):.3f}, "
              f"p50 {med('on', 1) - med('off', 1):+.0f} us, p99 {med('on', 2) - med('off', 2):+.0f} us "
              f"({(1 / med('on', 0) - 1 / med('off', 0)) * 1e6:+.1f} us per request from throughput)")
        metrics = http.client.HTTPConnection(api.host, api.port, timeout=30)
        metrics.request("GET", "/metrics", headers={"Authorization": f"Bearer {api.token}"})
        text = metrics.getresponse().read().decode()
        for line in text.splitlines():
            if line.startswith(("berth_datacollection_dropped_total", "berth_request_log_dropped_total")):
                print(line)
        lines = sum(1 for p in (data / "datacollection").rglob("*.jsonl") for _ in p.open())
        print(f"data collection lines written: {lines:,}")


if __name__ == "__main__":
    main()
