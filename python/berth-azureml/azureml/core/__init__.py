"""``azureml.core`` for Berth: the Azure ML SDK v1 names, backed by the Berth SDK (``berth.core``).

Refuses to import next to a real azureml-core (see ``azureml._berth_guard``).
"""

from .._berth_guard import check as _check

_check()

from berth import __version__  # noqa: E402
from berth.core import (  # noqa: E402
    ComputeTarget,
    Datastore,
    Environment,
    InferenceConfig,
    Model,
    Webservice,
    Workspace,
)

from ._not_in_berth import Dataset, Experiment, Run, RunConfiguration, ScriptRunConfig  # noqa: E402

#: The SDK version: Berth's.
VERSION = __version__

#: Set by berth-azureml, so code can tell it is talking to Berth.
BERTH = True

__all__ = [
    "VERSION",
    "Workspace",
    "Model",
    "Environment",
    "Webservice",
    "InferenceConfig",
    "ComputeTarget",
    "Datastore",
    "Experiment",
    "Run",
    "ScriptRunConfig",
    "RunConfiguration",
    "Dataset",
]
