"""The v1 surface without a server: signatures against azureml-core's (checked-in table),
module attributes, defaults, warnings and client-side validation."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
import unittest
from typing import Any, Dict, List

import _server  # noqa: F401  (puts python/ on sys.path)

import berth
import berth.core
from berth.core.compute import AksCompute, AksProvisioningConfiguration, ComputeTarget
from berth.core.conda_dependencies import CondaDependencies
from berth.core.datastore import Datastore
from berth.core.environment import Environment
from berth.core.workspace import Workspace
from berth.exceptions import ComputeTargetException, UserErrorException

HERE = os.path.dirname(os.path.abspath(__file__))
COMPAT_DIR = os.path.join(_server.PYTHON_ROOT, "berth-azureml")

with open(os.path.join(HERE, "signatures.json"), encoding="utf-8") as _f:
    TABLE: Dict[str, Any] = json.load(_f)


def resolve(qualified: str) -> Any:
    """The object at a dotted path (module part, then attributes)."""
    parts = qualified.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(qualified)


def v1_part(function: Any) -> str:
    """The signature without annotations and without keyword-only parameters (Berth's extras)."""
    shown: List[str] = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            continue
        shown.append(str(parameter.replace(annotation=inspect.Parameter.empty)))
    return "(" + ", ".join(shown) + ")"


class SignatureTests(unittest.TestCase):
    def test_public_signatures_match_azureml_core(self) -> None:
        pending = TABLE["pending"]
        mismatches = []
        for name, expected in TABLE["signatures"].items():
            if name in pending:
                continue
            actual = v1_part(resolve(name))
            if actual != expected:
                mismatches.append(f"{name}\n  expected {expected}\n  actual   {actual}")
        self.assertEqual(mismatches, [], "signatures changed:\n" + "\n".join(mismatches))

    def test_extras_are_keyword_only_and_after_the_v1_parameters(self) -> None:
        for name in TABLE["signatures"]:
            parameters = list(inspect.signature(resolve(name)).parameters.values())
            kinds = [p.kind for p in parameters]
            if inspect.Parameter.KEYWORD_ONLY in kinds:
                first = kinds.index(inspect.Parameter.KEYWORD_ONLY)
                self.assertTrue(
                    all(k in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD) for k in kinds[first:]),
                    name,
                )

    def test_every_deviation_and_pending_entry_names_a_listed_method(self) -> None:
        for section in ("deviations", "pending"):
            for name, reason in TABLE[section].items():
                self.assertIn(name, TABLE["signatures"], section)
                self.assertTrue(reason.strip())

    def test_pending_signatures(self) -> None:
        for name, reason in TABLE["pending"].items():
            actual = v1_part(resolve(name))
            if actual == TABLE["signatures"][name]:
                self.fail(f"{name} now matches azureml-core: move it out of `pending` in signatures.json")
            print(f"\nSIGNATURE PENDING (not checked): {name} is {actual}, azureml-core has "
                  f"{TABLE['signatures'][name]}: {reason}", file=sys.stderr)

    def test_the_check_catches_a_changed_default(self) -> None:
        def changed(pip_indexurl: Any = None, pip_packages: Any = None, conda_packages: Any = None,
                    python_version: Any = "3.9", pin_sdk_version: bool = True) -> None:
            """A stand-in for an accidental change."""

        expected = TABLE["signatures"]["berth.core.conda_dependencies.CondaDependencies.create"]
        self.assertNotEqual(v1_part(changed), expected)
        self.assertEqual(v1_part(CondaDependencies.create), expected)


class ModuleSurfaceTests(unittest.TestCase):
    def test_versions(self) -> None:
        self.assertEqual(berth.__version__, "0.1.0")
        self.assertEqual(berth.core.VERSION, berth.__version__)

    def test_compat_modules_reexport_the_sdk(self) -> None:
        sys.path.insert(0, COMPAT_DIR)
        self.addCleanup(sys.path.remove, COMPAT_DIR)
        import azureml.core
        import azureml.core.compute
        import azureml.core.conda_dependencies
        import azureml.core.environment
        import azureml.core.model
        import azureml.core.webservice
        import azureml.exceptions

        self.assertEqual(azureml.core.VERSION, berth.__version__)
        self.assertIs(azureml.core.Workspace, Workspace)
        self.assertIs(azureml.core.model.Model, berth.core.Model)
        self.assertIs(azureml.core.environment.Environment, Environment)
        self.assertIs(azureml.core.conda_dependencies.CondaDependencies, CondaDependencies)
        self.assertIs(azureml.core.compute.AksCompute, AksCompute)
        self.assertIs(azureml.exceptions.ComputeTargetException, ComputeTargetException)
        from azureml.core import Experiment
        from azureml.core.image import ContainerImage

        with self.assertRaisesRegex(UserErrorException, "not part of Berth"):
            Experiment(None, "train")
        with self.assertRaisesRegex(UserErrorException, "InferenceConfig"):
            ContainerImage.image_configuration(execution_script="score.py")


