#!/usr/bin/env python3
"""Scaling benchmark: load step to added replica serving, idle RSS per replica, server RSS
with many services.

Prints figures, asserts nothing. Usage:

    cargo build --release && python3 bench/scaling.py [--steps 3] [--services 100]

Starts `target/release/berth server` on a free loopback port with a temporary data directory.

1. Load step: an autoscaled service (min 1, max 4, target 70 %, refresh 1 s) whose `run()`
   sleeps 20 ms and returns its pid sits idle; then `--clients` threads start sending requests
   at once. Measured: time from the step to the first answer from a second process (the added
   replica serving), and to the autoscaler's decision being visible in `show`. The load then
   stops, the service scales back to 1 (stabilisation 2 s) and the step repeats `--steps` times.
2. Idle RSS: a service with 4 replicas of a stdlib `score.py`; VmRSS of each worker process.
3. Many services: `--services` services of one replica each (same snapshot and environment);
   the server's own VmRSS before and after, and the time to deploy them all.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import threading
import time
from pathlib import Path

from benchlib import ROOT, Api, parent_pids, rss_kib, running_server

SLOW = b"""
import os, time
def init():
    pass
def run(raw):
    time.sleep(0.02)
    return os.getpid()
"""
ECHO = b"""
import os
def init():
    pass
def run(raw):
    return os.getpid()
"""


def children(pid: int) -> list[int]:
    return [child for child, parent in parent_pids().items() if parent == pid]


def load_step(api: Api, clients: int) -> tuple[float, float]:
    """Seconds from the step to a second process answering, and to `show` reporting the decision."""
    stop = threading.Event()
    first_pid: dict[str, float | int] = {}
    second: dict[str, float] = {}
    lock = threading.Lock()
    start = time.perf_counter()

    def client() -> None:
        conn = http.client.HTTPConnection(api.host, api.port, timeout=60)
        while not stop.is_set():
            conn.request("POST", "/api/v1/service/elastic/score", body=b"{}")
            response = conn.getresponse()
            pid = int(response.read() or 0)
            with lock:
                first_pid.setdefault("pid", pid)
                if pid != first_pid["pid"] and "at" not in second:
                    second["at"] = time.perf_counter() - start

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    decided = None
    deadline = time.time() + 60
    while time.time() < deadline and (decided is None or "at" not in second):
        status = api.show("elastic")["deploymentStatus"]
        if decided is None and (status.get("lastScaling") or {}).get("from") == 1:
            decided = time.perf_counter() - start
        time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join()
    return second.get("at", float("nan")), decided if decided is not None else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--services", type=int, default=100)
    args = parser.parse_args()
    if not args.binary.exists():
        raise SystemExit(f"{args.binary} not found: run `cargo build --release` first")
    with running_server(args.binary, ["--scale-down-stabilization-secs", "2"],
                        "berth-scaling-bench-") as (proc, api, _):
        server_idle = rss_kib(proc.pid)

        slow = api.snapshot(SLOW)
        api.create("elastic", slow, {
            "computeType": "aks", "authEnabled": False, "maxQueueWaitMs": 30000,
            "autoScaler": {"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 4,
                           "refreshPeriodInSeconds": 1, "targetUtilization": 70},
        })
        serving, decided = [], []
        for _ in range(args.steps):
            while api.show("elastic")["deploymentStatus"].get("currentReplicas") != 1:
                time.sleep(0.1)
            time.sleep(0.5)
            s, d = load_step(api, args.clients)
            serving.append(s)
            decided.append(d)
        print(f"load step (idle -> {args.clients} clients, run() 20 ms, autoscale 1..4, target 70 %, refresh 1 s):")
        print(f"  decision visible in show: median {statistics.median(decided):.2f} s "
              f"({', '.join(f'{d:.2f}' for d in decided)})")
        print(f"  added replica serving:    median {statistics.median(serving):.2f} s "
              f"({', '.join(f'{s:.2f}' for s in serving)})")

        echo = api.snapshot(ECHO)
        api.create("idle", echo, {"computeType": "local", "numReplicas": 4})
        time.sleep(1)
        workers = [pid for pid in children(proc.pid) if rss_kib(pid) > 0]
        rss = sorted(rss_kib(pid) for pid in workers)
        print(f"idle replica RSS (stdlib score.py): median {statistics.median(rss) / 1024:.1f} MiB "
              f"over {len(rss)} worker processes (min {rss[0] / 1024:.1f}, max {rss[-1] / 1024:.1f})")

        before = rss_kib(proc.pid)
        started = time.perf_counter()
        ops = [api.create(f"svc-{i:03}", echo, {"computeType": "local", "numReplicas": 1}, wait=False)
               for i in range(args.services)]
        for op in ops:
            assert api.wait(op)["state"] == "Succeeded"
        took = time.perf_counter() - started
        time.sleep(1)
        after = rss_kib(proc.pid)
        total_workers = sum(rss_kib(pid) for pid in children(proc.pid))
        print(f"{args.services} services of one replica: deployed in {took:.1f} s; server RSS "
              f"{before / 1024:.1f} MiB -> {after / 1024:.1f} MiB (idle at start {server_idle / 1024:.1f} MiB); "
              f"all workers together {total_workers / 1024:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
