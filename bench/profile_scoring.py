#!/usr/bin/env python3
"""Where a scoring request's time goes at the v1 defaults: the echo `score.py`, one replica,
`maxConcurrentRequestsPerContainer` 1, `wrk -t1 -c<C>` for a few seconds, profiled.

    cargo build --release && python3 bench/profile_scoring.py [--seconds 4] [--connections 1]

During one wrk window it runs, side by side (each optional, skipped with a loud note when the
tool is missing or refused):
- `perf stat -e task-clock,context-switches,cpu-migrations` on the server and on the worker:
  CPU and context switches per request of each process;
- `perf record -a -g -e cpu-clock` (software clock: this VM has no hardware counters), reported
  by process and by shared object, then the server's top symbols;
- `py-spy record --native -f raw` on the worker (`pip install py-spy`): where the Python worker's
  samples fall (idle waiting for a frame vs the shim vs `run()`).
Then the mean of each berth_request_*_seconds histogram over the window. Prints figures; asserts
nothing. Needs wrk; perf and py-spy need root or ptrace rights.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchlib import ROOT, running_server, wrk

SCORE = b"import json\ndef init():\n    pass\ndef run(raw):\n    return json.loads(raw)\n"
ROW = '{"data": [[' + ", ".join(f"{float(i % 17)}" for i in range(64)) + "]]}"


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").iterdir():
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for k in kids:
                out.append(int(k))
                todo.append(int(k))
    return out


def worker_pid(server: int) -> int:
    for pid in descendants(server):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"python" in cmd:
            return pid
    raise SystemExit("no Python worker under the server")


def histograms(api) -> dict[str, tuple[float, float]]:
    conn = http.client.HTTPConnection(api.host, api.port, timeout=10)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {api.token}"})
    text = conn.getresponse().read().decode()
    conn.close()
    sums: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for line in text.splitlines():
        if line.startswith("berth_request_") and 'service="echo"' in line:
            metric, _, value = line.rpartition(" ")
            family = metric.split("{", 1)[0]
            if family.endswith("_seconds_sum"):
                sums[family.removesuffix("_sum")][0] += float(value)
            elif family.endswith("_seconds_count"):
                sums[family.removesuffix("_count")][1] += float(value)
    return {k: (v[0], v[1]) for k, v in sums.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "target" / "bench-profile")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    perf = shutil.which("perf")
    pyspy = shutil.which("py-spy") or next(
        (str(c) for c in [ROOT / "target" / "bench-venv" / "bin" / "py-spy"] if c.exists()), None)
    with running_server(args.binary, prefix="berth-profile-") as (proc, api, data):
        api.create("echo", api.snapshot(SCORE), {"computeType": "local", "numReplicas": 1})
        url = f"{api.endpoint}/api/v1/service/echo/score"
        wrk(url, 2, 8, data.parent, ROW)  # warm-up
        worker = worker_pid(proc.pid)
        print(f"server pid {proc.pid}, worker pid {worker}; load average "
              f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        tools: list[tuple[str, subprocess.Popen]] = []
        secs = str(max(1, args.seconds - 1))
        if perf:
            for name, pid in (("server", proc.pid), ("worker", worker)):
                tools.append((f"perf stat {name}", subprocess.Popen(
                    [perf, "stat", "-x,", "-e", "task-clock,context-switches,cpu-migrations",
                     "-p", str(pid), "-o", str(out / f"stat-{name}.csv"), "--", "sleep", secs],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
            tools.append(("perf record", subprocess.Popen(
                [perf, "record", "-q", "-a", "-g", "-e", "cpu-clock", "-o",
                 str(out / "perf.data"), "--", "sleep", secs],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        else:
            print("NOTE: perf not found (apt-get install -y linux-perf): no perf profile")
        if pyspy:
            tools.append(("py-spy", subprocess.Popen(
                [pyspy, "record", "--nonblocking", "--idle", "-r", "500", "-d", secs, "-f", "raw",
                 "-o", str(out / "worker.pyspy.txt"), "-p", str(worker)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        else:
            print("NOTE: py-spy not found (pip install py-spy): no worker profile")
        before = histograms(api)
        time.sleep(0.2)
        rps, p50, p99 = wrk(url, args.seconds, args.connections, data.parent, ROW)
        after = histograms(api)
        for name, t in tools:
            _, err = t.communicate()
            if t.returncode != 0:
                print(f"NOTE: {name} failed ({t.returncode}): {err.decode().strip()[-300:]}")
        print(f"wrk -t1 -c{args.connections} -d{args.seconds}s: {rps:,.0f} req/s, "
              f"p50 {p50:.0f} us, p99 {p99:.0f} us")
        for k in sorted(after):
            ds, dc = after[k][0] - before[k][0], after[k][1] - before[k][1]
            if dc:
                print(f"  mean {k}: {ds / dc * 1e6:.1f} us over {dc:.0f} requests")
        n = rps * float(secs)  # requests inside the profiling window, approximately
        for name in ("server", "worker"):
            path = out / f"stat-{name}.csv"
            if path.exists():
                vals = {}
                for line in path.read_text().splitlines():
                    parts = line.split(",")
                    if len(parts) > 3 and parts[0].replace(".", "").isdigit():
                        vals[parts[2]] = float(parts[0])
                cpu = vals.get("task-clock", 0) * 1e3 / n  # msec -> us per request
                cs = vals.get("context-switches", 0) / n
                print(f"  {name}: {cpu:.1f} us CPU and {cs:.2f} context switches per request")
    if perf and (out / "perf.data").exists():
        for sort in ("comm", "comm,dso"):
            rep = subprocess.run([perf, "report", "-i", str(out / "perf.data"), "--stdio",
                                  "--no-children", "--sort", sort, "-g", "none",
                                  "--percent-limit", "2"],
                                 capture_output=True, text=True, check=False).stdout
            print(f"\n-- perf, all CPUs, by {sort}:")
            print("\n".join(ln for ln in rep.splitlines() if ln.strip() and not ln.startswith("#")))
        for label, comms in (("the server's threads", "berth,tokio-rt-worker"),
                             ("the worker", "python,python3")):
            rep = subprocess.run([perf, "report", "-i", str(out / "perf.data"), "--stdio",
                                  "--no-children", "--comms", comms, "--percentage", "relative",
                                  "--sort", "dso,sym",
                                  "-g", "none", "--percent-limit", "1.5"],
                                 capture_output=True, text=True, check=False).stdout
            print(f"\n-- perf, {label}, by symbol (% of their samples):")
            print("\n".join(ln for ln in rep.splitlines()
                            if ln.strip() and not ln.startswith("#")))
    raw = out / "worker.pyspy.txt"
    if raw.exists():
        # raw format: "frame;frame;... count"; classify by the innermost Python frame
        leaf: collections.Counter[str] = collections.Counter()
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            total += int(count)
            frames = stack.split(";")
            leaf[frames[-1][:110]] += int(count)
        print(f"\n-- py-spy on the worker ({total} samples, innermost frames):")
        for frame, c in leaf.most_common(12):
            print(f"  {100 * c / total:5.1f}%  {frame}")
    print(f"\nraw profiles in {out}")


if __name__ == "__main__":
    sys.exit(main())
