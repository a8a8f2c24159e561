"""``azureml.core.environment``."""

from berth.core.conda_dependencies import CondaDependencies
from berth.core.environment import DockerSection, Environment, PythonSection

__all__ = ["Environment", "PythonSection", "DockerSection", "CondaDependencies"]