class CompatPackagingTests(unittest.TestCase):
    """berth-azureml's own build backend: a wheel of ``azureml/`` that depends on ``berth``."""

    def test_wheel_and_sdist(self) -> None:
        import tarfile
        import tempfile
        import zipfile

        spec = importlib.util.spec_from_file_location(
            "azureml_build_backend", os.path.join(COMPAT_DIR, "azureml_build_backend.py")
        )
        assert spec is not None and spec.loader is not None
        backend = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(backend)
        out = tempfile.mkdtemp(prefix="berth-azureml-build-")
        self.addCleanup(__import__("shutil").rmtree, out, True)
        name = backend.build_wheel(out)
        self.assertEqual(name, "berth_azureml-0.1.0-py3-none-any.whl")
        with zipfile.ZipFile(os.path.join(out, name)) as wheel:
            names = wheel.namelist()
            metadata = wheel.read("berth_azureml-0.1.0.dist-info/METADATA").decode("utf-8")
        for expected in ("azureml/__init__.py", "azureml/core/__init__.py", "azureml/core/compute/aks.py",
                         "azureml/core/webservice/local.py", "azureml/exceptions/__init__.py"):
            self.assertIn(expected, names)
        self.assertFalse([n for n in names if n.startswith("berth/") or "build_backend" in n])
        self.assertIn("Name: berth-azureml\n", metadata)
        self.assertIn("Requires-Dist: berth==0.1.0\n", metadata)
        sdist = backend.build_sdist(out)
        with tarfile.open(os.path.join(out, sdist)) as archive:
            members = archive.getnames()
        self.assertIn("berth_azureml-0.1.0/azureml_build_backend.py", members)
        self.assertIn("berth_azureml-0.1.0/pyproject.toml", members)


class CondaAndEnvironmentDefaultsTests(unittest.TestCase):
    def test_create_keeps_azureml_core_order_and_does_not_pin_by_default(self) -> None:
        spec = CondaDependencies.create("https://example.invalid/simple", ["numpy==1.26"], ["scipy"])
        self.assertEqual(list(spec.pip_packages), ["numpy==1.26"])
        self.assertEqual(list(spec.pip_options), ["--extra-index-url https://example.invalid/simple"])
        self.assertEqual(list(spec.conda_packages), ["scipy"])
        self.assertIsNone(spec.get_python_version())
        pinned = CondaDependencies.create(python_version="3.8.13")
        self.assertEqual(pinned.get_python_version(), "3.8.13")
        self.assertEqual(CondaDependencies.create(python_version="3.11").get_python_version(), "3.11")

    def test_environment_has_a_conda_dependencies_to_add_to(self) -> None:
        env = Environment("my-env")
        self.assertIsInstance(env.python.conda_dependencies, CondaDependencies)
        request = env._registration_request()
        self.assertEqual(request["azureEnvironment"]["python"]["condaDependencies"]["dependencies"], [])
        assert env.python.conda_dependencies is not None
        env.python.conda_dependencies.add_pip_package("numpy==1.26")
        request = env._registration_request()
        self.assertEqual(
            request["azureEnvironment"]["python"]["condaDependencies"]["dependencies"], [{"pip": ["numpy==1.26"]}]
        )

    def test_a_fetched_environment_registers_its_requirements_until_edited(self) -> None:
        env = Environment._from_server(
            {"name": "e", "version": 2, "spec": {"pythonVersion": "3.8", "requirements": ["--no-index", "a==1"]}}
        )
        assert env.python.conda_dependencies is not None
        self.assertEqual(env.python.conda_dependencies.get_python_version(), "3.8")
        self.assertEqual(list(env.python.conda_dependencies.pip_packages), ["a==1"])
        self.assertEqual(env._registration_request()["pipRequirements"], "--no-index\na==1")
        clone = env.clone("mine")
        assert clone.python.conda_dependencies is not None
        clone.python.conda_dependencies.add_pip_package("b==2")
        request = clone._registration_request()
        self.assertNotIn("pipRequirements", request)
        deps = request["azureEnvironment"]["python"]["condaDependencies"]["dependencies"]
        self.assertEqual(deps, ["python=3.8", {"pip": ["--no-index", "a==1", "b==2"]}])

    def test_docker_constructors_and_save_load(self) -> None:
        import tempfile

        folder = tempfile.mkdtemp(prefix="berth-env-dir-")
        self.addCleanup(__import__("shutil").rmtree, folder, True)
        requirements = os.path.join(folder, "requirements.txt")
        with open(requirements, "w", encoding="utf-8") as f:
            f.write("numpy==1.26\n")
        with self.assertLogs("berth", level="WARNING") as logs:
            env = Environment.from_docker_image("img-env", "mcr.microsoft.com/azureml/minimal", pip_requirements=requirements)
        self.assertIn("docker.base_image", logs.output[0])
        self.assertEqual(env.get_pip_requirements(), "numpy==1.26\n")
        with self.assertLogs("berth", level="WARNING") as logs:
            from_text = Environment.from_dockerfile("df-env", "FROM python:3.11\n")
        self.assertIn("docker.base_dockerfile", logs.output[0])
        self.assertEqual(from_text.docker.base_dockerfile, "FROM python:3.11\n")
        with self.assertRaises(UserErrorException):
            Environment.from_docker_image("x", "img", conda_specification=requirements, pip_requirements=requirements)

        saved = Environment("saved-env")
        saved.environment_variables = {"A": "1"}
        assert saved.python.conda_dependencies is not None
        saved.python.conda_dependencies.add_pip_package("scipy")
        target = os.path.join(folder, "saved")
        saved.save_to_directory(target)
        self.assertTrue(os.path.isfile(os.path.join(target, "azureml_environment.json")))
        with self.assertRaises(UserErrorException):
            saved.save_to_directory(target)
        saved.save_to_directory(target, overwrite=True)
        loaded = Environment.load_from_directory(target)
        self.assertEqual(loaded.name, "saved-env")
        self.assertEqual(loaded.environment_variables, {"A": "1"})
        assert loaded.python.conda_dependencies is not None
        self.assertEqual(list(loaded.python.conda_dependencies.pip_packages), ["scipy"])
        self.assertEqual(loaded._registration_request(), saved._registration_request())
        with self.assertRaises(UserErrorException):
            Environment.load_from_directory(os.path.join(folder, "missing"))

    def test_docker_base_image_and_dockerfile_warn_naming_the_field(self) -> None:
        env = Environment("docker-env")
        with self.assertLogs("berth", level="WARNING") as logs:
            env.docker.base_image = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"
        self.assertIn("docker.base_image", logs.output[0])
        self.assertIn("does not use it", logs.output[0])
        with self.assertLogs("berth", level="WARNING") as logs:
            env.docker.base_dockerfile = "FROM ubuntu\nRUN echo hi\n"
        self.assertIn("docker.base_dockerfile", logs.output[0])
        with self.assertLogs("berth", level="WARNING") as logs:
            env.docker.base_image = "another/image:1"
        self.assertEqual(len(logs.output), 1, "every time it is set")
        self.assertEqual(env.docker.base_image, "another/image:1")


