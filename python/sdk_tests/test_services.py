"""Services against a real server with real Python workers: deploy, wait, run, logs, keys,
update (validation, live, rolling, failing), revisions, rollback, conflicts, delete."""

from __future__ import annotations

import json
import os
import unittest
import urllib.error
import urllib.request
from typing import Optional

from _server import FAILING_SCORE_PY, SCORE_PY, ServerTestCase, model_file, silence

from berth.core import Environment, Model, Webservice
from berth.core.model import InferenceConfig
from berth.core.webservice import (
    AciWebservice,
    AksWebservice,
    LocalWebservice,
    ServiceRevision,
    WebserviceDeploymentConfiguration,
)
from berth.exceptions import WebserviceException

SLOW_SCORE_PY = SCORE_PY.replace("def init():\n", "def init():\n    import time\n    time.sleep(1.5)\n", 1)


class ServiceTestCase(ServerTestCase):
    """Registers two model versions and writes source directories."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        with silence():
            cls.model_v1 = Model.register(cls.ws, model_file(os.path.join(cls.tmp, "m1"), "one"), "svc-model")
            cls.model_v2 = Model.register(cls.ws, model_file(os.path.join(cls.tmp, "m2"), "two"), "svc-model")
        cls.src = cls._source("src", SCORE_PY)
        cls.bad_src = cls._source("bad-src", FAILING_SCORE_PY)
        cls.slow_src = cls._source("slow-src", SLOW_SCORE_PY)

    @classmethod
    def _source(cls, name: str, script: str) -> str:
        path = os.path.join(cls.tmp, name)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "score.py"), "w", encoding="utf-8") as f:
            f.write(script)
        with open(os.path.join(path, "helper.txt"), "w", encoding="utf-8") as f:
            f.write("helper\n")
        return path

    def ic(self, source: Optional[str] = None, environment: Optional[Environment] = None) -> InferenceConfig:
        return InferenceConfig(entry_script="score.py", source_directory=source or self.src, environment=environment)

    def deploy(
        self,
        name: str,
        config: Optional[WebserviceDeploymentConfiguration] = None,
        models: Optional[list] = None,
        source: Optional[str] = None,
        wait: bool = True,
    ) -> Webservice:
        with silence():
            service = Model.deploy(
                self.ws, name, models or [self.model_v1], self.ic(source), config, overwrite=True
            )
            if wait:
                service.wait_for_deployment()
        self.addCleanup(self._delete_quietly, service)
        return service

    @staticmethod
    def _delete_quietly(service: Webservice) -> None:
        try:
            with silence():
                service.delete()
        except WebserviceException:
            pass


class AksServiceTests(ServiceTestCase):
    def test_deploy_wait_run_logs_and_attributes(self) -> None:
        config = AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=True, tags={"team": "a"}, description="svc")
        with silence():
            service = Model.deploy(self.ws, "aks-main", [self.model_v1], self.ic(), config)
        self.addCleanup(self._delete_quietly, service)
        self.assertIsInstance(service, AksWebservice)
        with silence() as out:
            service.wait_for_deployment(show_output=True)
        printed = out.getvalue()
        self.assertIn("Tips: You can try get_logs()", printed)
        self.assertIn("Switched traffic to revision 1", printed)
        self.assertIn('AKS service creation operation finished, operation "Succeeded"', printed)
        self.assertEqual(service.state, "Healthy")
        self.assertEqual(service.compute_type, "AKS")
        self.assertTrue(service.scoring_uri and service.scoring_uri.endswith("/api/v1/service/aks-main/score"))
        self.assertTrue(service.swagger_uri and service.swagger_uri.endswith("/api/v1/service/aks-main/swagger.json"))
        self.assertTrue(service.auth_enabled)
        self.assertEqual(service.num_replicas, 1)
        self.assertEqual((service.tags, service.description), ({"team": "a"}, "svc"))
        self.assertEqual(service.model_ids, ["svc-model:1"])
        self.assertEqual([m.id for m in service.models], ["svc-model:1"])
        self.assertEqual(service.entry_script, "score.py")
        self.assertEqual(service.serving_revision, 1)
        self.assertEqual(service.run(json.dumps({"x": 1})), {"model": "one", "input": {"x": 1}})
        self.assertEqual(service.run({"x": 2}), {"model": "one", "input": {"x": 2}})
        primary, secondary = service.get_keys()
        self.assertEqual((len(primary), len(secondary)), (32, 32))
        self.assertIn("init done, model one", service.get_logs())
        self.assertLessEqual(len(service.get_logs(num_lines=1).strip().splitlines()), 1)
        data = service.serialize()
        for key in ("name", "state", "computeType", "scoringUri", "autoScaler", "containerResourceRequirements",
                    "livenessProbeRequirements", "dataCollection", "numReplicas", "aadAuthEnabled", "servingRevision"):
            self.assertIn(key, data)
        self.assertEqual(data["containerResourceRequirements"]["cpu"], 0.1)
        self.assertEqual(data["livenessProbeRequirements"]["initialDelaySeconds"], 310)
        # The scoring endpoint refuses a call without the key.
        request = urllib.request.Request(service.scoring_uri, data=b"{}", method="POST")
        with self.assertRaises(urllib.error.HTTPError) as ctx:
            urllib.request.urlopen(request, timeout=10)
        self.assertEqual(ctx.exception.code, 401)

    def test_factory_list_and_not_found(self) -> None:
        self.deploy("aks-factory", AksWebservice.deploy_configuration(num_replicas=1), models=[self.model_v2])
        service = Webservice(self.ws, "aks-factory")
        self.assertIsInstance(service, AksWebservice)
        self.assertIsInstance(Webservice(name="aks-factory", workspace=self.ws), AksWebservice)
        self.assertIsInstance(AksWebservice(self.ws, "aks-factory"), AksWebservice)
        with self.assertRaises(WebserviceException):
            AciWebservice(self.ws, "aks-factory")
        with self.assertRaises(WebserviceException) as ctx:
            Webservice(self.ws, "no-such-service")
        self.assertIn("WebserviceNotFound: Webservice with name no-such-service not found in provided workspace", str(ctx.exception))
        names = [s.name for s in Webservice.list(self.ws, compute_type="AKS", model_id="svc-model:2")]
        self.assertIn("aks-factory", names)
        self.assertNotIn("aks-factory", [s.name for s in Webservice.list(self.ws, compute_type="ACI")])
        self.assertIn("aks-factory", [s.name for s in Webservice.list(self.ws, model_name="svc-model")])
        self.assertNotIn("aks-factory", [s.name for s in Webservice.list(self.ws, tags=[["team", "nobody"]])])
        self.assertIn("aks-factory", self.ws.webservices)
        with self.assertRaises(WebserviceException) as bad:
            Webservice.list(self.ws, compute_type="VM")
        self.assertIn('Invalid compute type "VM"', str(bad.exception))

    def test_deploy_validation(self) -> None:
        with self.assertRaises(WebserviceException) as ctx:
            Model.deploy(self.ws, "Bad_Name", [self.model_v1], self.ic())
        self.assertIn("provided service name is invalid", str(ctx.exception))
        with self.assertRaises(WebserviceException) as ctx:
            Model.deploy(self.ws, "no-ic", [self.model_v1], None)
        self.assertIn("inference_config", str(ctx.exception))
        with self.assertRaises(WebserviceException) as ctx:
            Model.deploy(self.ws, "no-config", [self.model_v1], self.ic(), None, deployment_target=object())
        self.assertIn("Must provide deployment configuration when not deploying to AKS or ACI", str(ctx.exception))
        self.deploy("aks-exists", AksWebservice.deploy_configuration(num_replicas=1))
        with silence(), self.assertRaises(WebserviceException) as conflict:
            Model.deploy(self.ws, "aks-exists", [self.model_v1], self.ic(), AksWebservice.deploy_configuration(num_replicas=1))
        self.assertEqual((conflict.exception.status_code, conflict.exception.code), (409, "conflict"))

    def test_update_validation_is_client_side_and_complete(self) -> None:
        service = self.deploy("aks-validate", AksWebservice.deploy_configuration(num_replicas=1, cpu_cores_limit=1.0))
        assert isinstance(service, AksWebservice)
        cases = [
            (dict(), ["No parameters provided to update."]),
            (dict(num_replicas=0), ["No parameters provided to update."]),
            (dict(autoscale_max_replicas=4), ["Error, autoscale_max_replicas provided without enabling autoscaling."]),
            (dict(autoscale_enabled=True, num_replicas=2), ["Error, autoscale enabled and num_replicas provided."]),
            (dict(autoscale_enabled=False), ["Error, autoscale disabled but num_replicas not provided."]),
            (
                dict(autoscale_enabled=True, autoscale_min_replicas=5, autoscale_max_replicas=2),
                ["Error, autoscale_min_replicas cannot be greater than autoscale_max_replicas."],
            ),
            (
                dict(token_auth_enabled=True),
                ["Error, cannot set token_auth_enabled without disabling key auth (set auth_enabled to False)."],
            ),
            (dict(token_auth_enabled=True, auth_enabled=True), ["Error, cannot set both token_auth_enabled and auth_enabled."]),
            (dict(cpu_cores=2.0), ["Error, cpu_cores must be less than or equal to the current cpu_cores_limit (1.0)."]),
            (dict(cpu_cores=2.0, cpu_cores_limit=1.5), ["Error, cpu_cores_limit must be greater than or equal to cpu_cores."]),
            (dict(memory_gb_limit=0.25), ["Error, memory_gb_limit must be greater than or equal to the current memory_gb (0.5)."]),
            (dict(models=[self.model_v2]), ['Error, both "models" and "inference_config" inputs must be provided in order to update the models.']),
            (dict(image=object()), ["Error, unable to use Image object to update Webservice created with Environment object."]),
            (dict(namespace="Not_Valid"), ["Error, namespace must be a valid Kubernetes namespace."]),
            (
                dict(scoring_timeout_ms=-1, replica_max_concurrent_requests=-1, max_request_wait_time=-1, gpu_cores=-1,
                     period_seconds=-1, timeout_seconds=-1, initial_delay_seconds=-1, success_threshold=-1, failure_threshold=-1),
                [
                    "Error, scoring_timeout_ms must be greater than zero.",
                    "Error, replica_max_concurrent_requests must be greater than zero.",
                    "Error, max_request_wait_time must be greater than zero.",
                    "Error, gpu_cores must be greater than or equal to zero.",
                    "Error, period_seconds must be greater than zero.",
                    "Error, timeout_seconds must be greater than zero.",
                    "Error, initial_delay_seconds must be greater than zero.",
                    "Error, success_threshold must be greater than zero.",
                    "Error, failure_threshold must be greater than zero.",
                ],
            ),
        ]
        for kwargs, needles in cases:
            with self.subTest(kwargs=kwargs):
                with self.assertRaises(WebserviceException) as ctx:
                    service.update(**kwargs)  # type: ignore[arg-type]
                for needle in needles:
                    self.assertIn(needle, str(ctx.exception))
        self.assertEqual(service.latest_revision, 1, "nothing reached the server")
        self.assertEqual(len(service.revisions()), 1)

    def test_server_side_validation_lists_every_problem(self) -> None:
        service = self.deploy("aks-server-val", AksWebservice.deploy_configuration(autoscale_enabled=True, autoscale_max_replicas=2))
        assert isinstance(service, AksWebservice)
        self.assertTrue(service.autoscaler.autoscale_enabled)
        # The SDK lets num_replicas alone through (as the reference does); the server refuses it on
        # an autoscaled service, and names the fix.
        with self.assertRaises(WebserviceException) as ctx:
            service.update(num_replicas=2)
        self.assertEqual((ctx.exception.status_code, ctx.exception.code), (400, "invalid_argument"))
        self.assertIn("autoscaleEnabled: false", str(ctx.exception))
        with silence():
            service.update(autoscale_enabled=False, num_replicas=2)
            service.wait_for_deployment()
        self.assertFalse(service.autoscaler.autoscale_enabled)
        self.assertEqual(service.num_replicas, 2)

    def test_live_update_of_settings_tags_and_properties(self) -> None:
        service = self.deploy("aks-live", AksWebservice.deploy_configuration(num_replicas=1))
        assert isinstance(service, AksWebservice)
        with silence():
            service.update(
                description="updated",
                tags={"owner": "me"},
                properties={"p": "1"},
                scoring_timeout_ms=5000,
                replica_max_concurrent_requests=2,
                max_request_wait_time=250,
                collect_model_data=True,
                enable_app_insights=True,
            )
            # A live update may finish before the next read: only the end state is certain.
            service.wait_for_deployment()
        self.assertEqual(service.state, "Healthy")
        self.assertEqual((service.description, service.tags, service.properties), ("updated", {"owner": "me"}, {"p": "1"}))
        self.assertEqual(
            (service.scoring_timeout_ms, service.max_concurrent_requests_per_container, service.max_request_wait_time),
            (5000, 2, 250),
        )
        self.assertTrue(service.data_collection.storage_enabled)
        self.assertEqual(service.serving_revision, 2)
        with silence():
            service.add_tags({"extra": "1"})
            service.remove_tags(["owner"])
            service.add_properties({"q": "2"})
        self.assertEqual(service.tags, {"extra": "1"})
        self.assertEqual(service.properties, {"p": "1", "q": "2"})
        with self.assertRaises(WebserviceException) as ctx:
            service.add_properties({"p": "other"})
        self.assertIn("add-only", str(ctx.exception))
        # Switching auth flips both flags in one call: key auth off, and on again.
        with silence():
            service.update(auth_enabled=False)
            service.wait_for_deployment()
        self.assertFalse(service.auth_enabled)
        self.assertEqual(service.run("[1]")["input"], [1])

    def test_rolling_update_failed_update_revisions_and_rollback(self) -> None:
        service = self.deploy("aks-roll", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False))
        self.assertEqual(service.run("1")["model"], "one")
        env = Environment("roll-env")
        env.environment_variables = {"ROLL": "1"}
        with silence():
            service.update(models=[self.model_v2], inference_config=self.ic(environment=env))
        with silence() as out:
            service.wait_for_deployment(show_output=True)
        self.assertIn('AKS service creation operation finished, operation "Succeeded"', out.getvalue())
        self.assertEqual((service.state, service.serving_revision), ("Healthy", 2))
        self.assertEqual(service.run("2")["model"], "two")
        self.assertEqual(service.environment_id, "roll-env:1")
        self.assertEqual(service.environment.version if service.environment else None, "1")

        # An update whose init() raises: the operation fails, revision 2 keeps serving.
        with silence():
            service.update(inference_config=self.ic(source=self.bad_src))
        with silence() as out, self.assertRaises(WebserviceException) as ctx:
            service.wait_for_deployment(show_output=True)
        message = str(ctx.exception)
        self.assertIn("Service deployment polling reached non-successful terminal state, current service state: Failed", message)
        self.assertIn("Operation ID: ", message)
        self.assertIn("More information can be found using '.get_logs()'", message)
        self.assertIn('"code": "CrashLoopBackOff"', message)
        self.assertIn("init exploded on purpose", message)
        self.assertIn("Revision 2 is still serving requests.", message)
        self.assertEqual(ctx.exception.code, "CrashLoopBackOff")
        self.assertIn("\nFailed\n", out.getvalue())
        self.assertEqual((service.state, service.serving_revision, service.latest_revision), ("Failed", 2, 3))
        self.assertEqual(service.error and service.error["code"], "CrashLoopBackOff")
        self.assertEqual(service.run("3")["model"], "two", "the old revision still answers")
        self.assertIn("init exploded on purpose", service.get_logs(init=True))

        revisions = service.revisions()
        self.assertEqual([(r.revision, r.serving) for r in revisions], [(1, False), (2, True), (3, False)])
        self.assertIsInstance(revisions[0], ServiceRevision)
        self.assertEqual(revisions[0].models, ["svc-model:1"])
        self.assertEqual(revisions[1].environment, "roll-env:1")
        self.assertEqual(revisions[2].entry_script, "score.py")

        with silence():
            service.rollback(1)
            service.wait_for_deployment()
        self.assertEqual((service.state, service.serving_revision), ("Healthy", 1))
        self.assertEqual(service.run("4")["model"], "one")
        with self.assertRaises(WebserviceException):
            service.rollback(0)
        with silence():
            service.redeploy()
            service.wait_for_deployment()
        self.assertEqual(service.state, "Healthy")

    def test_models_only_update_for_a_no_code_model(self) -> None:
        service = self.deploy("aks-nocode", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False))
        with silence():
            onnx = Model.register(
                self.ws, model_file(self.path("onnx"), "onnx"), "svc-onnx", model_framework=Model.Framework.ONNX
            )
            service.update(models=[onnx])  # the reference's no-code rule lets one Onnx model through
            service.wait_for_deployment()
        self.assertEqual((service.model_ids, service.entry_script), (["svc-onnx:1"], "score.py"))
        self.assertEqual(service.run("1")["model"], "onnx")
        with self.assertRaises(TypeError):
            service.update(num_replica=2)  # type: ignore[call-arg]

    def test_failed_environment_build(self) -> None:
        service = self.deploy("aks-badenv", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False))
        requirements = self.write("badenv/requirements.txt", "--no-index\nberth-sdk-test-no-such-package==1.0\n")
        env = Environment.from_pip_requirements("bad-env", requirements)
        with silence():
            service.update(inference_config=self.ic(environment=env))
        with silence(), self.assertRaises(WebserviceException) as ctx:
            service.wait_for_deployment()
        message = str(ctx.exception)
        self.assertIn('"code": "EnvironmentBuildFailed"', message)
        self.assertIn("More information can be found here: the build log of bad-env:1", message)
        self.assertIn("berth-sdk-test-no-such-package", message)
        self.assertEqual((service.state, service.serving_revision), ("Failed", 1))
        self.assertEqual(service.run("1")["model"], "one")

    def test_conflict_timeout_and_unknown_operation(self) -> None:
        service = self.deploy("aks-busy", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False))
        fresh = Webservice(self.ws, "aks-busy")
        with silence(), self.assertRaises(WebserviceException) as ctx:
            fresh.wait_for_deployment()
        self.assertEqual(
            str(ctx.exception), "Long running operation information not known, unable to poll. Current state is Healthy"
        )
        assert isinstance(service, AksWebservice)
        with silence():
            service.update(inference_config=self.ic(source=self.slow_src))
        # A second change while the first runs: 409 from the server.
        with silence(), self.assertRaises(WebserviceException) as conflict:
            fresh.update(description="meanwhile")
        self.assertEqual((conflict.exception.status_code, conflict.exception.code), (409, "conflict"))
        with silence(), self.assertRaises(WebserviceException) as timeout:
            service.wait_for_deployment(timeout_sec=0.2)
        self.assertIn("Deployment polling exceeded timeout override of 0.2s. Current status: Running", str(timeout.exception))
        with silence():
            service.wait_for_deployment()
        self.assertEqual(service.state, "Healthy")

    def test_regen_key(self) -> None:
        service = self.deploy("aks-keys", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=True))
        with self.assertRaises(WebserviceException) as ctx:
            service.regen_key("tertiary")
        self.assertIn("Error, invalid value provided for key: Tertiary", str(ctx.exception))
        with self.assertRaises(WebserviceException):
            service.regen_key("")
        old_primary, old_secondary = service.get_keys()
        service.run("1")
        service.regen_key("primary")
        new_primary, secondary = service.get_keys()
        self.assertNotEqual(new_primary, old_primary)
        self.assertEqual(secondary, old_secondary)
        self.assertEqual(service.run("2")["input"], 2, "run() picks up the new key")
        chosen = "S" * 32
        service.regen_key("Secondary", set_key=chosen)
        self.assertEqual(service.get_keys()[1], chosen)

    def test_token_auth(self) -> None:
        service = self.deploy(
            "aks-token", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False, token_auth_enabled=True)
        )
        self.assertTrue(service.token_auth_enabled)
        token = service.get_access_token()
        self.assertTrue(token.access_token)
        self.assertEqual(token.token_type, "Bearer")
        self.assertLess(token.refresh_after, token.expiry_on)
        access, refresh_after = service.get_token()
        self.assertTrue(access)
        self.assertEqual(service.run("5")["input"], 5, "run() sends a token")
        request = urllib.request.Request(service.scoring_uri or "", data=b"{}", method="POST")
        with self.assertRaises(urllib.error.HTTPError) as ctx:
            urllib.request.urlopen(request, timeout=10)
        self.assertEqual(ctx.exception.code, 401)

    def test_switching_auth_modes(self) -> None:
        service = self.deploy("aks-switch", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=True))
        assert isinstance(service, AksWebservice)
        self.assertEqual(service.run("1")["input"], 1)
        with self.assertRaises(WebserviceException):
            service.update(token_auth_enabled=True)
        with silence():
            service.update(token_auth_enabled=True, auth_enabled=False)
            service.wait_for_deployment()
        self.assertEqual((service.auth_enabled, service.token_auth_enabled), (False, True))
        self.assertEqual(service.run("2")["input"], 2)
        with self.assertRaises(WebserviceException) as ctx:
            service.update(auth_enabled=True)
        self.assertIn("cannot set auth_enabled without disabling token auth", str(ctx.exception))
        with silence():
            service.update(auth_enabled=True, token_auth_enabled=False)
            service.wait_for_deployment()
        self.assertEqual((service.auth_enabled, service.token_auth_enabled), (True, False))
        self.assertEqual(service.run("3")["input"], 3)

    def test_delete(self) -> None:
        service = self.deploy("aks-delete", AksWebservice.deploy_configuration(num_replicas=1))
        with silence() as out:
            service.delete()
        self.assertEqual(service.state, "Deleted")
        with self.assertRaises(WebserviceException):
            Webservice(self.ws, "aks-delete")
        with silence() as out:
            service.delete()
        self.assertIn("No service with name aks-delete found to delete.", out.getvalue())


class AciServiceTests(ServiceTestCase):
    def test_default_deploy_is_aci_without_auth(self) -> None:
        with silence():
            service = Model.deploy(self.ws, "aci-default", [self.model_v1], self.ic())
            service.wait_for_deployment()
        self.addCleanup(self._delete_quietly, service)
        self.assertIsInstance(service, AciWebservice)
        self.assertEqual((service.compute_type, service.state, service.auth_enabled), ("ACI", "Healthy", False))
        self.assertEqual(service.run("7"), {"model": "one", "input": 7})
        data = service.serialize()
        self.assertIn("sslEnabled", data)
        self.assertNotIn("autoScaler", data)
        with self.assertRaises(NotImplementedError) as ctx:
            service.get_access_token()
        self.assertEqual(str(ctx.exception), "ACI webservices do not support Token Authentication.")

    def test_update(self) -> None:
        service = self.deploy("aci-update", AciWebservice.deploy_configuration(cpu_cores=0.5, memory_gb=1))
        assert isinstance(service, AciWebservice)
        self.assertEqual(service.container_resource_requirements.cpu, 0.5)
        with self.assertRaises(WebserviceException) as ctx:
            service.update()
        self.assertEqual(str(ctx.exception), "No parameters provided to update.")
        cert = self.write("aci/cert.pem", "CERT")
        with self.assertRaises(WebserviceException) as ctx:
            service.update(ssl_cert_pem_file=cert, ssl_key_pem_file=self.path("aci", "missing.pem"))
        self.assertIn("Error, SSL must be enabled in order to update SSL cert/key.", str(ctx.exception))
        self.assertIn("Error, unable to find ssl_key_pem_file", str(ctx.exception))
        with silence():
            service.update(auth_enabled=True, tags={"k": "v"}, models=[self.model_v2], inference_config=self.ic())
            service.wait_for_deployment()
        self.assertEqual((service.state, service.auth_enabled, service.tags), ("Healthy", True, {"k": "v"}))
        self.assertEqual(service.run("8"), {"model": "two", "input": 8}, "run() sends the key")


class LocalServiceTests(ServiceTestCase):
    def test_local_lifecycle(self) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with silence():
            service = Model.deploy(
                self.ws, "local-svc", [self.model_v1], self.ic(), LocalWebservice.deploy_configuration(port=port)
            )
        self.addCleanup(self._delete_quietly, service)
        self.assertIsInstance(service, LocalWebservice)
        self.assertEqual(service.state, "running", "a local deploy returns once the service serves")
        with silence() as out:
            service.wait_for_deployment()
        self.assertIn('Local service creation operation finished, operation "Succeeded"', out.getvalue())
        self.assertEqual((service.state, service.compute_type), ("running", "Local"))
        assert isinstance(service, LocalWebservice)
        self.assertEqual(service.port, port)
        self.assertEqual(service.scoring_uri, f"http://localhost:{port}/score")
        self.assertEqual(service.run("1")["model"], "one")
        for call in (service.get_keys, lambda: service.regen_key("Primary"), service.get_access_token):
            with self.assertRaises(NotImplementedError):
                call()  # type: ignore[operator]
        with self.assertRaises(WebserviceException):
            service.update(deployment_config=AksWebservice.deploy_configuration())  # type: ignore[arg-type]
        with self.assertRaises(WebserviceException):
            service.update(inference_config="score.py")  # type: ignore[arg-type]
        with silence():
            service.update(models=[self.model_v2], inference_config=self.ic(), wait=True)
        self.assertEqual(service.state, "running")
        self.assertEqual(service.run("2")["model"], "two")
        with silence():
            service.reload(wait=True)
        self.assertEqual(service.latest_revision, 3)
        with silence():
            service.update(wait=True)
        self.assertEqual(service.state, "running")
        self.assertIn("port", service.serialize())
        with silence():
            service.delete()
        self.assertEqual(service.state, "deleted")


class RawErrorTests(ServiceTestCase):
    def test_bad_token_and_unreachable_server(self) -> None:
        from berth.core import Workspace

        bad = Workspace(endpoint=self.ws.endpoint, token="wrong")
        with self.assertRaises(WebserviceException) as ctx:
            Model.list(bad)
        self.assertEqual((ctx.exception.status_code, ctx.exception.code), (401, "unauthenticated"))
        self.assertIn("Hint:", str(ctx.exception))
        gone = Workspace(endpoint="http://127.0.0.1:9", token="t")
        with self.assertRaises(WebserviceException) as unreachable:
            Model.list(gone)
        self.assertIn("Cannot reach the Berth server", str(unreachable.exception))
        details = self.ws.get_details()
        self.assertEqual(details["name"], "default")
        self.assertIn("serverVersion", details)

    def test_run_error_from_the_scoring_script(self) -> None:
        source = self._source("raising-run", "def init():\n    pass\n\ndef run(raw):\n    raise ValueError('bad input')\n")
        service = self.deploy("run-error", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False), source=source)
        with self.assertRaises(WebserviceException) as ctx:
            service.run("{}")
        self.assertEqual(ctx.exception.status_code, 500)
        self.assertIn("Received bad response from service.", str(ctx.exception))
        self.assertIn("x-ms-run-function-failed", str(ctx.exception).lower())


if __name__ == "__main__":
    unittest.main()
