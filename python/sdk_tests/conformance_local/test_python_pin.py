"""An environment whose conda file pins ``python=3.X`` runs on Python 3.X (the test looks for a second
installed interpreter, and skips loudly when the machine has none)."""

from __future__ import annotations

import os
import sys

from _server import ServerTestCase, silence

from ._v1 import Environment, InferenceConfig, LocalWebservice, Model, minor, second_interpreter

SCORE = """\
import sys


def init():
    pass


def run(raw_data):
    return {"python": "%d.%d.%d" % sys.version_info[:3]}
"""


class PinnedPythonConformance(ServerTestCase):
    def test_the_pinned_python_version_is_the_one_the_service_runs(self) -> None:
        second = second_interpreter()
        if second is None:
            reason = "no second Python interpreter (3.8+, another minor version than python3's) is installed"
            sys.stderr.write(f"\nSKIPPED pinned-Python conformance: {reason}\n")
            self.skipTest(reason)
        _, version = second
        wanted = minor(version)
        conda = self.write("pinned/env.yml", f"name: pinned\ndependencies:\n  - python={wanted}\n  - pip\n")
        source = self.write("pinned/src/score.py", SCORE)
        model_path = self.write("pinned/model.txt", "m\n")
        with silence():
            env = Environment.from_conda_specification("pinned-env", conda)
            model = Model.register(self.ws, model_path, "pin-model")
            ic = InferenceConfig(entry_script="score.py", source_directory=os.path.dirname(source), environment=env)
            service = Model.deploy(self.ws, "pinned-svc", [model], ic, LocalWebservice.deploy_configuration())
        self.assertEqual(minor(service.run("{}")["python"]), wanted)
        details = Environment.get(self.ws, "pinned-env").build_details if hasattr(Environment, "get") else None
        if isinstance(details, dict):
            self.assertEqual(minor(str(details.get("pythonFullVersion", ""))), wanted)
        with silence():
            service.delete()
