"""``azureml.core.compute_target``."""

from berth.core.compute import ComputeTarget
from berth.exceptions import ComputeTargetException

__all__ = ["ComputeTarget", "ComputeTargetException"]
