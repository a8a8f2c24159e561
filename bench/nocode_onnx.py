"""No-code ONNX scoring beside the same model in a user `score.py`.

    python3 bench/nocode_onnx.py [--binary target/release/berth] [--python PY] [--seconds 5]

Makes an MNIST-sized ONNX model (784 float inputs → 10 outputs, MatMul + Add) with the `onnx`
package of `--python` (default `$BERTH_TEST_PYTHON`, else `target/schema-venv/bin/python`, which
`scripts/schema-python.sh` builds), registers it with framework `Onnx`, and deploys it twice on one
server, one replica each:

- `nocode`: no inference config (Berth's built-in ONNX scorer and environment);
- `user`: a typical user `score.py` (`json.loads` → numpy → `InferenceSession.run` → `tolist()`) in
  the same environment (onnxruntime + numpy).

Both get `{"data": [[784 floats]]}`; the no-code service also gets the ONNX Runtime server's
`PredictRequest` (`rawData` base64). Load: 1 and 32 concurrent keep-alive clients (threads spread
over 4 client processes) for `--seconds` each. Prints requests/s, p50/p99 and the ratio
no-code ÷ user score.py. The first deploy builds the environment (pip, from PyPI).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from benchlib import ROOT, Api, running_server

MAKE_ONNX = """
import sys
import onnx
from onnx import TensorProto, helper
x = helper.make_tensor_value_info("Input3", TensorProto.FLOAT, [None, 784])
y = helper.make_tensor_value_info("Plus214_Output_0", TensorProto.FLOAT, [None, 10])
w = helper.make_tensor("W", TensorProto.FLOAT, [784, 10], [((i * 7 + j) % 13) / 13.0 for i in range(784) for j in range(10)])
b = helper.make_tensor("b", TensorProto.FLOAT, [10], [float(j) for j in range(10)])
graph = helper.make_graph(
    [helper.make_node("MatMul", ["Input3", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["Plus214_Output_0"])],
    "mnistish", [x], [y], [w, b])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.save(model, sys.argv[1])
"""

USER_SCORE = b"""\
import json
import os

import numpy as np
import onnxruntime


def init():
    global session, name
    path = os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.onnx")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"], dtype=np.float32)
    return {"Plus214_Output_0": session.run(None, {name: data})[0].tolist()}
"""


def register_onnx(api: Api, path: Path) -> str:
    boundary = uuid.uuid4().hex
    meta = json.dumps({"name": "mnist-onnx", "kind": "file", "assetName": "model.onnx", "framework": "Onnx"})
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{meta}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"model.onnx\"\r\n\r\n"
    ).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, model = api.call("POST", "/v1/models", body, f"multipart/form-data; boundary={boundary}")
    assert status == 201, model
    return str(model["id"])


def _client(url: str, body: bytes, seconds: float, threads: int, out: "multiprocessing.Queue[list[float]]") -> None:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        mine = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"{url} answered {response.status}")
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put(latencies)


def load(url: str, body: bytes, clients: int, seconds: float) -> tuple[float, float, float]:
    """requests/s, p50 ms, p99 ms with `clients` concurrent keep-alive connections."""
    processes = min(clients, 4)
    per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    queue: "multiprocessing.Queue[list[float]]" = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_client, args=(url, body, seconds, n, queue)) for n in per]
    for p in procs:
        p.start()
    latencies: list[float] = []
    for _ in procs:
        latencies.extend(queue.get())
    for p in procs:
        p.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0.0
    return len(latencies) / seconds, statistics.median(latencies) * 1000, p99 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "berth")
    parser.add_argument("--python", default=os.environ.get("BERTH_TEST_PYTHON") or str(ROOT / "target" / "schema-venv" / "bin" / "python"))
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with running_server(args.binary, prefix="berth-bench-nocode-") as (_, api, data):
        model_path = data.parent / "model.onnx"
        subprocess.run([args.python, "-c", MAKE_ONNX, str(model_path)], check=True)
        model = register_onnx(api, model_path)
        started = time.time()
        status, accepted = api.call("POST", "/v1/services", json.dumps({"name": "nocode", "models": [model]}).encode())
        assert status == 202, accepted
        op = api.wait(accepted["operation"]["id"], timeout=1800)
        assert op["state"] == "Succeeded", op
        print(f"no-code deploy (environment build included): {time.time() - started:.1f} s", file=sys.stderr)
        environment = api.show("nocode")["environment"]
        status, accepted = api.call("POST", "/v1/services", json.dumps({
            "name": "user", "models": [model],
            "inferenceConfig": {"entryScript": "score.py", "sourceSnapshot": api.snapshot(USER_SCORE), "environment": environment},
        }).encode())
        assert status == 202, accepted
        op = api.wait(accepted["operation"]["id"])
        assert op["state"] == "Succeeded", op

        pixels = [((i * 31) % 256) / 255.0 for i in range(784)]
        plain = json.dumps({"data": [pixels]}).encode()
        raw = base64.b64encode(struct.pack("<784f", *pixels)).decode()
        predict = json.dumps({"inputs": {"Input3": {"dims": ["1", "784"], "dataType": 1, "rawData": raw}}}).encode()
        base = api.endpoint
        rows = []
        for clients in (1, 32):
            user = load(f"{base}/api/v1/service/user/score", plain, clients, args.seconds)
            nocode = load(f"{base}/api/v1/service/nocode/score", plain, clients, args.seconds)
            predict_rate = load(f"{base}/api/v1/service/nocode/score", predict, clients, args.seconds)
            rows.append((clients, user, nocode, predict_rate))
        print(f"{'clients':>7} | {'user score.py req/s (p50/p99 ms)':>34} | {'no-code {data} req/s':>30} | {'no-code PredictRequest req/s':>32} | ratio no-code/user (data, predict)")
        for clients, user, nocode, predict_rate in rows:
            print(
                f"{clients:>7} | {user[0]:>10.0f} ({user[1]:.2f}/{user[2]:.2f}) {'':>8}| {nocode[0]:>10.0f} ({nocode[1]:.2f}/{nocode[2]:.2f}) {'':>4}"
                f"| {predict_rate[0]:>10.0f} ({predict_rate[1]:.2f}/{predict_rate[2]:.2f}) {'':>6}| {nocode[0] / user[0]:.2f}, {predict_rate[0] / user[0]:.2f}"
            )


if __name__ == "__main__":
    main()
