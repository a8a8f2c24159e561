#!/usr/bin/env python3
"""Side-by-side scoring benchmark: Berth against the reference scoring server.

Run it through `bash bench/scoring_compare.sh` (which installs wrk, prepares the venv and
builds Berth). Stdlib only. Traffic goes to 127.0.0.1 only.

For each run and each script (echo, digits) it measures both servers, one after the other,
each started cold and stopped before the other starts:

- reference: `azmlinfsrv --entry_script score.py --model_dir DIR --port P --worker_count 1`
  from the venv. Cold start = process start -> first 200 on POST /score.
- Berth: `berth server --data <tmp> --addr 127.0.0.1:0` (server start -> config.json and
  /readyz 200 is reported on its own), an environment whose Azure JSON points at the same venv
  interpreter (userManagedDependencies), the digits model registered, then
  `berth model deploy ... --dc dc.json` (one replica, maxConcurrentRequestsPerContainer 64).
  Cold start = `berth model deploy` start -> first 200 on the scoring URL.

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

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONCURRENCY = (1, 8, 64)

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
  of the c=1 latency the worker path adds."""


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
    """Warm up at c=8, then the measured windows; returns per-concurrency figures + RSS."""
    figures: dict = {}
    warm = wrk(lua, server.url, 8, 2)
    figures["warm_errors"] = warm["errors"]
    for c in CONCURRENCY:
        cpu0, root0 = tree_cpu_seconds(server.pid), tree_cpu_seconds(server.pid, True)
        r = wrk(lua, server.url, c, duration)
        cpu = tree_cpu_seconds(server.pid) - cpu0
        root = tree_cpu_seconds(server.pid, True) - root0
        n = r["requests"] or float("nan")
        r["cpu_us_per_req"] = cpu * 1e6 / n
        r["cpu_root_us_per_req"] = root * 1e6 / n  # the server process alone, without workers
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


def berth_cli(ctx: "Context", env: dict, cwd: Path, *args: str) -> tuple[float, str]:
    t0 = time.monotonic()
    out = subprocess.run([str(ctx.berth), *args], cwd=cwd, env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise BenchError(f"`berth {' '.join(args)}` exited {out.returncode}:\n{out.stdout}{out.stderr}")
    return time.monotonic() - t0, out.stdout + out.stderr


def run_berth(ctx: "Context", script: str, run_no: int) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix=f"b{run_no}-{script}-", dir=ctx.work / "tmp"))
    data = scratch / "data"
    log = open(ctx.work / f"berth-{script}.log", "ab")
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
            {"computeType": "local", "numReplicas": 1,
             "maxConcurrentRequestsPerContainer": 64, "maxQueueWaitMs": 60000}))
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
        server = Server(proc, port, path)
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
            figures["floor"] = wrk(ctx.floor_lua, f"http://127.0.0.1:{port}/livez", 1,
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
    body: bytes
    lua: Path
    floor_lua: Path
    duration: float
    keep: bool


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float, kind: str) -> str:
    if value != value:  # nan
        return "–"
    if kind == "rps":
        return f"{value:,.0f}"
    if kind == "ms":
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
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


def rows_for(ref_runs: list[dict], berth_runs: list[dict]) -> list[tuple[str, str, str, str]]:
    def m(runs: list[dict], getter) -> float:
        return median([getter(r) for r in runs])

    rows = []
    rows.append(("cold start¹, s",
                 *(lambda r, b: (fmt(r, "s"), fmt(b, "s"), ratio(b, r)))(
                     m(ref_runs, lambda x: x["cold_s"]), m(berth_runs, lambda x: x["cold_s"]))))
    rows.append(("Berth `model deploy` CLI start → exit, s", "–",
                 fmt(m(berth_runs, lambda x: x["deploy_cli_s"]), "s"), "–"))
    rows.append(("Berth server start → /readyz 200, s", "–",
                 fmt(m(berth_runs, lambda x: x["server_ready_s"]), "s"), "–"))
    for c in CONCURRENCY:
        k = f"c{c}"
        for label, key, kind, scale in (("requests/s", "rps", "rps", 1),
                                        ("p50, ms", "p50_us", "ms", 1e-3),
                                        ("p99, ms", "p99_us", "ms", 1e-3),
                                        ("CPU µs/request²", "cpu_us_per_req", "us", 1)):
            r = m(ref_runs, lambda x: x[k][key] * scale)
            b = m(berth_runs, lambda x: x[k][key] * scale)
            rows.append((f"c={c} {label}", fmt(r, kind), fmt(b, kind), ratio(b, r)))
    if all("floor" in x for x in berth_runs):
        rows.append(("HTTP floor⁴: Berth GET /livez, c=1 p50, ms", "–",
                     fmt(m(berth_runs, lambda x: x["floor"]["p50_us"] / 1e3), "ms"), "–"))
    r, b = m(ref_runs, lambda x: x["rss_mib"]), m(berth_runs, lambda x: x["rss_mib"])
    rows.append(("RSS after the runs³, MiB", fmt(r, "mib"), fmt(b, "mib"), ratio(b, r)))
    errs = lambda runs: sum(x["warm_errors"] + sum(x[f"c{c}"]["errors"] for c in CONCURRENCY)
                            for x in runs)
    rows.append(("non-2xx + socket errors (all runs)", str(errs(ref_runs)), str(errs(berth_runs)), "–"))
    return rows


