"""``azureml.core.webservice.webservice``."""

from berth.core.webservice.webservice import (
    AutoScaler,
    ContainerResourceRequirements,
    DataCollection,
    LivenessProbeRequirements,
    Webservice,
    WebserviceAccessToken,
    WebserviceDeploymentConfiguration,
)

__all__ = [
    "Webservice",
    "WebserviceDeploymentConfiguration",
    "WebserviceAccessToken",
    "AutoScaler",
    "ContainerResourceRequirements",
    "DataCollection",
    "LivenessProbeRequirements",
]
