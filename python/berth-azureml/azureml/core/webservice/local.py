"""``azureml.core.webservice.local``."""

from berth.core.webservice.local import LocalWebservice, LocalWebserviceDeploymentConfiguration

__all__ = ["LocalWebservice", "LocalWebserviceDeploymentConfiguration"]
