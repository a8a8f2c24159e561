"""The core objects, like ``azureml.core``: Workspace, Model, Environment, Webservice,
ComputeTarget, plus ``VERSION``."""

from .. import __version__
from .compute import ComputeTarget
from .conda_dependencies import CondaDependencies
from .datastore import Datastore
from .environment import Environment
from .model import InferenceConfig, Model
from .webservice import Webservice
from .workspace import Workspace

#: The SDK version (``azureml.core.VERSION``'s place).
VERSION = __version__

__all__ = [
    "Workspace",
    "Model",
    "Environment",
    "Webservice",
    "InferenceConfig",
    "ComputeTarget",
    "CondaDependencies",
    "Datastore",
    "VERSION",
]
