"""The physical limit of one serial worker: `run()` called in a tight loop in one Python process.

    target/bench-venv/bin/python bench/inprocess_loop.py [--seconds 4] [--scripts echo,digits]

Uses the same `score.py` texts, model and request body as `bench/scoring_compare.py` (digits: a
`LogisticRegression` trained on `load_digits`, row 0 as the body), calls `init()` once, then
`run(body)` as often as it can for `--seconds`, and prints calls/s per script. Issue 19 §3 compares
Berth's digits requests/s at c=64 (one replica, v1 defaults) with this figure.

It also runs the worker's whole per-request path in-process: the shim (`berth_worker.py`) decodes a
SCORE frame like the gateway's (the request headers wrk sends, as forwarded), calls `run()`,
JSON-encodes the answer and builds the SCORE_RESULT frame, in a loop without sockets. That is the
most one worker process can answer per second with a core to itself: the ceiling for one replica.
Prints figures; asserts nothing. Run it with the bench venv's interpreter (it needs scikit-learn).
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scoring_compare  # noqa: E402  (the script texts and the model preparation)


def load(source: str) -> types.ModuleType:
    module = types.ModuleType("score")
    exec(compile(source, "score.py", "exec"), module.__dict__)  # noqa: S102 - the bench's own text
    return module


def loop(run: object, body: str, seconds: float) -> float:
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(100):
            run(body)  # type: ignore[operator]
        calls += 100
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - started)


SHIM = Path(__file__).resolve().parent.parent / "crates" / "berth-worker" / "shim"
FORWARDED = [("host", b"127.0.0.1:8080"), ("content-type", b"application/json"), ("content-length", b"0")]


def shim_loop(app_root: str, body: str, seconds: float) -> float:
    """The shim's per-request path (frame in → run() → frame out) in a loop, no sockets."""
    sys.path.insert(0, str(SHIM))
    import berth_worker as shim  # noqa: PLC0415  (the shim under test, from the source tree)

    script = shim.UserScript(app_root, "score.py", None)
    script.load()
    script.invoke_init()
    raw = body.encode()
    headers = [(k, str(len(raw)).encode() if k == "content-length" else v) for k, v in FORWARDED]
    parts = [struct.pack(">QH", 1, 4), b"POST", struct.pack(">H", 3), b"req", struct.pack(">I", 0)]
    parts.append(struct.pack(">H", len(headers)))
    for name, value in headers:
        parts += [struct.pack(">H", len(name)), name.encode(), struct.pack(">I", len(value)), value]
    payload = b"".join(parts) + raw
    frame, score = shim.ScoreFrame, script.score
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(100):
            out = score(frame(payload))
        calls += 100
        now = time.perf_counter()
        if now >= deadline:
            assert out[4] == shim.T_SCORE_RESULT
            return calls / (now - started)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4)
    p.add_argument("--scripts", default="echo,digits")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as work:
        model, body_path = os.path.join(work, "model.pkl"), os.path.join(work, "body.json")
        subprocess.run([sys.executable, "-c", scoring_compare.PREPARE, model, body_path], check=True)
        body = Path(body_path).read_text()
        os.environ["AZUREML_MODEL_DIR"] = work
        for name in args.scripts.split(","):
            source = {"echo": scoring_compare.ECHO_SCRIPT, "digits": scoring_compare.DIGITS_SCRIPT}[name]
            module = load(source)
            module.init()
            rate = loop(module.run, body, args.seconds)
            print(f"{name}: in-process run() loop {rate:,.0f} calls/s ({1e6 / rate:.1f} µs per call)")
            app_root = os.path.join(work, name)
            os.makedirs(app_root, exist_ok=True)
            Path(app_root, "score.py").write_text(source)
            rate = shim_loop(app_root, body, args.seconds)
            print(f"{name}: in-process shim loop (frame → run() → frame) {rate:,.0f} requests/s "
                  f"({1e6 / rate:.1f} µs per request)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