def render(script: str, rows, runs: int, markdown: bool) -> str:
    head = ("figure", "reference (azmlinfsrv, 1 worker)", "Berth (1 replica)", "Berth ÷ ref")
    if markdown:
        lines = [f"**{script}** (median of {runs} run{'s' if runs > 1 else ''})", "",
                 "| " + " | ".join(head) + " |", "|---|---:|---:|---:|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]

    def line(r):
        return "  ".join(r[i].ljust(widths[i]) if i == 0 else r[i].rjust(widths[i]) for i in range(4))

    out = [f"== {script} (median of {runs} run{'s' if runs > 1 else ''})", line(head),
           line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    return "\n".join(out)


# ---------------------------------------------------------------- main


def prepare(work: Path, venv: Path) -> tuple[bytes, Path]:
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
    p.add_argument("--work", type=Path, default=ROOT / "target" / "bench-scoring")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=8, help="seconds per wrk window")
    p.add_argument("--scripts", default="echo,digits")
    p.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    p.add_argument("--keep", action="store_true", help="keep Berth's scratch data dirs")
    args = p.parse_args()

    work = args.work.resolve()
    body, lua, floor_lua = prepare(work, args.venv.resolve())
    ctx = Context(work, args.venv.resolve(), args.berth.resolve(), body, lua, floor_lua,
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
          f"{args.runs} run(s); work dir {work}", file=sys.stderr)

    load1 = float(Path("/proc/loadavg").read_text().split()[0])
    if load1 > 1.0:
        print(f"warning: load average {load1:.2f} before starting: something else is using the "
              f"{os.cpu_count()} cores; figures will be noisy", file=sys.stderr)

    results: dict[str, dict[str, list[dict]]] = {s: {"reference": [], "berth": []} for s in scripts}
    started = time.monotonic()
    failure = None
    try:
        for run_no in range(1, args.runs + 1):
            for script in scripts:
                order = ["reference", "berth"] if run_no % 2 else ["berth", "reference"]
                for which in order:
                    fig = (run_reference(ctx, script) if which == "reference"
                           else run_berth(ctx, script, run_no))
                    fig["load1"] = float(Path("/proc/loadavg").read_text().split()[0])
                    results[script][which].append(fig)
                    print(f"run {run_no} {script:6} {which:9} cold {fig['cold_s']:.2f}s  "
                          + "  ".join(f"c={c}: {fig[f'c{c}']['rps']:,.0f}/s "
                                      f"p50 {fig[f'c{c}']['p50_us'] / 1e3:.2f}ms "
                                      f"err {fig[f'c{c}']['errors']}" for c in CONCURRENCY)
                          + f"  rss {fig['rss_mib']:.0f}MiB  load {fig['load1']:.2f}", file=sys.stderr)
    except BenchError as e:
        failure = str(e)
    except KeyboardInterrupt:
        failure = "interrupted"
    elapsed = time.monotonic() - started
    (work / "results.json").write_text(json.dumps(results, indent=1))

    problems = []
    tables_txt, tables_md = [], []
    for script in scripts:
        ref_runs, berth_runs = results[script]["reference"], results[script]["berth"]
        if not ref_runs or not berth_runs:
            continue
        runs = min(len(ref_runs), len(berth_runs))
        rows = rows_for(ref_runs, berth_runs)
        tables_txt.append(render(script, rows, runs, markdown=False))
        tables_md.append(render(script, rows, runs, markdown=True))
        for which, runs_ in (("reference", ref_runs), ("berth", berth_runs)):
            for i, fig in enumerate(runs_, 1):
                n = fig["warm_errors"] + sum(fig[f"c{c}"]["errors"] for c in CONCURRENCY)
                if n:
                    problems.append(f"{which} {script} run {i}: {n} error responses/socket errors")
        answers = {json.loads(f["answer"]).__repr__() for f in ref_runs + berth_runs}
        if len(answers) != 1:
            problems.append(f"{script}: the servers answered differently: {sorted(answers)}")
        if script == "echo" and json.loads(ref_runs[0]["answer"]) != json.loads(body):
            problems.append("echo: the answer is not the request body")

    if tables_txt:
        print("\n\n".join(tables_txt))
        print(NOTES)
    if "echo" in scripts and results["echo"]["berth"] and results["echo"]["reference"]:
        b, r = results["echo"]["berth"], results["echo"]["reference"]
        p50 = median([x["c1"]["p50_us"] for x in b])
        floor = median([x["floor"]["p50_us"] for x in b if "floor" in x])
        x64 = median([x["c64"]["rps"] for x in b]) / median([x["c64"]["rps"] for x in r])
        print(f"\nDESIGN §9 budget (echo): c=1 p50 {p50:.0f} µs end to end, {p50 - floor:.0f} µs over "
              f"this machine's HTTP floor ({floor:.0f} µs) (budget: overhead ≤ 150 µs); "
              f"c=64 requests/s {x64:.1f}× the reference (budget: 20×)")
    print(f"\n{elapsed:.0f} s for {args.runs} run(s); raw figures in {work / 'results.json'}")
    if args.markdown:
        args.markdown.write_text("\n\n".join(tables_md) + "\n" + NOTES + "\n")
    if failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    if problems:
        print("error: " + "\n       ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
