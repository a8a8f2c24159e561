"""Client-side validation that needs no server: InferenceConfig, deploy configurations,
Environment and CondaDependencies construction, Workspace.from_config's search."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest
from unittest import mock

from _server import chdir

from berth.core import Environment, Workspace
from berth.core.conda_dependencies import CondaDependencies
from berth.core.model import InferenceConfig
from berth.core.webservice import (
    AciServiceDeploymentConfiguration,
    AciWebservice,
    AksServiceDeploymentConfiguration,
    AksWebservice,
    LocalWebservice,
    LocalWebserviceDeploymentConfiguration,
)
from berth.exceptions import UserErrorException, WebserviceException


class TempDirTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="berth-sdk-cfg-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, relative: str, text: str) -> str:
        path = os.path.join(self.dir, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path


class InferenceConfigTests(TempDirTestCase):
    def test_valid_script_in_the_current_directory(self) -> None:
        self.write("score.py", "def init():\n    pass\ndef run(x):\n    return x\n")
        with chdir(self.dir):
            ic = InferenceConfig(entry_script="score.py")
        self.assertEqual(ic.entry_script, "score.py")
        self.assertIsNone(ic.source_directory)
        self.assertIsNone(ic.environment)

    def test_source_directory_is_made_absolute(self) -> None:
        self.write("src/score.py", "def init(): pass\n")
        with chdir(self.dir):
            ic = InferenceConfig(entry_script="score.py", source_directory="src")
        assert ic.source_directory is not None
        self.assertTrue(os.path.isabs(ic.source_directory))
        self.assertEqual(os.path.realpath(ic.source_directory), os.path.realpath(os.path.join(self.dir, "src")))

    def test_entry_script_required(self) -> None:
        with self.assertRaises(WebserviceException) as ctx:
            InferenceConfig(entry_script="")
        self.assertEqual(ctx.exception.message, "Error, need to specify entry_script.")

    def test_missing_script(self) -> None:
        with chdir(self.dir), self.assertRaises(WebserviceException) as ctx:
            InferenceConfig(entry_script="nope.py")
        self.assertIn("doesn't exist. entry_script should be path relative to current working directory", str(ctx.exception))

    def test_missing_source_directory(self) -> None:
        with chdir(self.dir), self.assertRaises(WebserviceException) as ctx:
            InferenceConfig(entry_script="score.py", source_directory="missing")
        self.assertIn("source_directory", str(ctx.exception))

    def test_only_python_drivers(self) -> None:
        self.write("score.R", "x <- 1\n")
        with chdir(self.dir), self.assertRaises(WebserviceException) as ctx:
            InferenceConfig(entry_script="score.R")
        self.assertIn("Invalid driver type. Currently only Python drivers are supported.", str(ctx.exception))

    def test_stem_must_be_a_module_name(self) -> None:
        self.write("my-score.py", "def init(): pass\n")
        self.write("class.py", "def init(): pass\n")
        with chdir(self.dir):
            for name in ("my-score.py", "class.py"):
                with self.assertRaises(WebserviceException) as ctx:
                    InferenceConfig(entry_script=name)
                self.assertIn("not a valid Python module name", str(ctx.exception))

    def test_syntax_error_is_a_user_error(self) -> None:
        self.write("score.py", "def init(:\n")
        with chdir(self.dir), self.assertRaises(UserErrorException) as ctx:
            InferenceConfig(entry_script="score.py")
        self.assertIn("Please check it and try local deployment to verify.", str(ctx.exception))

    def test_environment_excludes_legacy_settings(self) -> None:
        self.write("score.py", "def init(): pass\n")
        self.write("env.yml", "dependencies:\n- python=3.11\n")
        with chdir(self.dir), self.assertRaises(WebserviceException) as ctx:
            InferenceConfig(entry_script="score.py", environment=Environment("e"), conda_file="env.yml")
        self.assertIn("unable to provide runtime, conda_file", str(ctx.exception))

    def test_legacy_values_are_checked(self) -> None:
        self.write("score.py", "def init(): pass\n")
        with chdir(self.dir), self.assertRaises(WebserviceException) as ctx:
            InferenceConfig(entry_script="score.py", runtime="java", cuda_version="8.0", conda_file="nope.yml")
        text = str(ctx.exception)
        for needle in ("runtime not supported", "cuda_version", "unable to find conda_file"):
            self.assertIn(needle, text)

    def test_serialize(self) -> None:
        self.write("score.py", "def init(): pass\n")
        with chdir(self.dir):
            ic = InferenceConfig(entry_script="score.py", environment=Environment("e"), description="d")
        data = ic.serialize()
        self.assertEqual(data["entryScript"], "score.py")
        self.assertEqual(data["environment"]["name"], "e")
        self.assertEqual(data["description"], "d")


class AksConfigTests(unittest.TestCase):
    def test_defaults_are_left_to_the_server(self) -> None:
        config = AksWebservice.deploy_configuration()
        self.assertIsInstance(config, AksServiceDeploymentConfiguration)
        self.assertIsNone(config.autoscale_enabled)
        self.assertEqual(config.serialize(), {"computeType": "aks"})

    def test_config_json(self) -> None:
        config = AksWebservice.deploy_configuration(
            num_replicas=2,
            cpu_cores=0.5,
            memory_gb=1,
            cpu_cores_limit=1,
            auth_enabled=True,
            scoring_timeout_ms=5000,
            replica_max_concurrent_requests=2,
            max_request_wait_time=100,
            collect_model_data=True,
            period_seconds=5,
            gpu_cores=0,
            primary_key="p" * 32,
            tags={"a": "b"},
        )
        self.assertEqual(
            config.serialize(),
            {
                "computeType": "aks",
                "numReplicas": 2,
                "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1, "cpuLimit": 1},
                "authEnabled": True,
                "scoringTimeoutMs": 5000,
                "maxConcurrentRequestsPerContainer": 2,
                "maxQueueWaitMs": 100,
                "dataCollection": {"storageEnabled": True},
                "livenessProbeRequirements": {"periodSeconds": 5},
                "gpuCores": 0,
                "keys": {"primaryKey": "p" * 32},
            },
        )
        self.assertEqual(config.tags, {"a": "b"})

    def test_every_problem_is_listed(self) -> None:
        with self.assertRaises(WebserviceException) as ctx:
            AksWebservice.deploy_configuration(
                cpu_cores=0,
                memory_gb=-1,
                scoring_timeout_ms=0,
                num_replicas=0,
                gpu_cores=-1,
                period_seconds=0,
                namespace="Bad_NS",
                auth_enabled=True,
                token_auth_enabled=True,
            )
        text = str(ctx.exception)
        for needle in (
            "Invalid configuration, cpu_cores must be greater than zero.",
            "Invalid configuration, memory_gb must be greater than zero.",
            "Invalid configuration, scoring_timeout_ms must be greater than zero.",
            "Invalid configuration, num_replicas must be greater than zero.",
            "Invalid configuration, gpu_cores must be greater than or equal to zero.",
            "Invalid configuration, period_seconds must be greater than zero.",
            "Invalid configuration, namespace must be a valid Kubernetes namespace.",
            "Invalid configuration, auth_enabled and token_auth_enabled cannot both be true.",
        ):
            self.assertIn(needle, text)
        self.assertEqual(len(text.strip().splitlines()), 8)

    def test_autoscale_rules(self) -> None:
        cases = [
            (dict(autoscale_enabled=True, num_replicas=2), "autoscale enabled and num_replicas provided"),
            (dict(autoscale_enabled=False), "autoscale disabled but num_replicas not provided"),
            (dict(autoscale_max_replicas=3), "autoscale_max_replicas provided without enabling autoscaling"),
            (
                dict(autoscale_enabled=True, autoscale_min_replicas=5, autoscale_max_replicas=2),
                "autoscale_min_replicas cannot be greater than autoscale_max_replicas",
            ),
            (dict(autoscale_enabled=True, autoscale_refresh_seconds=0), "autoscale_refresh_seconds must be greater than zero"),
            (dict(cpu_cores=2, cpu_cores_limit=1), "cpu_cores_limit must be greater than or equal to cpu_cores"),
            (dict(memory_gb=2, memory_gb_limit=1), "memory_gb_limit must be greater than or equal to memory_gb"),
        ]
        for kwargs, needle in cases:
            with self.subTest(kwargs=kwargs):
                with self.assertRaises(WebserviceException) as ctx:
                    AksWebservice.deploy_configuration(**kwargs)  # type: ignore[arg-type]
                self.assertIn("Invalid configuration, " + needle, str(ctx.exception))
        ok = AksWebservice.deploy_configuration(autoscale_enabled=True, autoscale_min_replicas=1, autoscale_max_replicas=3)
        self.assertEqual(ok.serialize()["autoScaler"], {"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 3})
        AksWebservice.deploy_configuration(autoscale_enabled=False, num_replicas=2)


class AciConfigTests(TempDirTestCase):
    def test_defaults(self) -> None:
        config = AciWebservice.deploy_configuration()
        self.assertIsInstance(config, AciServiceDeploymentConfiguration)
        self.assertEqual(config.serialize(), {"computeType": "aci"})

    def test_resources_must_be_positive(self) -> None:
        with self.assertRaises(WebserviceException) as ctx:
            AciWebservice.deploy_configuration(cpu_cores=0, memory_gb=-1)
        self.assertIn("Invalid configuration, cpu_cores must be positive.", str(ctx.exception))
        self.assertIn("Invalid configuration, memory_gb must be positive.", str(ctx.exception))

    def test_ssl_and_pairs(self) -> None:
        with self.assertRaises(WebserviceException) as ctx:
            AciWebservice.deploy_configuration(ssl_enabled=True, ssl_cert_pem_file="/nope/cert.pem")
        self.assertIn("SSL is enabled", str(ctx.exception))
        self.assertIn("unable to find ssl_cert_pem_file", str(ctx.exception))
        with self.assertRaises(WebserviceException) as ctx:
            AciWebservice.deploy_configuration(cmk_key_name="k", vnet_name="v")
        self.assertIn("cmk_vault_base_url, cmk_key_name and cmk_key_version must all have values", str(ctx.exception))
        self.assertIn("vnet_name and subnet_name must all have values", str(ctx.exception))
        cert = self.write("cert.pem", "CERT")
        key = self.write("key.pem", "KEY")
        config = AciWebservice.deploy_configuration(
            ssl_enabled=True, ssl_cert_pem_file=cert, ssl_key_pem_file=key, ssl_cname="x.example", cpu_cores=1
        )
        data = config.serialize()
        self.assertEqual((data["sslCertificate"], data["sslKey"], data["cname"]), ("CERT", "KEY", "x.example"))


class LocalConfigTests(unittest.TestCase):
    def test_port(self) -> None:
        self.assertIsInstance(LocalWebservice.deploy_configuration(), LocalWebserviceDeploymentConfiguration)
        self.assertEqual(LocalWebservice.deploy_configuration(port=8890).serialize(), {"computeType": "local", "port": 8890})
        for port in (0, 65536, "80", 1.5):
            with self.subTest(port=port), self.assertRaises(WebserviceException) as ctx:
                LocalWebservice.deploy_configuration(port=port)  # type: ignore[arg-type]
            self.assertEqual(str(ctx.exception), "Invalid configuration, port must be an integer in range [1, 65535].")


class EnvironmentObjectTests(TempDirTestCase):
    def test_fresh_defaults(self) -> None:
        env = Environment("my-env")
        self.assertIsNone(env.version)
        self.assertEqual(env.environment_variables, {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"})
        self.assertFalse(env.python.user_managed_dependencies)
        self.assertEqual(env.python.interpreter_path, "python")
        self.assertIsInstance(env.python.conda_dependencies, CondaDependencies)
        self.assertIsNone(env.inferencing_stack_version)
        self.assertEqual(env.docker.shm_size, "2g")

    def test_name_must_be_a_string(self) -> None:
        with self.assertRaises(UserErrorException):
            Environment(None)  # type: ignore[arg-type]

    def test_from_pip_requirements_keeps_the_text(self) -> None:
        path = self.write("requirements.txt", "--no-index\n")
        env = Environment.from_pip_requirements("pip-env", path)
        self.assertEqual(env.get_pip_requirements(), "--no-index\n")
        request = env._registration_request()
        self.assertEqual(request["pipRequirements"], "--no-index\n")
        with self.assertRaises(UserErrorException):
            Environment.from_pip_requirements("x", os.path.join(self.dir, "missing.txt"))

    def test_from_conda_specification(self) -> None:
        path = self.write("env.yml", "name: x\ndependencies:\n  - python=3.11\n  - pip:\n    - --no-index\n")
        env = Environment.from_conda_specification("conda-env", path)
        conda = env.python.conda_dependencies
        assert conda is not None
        self.assertEqual(conda.get_python_version(), "3.11")
        self.assertEqual(list(conda.pip_options), ["--no-index"])
        request = env._registration_request()
        self.assertIn("condaFile", request)
        self.assertIsNone(request["azureEnvironment"]["python"]["condaDependencies"])
        conda.add_pip_package("numpy==1.26")
        request = env._registration_request()
        self.assertNotIn("condaFile", request)
        self.assertEqual(
            request["azureEnvironment"]["python"]["condaDependencies"]["dependencies"][-1], {"pip": ["--no-index", "numpy==1.26"]}
        )

    def test_conda_dependencies_create(self) -> None:
        conda = CondaDependencies.create(pip_packages=["a==1", "b"], conda_packages=["c"], python_version="3.11")
        self.assertEqual(list(conda.pip_packages), ["a==1", "b"])
        self.assertEqual(list(conda.conda_packages), ["python=3.11", "c"])
        conda.remove_pip_package("a")
        self.assertEqual(list(conda.pip_packages), ["b"])
        self.assertIn("- pip:\n  - b\n", conda.serialize_to_string())

    def test_clone(self) -> None:
        env = Environment("a")
        env.version = "3"
        copy = env.clone("b")
        self.assertEqual((copy.name, copy.version), ("b", None))


class FromConfigTests(TempDirTestCase):
    def config(self, relative: str, endpoint: str = "http://127.0.0.1:1", **extra: str) -> str:
        body = {"endpoint": endpoint, "token": "t", **extra}
        return self.write(relative, json.dumps(body))

    def test_search_order(self) -> None:
        home = os.path.join(self.dir, "home")
        work = os.path.join(self.dir, "work")
        os.makedirs(work)
        self.config("home/.berth/config.json", "http://home:1")
        env_file = self.config("elsewhere/cfg.json", "http://env:1")
        environ = {"HOME": home, "BERTH_CONFIG": env_file}
        with mock.patch.dict(os.environ, environ, clear=False), chdir(work):
            os.environ.pop("BERTH_DATA", None)
            self.assertEqual(Workspace.from_config().endpoint, "http://env:1")
            del os.environ["BERTH_CONFIG"]
            self.assertEqual(Workspace.from_config().endpoint, "http://home:1")
            self.config("work/.berth/config.json", "http://dotberth:1")
            self.assertEqual(Workspace.from_config().endpoint, "http://dotberth:1")
            self.config("work/config.json", "http://cwd:1", workspaceName="w1")
            ws = Workspace.from_config()
            self.assertEqual((ws.endpoint, ws.name), ("http://cwd:1", "w1"))
            explicit = self.config("explicit/config.json", "http://explicit:1")
            self.assertEqual(Workspace.from_config(explicit).endpoint, "http://explicit:1")
            self.assertEqual(Workspace.from_config(os.path.dirname(explicit)).endpoint, "http://explicit:1")

    def test_azure_config_is_skipped(self) -> None:
        home = os.path.join(self.dir, "home")
        self.config("home/.berth/config.json", "http://home:1")
        self.write("work/config.json", json.dumps({"subscription_id": "s", "resource_group": "r", "workspace_name": "w"}))
        with mock.patch.dict(os.environ, {"HOME": home}), chdir(os.path.join(self.dir, "work")):
            os.environ.pop("BERTH_CONFIG", None)
            os.environ.pop("BERTH_DATA", None)
            self.assertEqual(Workspace.from_config().endpoint, "http://home:1")

    def test_nothing_found(self) -> None:
        os.makedirs(os.path.join(self.dir, "empty"))
        with mock.patch.dict(os.environ, {"HOME": os.path.join(self.dir, "nohome")}), chdir(os.path.join(self.dir, "empty")):
            os.environ.pop("BERTH_CONFIG", None)
            os.environ.pop("BERTH_DATA", None)
            with self.assertRaises(UserErrorException) as ctx:
                Workspace.from_config()
            self.assertIn("could not find a Berth config.json", str(ctx.exception))
            with self.assertRaises(UserErrorException):
                Workspace.from_config(os.path.join(self.dir, "missing.json"))

    def test_bad_json_and_bad_arguments(self) -> None:
        path = self.write("config.json", "{not json")
        with self.assertRaises(UserErrorException):
            Workspace.from_config(path)
        with self.assertRaises(UserErrorException):
            Workspace(endpoint="ftp://x", token="t")
        with self.assertRaises(UserErrorException):
            Workspace(endpoint="http://x", token="")

    def test_write_config_round_trip(self) -> None:
        ws = Workspace(endpoint="http://127.0.0.1:9/", token="tok", workspace_name="w")
        path = ws.write_config(self.dir)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        again = Workspace.from_config(path)
        self.assertEqual((again.endpoint, again.name), ("http://127.0.0.1:9", "w"))


if __name__ == "__main__":
    unittest.main()
