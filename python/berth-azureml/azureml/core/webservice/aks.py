"""``azureml.core.webservice.aks``."""

from berth.core.webservice.aks import AksServiceDeploymentConfiguration, AksWebservice

__all__ = ["AksWebservice", "AksServiceDeploymentConfiguration"]
