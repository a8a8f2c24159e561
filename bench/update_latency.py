#!/usr/bin/env python3
"""Update benchmark: model-only update latency and failed requests under load.

Prints figures, asserts nothing. Usage:

    cargo build --release && python3 bench/update_latency.py [--updates 10] [--clients 4]

Starts `target/release/berth server` on a free loopback port with a temporary data
directory, deploys a one-replica service whose `init()` reads its model file, and warms
the (package-free, cached) environment. Then, while `--clients` threads send scoring
requests over keep-alive connections, it registers a new model version and PATCHes the
service `--updates` times. For each update it measures the time from sending the PATCH to
the first response carrying the new revision (`x-berth-revision`), and it counts every
request that did not get a 200 during the whole run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path

from benchlib import ROOT, running_server

SCORE = b"""
import os
def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read()
def run(raw):
    return model
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    if not args.binary.exists():
        raise SystemExit(f"{args.binary} not found: run `cargo build --release` first")
    with running_server(args.binary, prefix="berth-update-bench-") as (_, api, _):
        first = api.register("bench-model", b"0")
        api.create("bench-svc", api.snapshot(SCORE), {"computeType": "local", "numReplicas": 1},
                   models=[first], timeout=120)

        stop = threading.Event()
        counts = {"ok": 0, "failed": 0}
        latest = {"revision": 1, "seen_at": {}}
        lock = threading.Lock()

        def client() -> None:
            conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
            while not stop.is_set():
                try:
                    conn.request("POST", "/api/v1/service/bench-svc/score", body=b"{}")
                    response = conn.getresponse()
                    response.read()
                    revision = int(response.getheader("x-berth-revision") or 0)
                    with lock:
                        if response.status == 200:
                            counts["ok"] += 1
                            latest["seen_at"].setdefault(revision, time.perf_counter())
                        else:
                            counts["failed"] += 1
                except (OSError, http.client.HTTPException):
                    with lock:
                        counts["failed"] += 1
                    conn = http.client.HTTPConnection(api.host, api.port, timeout=30)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        latencies = []
        accepted_ms = []
        for i in range(args.updates):
            model = api.register("bench-model", str(i + 1).encode())
            sent = time.perf_counter()
            status, body = api.call("PATCH", "/v1/services/bench-svc", json.dumps({"models": [model]}).encode())
            accepted_ms.append((time.perf_counter() - sent) * 1000)
            assert status == 202, body
            target = body["operation"]["targetRevision"]
            op = api.wait(body["operation"]["id"], 120)
            assert op["state"] == "Succeeded", op
            deadline = time.time() + 30
            while target not in latest["seen_at"]:
                if time.time() > deadline:
                    raise SystemExit(f"revision {target} never answered a request")
                time.sleep(0.001)
            latencies.append((latest["seen_at"][target] - sent) * 1000)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        print(f"model-only update, cached environment, 1 replica, {args.clients} clients of load")
        print(f"PATCH accepted (202): median {statistics.median(accepted_ms):.1f} ms")
        print(f"PATCH sent -> new revision serving: median {statistics.median(latencies):.0f} ms, "
              f"min {min(latencies):.0f} ms, max {max(latencies):.0f} ms over {len(latencies)} updates")
        print(f"requests during the run: {counts['ok']} ok, {counts['failed']} failed")


if __name__ == "__main__":
    sys.exit(main())
