"""v1 production deployment to AKS: create the compute target, wait for it, deploy with key auth,
call the service with and without its key, update, delete."""

import json
import os
import sys
import urllib.error
import urllib.request

from azureml.core import Environment, Workspace
from azureml.core.compute import AksCompute, ComputeTarget
from azureml.core.compute_target import ComputeTargetException
from azureml.core.model import InferenceConfig, Model
from azureml.core.webservice import AksWebservice, Webservice

work = sys.argv[1]
ws = Workspace.from_config()

aks_name = "myaks"
try:
    aks_target = ComputeTarget(workspace=ws, name=aks_name)
    print("Found existing cluster, use it.")
except ComputeTargetException:
    prov_config = AksCompute.provisioning_configuration(cluster_purpose=AksCompute.ClusterPurpose.DEV_TEST)
    aks_target = ComputeTarget.create(workspace=ws, name=aks_name, provisioning_configuration=prov_config)
aks_target.wait_for_completion(show_output=True)
print("provisioning", aks_target.provisioning_state)
assert aks_target.provisioning_state == "Succeeded"
assert isinstance(aks_target, AksCompute)

with open(os.path.join(work, "model.json"), "w") as f:
    json.dump({"bias": 10}, f)
model = Model.register(ws, model_path=os.path.join(work, "model.json"), model_name="aks-model")

source = os.path.join(work, "aks-source")
os.makedirs(source, exist_ok=True)
with open(os.path.join(source, "score.py"), "w") as f:
    f.write('''
import json
import os


def init():
    global bias
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.json")) as f:
        bias = json.load(f)["bias"]


def run(raw_data):
    return [x + bias for x in json.loads(raw_data)["data"]]
''')

env = Environment("aks-env")
inference_config = InferenceConfig(entry_script="score.py", source_directory=source, environment=env)
gpu_aks_config = AksWebservice.deploy_configuration(autoscale_enabled=False, num_replicas=1,
                                                    cpu_cores=1, memory_gb=1, auth_enabled=True)
aks_service = Model.deploy(ws, models=[model], inference_config=inference_config,
                           deployment_config=gpu_aks_config, deployment_target=aks_target, name="aks-svc")
aks_service.wait_for_deployment(show_output=True)
print("state", aks_service.state)
print("compute target", aks_service.compute_target_name)
assert aks_service.compute_target_name == aks_name

primary, secondary = aks_service.get_keys()
assert primary and secondary and primary != secondary
body = json.dumps({"data": [1, 2]}).encode()


def call(key):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    request = urllib.request.Request(aks_service.scoring_uri, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, None


assert call(primary) == (200, [11, 12]), call(primary)
assert call(secondary)[0] == 200
assert call(None)[0] == 401
assert aks_service.run(json.dumps({"data": [5]})) == [15]

aks_service.update(num_replicas=1, tags={"stage": "prod"})
aks_service.wait_for_deployment(show_output=True)
assert Webservice(ws, "aks-svc").tags.get("stage") == "prod"

aks_service.delete()
print("CONFORMANCE OK aks_key_auth")
