"""``azureml.core.webservice``."""

from berth.core.webservice import (
    AciServiceDeploymentConfiguration,
    AciWebservice,
    AksEndpoint,
    AksEndpointDeploymentConfiguration,
    AksServiceDeploymentConfiguration,
    AksWebservice,
    AutoScaler,
    ContainerResourceRequirements,
    DataCollection,
    LivenessProbeRequirements,
    LocalWebservice,
    LocalWebserviceDeploymentConfiguration,
    Rollout,
    Webservice,
    WebserviceAccessToken,
    WebserviceDeploymentConfiguration,
)

__all__ = [
    "Webservice",
    "AciWebservice",
    "AksWebservice",
    "AksEndpoint",
    "LocalWebservice",
    "WebserviceDeploymentConfiguration",
    "AciServiceDeploymentConfiguration",
    "AksServiceDeploymentConfiguration",
    "AksEndpointDeploymentConfiguration",
    "LocalWebserviceDeploymentConfiguration",
    "Rollout",
    "AutoScaler",
    "ContainerResourceRequirements",
    "DataCollection",
    "LivenessProbeRequirements",
    "WebserviceAccessToken",
]
