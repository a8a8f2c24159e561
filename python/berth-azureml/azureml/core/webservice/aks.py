"""``azureml.core.webservice.aks``."""

from berth.core.webservice.aks import AksServiceDeploymentConfiguration, AksWebservice
from berth.core.webservice.aks_endpoint import AksEndpoint, AksEndpointDeploymentConfiguration

__all__ = ["AksWebservice", "AksServiceDeploymentConfiguration", "AksEndpoint", "AksEndpointDeploymentConfiguration"]
