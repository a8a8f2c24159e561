#!/usr/bin/env python3
"""Side-by-side scoring benchmark: Berth against the reference scoring server.

Run it through `bash bench/scoring_compare.sh` (which installs wrk, prepares the venv and
builds Berth). Stdlib only. Traffic goes to 127.0.0.1 only.

For each run and each script (echo, digits) it measures both servers, one after the other,
each started cold and stopped before the other starts:

- reference: `azmlinfsrv --entry_script score.py --model_dir DIR --port P --worker_count 1`
  from the venv. Cold start = process start -> first 200 on POST /score.
- Berth, once per configuration (--configs): `berth server --data <tmp> --addr 127.0.0.1:0`
  (server start -> config.json and /readyz 200 is reported on its own), an environment whose
  Azure JSON points at the same venv interpreter (userManagedDependencies), the digits model
  registered, then `berth model deploy ... --dc dc.json` with one replica and either the v1
  defaults (`defaults`: maxConcurrentRequestsPerContainer 1, maxQueueWaitMs 500, the headline)
  or maxConcurrentRequestsPerContainer 64 (`64`, maxQueueWaitMs 60000).
  Cold start = `berth model deploy` start -> first 200 on the scoring URL. Around each wrk
  window it scrapes /metrics and reports the mean of each per-request histogram
  (berth_request_{queued,run,overhead,duration}_seconds: delta sum / delta count).
- floor (echo only): bench/floor, a plain hyper server answering POST /score with the body
  (built by scoring_compare.sh), the least HTTP costs on this machine.

Then: warm-up with wrk at c=8 (2 s), then `wrk -t1 -cC -d<duration>s` for C in 1, 8, 64 with a
Lua script that POSTs the 347-byte body with Content-Type: application/json. CPU per request is
the server process tree's utime+stime over each window / requests; RSS is the sum of VmRSS over
the server's process tree after the c=64 window. Medians over --runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONCURRENCY = (1, 8, 64)
# Berth deployment configurations: name -> extra deploymentConfig keys (one replica each).
CONFIGS = {
    "defaults": {},  # the v1 defaults: maxConcurrentRequestsPerContainer 1, maxQueueWaitMs 500
    "64": {"maxConcurrentRequestsPerContainer": 64, "maxQueueWaitMs": 60000},
    "2replicas": {"numReplicas": 2},  # the v1 defaults with two replicas (issue 19 §4)
}
HISTOGRAMS = ("queued", "run", "overhead", "duration")  # berth_request_<name>_seconds

ECHO_SCRIPT = '''\
import json


def init():
    pass


def run(raw_data):
    return json.loads(raw_data)
'''

DIGITS_SCRIPT = '''\
import json
import os
import pickle

import numpy as np

model = None


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.pkl"), "rb") as f:
        model = pickle.load(f)


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return model.predict(data).tolist()
'''

# Run with the venv's interpreter: trains the digits model once and writes the request body
# (row 0 of load_digits as one 64-float row: 347 bytes).
PREPARE = '''\
import json, pickle, sys
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
model_path, body_path = sys.argv[1], sys.argv[2]
digits = load_digits()
with open(body_path, "w") as f:
    f.write(json.dumps({"data": [digits.data[0].tolist()]}))
if model_path != "-":
    model = LogisticRegression(max_iter=5000).fit(digits.data, digits.target)
    with open(model_path, "wb") as f:
        pickle.dump(model, f)
'''

# done() prints one machine-readable line; no response() callback (it would slow wrk down).
WRK_LUA = '''\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%.1f, "p99_us": %%.1f, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
'''


NOTES = """
¹ reference: process start → first 200 on POST /score; Berth: `berth model deploy` start → first
  200 on the scoring URL, polled every 10 ms while the CLI runs (server already running;
  environment and model registered before).
