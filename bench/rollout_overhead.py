#!/usr/bin/env python3
"""Progressive delivery costs: weighted routing over two pools vs one, a 20 % mirror on the
primary, and the time from a gate breach to traffic back on the old revision.

Prints figures, asserts nothing. Usage:

    cargo build --release -p berth && python3 bench/rollout_overhead.py [--seconds 8] [--runs 1] [--rollouts 10]

Needs `wrk` (`apt-get install -y wrk`). One server, the echo `score.py` (`run()` returns
`json.loads(raw)` of a 64-float row), `maxConcurrentRequestsPerContainer` 64:

1. Weighted routing: service `single` (revision 1, 2 replicas) against service `split`
   (revision 1 at 90 % and a staged revision 2, same code with another model version, at
   10 %, 2 replicas each); `wrk -t1` at c=1 and c=64, alternating between the services
   (the order flips every run; per-run figures are printed as rate/p50/p99).
   Differences per request: p50 at c=1, mean service time (connections / rate) at c=64.
2. Mirror: service `mirrored` (revision 1, 2 replicas) measured without a mirror, then with
   `PUT .../mirror` 20 % to its staged revision 2 (the mirror is stopped after each window);
   the mirror's own counts over the measured window come from `GET /v1/services/mirrored`.
3. Gate breach: service `gate` (1 replica) gets `--rollouts` canary updates (30 %, bake 60 s,
   minRequests 5, maxErrorRate 1 %) to a model version whose `run()` always raises, under 4
   client threads that record (monotonic time, status, x-berth-revision) of every answer.
   Evaluation point: the arrival of the candidate's 5th answer; traffic back: the candidate's
   last answer. Prints last - evaluation point and the candidate's failures per rollout.

Failed answers are counted and printed, never fatal: outside the candidate's own answers in
part 3 every one of them is a server fault.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import ROOT, Api, WrkRun, running_server, wrk_run

ECHO = b"import json\ndef init():\n    pass\ndef run(raw):\n    return json.loads(raw)\n"
GATED = b"""
import json, os
def init():
    global fail
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        fail = f.read().strip() == "fail"
def run(raw):
    if fail:
        raise RuntimeError("this candidate always fails")
    return json.loads(raw)
"""
ROW = json.dumps([[float(i % 17) for i in range(64)]])
DEPLOYMENT = {"computeType": "local", "numReplicas": 2, "maxConcurrentRequestsPerContainer": 64}
MIN_REQUESTS = 5
MIRROR_PERCENT = 20


def stage(api: Api, service: str, model: str) -> int:
    """Stages a revision of `service` with `model` (not served); its number."""
    status, body = api.call("POST", f"/v1/services/{service}/revisions", json.dumps({"models": [model]}).encode())
    if status != 201:
        raise SystemExit(f"staging a revision of {service} -> {status}: {body}")
    return int(body["revision"])


def failures(run: WrkRun) -> str:
    """` (N non-2xx, M socket errors)` when there were any."""
    if run.non_2xx or run.socket_errors:
        return f"  ** {run.non_2xx} non-2xx, {run.socket_errors} socket errors of {run.requests} **"
    return ""


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def med(runs: list[WrkRun], what: str) -> float:
    return statistics.median(getattr(r, what) for r in runs)


def print_pair(label_a: str, a: list[WrkRun], label_b: str, b: list[WrkRun], connections: int) -> None:
    """Two configurations side by side with their ratios and differences per request."""
    for label, runs in ((label_a, a), (label_b, b)):
        errors = "".join(failures(r) for r in runs)
        each = "" if len(runs) < 2 else "  (runs: " + ", ".join(
            f"{r.rps:,.0f}/{r.p50_us:.0f}/{r.p99_us:.0f}" for r in runs) + ")"
        print(f"  {label:<40} {med(runs, 'rps'):>9,.0f} req/s  p50 {med(runs, 'p50_us'):>7.0f} us  "
              f"p99 {med(runs, 'p99_us'):>7.0f} us{errors}{each}")
    rate = med(b, "rps") / med(a, "rps")
    p50 = med(b, "p50_us") / med(a, "p50_us")
    p99 = med(b, "p99_us") / med(a, "p99_us")
    print(f"  {'ratio':<40} {rate:>9.3f}x      {p50:>11.3f}x      {p99:>11.3f}x")
    service_us = (connections / med(b, "rps") - connections / med(a, "rps")) * 1e6
    if connections == 1:
        print(f"  difference per request: p50 {med(b, 'p50_us') - med(a, 'p50_us'):+.0f} us "
              f"(1 / rate: {service_us:+.1f} us)")
    else:
        print(f"  difference per request: mean service time ({connections} / rate) {service_us:+.1f} us "
              f"(p50 {med(b, 'p50_us') - med(a, 'p50_us'):+.0f} us)")


def window(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The mirror's counts over a window (after - before); latencies as of `after`
    (they cover the mirror's whole life)."""
    if not after:
        return {}
    out = dict(after)
    for key in ("mirrored", "dropped", "differing"):
        out[key] = after.get(key, 0) - before.get(key, 0)
    for side in ("primary", "shadow"):
        out[side] = dict(after.get(side, {}))
        for key in ("requests", "errors"):
            out[side][key] = after.get(side, {}).get(key, 0) - before.get(side, {}).get(key, 0)
    return out


