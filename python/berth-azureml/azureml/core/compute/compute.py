"""``azureml.core.compute.compute``."""

from berth.core.compute import (
    ComputeTarget,
    ComputeTargetAttachConfiguration,
    ComputeTargetProvisioningConfiguration,
)

__all__ = ["ComputeTarget", "ComputeTargetProvisioningConfiguration", "ComputeTargetAttachConfiguration"]
