"""``azureml.core.webservice``."""

from berth.core.webservice import (
    AciServiceDeploymentConfiguration,
    AciWebservice,
    AksServiceDeploymentConfiguration,
    AksWebservice,
    AutoScaler,
    ContainerResourceRequirements,
    DataCollection,
    LivenessProbeRequirements,
    LocalWebservice,
    LocalWebserviceDeploymentConfiguration,
    Webservice,
    WebserviceAccessToken,
    WebserviceDeploymentConfiguration,
)

__all__ = [
    "Webservice",
    "AciWebservice",
    "AksWebservice",
    "LocalWebservice",
    "WebserviceDeploymentConfiguration",
    "AciServiceDeploymentConfiguration",
    "AksServiceDeploymentConfiguration",
    "LocalWebserviceDeploymentConfiguration",
    "AutoScaler",
    "ContainerResourceRequirements",
    "DataCollection",
    "LivenessProbeRequirements",
    "WebserviceAccessToken",
]
