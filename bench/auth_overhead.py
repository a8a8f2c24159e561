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


def call(host: str, port: int, token: str, method: str, path: str, body: bytes | None, ctype: str) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise SystemExit(f"{method} {path} -> {response.status}: {data[:300]!r}")
    return json.loads(data) if data else {}


def wrk(url: str, seconds: int, key: str | None, workdir: Path) -> tuple[float, float]:
    header = f'wrk.headers["Authorization"] = "Bearer {key}"\n' if key else ""
    script = workdir / ("auth.lua" if key else "open.lua")
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"{header}wrk.body = {json.dumps(ROW)}\n"
    )
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1.0, "ms": 1000.0, "s": 1e6}[p50.group(2)]
    if "Non-2xx" in out:
        raise SystemExit(f"errors during the run:\n{out}")
    return rps, float(p50.group(1)) * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="berth-auth-bench-") as tmp:
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
            for name, auth in (("open-echo", False), ("keyed-echo", True)):
                accepted = call(host, port_n, token, "POST", "/v1/services", json.dumps({
                    "name": name,
                    "inferenceConfig": {"entryScript": "score.py", "sourceSnapshot": snapshot["id"]},
                    "deploymentConfig": {"computeType": "aks", "numReplicas": 1, "authEnabled": auth},
                }).encode(), "application/json")
                op = accepted["operation"]["id"]
                while call(host, port_n, token, "GET", f"/v1/operations/{op}", None, "application/json")["state"] == "Running":
                    time.sleep(0.05)
            key = call(host, port_n, token, "GET", "/v1/services/keyed-echo/keys", None, "application/json")["primaryKey"]
            base = config["endpoint"]
            results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
            wrk(f"{base}/api/v1/service/open-echo/score", 2, None, work)  # warm-up
            wrk(f"{base}/api/v1/service/keyed-echo/score", 2, key, work)
            for _ in range(args.runs):
                results["off"].append(wrk(f"{base}/api/v1/service/open-echo/score", args.seconds, None, work))
                results["on"].append(wrk(f"{base}/api/v1/service/keyed-echo/score", args.seconds, key, work))
            off_rps = statistics.median(r for r, _ in results["off"])
            on_rps = statistics.median(r for r, _ in results["on"])
            off_p50 = statistics.median(p for _, p in results["off"])
            on_p50 = statistics.median(p for _, p in results["on"])
            print(f"echo score.py, 1 replica, wrk -t1 -c1, {args.runs} runs of {args.seconds} s, medians")
            print(f"auth off: {off_rps:,.0f} req/s, p50 {off_p50:.0f} us")
            print(f"key auth: {on_rps:,.0f} req/s, p50 {on_p50:.0f} us")
            print(f"overhead of key auth: {on_p50 - off_p50:+.0f} us at p50 "
                  f"({(1 / on_rps - 1 / off_rps) * 1e6:+.1f} us per request from throughput)")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
