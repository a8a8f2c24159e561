#!/usr/bin/env python3
"""Cost of the worker sandbox: replica start time and c=1 / c=64 scoring throughput with
`--worker-isolation off` vs `strict`, printed side by side.

Prints figures, asserts nothing. Usage:

    cargo build --release && python3 bench/isolation_overhead.py [--seconds 5] [--starts 5]

Needs `wrk` (`apt-get install -y wrk`). One server per mode; the environment is built once per
server before timing. Start time is the create operation's wall time (create → Succeeded) of a
one-replica service with a trivial `init()`, median of `--starts` services.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from benchlib import ROOT, running_server, wrk

SCORE = b"import json\ndef init():\n    pass\ndef run(raw):\n    return json.loads(raw)\n"
ROW = json.dumps([[float(i % 17) for i in range(64)]])


def worker_python() -> list[str]:
    """`--python` of an interpreter an unprivileged worker user can run (a root server's pyenv
    under /root is out of its reach, and `strict` would refuse to start replicas)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).exists():
            return ["--python", candidate]
    return []


def measure(binary: Path, mode: str, seconds: int, starts: int) -> dict[str, float]:
    args = ["--worker-isolation", mode, *worker_python()]
    with running_server(binary, args, prefix="berth-iso-bench-") as (_, api, data):
        work = data.parent
        snapshot = api.snapshot(SCORE)
        api.create("warm", snapshot, {"computeType": "local", "numReplicas": 1})
        times = []
        for i in range(starts):
            began = time.perf_counter()
            api.create(f"start-{i}", snapshot, {"computeType": "local", "numReplicas": 1})
            times.append((time.perf_counter() - began) * 1000)
        api.create("echo", snapshot, {"computeType": "local", "numReplicas": 1,
                                      "maxConcurrentRequestsPerContainer": 64, "maxQueueWaitMs": 5000})
        url = f"{api.endpoint}/api/v1/service/echo/score"
        wrk(url, 1, 1, work, ROW)  # warm-up
        c1, p50, _ = wrk(url, seconds, 1, work, ROW)
        c64, _, p99 = wrk(url, seconds, 64, work, ROW)
        isolation = api.show("echo").get("resources", {}).get("isolation", "?")
        return {"start_ms": statistics.median(times), "c1": c1, "p50": p50, "c64": c64,
                "p99_64": p99, "isolation": isolation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    off = measure(args.binary, "off", args.seconds, args.starts)
    strict = measure(args.binary, "strict", args.seconds, args.starts)
    print(f"echo score.py, 1 replica, wrk -t1, {args.seconds} s per run; start = create → Succeeded, "
          f"median of {args.starts}")
    print(f"strict isolation: {strict['isolation']}")
    print(f"{'':24}{'off':>14}{'strict':>14}{'strict/off':>12}")
    for label, key, fmt in (
        ("replica start (ms)", "start_ms", "{:,.0f}"),
        ("c=1 req/s", "c1", "{:,.0f}"),
        ("c=1 p50 (us)", "p50", "{:,.0f}"),
        ("c=64 req/s", "c64", "{:,.0f}"),
        ("c=64 p99 (us)", "p99_64", "{:,.0f}"),
    ):
        ratio = strict[key] / off[key] if off[key] else float("nan")
        print(f"{label:24}{fmt.format(off[key]):>14}{fmt.format(strict[key]):>14}{ratio:>12.2f}")
    print(f"start difference: {strict['start_ms'] - off['start_ms']:+.0f} ms")


if __name__ == "__main__":
    main()
