"""v1 curated environments: fetch one by name, read its Python version and packages, clone and
extend it; an unknown AzureML-* name fails naming the closest curated names."""

from azureml.core import Environment, Workspace
from azureml.exceptions import WebserviceException

ws = Workspace.from_config()

# As the v1 tutorials list the curated environments:
envs = Environment.list(workspace=ws)
curated = [name for name in envs if name.startswith("AzureML")]
print("curated", len(curated))
assert "AzureML-sklearn-1.0" in curated and "AzureML-Minimal" in curated, curated

sklearn_env = Environment.get(workspace=ws, name="AzureML-sklearn-1.0")
print("name", sklearn_env.name, "version", sklearn_env.version)
conda = sklearn_env.python.conda_dependencies
print("python", conda.get_python_version())
packages = list(conda.pip_packages)
print("packages", packages)
assert conda.get_python_version() == "3.8", conda.get_python_version()
assert "scikit-learn==1.0.2" in packages, packages

# The same name again is the same registered version.
assert Environment.get(ws, "AzureML-sklearn-1.0").version == sklearn_env.version

old = Environment.get(ws, "AzureML-sklearn-0.24-ubuntu18.04-py37-cpu")
assert old.python.conda_dependencies.get_python_version() == "3.7"
assert Environment.get(ws, "AzureML-Minimal").python_version == "3.6"

# The usual v1 pattern: clone a curated environment and add packages.
mine = sklearn_env.clone("my-sklearn-env")
mine.python.conda_dependencies.add_pip_package("joblib==1.1.0")
registered = mine.register(workspace=ws)
fetched = Environment.get(ws, "my-sklearn-env", version=registered.version)
assert "joblib==1.1.0" in list(fetched.python.conda_dependencies.pip_packages), fetched
assert "scikit-learn==1.0.2" in list(fetched.python.conda_dependencies.pip_packages), fetched
assert fetched.python_version == "3.8", fetched.python_version

try:
    Environment.get(ws, "AzureML-sklearn-9.9")
except WebserviceException as e:
    print("unknown:", e)
    assert "AzureML-sklearn-" in str(e), str(e)
else:
    raise AssertionError("an unknown curated name was found")

print("CONFORMANCE OK curated_environment")
