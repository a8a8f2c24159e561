"""Shared pieces of the Python benchmarks in `bench/` (stdlib only).

- `ROOT`: the repository root (the default `--binary` is `ROOT/target/release/berth`).
- `running_server(binary, extra_args, prefix)`: a context manager that starts
  `berth server` on a free loopback port with a data directory inside a fresh temporary
  directory, waits for its `config.json` and yields `(proc, api, data_dir)`; the server
  is stopped and the directory removed on exit.
- `Api`: a small `http.client` client of the management API (`/v1`, bearer token):
  `call` and `json` requests, `wait` for an operation, `snapshot` (a one-file `score.py`
  uploaded as a tar), `create` a service, `register` a one-file model (multipart),
  `show` a service and read its `keys`.
- `rss_kib(pid)`: a process's VmRSS from /proc.
- `wrk(url, seconds, connections, workdir, body, headers)`: one `wrk -t1 --latency` run
  POSTing a JSON body; returns requests/s and the p50 and p99 latency in microseconds,
  and raises SystemExit when any answer was not 2xx.
- `wrk_run(...)`: the same run, returning a `WrkRun` that also counts requests, non-2xx
  answers and socket errors instead of exiting on them (for benchmarks that report
  failures as a figure).

The scripts are run as `python3 bench/<name>.py`, so this directory is first on
`sys.path` and `import benchlib` finds this module.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
UNITS = {"us": 1.0, "ms": 1000.0, "s": 1e6}


class Api:
    """The management API of one server, one connection per call."""

    def __init__(self, endpoint: str, token: str) -> None:
        host, port = endpoint.removeprefix("http://").rsplit(":", 1)
        self.endpoint = endpoint
        self.host, self.port, self.token = host, int(port), token

    def call(self, method: str, path: str, body: bytes | None = None,
             ctype: str = "application/json") -> tuple[int, dict[str, Any]]:
        """Status and decoded JSON body (`{}` when empty, `{"body": ...}` when not JSON);
        any status is returned."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            conn.request(method, path, body=body,
                         headers={"Authorization": f"Bearer {self.token}", "Content-Type": ctype})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if not data:
            return response.status, {}
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, {"body": data[:300].decode(errors="replace")}

    def json(self, method: str, path: str, body: bytes | None = None,
             ctype: str = "application/json") -> dict[str, Any]:
        """Decoded JSON body; SystemExit on a status of 300 or more."""
        status, data = self.call(method, path, body, ctype)
        if status >= 300:
            raise SystemExit(f"{method} {path} -> {status}: {str(data)[:300]}")
        return data

    def wait(self, operation: str, timeout: float = 300) -> dict[str, Any]:
        """Poll an operation every 20 ms until it leaves NotStarted/Running; returns it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            _, op = self.call("GET", f"/v1/operations/{operation}")
            if op["state"] not in ("NotStarted", "Running"):
                return op
            time.sleep(0.02)
        raise SystemExit(f"operation {operation} did not end within {timeout:.0f} s")

    def snapshot(self, script: bytes) -> str:
        """Upload a snapshot holding only `score.py` with `script`; returns its id."""
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo("score.py")
            info.size = len(script)
            tar.addfile(info, io.BytesIO(script))
        status, snapshot = self.call("POST", "/v1/snapshots", archive.getvalue(), "application/x-tar")
        assert status in (200, 201), snapshot
        return snapshot["id"]

    def create(self, name: str, snapshot: str, deployment: dict[str, Any], wait: bool = True,
               models: Sequence[str] = (), timeout: float = 300) -> str:
        """Create a service running `score.py` of `snapshot`; returns the operation id.

        With `wait`, waits for the operation and asserts it succeeded."""
        status, accepted = self.call("POST", "/v1/services", json.dumps({
            "name": name, "models": list(models),
            "inferenceConfig": {"entryScript": "score.py", "sourceSnapshot": snapshot},
            "deploymentConfig": deployment,
        }).encode())
        assert status == 202, accepted
        if wait:
            op = self.wait(accepted["operation"]["id"], timeout)
            assert op["state"] == "Succeeded", op
        return accepted["operation"]["id"]

    def register(self, name: str, content: bytes, asset_name: str = "model.txt") -> str:
        """Register a one-file model version (multipart upload); returns its id."""
        boundary = uuid.uuid4().hex
        meta = json.dumps({"name": name, "kind": "file", "assetName": asset_name})
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{meta}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; "
            f"filename=\"{asset_name}\"\r\n\r\n"
        ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
        status, model = self.call("POST", "/v1/models", body, f"multipart/form-data; boundary={boundary}")
        assert status == 201, model
        return model["id"]

    def show(self, name: str) -> dict[str, Any]:
        """The service as `GET /v1/services/{name}` returns it."""
        return self.call("GET", f"/v1/services/{name}")[1]

    def keys(self, name: str) -> dict[str, Any]:
        """The service's scoring keys (`primaryKey`, `secondaryKey`)."""
        return self.json("GET", f"/v1/services/{name}/keys")


