"""The built-in no-code scorers (crates/berth-server/src/nocode/*_score.py) run by the real worker
shim against real models: an ONNX model made here with the ``onnx`` package, a scikit-learn model.

They need onnx, onnxruntime, numpy and scikit-learn in the test interpreter ($BERTH_TEST_PYTHON, which
``scripts/schema-python.sh`` builds with them); without them the cases are skipped, and each skip says
so on stderr. Run: BERTH_TEST_PYTHON=$(bash scripts/schema-python.sh) python3 -m unittest discover -s python/tests
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import worker_gateway as gw  # noqa: E402

NOCODE = Path(__file__).resolve().parents[2] / "crates" / "berth-server" / "src" / "nocode"

MAKE_ONNX = textwrap.dedent(
    """
    import sys
    import onnx
    from onnx import TensorProto, helper
    # y = x @ W + b with W = ones(4, 2), b = [1, 2]: a 4-feature, 2-output linear model.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 2], [1.0] * 8)
    b = helper.make_tensor("b", TensorProto.FLOAT, [2], [1.0, 2.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear", [x], [y], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[1])
    """
)

MAKE_SKLEARN = textwrap.dedent(
    """
    import sys
    import joblib
    from sklearn.linear_model import LinearRegression
    model = LinearRegression().fit([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0.0, 1.0, 2.0, 3.0])
    joblib.dump(model, sys.argv[1])
    """
)


def _missing(modules: list) -> list:
    return [m for m in modules if not gw.python_has_module(gw.test_python(), m)]


class _ScorerCase(unittest.TestCase):
    scorer = ""
    modules: list = []

    def setUp(self) -> None:
        missing = _missing(self.modules)
        if missing:
            reason = f"{', '.join(missing)} not importable by {gw.test_python()}: build it with scripts/schema-python.sh"
            sys.stderr.write(f"\nSKIPPED no-code scorer test: {reason}\n")
            self.skipTest(reason)
        self.app = Path(tempfile.mkdtemp(prefix="berth-nocode-"))
        self.addCleanup(shutil.rmtree, self.app, True)
        shutil.copy(NOCODE / self.scorer, self.app / "score.py")
        self.models = self.app / "models" / "m" / "1"
        self.models.mkdir(parents=True)

    def make(self, script: str, name: str) -> None:
        subprocess.run([gw.test_python(), "-c", script, str(self.models / name)], check=True)

    def worker(self) -> gw.WorkerProcess:
        worker = gw.WorkerProcess(self.app, env={"AZUREML_MODEL_DIR": str(self.models), "AML_APP_ROOT": str(self.app)})
        init = worker.start()
        self.addCleanup(worker.close)
        self.assertTrue(init.ok, f"init failed: {init.message}\n{worker.stderr_text()}")
        return worker

    def post(self, worker: gw.WorkerProcess, body: object) -> gw.ScoreResult:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return worker.score("POST", data, b"", [("content-type", b"application/json")])


class OnnxScorerTests(_ScorerCase):
    scorer = "onnx_score.py"
    modules = ["onnx", "onnxruntime", "numpy"]

    def test_predict_request_plain_json_and_bad_input(self) -> None:
        self.make(MAKE_ONNX, "model.onnx")
        worker = self.worker()
        rows = [1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 1.0]
        request = {
            "inputs": {"x": {"dims": ["2", "4"], "dataType": 1, "rawData": base64.b64encode(struct.pack("<8f", *rows)).decode()}},
            "outputFilter": ["y"],
        }
        result = self.post(worker, request)
        self.assertEqual(result.status, 200, result.body)
        out = result.json()["outputs"]["y"]
        self.assertEqual(out["dims"], ["2", "2"])
        self.assertEqual(out["dataType"], 1)
        self.assertEqual(list(struct.unpack("<4f", base64.b64decode(out["rawData"]))), [11.0, 12.0, 2.0, 3.0])

        typed = {"inputs": {"x": {"dims": [1, 4], "dataType": 1, "floatData": [1, 1, 1, 1]}}}
        self.assertEqual(struct.unpack("<2f", base64.b64decode(self.post(worker, typed).json()["outputs"]["y"]["rawData"])), (5.0, 6.0))

        plain = self.post(worker, {"data": [[1, 2, 3, 4]]})
        self.assertEqual(plain.status, 200, plain.body)
        self.assertEqual(plain.json(), {"y": [[11.0, 12.0]]})
        self.assertEqual(self.post(worker, {"x": [[0, 0, 0, 0]]}).json(), {"y": [[1.0, 2.0]]})

        for body, needle in [
            (b"not json", "not JSON"),
            ({"data": [[1, 2, 3]]}, "expects 4"),
            ({"inputs": {"x": {"dims": ["1", "4"], "dataType": 1, "rawData": base64.b64encode(b"abc").decode()}}}, "has 3 bytes"),
            ({"inputs": {"x": {"dims": ["1", "4"], "dataType": 7, "int64Data": ["1", "2", "3", "4"]}}}, "tensor(float)"),
            ({"inputs": {"nope": {"dims": ["1"], "dataType": 1, "floatData": [1]}}}, "no input `nope`"),
            ({"inputs": {"x": {"dims": ["1", "4"], "dataType": 1, "floatData": [1, 2, 3, 4]}}, "outputFilter": ["z"]}, "unknown output"),
            ({"q": [[1, 2, 3, 4]]}, "unknown input"),
        ]:
            with self.subTest(needle=needle):
                result = self.post(worker, body)
                self.assertEqual(result.status, 400, result.body)
                self.assertIn(needle, result.json()["message"])


class SklearnScorerTests(_ScorerCase):
    scorer = "sklearn_score.py"
    modules = ["sklearn", "joblib", "numpy"]

    def test_rows_give_predictions_and_bad_rows_give_400(self) -> None:
        self.make(MAKE_SKLEARN, "model.pkl")
        worker = self.worker()
        result = self.post(worker, {"data": [[1.0, 1.0], [0.0, 0.0]]})
        self.assertEqual(result.status, 200, result.body)
        self.assertEqual([round(v, 6) for v in result.json()], [3.0, 0.0])
        self.assertEqual([round(v, 6) for v in self.post(worker, [[1.0, 0.0]]).json()], [1.0])
        for body, needle in [
            ({"data": [[1.0, 2.0, 3.0]]}, "2 features"),
            ({"data": [["a", "b"]]}, "not a table of numbers"),
            ({"data": []}, "non-empty"),
            ({"f1": [1.0]}, "without feature names"),
            (b"{", "not JSON"),
        ]:
            with self.subTest(needle=needle):
                result = self.post(worker, body)
                self.assertEqual(result.status, 400, result.body)
                self.assertIn(needle, result.json()["message"])


if __name__ == "__main__":
    unittest.main()
