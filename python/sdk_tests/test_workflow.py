"""The reference's update workflow ("Update a deployed web service", Azure ML SDK v1) runs against
Berth unchanged except for its import lines."""

from __future__ import annotations

import os
import unittest

from _server import ServerTestCase, chdir, silence

from berth.core import Environment, Model, Webservice
from berth.core.model import InferenceConfig
from berth.core.webservice import AksWebservice

# The reference's script, as a user has it (score.py in the current directory).
AZUREML_SCRIPT = """\
from azureml.core import Environment
from azureml.core.model import InferenceConfig, Model
from azureml.core.webservice import Webservice
from azureml.core import Workspace

ws = Workspace.from_config()

# Register new model.
new_model = Model.register(
    model_path="outputs/sklearn_mnist_model.pkl",
    model_name="sklearn_mnist",
    tags={"key": "0.1"},
    description="test",
    workspace=ws,
)

# Use version 3 of the environment.
deploy_env = Environment.get(workspace=ws, name="myenv", version="3")
inference_config = InferenceConfig(entry_script="score.py", environment=deploy_env)

service_name = "myservice"
# Retrieve existing service.
service = Webservice(name=service_name, workspace=ws)

# Update to new model(s).
service.update(models=[new_model], inference_config=inference_config)
service.wait_for_deployment(show_output=True)
print(service.state)
print(service.get_logs())
"""

# The migrated script: only the imports change.
BERTH_SCRIPT = AZUREML_SCRIPT.replace("from azureml.", "from berth.")

# An unchanged Azure ML entry script (it imports azureml, which the worker provides).
SCORE_PY = """\
import json
from azureml.core.model import Model


def init():
    global model
    model_path = Model.get_model_path("sklearn_mnist")
    with open(model_path, encoding="utf-8") as f:
        model = f.read().strip()
    print("loaded", model)


def run(raw_data):
    data = json.loads(raw_data)["data"]
    return {"model": model, "count": len(data)}
"""


class UpdateWorkflowTest(ServerTestCase):
    def test_reference_update_workflow(self) -> None:
        changed = [
            (a, b) for a, b in zip(AZUREML_SCRIPT.splitlines(), BERTH_SCRIPT.splitlines()) if a != b
        ]
        self.assertTrue(changed and all(a.startswith("from azureml.") for a, _ in changed), changed)

        work = self.path("project")
        os.makedirs(os.path.join(work, "outputs"))
        with open(os.path.join(work, "score.py"), "w", encoding="utf-8") as f:
            f.write(SCORE_PY)
        model_path = os.path.join(work, "outputs", "sklearn_mnist_model.pkl")
        self.ws.write_config(work)

        # What exists before the workflow: environment versions 1..3, model version 1, the service.
        with chdir(work), silence():
            for version in range(1, 4):
                env = Environment("myenv")
                env.environment_variables = {"ENV_VERSION": str(version)}
                env.register(self.ws)
            with open(model_path, "w", encoding="utf-8") as f:
                f.write("mnist-v1\n")
            first = Model.register(workspace=self.ws, model_path="outputs/sklearn_mnist_model.pkl", model_name="sklearn_mnist")
            service = Model.deploy(
                self.ws,
                "myservice",
                [first],
                InferenceConfig(entry_script="score.py", environment=Environment.get(self.ws, "myenv", version="1")),
                AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=True),
            )
            service.wait_for_deployment()
        self.assertEqual(service.run('{"data": [[1, 2]]}'), {"model": "mnist-v1", "count": 1})

        # The workflow itself, with a newly trained model on disk.
        with open(model_path, "w", encoding="utf-8") as f:
            f.write("mnist-v2\n")
        namespace: dict = {"__name__": "__workflow__"}
        with chdir(work), silence() as out:
            exec(compile(BERTH_SCRIPT, "update_workflow.py", "exec"), namespace)
        printed = out.getvalue()
        self.assertIn("Registering model sklearn_mnist", printed)
        self.assertIn('AKS service creation operation finished, operation "Succeeded"', printed)
        self.assertIn("\nHealthy\n", printed)
        self.assertIn("loaded mnist-v2", printed, "get_logs() shows the new revision's init output")

        updated = namespace["service"]
        self.assertIsInstance(updated, AksWebservice)
        self.assertEqual(updated.state, "Healthy")
        self.assertEqual(namespace["new_model"].id, "sklearn_mnist:2")
        self.assertEqual(namespace["new_model"].tags, {"key": "0.1"})
        after = Webservice(self.ws, "myservice")
        self.assertEqual((after.model_ids, after.environment_id, after.serving_revision), (["sklearn_mnist:2"], "myenv:3", 2))
        self.assertEqual(after.run('{"data": [[1], [2]]}'), {"model": "mnist-v2", "count": 2})


if __name__ == "__main__":
    unittest.main()