@contextmanager
def running_server(binary: Path, extra_args: Sequence[str] = (),
                   prefix: str = "berth-bench-") -> Iterator[tuple[subprocess.Popen[bytes], Api, Path]]:
    """`berth server` on 127.0.0.1:0 with `--log warn` and `extra_args`, its data directory
    `<tmp>/data` in a new temporary directory named with `prefix`.

    Yields `(proc, api, data_dir)`; `data_dir.parent` is scratch space for the caller.
    On exit the server is terminated and the temporary directory removed."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        # Searchable (not listable), so workers of a root server can reach their environment.
        os.chmod(tmp, 0o711)
        data = Path(tmp) / "data"
        proc = subprocess.Popen(
            [str(binary), "server", "--data", str(data), "--addr", "127.0.0.1:0", "--log", "warn",
             *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            config_path = data / "config.json"
            deadline = time.time() + 60
            while not config_path.exists():
                if proc.poll() is not None:
                    raise SystemExit(f"server exited with {proc.returncode} before writing {config_path}")
                if time.time() > deadline:
                    raise SystemExit(f"server did not write {config_path} within 60 s")
                time.sleep(0.02)
            config = json.loads(config_path.read_text())
            yield proc, Api(config["endpoint"], config["token"]), data
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def parent_pids() -> dict[int, int]:
    """Every process's parent, from /proc: {pid: ppid}."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB (0 when the process has none, e.g. a zombie)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _percentile_us(out: str, label: str) -> float:
    match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
    if match is None:
        raise SystemExit(f"no {label}% latency in wrk output:\n{out}")
    return float(match.group(1)) * UNITS[match.group(2)]


@dataclass
class WrkRun:
    """What one wrk run measured."""

    rps: float
    p50_us: float
    p99_us: float
    requests: int
    non_2xx: int
    socket_errors: int
    output: str


def wrk_run(url: str, seconds: int, connections: int, workdir: Path, body: str,
            headers: dict[str, str] | None = None) -> WrkRun:
    """One `wrk -t1 -c<connections> -d<seconds>s --latency` run POSTing `body` with
    Content-Type: application/json (plus `headers`) to `url`; failed answers are counted,
    not fatal. The Lua script is written to `workdir/post.lua`."""
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items()]
    lines.append(f"wrk.body = {json.dumps(body)}")
    script = workdir / "post.lua"
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rate is None or total is None:
        raise SystemExit(f"no Requests/sec in wrk output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkRun(
        rps=float(rate.group(1)), p50_us=_percentile_us(out, "50"), p99_us=_percentile_us(out, "99"),
        requests=int(total.group(1)), non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sockets.groups()) if sockets else 0, output=out,
    )


def wrk(url: str, seconds: int, connections: int, workdir: Path, body: str,
        headers: dict[str, str] | None = None) -> tuple[float, float, float]:
    """One `wrk -t1 -c<connections> -d<seconds>s --latency` run POSTing `body` with
    Content-Type: application/json (plus `headers`) to `url`.

    Returns (requests/s, p50 us, p99 us); SystemExit when any answer was not 2xx. The Lua
    script is written to `workdir/post.lua`."""
    run = wrk_run(url, seconds, connections, workdir, body, headers)
    if run.non_2xx:
        raise SystemExit(f"errors during the run:\n{run.output}")
    return run.rps, run.p50_us, run.p99_us