² user+system CPU of the server's process tree over the wrk window ÷ requests (wrk excluded).
³ sum of VmRSS over the server's process tree (Berth: server + worker; reference: azmlinfsrv,
  gunicorn master + worker) after the c=64 window.
⁴ echo only: the same Berth server answering GET /livez (HTTP + routing, no worker), for how much
  of the c=1 latency the worker path adds.
⁵ mean of berth_request_<name>_seconds over the window (Δsum ÷ Δcount from /metrics), µs."""


class BenchError(Exception):
    """A server failed to start, answered an error, or answered differently."""


# ---------------------------------------------------------------- /proc helpers


def proc_tree(root: int) -> list[int]:
    """`root` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, i = [root], 0
    while i < len(tree):
        tree.extend(children.get(tree[i], []))
        i += 1
    return tree


def tree_cpu_seconds(root: int, only_root: bool = False) -> float:
    total = 0
    for pid in [root] if only_root else proc_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def tree_rss_mib(root: int) -> float:
    total_kib = 0
    for pid in proc_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


# ---------------------------------------------------------------- HTTP helpers


def post(port: int, path: str, body: bytes, timeout: float = 10) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def get_text(port: int, path: str, token: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        text = resp.read().decode()
        if resp.status != 200:
            raise BenchError(f"GET {path} -> {resp.status}: {text[:200]}")
        return text
    finally:
        conn.close()


def histogram_totals(text: str, service: str) -> dict[str, tuple[float, float]]:
    """(sum seconds, count) of each berth_request_<name>_seconds over `service`'s series."""
    totals = {name: [0.0, 0.0] for name in HISTOGRAMS}
    label = f'service="{service}"'
    for line in text.splitlines():
        if not line.startswith("berth_request_") or label not in line:
            continue
        metric, _, value = line.rpartition(" ")
        family = metric.split("{", 1)[0]
        for name in HISTOGRAMS:
            base = f"berth_request_{name}_seconds"
            if family == base + "_sum":
                totals[name][0] += float(value)
            elif family == base + "_count":
                totals[name][1] += float(value)
    return {k: (v[0], v[1]) for k, v in totals.items()}


def wait_first_200(proc: subprocess.Popen, port: int, path: str, body: bytes,
                   timeout: float = 180, side: subprocess.Popen | None = None) -> tuple[float, bytes]:
    """Poll POST `path` every 10 ms until a 200; returns (monotonic time, body).

    `side`: a process (the deploy CLI) whose failure also ends the wait."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the server exited with {proc.returncode} before answering 200")
        if side is not None and side.poll() not in (None, 0):
            out = side.stdout.read() if side.stdout else ""
            raise BenchError(f"`{' '.join(map(str, side.args))}` exited {side.returncode}:\n{out}")
        try:
            status, answer = post(port, path, body, timeout=30)
            if status == 200:
                return time.monotonic(), answer
            last = f"HTTP {status}: {answer[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.01)
    raise BenchError(f"no 200 from {path} within {timeout:.0f} s (last: {last})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))  # the reference binds 0.0.0.0
        return s.getsockname()[1]


# ---------------------------------------------------------------- wrk


def wrk(lua: Path, url: str, conns: int, seconds: float) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "-s", str(lua), url],
        capture_output=True, text=True, check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result = json.loads(line[len("WRKJSON "):])
            result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise BenchError(f"wrk failed (exit {out.returncode}): {out.stdout}{out.stderr}")


def load(server: "Server", lua: Path, duration: float) -> dict:
    """Warm up at c=8, then the measured windows; returns per-concurrency figures + RSS.

    With `server.metrics` (a callable returning histogram_totals), each window also gets the
    mean of each histogram over it (`hist_us`)."""
    figures: dict = {}
    warm = wrk(lua, server.url, 8, 2)
    figures["warm_errors"] = warm["errors"]
    for c in CONCURRENCY:
        before = server.metrics() if server.metrics else None
        cpu0, root0 = tree_cpu_seconds(server.pid), tree_cpu_seconds(server.pid, True)
        r = wrk(lua, server.url, c, duration)
        cpu = tree_cpu_seconds(server.pid) - cpu0
        root = tree_cpu_seconds(server.pid, True) - root0
        n = r["requests"] or float("nan")
        r["cpu_us_per_req"] = cpu * 1e6 / n
        r["cpu_root_us_per_req"] = root * 1e6 / n  # the server process alone, without workers
        if before is not None and server.metrics:
            after = server.metrics()
            r["hist_us"] = {
                name: ((after[name][0] - before[name][0]) * 1e6
                       / (after[name][1] - before[name][1]))
                if after[name][1] > before[name][1] else float("nan")
                for name in HISTOGRAMS}
        figures[f"c{c}"] = r
    figures["rss_mib"] = tree_rss_mib(server.pid)
    return figures


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    path: str
    extra: dict = field(default_factory=dict)
    metrics: Any = None  # () -> histogram_totals(...), Berth only

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


def stop(proc: subprocess.Popen, grace: float = 40) -> list[int]:
    """SIGTERM the server we started, wait, SIGKILL its process group if needed.

    Returns descendants still alive after the server itself exited (should be none)."""
    if proc.poll() is not None:
        return []
    tree = proc_tree(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # our own session: started with start_new_session
        proc.wait()
    time.sleep(0.2)
    left = [pid for pid in tree[1:] if Path(f"/proc/{pid}").exists()
            and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    if left:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def run_reference(ctx: "Context", script: str) -> dict:
    port = free_port()
    script_dir = ctx.work / script
    model_dir = ctx.work / "models" / script
    log = open(ctx.work / f"reference-{script}.log", "ab")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(ctx.venv / "bin" / "azmlinfsrv"), "--entry_script", str(script_dir / "score.py"),
         "--model_dir", str(model_dir), "--port", str(port), "--worker_count", "1"],
        cwd=script_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        server = Server(proc, port, "/score")
        t1, answer = wait_first_200(proc, port, "/score", ctx.body)
        figures = {"cold_s": t1 - t0, "answer": answer.decode()}
        figures.update(load(server, ctx.lua, ctx.duration))
        return figures
    finally:
        left = stop(proc)
        log.close()
        if left:
            print(f"   note: reference processes {left} outlived the server", file=sys.stderr)


def run_floor(ctx: "Context") -> dict:
    """The plain hyper echo server of bench/floor (echo only)."""
    port = free_port()
    proc = subprocess.Popen([str(ctx.floor_bin), f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t1, answer = wait_first_200(proc, port, "/score", ctx.body, timeout=10)
        figures = {"cold_s": float("nan"), "answer": answer.decode()}
        figures.update(load(Server(proc, port, "/score"), ctx.lua, ctx.duration))
        return figures
    finally:
        stop(proc, grace=5)


def berth_cli(ctx: "Context", env: dict, cwd: Path, *args: str) -> tuple[float, str]:
    t0 = time.monotonic()
    out = subprocess.run([str(ctx.berth), *args], cwd=cwd, env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise BenchError(f"`berth {' '.join(args)}` exited {out.returncode}:\n{out.stdout}{out.stderr}")
    return time.monotonic() - t0, out.stdout + out.stderr


def run_berth(ctx: "Context", script: str, run_no: int, conf: str) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix=f"b{run_no}-{script}-{conf}-", dir=ctx.work / "tmp"))
    data = scratch / "data"
    log = open(ctx.work / f"berth-{script}-{conf}.log", "ab")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(ctx.berth), "server", "--data", str(data), "--addr", "127.0.0.1:0"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    left: list[int] = []
    try:
        config_path = data / "config.json"
        deadline = time.monotonic() + 30
        config = None
        while config is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("berth server did not write config.json")
            try:
                config = json.loads(config_path.read_text())
            except (OSError, ValueError):
                time.sleep(0.002)
        port = int(config["endpoint"].rsplit(":", 1)[1].strip("/"))
        while True:
            try:
                if get(port, "/readyz") == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("berth server never answered /readyz 200")
            time.sleep(0.002)
        server_ready_s = time.monotonic() - t0

        env = dict(os.environ, BERTH_CONFIG=str(config_path))
        env.pop("BERTH_ENDPOINT", None)
        env.pop("BERTH_TOKEN", None)
        (scratch / "env.json").write_text(json.dumps(
            {"python": {"userManagedDependencies": True,
                        "interpreterPath": str(ctx.venv / "bin" / "python")}}))
        (scratch / "dc.json").write_text(json.dumps(
            {"computeType": "local", "numReplicas": 1, **CONFIGS[conf]}))
        berth_cli(ctx, env, scratch, "environment", "register", "-n", "bench-env",
                  "-f", str(scratch / "env.json"))
        deploy = ["model", "deploy", "-n", script, "--es", "score.py",
                  "--sd", str(ctx.work / script), "-e", "bench-env",
                  "--dc", str(scratch / "dc.json")]
        if script == "digits":
            berth_cli(ctx, env, scratch, "model", "register", "-n", "digits",
                      "-p", str(ctx.work / "models" / "digits" / "model.pkl"))
            deploy += ["-m", "digits:1"]
        path = f"/api/v1/service/{script}/score"
        token = config["token"]
        server = Server(proc, port, path,
                        metrics=lambda: histogram_totals(get_text(port, "/metrics", token), script))
        # Poll the scoring URL while the CLI runs: the CLI follows the operation by polling
        # it, so it may return a little after the service already answers.
        t_deploy = time.monotonic()
        cli = subprocess.Popen([str(ctx.berth), *deploy], cwd=scratch, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        cli_done: list[float] = []
        waiter = threading.Thread(target=lambda: (cli.wait(), cli_done.append(time.monotonic())))
        waiter.start()
        try:
            t1, answer = wait_first_200(proc, port, path, ctx.body, side=cli)
        finally:
            waiter.join(120)
        cli_output = cli.stdout.read() if cli.stdout else ""
        if cli.returncode != 0:
            raise BenchError(f"`berth {' '.join(deploy)}` exited {cli.returncode}:\n{cli_output}")
        deploy_cli_s = cli_done[0] - t_deploy
        figures = {"cold_s": t1 - t_deploy, "deploy_cli_s": deploy_cli_s,
                   "server_ready_s": server_ready_s, "answer": answer.decode()}
        figures.update(load(server, ctx.lua, ctx.duration))
        if script == "echo":
            # The HTTP floor on this machine: the same server answering GET /livez (no worker).
            figures["livez"] = wrk(ctx.floor_lua, f"http://127.0.0.1:{port}/livez", 1,
                                   min(ctx.duration, 4))
        t_stop = time.monotonic()
        left = stop(proc)
        figures["stop_s"] = time.monotonic() - t_stop
        return figures
    finally:
        left = left or stop(proc)
        log.close()
        if left:
            raise BenchError(f"Berth worker processes {left} outlived `berth server`")
        if not ctx.keep:
            shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------- report


@dataclass
class Context:
    work: Path
    venv: Path
    berth: Path
    floor_bin: Path | None
    body: bytes
    lua: Path
    floor_lua: Path
    duration: float
    keep: bool


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def fmt(value: float, kind: str) -> str:
    if value != value:  # nan
        return "–"
    if kind == "rps":
        return f"{value:,.0f}"
    if kind == "ms":
        return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 10 else f"{value:.1f}"
    if kind == "s":
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    if kind == "us":
        return f"{value:,.0f}"
    if kind == "mib":
        return f"{value:.0f}"
    return str(value)


def ratio(b: float, r: float) -> str:
    if b != b or r != r or r == 0:
        return "–"
    x = b / r
    return f"{x:.3f}×" if x < 0.1 else f"{x:.2f}×" if x < 10 else f"{x:.1f}×"


def m(runs: list[dict], getter) -> float:
    out = []
    for r in runs:
        try:
            out.append(getter(r))
        except (KeyError, TypeError):
            pass
    return median(out)


def columns_for(script: str, results: dict[str, list[dict]], configs: list[str]) -> list[str]:
    cols = ["reference"] + [f"berth-{c}" for c in configs]
    if results.get("floor"):
        cols.append("floor")
    return [c for c in cols if results.get(c)]


def heading(col: str) -> str:
    if col == "reference":
        return "azmlinfsrv (1 worker)"
    if col == "floor":
        return "floor (hyper echo)"
    conf = col.removeprefix("berth-")
    if conf == "defaults":
        return "Berth defaults"
    if conf == "2replicas":
        return "Berth defaults, 2 replicas"
    return f"Berth mc={conf}"


def rows_for(results: dict[str, list[dict]], cols: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one column per server, then Berth ÷ reference per Berth column."""
    berth_cols = [c for c in cols if c.startswith("berth-")]
    head = ["figure"] + [heading(c) for c in cols] + [f"{heading(c)} ÷ ref" for c in berth_cols]
    rows: list[list[str]] = []

    def row(label: str, getter, kind: str, with_ratio: bool = True) -> None:
        vals = {c: m(results[c], getter) for c in cols}
        ratios = [ratio(vals[c], vals.get("reference", float("nan"))) if with_ratio else "–"
                  for c in berth_cols]
        rows.append([label] + [fmt(vals[c], kind) for c in cols] + ratios)

    row("cold start¹, s", lambda x: x["cold_s"], "s")
    row("Berth `model deploy` CLI start → exit, s", lambda x: x["deploy_cli_s"], "s", False)
    for c in CONCURRENCY:
        k = f"c{c}"
        row(f"c={c} requests/s", lambda x: x[k]["rps"], "rps")
        row(f"c={c} p50, ms", lambda x: x[k]["p50_us"] / 1e3, "ms")
        row(f"c={c} p99, ms", lambda x: x[k]["p99_us"] / 1e3, "ms")
        row(f"c={c} CPU µs/request²", lambda x: x[k]["cpu_us_per_req"], "us")
        for name in HISTOGRAMS:
            row(f"c={c} mean {name}⁵, µs", lambda x, n=name: x[k]["hist_us"][n], "us", False)
    row("HTTP floor⁴: Berth GET /livez, c=1 p50, ms", lambda x: x["livez"]["p50_us"] / 1e3, "ms", False)
    row("RSS after the runs³, MiB", lambda x: x["rss_mib"], "mib")

    def errs(runs):
        return sum(x["warm_errors"] + sum(x[f"c{c}"]["errors"] for c in CONCURRENCY) for x in runs)

    rows.append(["non-2xx + socket errors (all runs)"] + [str(errs(results[c])) for c in cols]
                + ["–"] * len(berth_cols))
    # drop rows that have no figure at all
    rows = [r for r in rows if any(v != "–" for v in r[1:])]
    return head, rows


def render(script: str, head: list[str], rows: list[list[str]], runs: int, markdown: bool) -> str:
    title = f"{script} (median of {runs} run{'s' if runs > 1 else ''})"
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(head) + " |",
                 "|---|" + "---:|" * (len(head) - 1)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r):
        return "  ".join(r[i].ljust(widths[i]) if i == 0 else r[i].rjust(widths[i])
                         for i in range(len(head)))

    out = [f"== {title}", line(head), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def summary(script: str, results: dict[str, list[dict]], configs: list[str]) -> list[str]:
    """The issue-19 figures: ratios to the reference, distance to the floor, mean overhead."""
    ref = results.get("reference", [])
    floor = results.get("floor", [])
    lines = []
    for conf in configs:
        b = results.get(f"berth-{conf}", [])
        if not b:
            continue
        parts = []
        for c in (1, 64):
            x = m(b, lambda f: f[f"c{c}"]["rps"]) / m(ref, lambda f: f[f"c{c}"]["rps"]) if ref \
                else float("nan")
            parts.append(f"c={c} req/s {x:.1f}× azmlinfsrv")
        if floor:
            d = m(b, lambda f: f["c1"]["p50_us"]) - m(floor, lambda f: f["c1"]["p50_us"])
            parts.append(f"c=1 p50 − floor p50 = {d:+.0f} µs")
        for c in (1, 64):
            ov = m(b, lambda f: f[f"c{c}"]["hist_us"]["overhead"])
            run = m(b, lambda f: f[f"c{c}"]["hist_us"]["run"])
            parts.append(f"c={c} mean overhead {ov:.0f} µs (run() {run:.0f} µs)")
        lines.append(f"{script}, {heading('berth-' + conf)}: "
                     + "; ".join(parts))
    return lines


# ---------------------------------------------------------------- main


def prepare(work: Path, venv: Path) -> tuple[bytes, Path, Path]:
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    for name, text in (("echo", ECHO_SCRIPT), ("digits", DIGITS_SCRIPT)):
        (work / name).mkdir(exist_ok=True)
        (work / name / "score.py").write_text(text)
    (work / "models" / "echo").mkdir(parents=True, exist_ok=True)  # empty model dir
    (work / "models" / "digits").mkdir(parents=True, exist_ok=True)
    model = work / "models" / "digits" / "model.pkl"
    body_path = work / "body.json"
    subprocess.run([str(venv / "bin" / "python"), "-c", PREPARE,
                    "-" if model.exists() else str(model), str(body_path)], check=True)
    body = body_path.read_bytes()
    lua = work / "post.lua"
    lua.write_text(WRK_LUA % body.decode())
    floor_lua = work / "get.lua"
    floor_lua.write_text((WRK_LUA % "").split("\n", 3)[3])  # the done() reporter only: a plain GET
    return body, lua, floor_lua


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--venv", type=Path, default=ROOT / "target" / "bench-venv")
    p.add_argument("--berth", type=Path, default=ROOT / "target" / "release" / "berth")
    p.add_argument("--floor", type=Path, help="the bench/floor binary (echo floor); none: skipped")
    p.add_argument("--work", type=Path, default=ROOT / "target" / "bench-scoring")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=8, help="seconds per wrk window")
    p.add_argument("--scripts", default="echo,digits")
    p.add_argument("--configs", default="defaults,64",
                   help=f"Berth deployment configurations, of: {', '.join(CONFIGS)}")
    p.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    p.add_argument("--keep", action="store_true", help="keep Berth's scratch data dirs")
    args = p.parse_args()

    configs = [c for c in args.configs.split(",") if c]
    for c in configs:
        if c not in CONFIGS:
            p.error(f"--configs: unknown configuration {c!r}; use some of {', '.join(CONFIGS)}")
    work = args.work.resolve()
    body, lua, floor_lua = prepare(work, args.venv.resolve())
    ctx = Context(work, args.venv.resolve(), args.berth.resolve(),
                  args.floor.resolve() if args.floor else None, body, lua, floor_lua,
                  args.duration, args.keep)
    scripts = [s for s in args.scripts.split(",") if s]
    versions = subprocess.run(
        [str(ctx.venv / "bin" / "python"), "-c",
         "import sys, importlib.metadata as m; print('Python %d.%d.%d' % sys.version_info[:3], "
         "'azureml-inference-server-http', m.version('azureml-inference-server-http'), "
         "'scikit-learn', m.version('scikit-learn'))"],
        capture_output=True, text=True, check=False).stdout.strip()
    berth_version = subprocess.run([str(ctx.berth), "--version"], capture_output=True, text=True,
                                   check=False).stdout.strip().split("\n")[0]
    print(f"{berth_version} ({ctx.berth}); {versions}; {os.cpu_count()} cores", file=sys.stderr)
    print(f"body: {len(body)} bytes; wrk -t1 -c{{1,8,64}} -d{args.duration:g}s; "
          f"{args.runs} run(s); Berth configurations {configs}; work dir {work}", file=sys.stderr)

    load_before = Path("/proc/loadavg").read_text().split()[:3]
    if float(load_before[0]) > 1.0:
        print(f"warning: load average {load_before[0]} before starting: something else is using "
              f"the {os.cpu_count()} cores; figures will be noisy", file=sys.stderr)

    results: dict[str, dict[str, list[dict]]] = {s: {} for s in scripts}
    started = time.monotonic()
    failure = None
    try:
        for run_no in range(1, args.runs + 1):
            for script in scripts:
                order = ["reference"] + [f"berth-{c}" for c in configs]
                if script == "echo" and ctx.floor_bin:
                    order.append("floor")
                if run_no % 2 == 0:
                    order.reverse()
                for which in order:
                    if which == "reference":
                        fig = run_reference(ctx, script)
                    elif which == "floor":
                        fig = run_floor(ctx)
                    else:
                        fig = run_berth(ctx, script, run_no, which.removeprefix("berth-"))
                    fig["load1"] = float(Path("/proc/loadavg").read_text().split()[0])
                    results[script].setdefault(which, []).append(fig)
                    print(f"run {run_no} {script:6} {which:14} cold {fig['cold_s']:.2f}s  "
                          + "  ".join(f"c={c}: {fig[f'c{c}']['rps']:,.0f}/s "
                                      f"p50 {fig[f'c{c}']['p50_us'] / 1e3:.3f}ms "
                                      f"err {fig[f'c{c}']['errors']}" for c in CONCURRENCY)
                          + f"  rss {fig['rss_mib']:.0f}MiB  load {fig['load1']:.2f}", file=sys.stderr)
    except BenchError as e:
        failure = str(e)
    except KeyboardInterrupt:
        failure = "interrupted"
    elapsed = time.monotonic() - started
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    (work / "results.json").write_text(json.dumps(results, indent=1))

    problems = []
    tables_txt, tables_md, lines = [], [], []
    for script in scripts:
        res = results[script]
        cols = columns_for(script, res, configs)
        if not cols:
            continue
        runs = min(len(res[c]) for c in cols)
        head, rows = rows_for(res, cols)
        tables_txt.append(render(script, head, rows, runs, markdown=False))
        tables_md.append(render(script, head, rows, runs, markdown=True))
        lines += summary(script, res, configs)
        for which in cols:
            for i, fig in enumerate(res[which], 1):
                n = fig["warm_errors"] + sum(fig[f"c{c}"]["errors"] for c in CONCURRENCY)
                if n:
                    problems.append(f"{which} {script} run {i}: {n} error responses/socket errors")
        answers = {json.loads(f["answer"]).__repr__() for c in cols for f in res[c]}
        if len(answers) != 1:
            problems.append(f"{script}: the servers answered differently: {sorted(answers)}")
        if script == "echo" and res.get("reference") \
                and json.loads(res["reference"][0]["answer"]) != json.loads(body):
            problems.append("echo: the answer is not the request body")

    if tables_txt:
        print("\n\n".join(tables_txt))
        print(NOTES)
    if lines:
        print("\n" + "\n".join(lines))
    print(f"\nload average before {' '.join(load_before)}, after {' '.join(load_after)} "
          f"({os.cpu_count()} cores)")
    print(f"{elapsed:.0f} s for {args.runs} run(s); raw figures in {work / 'results.json'}")
    if args.markdown:
        args.markdown.write_text("\n\n".join(tables_md) + "\n" + NOTES + "\n\n"
                                 + "\n".join(lines) + "\n")
    if failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    if problems:
        print("error: " + "\n       ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
