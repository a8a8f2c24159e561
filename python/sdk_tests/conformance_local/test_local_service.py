"""A local service as azureml-core's samples drive it: deploy with a port, run, get_logs, reload,
update, run while deploying, delete right after a change, deploy_to_cloud."""

from __future__ import annotations

import json
import os
import socket
import urllib.request

from _server import ServerTestCase, model_file, silence

from ._v1 import AciWebservice, InferenceConfig, LocalWebservice, Model, Webservice, WebserviceException

SCORE = """\
import json
import os

VERSION = {version!r}


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt"), encoding="utf-8") as f:
        model = f.read().strip()


def run(raw_data):
    return {{"version": VERSION, "model": model, "input": json.loads(raw_data)}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServiceConformance(ServerTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        with silence():
            cls.model = Model.register(cls.ws, model_file(os.path.join(cls.tmp, "m"), "one"), "local-model")

    def source(self, name: str, version: str) -> str:
        folder = self.path(name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "score.py"), "w", encoding="utf-8") as f:
            f.write(SCORE.format(version=version))
        return folder

    def test_local_service_lifecycle_in_v1_order(self) -> None:
        port = free_port()
        ic = InferenceConfig(entry_script="score.py", source_directory=self.source("v1", "v1"))
        config = LocalWebservice.deploy_configuration(port=port)
        with silence():
            service = Model.deploy(self.ws, "local-svc", [self.model], ic, config)
        # Deploy returns once it serves: no wait_for_deployment needed.
        self.assertIsInstance(service, LocalWebservice)
        self.assertEqual(service.state, "running")
        self.assertEqual(service.port, port)
        self.assertEqual(service.scoring_uri, f"http://localhost:{port}/score")
        self.assertEqual(service.run(json.dumps({"a": 1})), {"version": "v1", "model": "one", "input": {"a": 1}})
        request = urllib.request.Request(
            service.scoring_uri, data=b"[1]", headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            self.assertEqual(json.loads(answer.read())["input"], [1])

        # The replicas' start-up lines, as azmlinfsrv writes them.
        logs = service.get_logs()
        self.assertIn("Found user script at", logs)
        self.assertIn("Users's init has completed successfully in", logs)

        # reload() serves the edited script when it returns; update() right after it is accepted.
        with open(os.path.join(ic.source_directory, "score.py"), "w", encoding="utf-8") as f:
            f.write(SCORE.format(version="reloaded"))
        with silence():
            service.reload()
        self.assertEqual(service.state, "running")
        self.assertEqual(service.serving_revision, service.latest_revision)
        self.assertEqual(service.run("{}")["version"], "reloaded")
        with silence():
            service.update(inference_config=InferenceConfig(entry_script="score.py", source_directory=self.source("v2", "v2")))
        self.assertEqual(service.run("{}")["version"], "v2")

        # run() on a service another client is redeploying waits for it.
        with silence():
            service.redeploy()  # Berth's asynchronous redeploy: an operation now runs
            other = Webservice(self.ws, "local-svc")
            self.assertEqual(other.run("{}")["version"], "v2")
            self.assertNotEqual(other.state, "deploying")
            # delete() right after a change still running: waits instead of failing with 409.
            service.redeploy()
            service.delete()
        self.assertEqual(service.state, "deleted")
        with self.assertRaises(WebserviceException):
            Webservice(self.ws, "local-svc")

    def test_a_taken_port_fails_the_deploy(self) -> None:
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        self.addCleanup(holder.close)
        port = holder.getsockname()[1]
        ic = InferenceConfig(entry_script="score.py", source_directory=self.source("taken", "t"))
        with self.assertRaises(WebserviceException) as caught, silence():
            Model.deploy(self.ws, "taken-port", [self.model], ic, LocalWebservice.deploy_configuration(port=port))
        self.assertIn(f"{port} on 127.0.0.1 cannot be used", str(caught.exception))

    def test_deploy_to_cloud_deploys_the_same_models_and_code(self) -> None:
        ic = InferenceConfig(entry_script="score.py", source_directory=self.source("cloud", "cloud"))
        with silence():
            local = Model.deploy(self.ws, "to-cloud", [self.model], ic, LocalWebservice.deploy_configuration())
            cloud = local.deploy_to_cloud(name="to-cloud-aci", deployment_config=AciWebservice.deploy_configuration())
            cloud.wait_for_deployment()
        self.assertIsInstance(cloud, AciWebservice)
        self.assertEqual(cloud.model_ids, local.model_ids)
        self.assertEqual(cloud.environment_id, local.environment_id)
        self.assertEqual(cloud.run("{}"), local.run("{}"))
        with silence():
            cloud.delete()
            local.delete()