def traffic_line(api: Api, service: str) -> str:
    """Each serving revision's weight, ready replicas and last-minute figures (the
    gateway's own: count, share, 5xx rate, p50/p99)."""
    traffic = api.json("GET", f"/v1/services/{service}/traffic")
    parts = []
    total = sum(e["figures"]["requests"] for e in traffic["revisions"]) or 1
    for entry in traffic["revisions"]:
        figures = entry["figures"]
        parts.append(f"revision {entry['revision']}: weight {entry['weight']}, "
                     f"{entry['readyReplicas']}/{entry['desiredReplicas']} replicas, "
                     f"{figures['requests']:,} requests in the last minute "
                     f"({figures['requests'] / total * 100:.1f} %), 5xx {figures['errorRate']:.2f} %, "
                     f"p50/p99 {ms(figures.get('p50Ms'))}/{ms(figures.get('p99Ms'))} ms")
    return "; ".join(parts)


def routing(api: Api, args: argparse.Namespace, work: Path, first: str, second: str) -> None:
    """Part 1: one pool vs two weighted pools (`first`, `second`: the two model versions)."""
    snapshot = api.snapshot(ECHO)
    for name in ("single", "split"):
        api.create(name, snapshot, DEPLOYMENT, models=[first])
    revision = stage(api, "split", second)
    accepted = api.json("PUT", "/v1/services/split/traffic",
                        json.dumps({"weights": {"1": 90, str(revision): 10}}).encode())
    op = api.wait(accepted["operation"]["id"])
    if op["state"] != "Succeeded":
        raise SystemExit(f"the split did not succeed: {op}")
    urls = {name: f"{api.endpoint}/api/v1/service/{name}/score" for name in ("single", "split")}
    for url in urls.values():
        wrk_run(url, 2, 8, work, ROW)  # warm-up
    results: dict[tuple[str, int], list[WrkRun]] = {}
    for run in range(args.runs):
        for connections in (1, 64):
            order = list(urls.items()) if run % 2 == 0 else list(urls.items())[::-1]
            for name, url in order:
                results.setdefault((name, connections), []).append(
                    wrk_run(url, args.seconds, connections, work, ROW))
    print(f"1. Weighted routing, echo score.py, {args.runs} run(s) of {args.seconds} s per window "
          f"(medians), wrk -t1")
    for connections in (1, 64):
        print(f" c={connections}")
        print_pair("one revision, 2 replicas", results[("single", connections)],
                   f"90 % rev 1 + 10 % rev {revision}, 2+2 replicas", results[("split", connections)],
                   connections)
    print(f"  split as routed: {traffic_line(api, 'split')}")
    print(f"  (one pool:       {traffic_line(api, 'single')})")


