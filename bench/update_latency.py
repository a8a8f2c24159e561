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
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCORE = b"""
import os
def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read()
def run(raw):
    return model
"""


class Api:
    def __init__(self, endpoint: str, token: str) -> None:
        host, port = endpoint.removeprefix("http://").rsplit(":", 1)
        self.host, self.port, self.token = host, int(port), token

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json") -> tuple[int, dict]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": ctype}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, (json.loads(data) if data else {})

    def register(self, name: str, content: bytes) -> str:
        boundary = uuid.uuid4().hex
        meta = json.dumps({"name": name, "kind": "file", "assetName": "model.txt"})
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{meta}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"model.txt\"\r\n\r\n"
        ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
        status, model = self.call("POST", "/v1/models", body, f"multipart/form-data; boundary={boundary}")
        assert status == 201, model
        return model["id"]

    def wait(self, operation: str) -> dict:
        deadline = time.time() + 120
        while time.time() < deadline:
            status, op = self.call("GET", f"/v1/operations/{operation}")
            if op["state"] not in ("NotStarted", "Running"):
                return op
            time.sleep(0.02)
        raise SystemExit(f"operation {operation} did not end within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    if not args.binary.exists():
        raise SystemExit(f"{args.binary} not found: run `cargo build --release` first")
    with tempfile.TemporaryDirectory(prefix="berth-update-bench-") as tmp:
        data = Path(tmp) / "data"
        proc = subprocess.Popen(
            [str(args.binary), "server", "--data", str(data), "--addr", "127.0.0.1:0", "--log", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            while not (data / "config.json").exists():
                time.sleep(0.02)
            config = json.loads((data / "config.json").read_text())
            api = Api(config["endpoint"], config["token"])
            first = api.register("bench-model", b"0")
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w") as tar:
                info = tarfile.TarInfo("score.py")
                info.size = len(SCORE)
                tar.addfile(info, io.BytesIO(SCORE))
            status, snapshot = api.call("POST", "/v1/snapshots", archive.getvalue(), "application/x-tar")
            status, accepted = api.call("POST", "/v1/services", json.dumps({
                "name": "bench-svc", "models": [first],
                "inferenceConfig": {"entryScript": "score.py", "sourceSnapshot": snapshot["id"]},
                "deploymentConfig": {"computeType": "local", "numReplicas": 1},
            }).encode())
            assert status == 202, accepted
            assert api.wait(accepted["operation"]["id"])["state"] == "Succeeded"

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
                op = api.wait(body["operation"]["id"])
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
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
