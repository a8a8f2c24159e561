"""The core objects, like ``azureml.core``: Workspace, Model, Environment, Webservice."""

from .environment import Environment
from .model import InferenceConfig, Model
from .webservice import Webservice
from .workspace import Workspace

__all__ = ["Workspace", "Model", "Environment", "Webservice", "InferenceConfig"]