def mirror(api: Api, args: argparse.Namespace, work: Path, first: str, second: str) -> None:
    """Part 2: a 20 % mirror's cost on the primary."""
    api.create("mirrored", api.snapshot(ECHO), DEPLOYMENT, models=[first])
    shadow = stage(api, "mirrored", second)
    url = f"{api.endpoint}/api/v1/service/mirrored/score"
    wrk_run(url, 2, 8, work, ROW)  # warm-up
    results: dict[tuple[str, int], list[WrkRun]] = {}
    reports: dict[int, list[dict[str, Any]]] = {}
    start_ms: list[float] = []
    for run in range(args.runs):
        for connections in (1, 64):
            if run % 2 == 0:
                results.setdefault(("off", connections), []).append(
                    wrk_run(url, args.seconds, connections, work, ROW))
            started = time.perf_counter()
            status, body = api.call("PUT", "/v1/services/mirrored/mirror",
                                    json.dumps({"revision": shadow, "percent": MIRROR_PERCENT}).encode())
            start_ms.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise SystemExit(f"PUT mirror -> {status}: {body}")
            wrk_run(url, 1, 8, work, ROW)  # the shadow's first requests
            time.sleep(0.3)  # the warm-up's copies reach the shadow
            before = api.show("mirrored").get("mirror", {})
            results.setdefault(("on", connections), []).append(
                wrk_run(url, args.seconds, connections, work, ROW))
            time.sleep(0.3)  # the last copies reach the shadow
            after = api.show("mirrored").get("mirror", {})
            reports.setdefault(connections, []).append(window(before, after))
            status, body = api.call("DELETE", "/v1/services/mirrored/mirror")
            if status != 204:
                raise SystemExit(f"DELETE mirror -> {status}: {body}")
            if run % 2 == 1:
                results.setdefault(("off", connections), []).append(
                    wrk_run(url, args.seconds, connections, work, ROW))
    print(f"2. {MIRROR_PERCENT} % mirror to a staged revision ({shadow}), primary revision 1 with 2 replicas, "
          f"{args.runs} run(s) of {args.seconds} s (medians); PUT mirror answered in "
          f"median {statistics.median(start_ms):.0f} ms")
    for connections in (1, 64):
        print(f" c={connections}")
        print_pair("no mirror", results[("off", connections)], f"{MIRROR_PERCENT} % mirrored",
                   results[("on", connections)], connections)
        for report in reports[connections]:
            if not report:
                print("  ** GET /v1/services/mirrored shows no mirror **")
                continue
            primary, shadow_side = report.get("primary", {}), report.get("shadow", {})
            offered = report.get("mirrored", 0) + report.get("dropped", 0)
            print(f"  mirror over the window: mirrored {report.get('mirrored', 0):,}, dropped {report.get('dropped', 0):,} "
                  f"({report.get('dropped', 0) / (offered or 1) * 100:.1f} % of copies), "
                  f"differing {report.get('differing', 0):,}; shadow answered {shadow_side.get('requests', 0):,} "
                  f"with {shadow_side.get('errors', 0):,} errors, p50/p99 {ms(shadow_side.get('p50Ms'))}/"
                  f"{ms(shadow_side.get('p99Ms'))} ms (primary on the mirrored requests {ms(primary.get('p50Ms'))}/"
                  f"{ms(primary.get('p99Ms'))} ms; latencies over the mirror's life)")


