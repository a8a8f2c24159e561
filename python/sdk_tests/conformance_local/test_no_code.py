"""No-code deployment as azureml-core's samples do it: ``Model.register(..., model_framework=...)``
then ``Model.deploy(ws, name, [model])`` with no inference config; an ONNX model made here with the
``onnx`` package (PredictRequest/PredictResponse and plain JSON), a scikit-learn model, and the CLI's
``berth model deploy -m onnxmodel:1`` without ``--ic``.

The models are made by $BERTH_TEST_PYTHON (scripts/schema-python.sh gives it onnx and scikit-learn);
the services' built-in environments install onnxruntime / scikit-learn from PyPI."""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import unittest

from _server import BERTH_BIN, ServerTestCase, silence

from ._v1 import Model, Webservice, WebserviceException, missing_modules, run_python, test_python

MAKE_ONNX = """
import sys
import onnx
from onnx import TensorProto, helper
# MNIST-sized: 784 inputs, 10 outputs; y = x @ W + b with W[i, j] = 1 if i % 10 == j, b = 0..9.
x = helper.make_tensor_value_info("Input3", TensorProto.FLOAT, [None, 784])
y = helper.make_tensor_value_info("Plus214_Output_0", TensorProto.FLOAT, [None, 10])
w = helper.make_tensor("W", TensorProto.FLOAT, [784, 10], [1.0 if i % 10 == j else 0.0 for i in range(784) for j in range(10)])
b = helper.make_tensor("b", TensorProto.FLOAT, [10], [float(j) for j in range(10)])
graph = helper.make_graph(
    [helper.make_node("MatMul", ["Input3", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["Plus214_Output_0"])],
    "mnistish", [x], [y], [w, b])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
"""

MAKE_SKLEARN = """
import sys
import joblib
from sklearn.linear_model import LinearRegression
joblib.dump(LinearRegression().fit([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0.0, 1.0, 2.0, 3.0]), sys.argv[1])
"""


class NoCodeConformance(ServerTestCase):
    def setUp(self) -> None:
        missing = missing_modules(["onnx", "sklearn", "joblib"])
        if missing:
            reason = f"{', '.join(missing)} not importable by {test_python()}: run with BERTH_TEST_PYTHON=$(bash scripts/schema-python.sh)"
            sys.stderr.write(f"\nSKIPPED no-code conformance: {reason}\n")
            self.skipTest(reason)

    def test_onnx_model_deploys_without_inference_config(self) -> None:
        path = self.path("onnx", "model.onnx")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        run_python(MAKE_ONNX, path)
        with silence():
            model = Model.register(self.ws, path, "onnxmodel", model_framework=Model.Framework.ONNX)
            service = Model.deploy(self.ws, "onnx-nocode", [model])
            service.wait_for_deployment()
        self.addCleanup(self._delete, service)
        self.assertEqual(service.state, "Healthy")
        pixels = [0.0] * 784
        pixels[3] = 1.0  # feeds output 3
        request = {
            "inputs": {"Input3": {"dims": ["1", "784"], "dataType": 1, "rawData": base64.b64encode(struct.pack("<784f", *pixels)).decode()}},
            "outputFilter": ["Plus214_Output_0"],
        }
        answer = service.run(json.dumps(request))
        tensor = answer["outputs"]["Plus214_Output_0"]
        self.assertEqual(tensor["dims"], ["1", "10"])
        scores = struct.unpack("<10f", base64.b64decode(tensor["rawData"]))
        self.assertEqual(list(scores), [0.0, 1.0, 2.0, 4.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
        plain = service.run({"data": [pixels]})
        self.assertEqual(plain["Plus214_Output_0"][0][3], 4.0)
        with self.assertRaises(WebserviceException) as caught:
            service.run({"data": [[1.0, 2.0]]})
        self.assertEqual(caught.exception.status_code, 400)
        self.assertIn("expects 784", str(caught.exception))

        # The CLI deploys the same model without --ic (the environment is built already).
        config = os.path.join(self.server.data, "config.json")
        cli = subprocess.run(
            [BERTH_BIN, "--config", config, "model", "deploy", "-n", "onnx-cli", "-m", "onnxmodel:1"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.assertEqual(cli.returncode, 0, cli.stderr)
        cli_service = Webservice(self.ws, "onnx-cli")
        self.addCleanup(self._delete, cli_service)
        self.assertEqual(cli_service.run({"data": [pixels]}), plain)

    def test_sklearn_model_deploys_without_inference_config(self) -> None:
        path = self.path("sk", "model.pkl")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        run_python(MAKE_SKLEARN, path)
        with silence():
            model = Model.register(self.ws, path, "skmodel", model_framework=Model.Framework.SCIKITLEARN)
            service = Model.deploy(self.ws, "sk-nocode", [model])
            service.wait_for_deployment()
        self.addCleanup(self._delete, service)
        predictions = service.run(json.dumps({"data": [[1.0, 1.0], [0.0, 1.0]]}))
        self.assertEqual([round(p, 6) for p in predictions], [3.0, 2.0])
        with self.assertRaises(WebserviceException) as caught:
            service.run({"data": [[1.0, 2.0, 3.0]]})
        self.assertEqual(caught.exception.status_code, 400)
        self.assertIn("2 features", str(caught.exception))

    def test_a_model_without_a_no_code_framework_is_refused(self) -> None:
        path = self.path("custom", "model.txt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write("x")
        with silence():
            model = Model.register(self.ws, path, "custommodel")
        with self.assertRaises(WebserviceException) as caught:
            Model.deploy(self.ws, "custom-nocode", [model])
        self.assertIn("model_framework", str(caught.exception))

    @staticmethod
    def _delete(service: Webservice) -> None:
        try:
            with silence():
                service.delete()
        except WebserviceException:
            pass


if __name__ == "__main__":
    unittest.main()
