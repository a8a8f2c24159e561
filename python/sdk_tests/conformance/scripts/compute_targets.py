"""v1 compute targets: list them, look them up by name, attach an AKS cluster, and the default
datastore's training-data calls."""

from azureml.core import Workspace
from azureml.core.compute import AksCompute, ComputeTarget
from azureml.core.compute_target import ComputeTargetException
from azureml.exceptions import UserErrorException

ws = Workspace.from_config()

targets = ComputeTarget.list(ws)
print("targets", [t.name for t in targets])
assert "local" in [t.name for t in targets]
assert "local" in ws.compute_targets

attach_config = AksCompute.attach_configuration(resource_group="my-rg", cluster_name="my-cluster")
attached = ComputeTarget.attach(ws, "attached-aks", attach_config)
attached.wait_for_completion(show_output=True)
assert attached.provisioning_state == "Succeeded"

found = AksCompute(ws, "attached-aks")
assert found.type == "AKS", found.type
assert isinstance(ws.compute_targets["attached-aks"], AksCompute)
assert ComputeTarget(ws, "attached-aks").name == "attached-aks"

try:
    ComputeTarget(workspace=ws, name="no-such-target")
except ComputeTargetException as e:
    print("missing:", e)
else:
    raise AssertionError("a missing compute target was found")

try:
    AksCompute.attach_configuration()
except ComputeTargetException as e:
    print("bad attach:", e)
else:
    raise AssertionError("an empty attach configuration was accepted")

datastore = ws.get_default_datastore()
print("datastore", datastore.name)
try:
    datastore.upload(src_dir="./data", target_path="data", overwrite=True)
except UserErrorException as e:
    print("upload:", e)
    assert "not part of Berth (deployment only)" in str(e), str(e)
else:
    raise AssertionError("datastore upload did not fail")

attached.detach()
attached.wait_for_completion(show_output=True, is_delete_operation=True)
assert "attached-aks" not in ws.compute_targets
print("CONFORMANCE OK compute_targets")