@dataclass
class Answers:
    """Every answer the gate load saw: (monotonic s, status, revision or 0)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: list[tuple[float, int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def gate_client(api: Api, stop: threading.Event, answers: Answers) -> None:
    mine: list[tuple[float, int, int]] = []
    conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
    body = ROW.encode()
    while not stop.is_set():
        try:
            conn.request("POST", "/api/v1/service/gate/score", body=body,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            mine.append((time.monotonic(), response.status, int(response.getheader("x-berth-revision") or 0)))
        except (OSError, http.client.HTTPException) as e:
            mine.append((time.monotonic(), 0, 0))
            with answers.lock:
                answers.errors.append(repr(e))
            conn.close()
            conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
    conn.close()
    with answers.lock:
        answers.seen.extend(mine)


def gate(api: Api, args: argparse.Namespace) -> None:
    """Part 3: gate breach -> traffic back on the old revision."""
    good = api.register("gate-model", b"ok")
    bad = api.register("gate-model", b"fail")
    api.create("gate", api.snapshot(GATED), {**DEPLOYMENT, "numReplicas": 1}, models=[good])
    stop = threading.Event()
    answers = Answers()
    threads = [threading.Thread(target=gate_client, args=(api, stop, answers)) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    rollouts: list[dict[str, Any]] = []
    rollout = {"strategy": "canary", "canaryPercent": 30, "bake": "60s",
               "minRequests": MIN_REQUESTS, "maxErrorRate": 1}
    try:
        for _ in range(args.rollouts):
            sent = time.monotonic()
            status, accepted = api.call("PATCH", "/v1/services/gate",
                                        json.dumps({"models": [bad], "rollout": rollout}).encode())
            if status != 202:
                raise SystemExit(f"PATCH with a canary -> {status}: {accepted}")
            op = api.wait(accepted["operation"]["id"], 180)
            ended = time.monotonic()
            rollouts.append({"revision": int(accepted["operation"]["targetRevision"]), "sent": sent,
                             "ended": ended, "state": op["state"], "error": op.get("error") or {}})
            if op["state"] != "RolledBack":
                print(f"** rollout of revision {rollouts[-1]['revision']} ended {op['state']}, "
                      f"not RolledBack: {op.get('error')} **")
                break
            time.sleep(0.5)
    finally:
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
    seen = sorted(answers.seen)
    candidates = {r["revision"] for r in rollouts}
    stable_failed = sum(1 for _, status, rev in seen if status != 200 and rev and rev not in candidates)
    candidate_ok = sum(1 for _, status, rev in seen if status == 200 and rev in candidates)
    unrouted = sum(1 for _, status, rev in seen if rev == 0)
    gaps, per_rollout, spans, to_first, op_after = [], [], [], [], []
    for r in rollouts:
        times = [t for t, _, rev in seen if rev == r["revision"]]
        fails = sum(1 for _, status, rev in seen if rev == r["revision"] and status != 200)
        per_rollout.append(fails)
        if len(times) < MIN_REQUESTS:
            print(f"** revision {r['revision']}: only {len(times)} answers from the candidate **")
            continue
        evaluation = times[MIN_REQUESTS - 1]
        gaps.append((times[-1] - evaluation) * 1000)
        spans.append((times[-1] - times[0]) * 1000)
        to_first.append((times[0] - r["sent"]) * 1000)
        op_after.append((r["ended"] - evaluation) * 1000)
    total = len(seen)
    print(f"3. Gate breach -> traffic back on the old revision: canary 30 %, minRequests {MIN_REQUESTS}, "
          f"maxErrorRate 1 %, a candidate whose run() always raises, 4 client threads, "
          f"{len(rollouts)} rollouts ({sum(1 for r in rollouts if r['state'] == 'RolledBack')} RolledBack)")
    if rollouts:
        print(f"  first rollback reason: {rollouts[0]['error'].get('code')}: {rollouts[0]['error'].get('message')}")
    if gaps:
        print(f"  evaluation point (candidate's answer {MIN_REQUESTS}) -> candidate's last answer: "
              f"median {statistics.median(gaps):.0f} ms, min {min(gaps):.0f}, max {max(gaps):.0f} "
              f"(goal <= 1000 ms)")
        print(f"    each: {', '.join(f'{g:.0f}' for g in gaps)} ms")
        print(f"  candidate failures per rollout: median {statistics.median(per_rollout):.0f}, "
              f"min {min(per_rollout)}, max {max(per_rollout)} (each: {', '.join(map(str, per_rollout))})")
        print(f"  candidate's first -> last answer: median {statistics.median(spans):.0f} ms; "
              f"PATCH sent -> candidate's first answer: median {statistics.median(to_first):.0f} ms; "
              f"evaluation point -> operation seen RolledBack (20 ms polls): median {statistics.median(op_after):.0f} ms")
    duration = (seen[-1][0] - seen[0][0]) if seen else 0.0
    print(f"  load: {total:,} answers in {duration:.1f} s ({total / (duration or 1):,.0f}/s); "
          f"candidate answers that were 200: {candidate_ok}; failed answers from the stable revision: "
          f"{stable_failed}; failures with no revision (gateway refusals, connection errors): {unrouted}")
    for error in answers.errors[:5]:
        print(f"    {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    parser.add_argument("--seconds", type=int, default=8, help="seconds per wrk window")
    parser.add_argument("--runs", type=int, default=1, help="alternating wrk windows per figure (medians)")
    parser.add_argument("--rollouts", type=int, default=10)
    parser.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 3")
    args = parser.parse_args()
    if not args.binary.exists():
        raise SystemExit(f"{args.binary} not found: run `cargo build --release -p berth` first")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    parts = set(args.parts.split(","))
    with running_server(args.binary, prefix="berth-rollout-bench-") as (_, api, data):
        work = data.parent
        first, second = api.register("echo-model", b"1"), api.register("echo-model", b"2")
        if "1" in parts:
            routing(api, args, work, first, second)
        if "2" in parts:
            mirror(api, args, work, first, second)
        if "3" in parts:
            gate(api, args)


if __name__ == "__main__":
    main()
