"""``azureml.core.conda_dependencies``."""

from berth.core.conda_dependencies import CondaDependencies

__all__ = ["CondaDependencies"]
