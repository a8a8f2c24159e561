"""``azureml.core.webservice.aci``."""

from berth.core.webservice.aci import AciServiceDeploymentConfiguration, AciWebservice

__all__ = ["AciWebservice", "AciServiceDeploymentConfiguration"]
