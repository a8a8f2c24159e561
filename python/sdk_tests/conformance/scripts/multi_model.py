"""v1 multi-model deployment: two registered models behind one service, the entry script finding
each with Model.get_model_path. Written from azureml-core's documentation; the only Berth-specific
part is where Workspace.from_config() finds its config.json."""

import json
import os
import sys

import azureml.core
from azureml.core import Environment, Workspace
from azureml.core.conda_dependencies import CondaDependencies
from azureml.core.model import InferenceConfig, Model
from azureml.core.webservice import AciWebservice, Webservice

print("Azure ML SDK version:", azureml.core.VERSION)
work = sys.argv[1]

ws = Workspace.from_config()
print(ws.name, ws.resource_group, ws.location, ws.subscription_id, sep="\n")

for name, weight in (("model-a", "2"), ("model-b", "3")):
    folder = os.path.join(work, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "weight.txt"), "w") as f:
        f.write(weight)
    Model.register(workspace=ws, model_path=os.path.join(folder, "weight.txt"), model_name=name,
                   tags={"sample": "multi-model"}, description=f"weight {weight}")

source = os.path.join(work, "source")
os.makedirs(source, exist_ok=True)
with open(os.path.join(source, "score.py"), "w") as f:
    f.write('''
import json
from azureml.core.model import Model


def init():
    global weights
    weights = {}
    for name in ("model-a", "model-b"):
        with open(Model.get_model_path(model_name=name)) as f:
            weights[name] = float(f.read())


def run(raw_data):
    data = json.loads(raw_data)["data"]
    return {name: [w * x for x in data] for name, w in weights.items()}
''')

env = Environment("multi-model-env")
env.python.conda_dependencies = CondaDependencies.create(pip_packages=[])
inference_config = InferenceConfig(entry_script="score.py", source_directory=source, environment=env)
aci_config = AciWebservice.deploy_configuration(cpu_cores=1, memory_gb=1, tags={"sample": "multi"})

model_a = Model(ws, "model-a")
model_b = Model(ws, name="model-b", version=1)
service = Model.deploy(ws, "multi-model-svc", [model_a, model_b], inference_config, aci_config, overwrite=True)
service.wait_for_deployment(show_output=True)
print("state", service.state)

answer = service.run(json.dumps({"data": [1, 2]}))
print("answer", json.dumps(answer, sort_keys=True))
assert answer == {"model-a": [2.0, 4.0], "model-b": [3.0, 6.0]}, answer
assert sorted(m.name for m in service.models) == ["model-a", "model-b"]
assert "multi-model-svc" in ws.webservices
assert Webservice(ws, "multi-model-svc").scoring_uri == service.scoring_uri

service.delete()
print("CONFORMANCE OK multi_model")