class ComputeConfigurationTests(unittest.TestCase):
    def test_provisioning_configuration_is_validated_like_azureml_core(self) -> None:
        config = AksCompute.provisioning_configuration(agent_count=3, vm_size="Standard_D3_v2",
                                                       cluster_purpose=AksCompute.ClusterPurpose.FAST_PROD)
        self.assertIsInstance(config, AksProvisioningConfiguration)
        self.assertEqual(config._properties(), {"agentCount": 3, "vmSize": "Standard_D3_v2", "clusterPurpose": "FastProd"})
        with self.assertRaisesRegex(ComputeTargetException, "agent count"):
            AksCompute.provisioning_configuration(agent_count=0)
        with self.assertRaisesRegex(ComputeTargetException, "go together"):
            AksCompute.provisioning_configuration(ssl_cname="a.example.com")
        with self.assertRaisesRegex(ComputeTargetException, "cluster_purpose"):
            AksCompute.provisioning_configuration(cluster_purpose="Cheap")

    def test_attach_configuration_needs_an_identity(self) -> None:
        self.assertEqual(
            AksCompute.attach_configuration(resource_id="/subscriptions/x/aks")._properties(), {"resourceId": "/subscriptions/x/aks"}
        )
        with self.assertRaisesRegex(ComputeTargetException, "resource_id"):
            AksCompute.attach_configuration(cluster_name="only-a-name")

    def test_create_refuses_other_objects(self) -> None:
        with self.assertRaises(ComputeTargetException):
            ComputeTarget.create(None, "x", {"agent_count": 3})  # type: ignore[arg-type]


class WorkspaceOfflineTests(unittest.TestCase):
    def test_explicit_endpoint_and_earlier_positional_form(self) -> None:
        ws = Workspace(endpoint="http://127.0.0.1:9/", token="tok", workspace_name="w")
        self.assertEqual(ws.name, "w")
        self.assertEqual(Workspace("http://127.0.0.1:9", "tok").endpoint, "http://127.0.0.1:9")
        with self.assertRaises(UserErrorException):
            Workspace(endpoint="http://x", token="")

    def test_datastore_training_calls_say_deployment_only(self) -> None:
        ws = Workspace(endpoint="http://127.0.0.1:9/", token="tok", workspace_name="w")
        store = ws.get_default_datastore()
        self.assertIsInstance(store, Datastore)
        self.assertEqual(store.name, "workspaceblobstore")
        for call in (lambda: store.upload("data"), lambda: store.path("x"), lambda: store.as_mount(),
                     lambda: store.register_azure_blob_container):
            with self.assertRaisesRegex(UserErrorException, r"not part of Berth \(deployment only\)"):
                call()


if __name__ == "__main__":
    unittest.main()
