"""v1 workspace surface: VERSION, the identity attributes, Workspace.get and Workspace(...) with
the v1 keyword arguments, from_config(path=...)."""

import sys

import azureml.core
from azureml.core import Workspace
from azureml.exceptions import UserErrorException

config_path = sys.argv[1]
print("SDK version:", azureml.core.VERSION)
assert isinstance(azureml.core.VERSION, str) and azureml.core.VERSION

ws = Workspace.from_config(path=config_path)
print("Workspace name: " + ws.name, "Azure region: " + ws.location, "Subscription id: " + ws.subscription_id,
      "Resource group: " + ws.resource_group, sep="\n")

same = Workspace(subscription_id=ws.subscription_id, resource_group=ws.resource_group, workspace_name=ws.name)
assert same.endpoint == ws.endpoint
got = Workspace.get(name=ws.name, subscription_id=ws.subscription_id, resource_group=ws.resource_group)
assert got.name == ws.name

try:
    Workspace(subscription_id=ws.subscription_id, resource_group="someone-elses-rg", workspace_name=ws.name)
except UserErrorException as e:
    print("mismatch:", e)
    assert "--workspace-resource-group" in str(e), str(e)
else:
    raise AssertionError("a wrong resource group was accepted")
print("CONFORMANCE OK workspace_surface")
