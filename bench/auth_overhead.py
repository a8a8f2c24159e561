#!/usr/bin/env python3
"""Key-auth overhead on the scoring path: the same echo service with and without
`authEnabled`, measured with wrk at concurrency 1 (p50 latency, requests/s).

Prints figures, asserts nothing. Usage:

    cargo build --release && python3 bench/auth_overhead.py [--seconds 5] [--runs 3]

Needs `wrk` (`apt-get install -y wrk`). Both services run one replica of the same
`score.py` on one server; runs alternate between them and the medians are compared.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from benchlib import ROOT, running_server, wrk

SCORE = b"import json\ndef init():\n    pass\ndef run(raw):\n    return json.loads(raw)\n"
ROW = json.dumps([[float(i % 17) for i in range(64)]])


def wrk_c1(url: str, seconds: int, key: str | None, workdir: Path) -> tuple[float, float]:
    """Requests/s and p50 (us) of one `wrk -t1 -c1` run, with the key as a bearer token if given."""
    headers = {"Authorization": f"Bearer {key}"} if key else None
    rps, p50, _ = wrk(url, seconds, 1, workdir, ROW, headers)
    return rps, p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    with running_server(args.binary, prefix="berth-auth-bench-") as (_, api, data):
        work = data.parent
        snapshot = api.snapshot(SCORE)
        for name, auth in (("open-echo", False), ("keyed-echo", True)):
            api.create(name, snapshot, {"computeType": "aks", "numReplicas": 1, "authEnabled": auth})
        key = api.keys("keyed-echo")["primaryKey"]
        base = api.endpoint
        results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        wrk_c1(f"{base}/api/v1/service/open-echo/score", 2, None, work)  # warm-up
        wrk_c1(f"{base}/api/v1/service/keyed-echo/score", 2, key, work)
        for _ in range(args.runs):
            results["off"].append(wrk_c1(f"{base}/api/v1/service/open-echo/score", args.seconds, None, work))
            results["on"].append(wrk_c1(f"{base}/api/v1/service/keyed-echo/score", args.seconds, key, work))
        off_rps = statistics.median(r for r, _ in results["off"])
        on_rps = statistics.median(r for r, _ in results["on"])
        off_p50 = statistics.median(p for _, p in results["off"])
        on_p50 = statistics.median(p for _, p in results["on"])
        print(f"echo score.py, 1 replica, wrk -t1 -c1, {args.runs} runs of {args.seconds} s, medians")
        print(f"auth off: {off_rps:,.0f} req/s, p50 {off_p50:.0f} us")
        print(f"key auth: {on_rps:,.0f} req/s, p50 {on_p50:.0f} us")
        print(f"overhead of key auth: {on_p50 - off_p50:+.0f} us at p50 "
              f"({(1 / on_rps - 1 / off_rps) * 1e6:+.1f} us per request from throughput)")


if __name__ == "__main__":
    main()
