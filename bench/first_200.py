#!/usr/bin/env python3
"""Deploy -> first 200 with a cached environment, and the idle RSS of the replicas it starts.

Prints figures, asserts nothing. Usage:

    cargo build --release -p berth && python3 bench/first_200.py [--runs 7] [--binary PATH]

Starts `berth server` (`--binary`, else $BERTH_BIN, else `target/release/berth`) on a free
loopback port with a temporary data directory and deploys the echo `score.py` of
`bench/scoring_compare.py` once as `warm`, so the environment and the shim are in place. Then,
`--runs` times, it creates a new service of the same snapshot (`computeType: local`, one
replica, auth off) and polls `POST /api/v1/service/NAME/score` every 2 ms: the figure is the
time from the create request to the first 200. Beside it, the `init()` time the shim logs
("init has completed successfully in X ms") and the time to the operation's `Succeeded`.

Last, `--idle` services of a stdlib `score.py` (`import os`, like `bench/scaling.py`'s) are
deployed and never scored; one second later the VmRSS of the workers of the timed runs (echo,
after the probe requests) and of these, beside a bare interpreter: the interpreter the supervisor
started (the environment's `bin/python`) run as `python -u -c "import time; time.sleep(5)"`,
the supervisor's flags.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import ROOT, Api, parent_pids, rss_kib, running_server

ECHO = b"""\
import json


def init():
    pass


def run(raw_data):
    return json.loads(raw_data)
"""
STDLIB = b"""\
import os


def init():
    pass


def run(raw_data):
    return os.getpid()
"""
INIT_LINE = re.compile(r"init has completed successfully in ([\d.]+) ms")


def first_200(api: Api, name: str, timeout: float = 60) -> float:
    """Poll the scoring route every 2 ms until it answers 200; returns the perf_counter then."""
    deadline = time.time() + timeout
    path = f"/api/v1/service/{name}/score"
    while time.time() < deadline:
        conn = http.client.HTTPConnection(api.host, api.port, timeout=10)
        try:
            conn.request("POST", path, body=b'{"a": 1}', headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return time.perf_counter()
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.002)
    raise SystemExit(f"{name} gave no 200 within {timeout:.0f} s")


def init_ms(api: Api, name: str) -> float:
    logs = api.json("GET", f"/v1/services/{name}/logs?tail=200").get("content", "")
    found = INIT_LINE.findall(logs)
    return float(found[-1]) if found else float("nan")


def descendants(pid: int) -> list[int]:
    parents = parent_pids()
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent:
                out.append(child)
                todo.append(child)
    return out


def workers(server_pid: int) -> list[int]:
    out = []
    for pid in descendants(server_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"berth_worker.py" in cmdline and b"python" in os.readlink(f"/proc/{pid}/exe").encode():
            out.append(pid)
    return out


def bare_rss_kib(python: str, runs: int = 3) -> float:
    samples = []
    for _ in range(runs):
        proc = subprocess.Popen([python, "-u", "-c", "import time; time.sleep(5)"])
        time.sleep(0.8)
        samples.append(rss_kib(proc.pid))
        proc.kill()
        proc.wait()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_binary = os.environ.get("BERTH_BIN") or str(ROOT / "target" / "release" / "berth")
    parser.add_argument("--binary", type=Path, default=Path(default_binary))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--idle", type=int, default=3, help="services of a stdlib score.py, never scored")
    parser.add_argument("--server-args", default="", help="extra `berth server` arguments, space-separated")
    args = parser.parse_args()
    if not args.binary.exists():
        raise SystemExit(f"{args.binary} not found: run `cargo build --release -p berth` first")
    deployment = {"computeType": "local", "numReplicas": 1, "authEnabled": False}
    with running_server(args.binary, args.server_args.split(), "berth-first-200-") as (proc, api, _):
        snapshot = api.snapshot(ECHO)
        api.create("warm", snapshot, deployment)
        first_200(api, "warm")
        took, inits, done = [], [], []
        for run in range(args.runs):
            name = f"f200-{run}"
            started = time.perf_counter()
            operation = api.create(name, snapshot, deployment, wait=False)
            answered = first_200(api, name)
            op = api.wait(operation)
            assert op["state"] == "Succeeded", op
            took.append((answered - started) * 1000)
            done.append((time.perf_counter() - started) * 1000)
            inits.append(init_ms(api, name))
            time.sleep(0.2)
        print(f"deploy -> first 200 (cached environment, echo score.py, {args.runs} runs):")
        print(f"  first 200:      median {statistics.median(took):.0f} ms ({', '.join(f'{t:.0f}' for t in took)})")
        print(f"  init() (shim):  median {statistics.median(inits):.3f} ms")
        print(f"  op Succeeded:   median {statistics.median(done):.0f} ms (polled every 20 ms)")

        stdlib = api.snapshot(STDLIB)
        for i in range(args.idle):
            api.create(f"idle-{i}", stdlib, deployment)
        time.sleep(1)
        pids = workers(proc.pid)
        if not pids:
            raise SystemExit("no worker processes found under the server")
        # The interpreter as the supervisor named it (a venv's bin/python: its site differs
        # from the executable's own installation).
        python = Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")[0].decode()
        bare = bare_rss_kib(python)
        print(f"bare interpreter ({python} -u): {bare / 1024:.2f} MiB")
        cwd = {pid: os.readlink(f"/proc/{pid}/cwd") for pid in pids}
        never = [pid for pid in pids if "/services/idle-" in cwd[pid]]
        served = [pid for pid in pids if "/services/f200-" in cwd[pid]]
        for label, group in (("echo score.py after its first requests", served),
                             ("stdlib score.py never scored", never)):
            if not group:
                continue
            rss = sorted(rss_kib(pid) for pid in group)
            median = statistics.median(rss)
            print(f"idle replica RSS, {label}: median {median / 1024:.2f} MiB over {len(rss)} "
                  f"workers (min {rss[0] / 1024:.2f}, max {rss[-1] / 1024:.2f}); "
                  f"{(median - bare) / 1024:+.2f} MiB over the bare interpreter")


if __name__ == "__main__":
    sys.exit(main())
