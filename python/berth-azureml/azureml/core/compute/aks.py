"""``azureml.core.compute.aks``."""

from berth.core.compute import AksAttachConfiguration, AksCompute, AksProvisioningConfiguration

__all__ = ["AksCompute", "AksProvisioningConfiguration", "AksAttachConfiguration"]
