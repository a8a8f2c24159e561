"""Web services, like ``azureml.core.webservice``: ``Webservice(workspace, name)``,
``AksWebservice``/``AciWebservice``/``LocalWebservice`` and their ``deploy_configuration``, v1's
``AksEndpoint`` (versions with traffic percentiles) and Berth's :class:`Rollout`."""

from .aci import AciServiceDeploymentConfiguration, AciWebservice
from .aks import AksServiceDeploymentConfiguration, AksWebservice
from .aks_endpoint import AksEndpoint, AksEndpointDeploymentConfiguration, AksEndpointVersion
from .local import LocalWebservice, LocalWebserviceDeploymentConfiguration
from .rollout import Rollout
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
    "AksEndpoint",
    "LocalWebservice",
    "WebserviceDeploymentConfiguration",
    "AciServiceDeploymentConfiguration",
    "AksServiceDeploymentConfiguration",
    "AksEndpointDeploymentConfiguration",
    "AksEndpointVersion",
    "LocalWebserviceDeploymentConfiguration",
    "Rollout",
    "AutoScaler",
    "ContainerResourceRequirements",
    "DataCollection",
    "LivenessProbeRequirements",
    "ServiceRevision",
    "WebserviceAccessToken",
]
