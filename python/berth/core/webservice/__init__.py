"""Web services, like ``azureml.core.webservice``: ``Webservice(workspace, name)``,
``AksWebservice``/``AciWebservice``/``LocalWebservice`` and their ``deploy_configuration``."""

from .aci import AciServiceDeploymentConfiguration, AciWebservice
from .aks import AksServiceDeploymentConfiguration, AksWebservice
from .local import LocalWebservice, LocalWebserviceDeploymentConfiguration
from .webservice import (
    AutoScaler,
    ContainerResourceRequirements,
    DataCollection,
    LivenessProbeRequirements,
    ServiceRevision,
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
    "ServiceRevision",
    "WebserviceAccessToken",
]
