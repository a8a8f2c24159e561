"""``azureml.core.workspace``."""

from berth.core.workspace import Workspace

__all__ = ["Workspace"]
