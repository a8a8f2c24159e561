"""``azureml.core.compute``: ``ComputeTarget`` and ``AksCompute``."""

from berth.core.compute import (
    AksCompute,
    ComputeTarget,
    ComputeTargetAttachConfiguration,
    ComputeTargetProvisioningConfiguration,
    LocalCompute,
)

__all__ = [
    "ComputeTarget",
    "AksCompute",
    "LocalCompute",
    "ComputeTargetProvisioningConfiguration",
    "ComputeTargetAttachConfiguration",
]
