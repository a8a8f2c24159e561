"""v1-style scripts run unchanged (but for where the workspace config is) through the
``azureml.core`` imports of an installed berth-azureml, against a real server."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import unittest

import _server

from . import _venv


class V1ScriptTests(_server.ServerTestCase):
    server_args = (
        "--workspace-name",
        "conformance-ws",
        "--workspace-resource-group",
        "rg-berth",
        "--workspace-location",
        "on-prem",
        "--workspace-subscription-id",
        "11111111-2222-3333-4444-555555555555",
    )

    def run_script(self, script: str, *args: str) -> str:
        work = tempfile.mkdtemp(prefix="berth-v1-script-")
        self.addCleanup(shutil.rmtree, work, True)
        done = _venv.run_script(script, self.server.config_path, cwd=work, args=args or (work,))
        output = done.stdout + done.stderr
        self.assertEqual(
            done.returncode, 0, f"{script} failed:\n{output}\n--- server log ---\n{self.server.log()[-4000:]}"
        )
        self.assertIn(f"CONFORMANCE OK {os.path.splitext(script)[0]}", done.stdout, output)
        return output

    def test_workspace_surface(self) -> None:
        output = self.run_script("workspace_surface.py", self.server.config_path)
        self.assertIn("Workspace name: conformance-ws", output)
        self.assertIn("Resource group: rg-berth", output)
        self.assertIn("Azure region: on-prem", output)
        self.assertIn("Subscription id: 11111111-2222-3333-4444-555555555555", output)

    def test_multi_model(self) -> None:
        output = self.run_script("multi_model.py")
        self.assertIn("state Healthy", output)

    def test_curated_environment(self) -> None:
        output = self.run_script("curated_environment.py")
        self.assertIn("python 3.8", output)

    def test_aks_deployment_with_key_auth(self) -> None:
        output = self.run_script("aks_key_auth.py")
        self.assertIn("backed by the built-in `local` target", output)
        self.assertEqual(output.count("has no Kubernetes cluster"), 1, output)
        self.assertIn("compute target myaks", output)

    def test_compute_targets(self) -> None:
        output = self.run_script("compute_targets.py")
        self.assertIn("not part of Berth (deployment only)", output)


class InstallGuardTests(unittest.TestCase):
    """berth-azureml never shadows a real azureml-core silently; the plain SDK stays importable."""

    def test_refuses_to_import_next_to_azureml_core(self) -> None:
        python = _venv.venv_python()
        fake = tempfile.mkdtemp(prefix="berth-fake-azureml-core-")
        self.addCleanup(shutil.rmtree, fake, True)
        dist_info = os.path.join(fake, "azureml_core-1.61.0.dist-info")
        os.makedirs(dist_info)
        with open(os.path.join(dist_info, "METADATA"), "w", encoding="utf-8") as f:
            f.write("Metadata-Version: 2.1\nName: azureml-core\nVersion: 1.61.0\n")
        env = dict(os.environ, PYTHONPATH=fake)
        done = subprocess.run([python, "-c", "import azureml.core"], capture_output=True, text=True, env=env)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("azureml-core 1.61.0", done.stderr)
        self.assertIn("shadow", done.stderr)
        self.assertIn("virtual environment", done.stderr)
        done = subprocess.run([python, "-c", "import azureml.exceptions"], capture_output=True, text=True, env=env)
        self.assertNotEqual(done.returncode, 0, "azureml.exceptions is guarded too")
        done = subprocess.run(
            [python, "-c", "import berth.core, berth; print(berth.__version__, berth.core.VERSION)"],
            capture_output=True,
            text=True,
            env=env,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.split(), ["0.1.0", "0.1.0"])

    def test_installed_distributions_and_import_paths(self) -> None:
        python = _venv.venv_python()
        code = (
            "import importlib.metadata as m, azureml.core, azureml.core.model, azureml.core.webservice, "
            "azureml.core.environment, azureml.core.conda_dependencies, azureml.core.compute, "
            "azureml.core.image, azureml.exceptions, azureml.core.webservice.aks;"
            "print(m.version('berth'), m.version('berth-azureml'), azureml.core.VERSION);"
            "print(azureml.core.Workspace.__module__, azureml.core.compute.AksCompute.__module__)"
        )
        done = subprocess.run([python, "-c", code], capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = done.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["0.1.0", "0.1.0", "0.1.0"])
        self.assertEqual(lines[1].split(), ["berth.core.workspace", "berth.core.compute"])
