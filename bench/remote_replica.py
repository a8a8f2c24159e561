#!/usr/bin/env python3
"""Gateway overhead of a remote replica (a `berth replica` reached over TLS on loopback,
`--replica-transport tcp`) against a local one (a worker on a Unix socket, the default).

Prints figures, asserts nothing. Usage:

    cargo build --release -p berth && python3 bench/remote_replica.py [--seconds 8] [--runs 3]

Needs `wrk` (`apt-get install -y wrk`). Two servers, one per transport, each with one service
running the echo `score.py` (`run()` returns `json.loads(raw)` of a 64-float row), one
replica, `maxConcurrentRequestsPerContainer` 64; `wrk -t1` at c=1 and c=64 against each,
alternating (the order flips every run). Differences per request: p50 at c=1, mean service
time (connections / rate) at c=64.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

from benchlib import ROOT, WrkRun, running_server, wrk_run
from rollout_overhead import ECHO, ROW, failures, print_pair

DEPLOYMENT = {"computeType": "local", "numReplicas": 1, "maxConcurrentRequestsPerContainer": 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    args = parser.parse_args()
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        work = None
        for transport in ("uds", "tcp"):
            _, api, data = stack.enter_context(
                running_server(args.binary, ["--replica-transport", transport, "--uv", "none"],
                               prefix=f"berth-bench-{transport}-"))
            work = data.parent
            api.create("echo", api.snapshot(ECHO), DEPLOYMENT)
            urls[transport] = f"{api.endpoint}/api/v1/service/echo/score"
        assert work is not None
        for connections in (1, 64):
            runs: dict[str, list[WrkRun]] = {"uds": [], "tcp": []}
            for i in range(args.runs):
                order = ("uds", "tcp") if i % 2 == 0 else ("tcp", "uds")
                for transport in order:
                    run = wrk_run(urls[transport], args.seconds, connections, work, ROW)
                    runs[transport].append(run)
                    if failures(run):
                        print(f"  {transport} c={connections}{failures(run)}")
            print(f"c={connections}, {args.runs} runs of {args.seconds} s (median)")
            print_pair("uds (worker on a Unix socket)", runs["uds"],
                       "tcp (berth replica over TLS, loopback)", runs["tcp"], connections)


if __name__ == "__main__":
    main()
