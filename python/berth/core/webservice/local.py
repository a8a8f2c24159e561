"""Local services, like ``azureml.core.webservice.local``. The reference runs them in a local Docker
container; on Berth a local service runs on the server like every other service (so ``update`` keeps
the old revision serving until the new one is ready), and its state uses the reference's lowercase
local names: ``deploying``, ``running``, ``failed``, ``deleted``, ``unknown``."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from ...exceptions import WebserviceException
from ..model import InferenceConfig, Model
from .webservice import Webservice, WebserviceAccessToken, WebserviceDeploymentConfiguration

__all__ = ["LocalWebservice", "LocalWebserviceDeploymentConfiguration"]

_STATES = {"Transitioning": "deploying", "Healthy": "running", "Unhealthy": "failed", "Failed": "failed"}


class LocalWebserviceDeploymentConfiguration(WebserviceDeploymentConfiguration):
    """The deployment configuration of a local service; build it with
    :meth:`LocalWebservice.deploy_configuration`."""

    _webservice_type = "Local"
    _compute_type = "LOCAL"

    def __init__(self, port: Optional[int] = None) -> None:
        super().__init__(LocalWebservice)
        self.port = port
        self.validate_configuration()

    def validate_configuration(self) -> None:
        """Raises ``WebserviceException`` when ``port`` is not an int in [1, 65535]."""
        if self.port is not None and (
            not isinstance(self.port, int) or isinstance(self.port, bool) or not 1 <= self.port <= 65535
        ):
            raise WebserviceException("Invalid configuration, port must be an integer in range [1, 65535].")

    def _deployment_config(self) -> Dict[str, Any]:
        config: Dict[str, Any] = {"computeType": "local"}
        if self.port is not None:
            config["port"] = self.port
        return config


class LocalWebservice(Webservice):
    """A service deployed with a local deployment configuration."""

    _webservice_type = "Local"
    _compute_type = "LOCAL"

    def _apply(self, payload: Dict[str, Any]) -> None:
        super()._apply(payload)
        #: The port of the scoring URI (the server's gateway; a requested port is not used).
        self.port: Optional[int] = urlsplit(self.scoring_uri).port if self.scoring_uri else None

    def _map_state(self, server_state: str) -> Optional[str]:
        return _STATES.get(server_state, "unknown")

    def _deleted_state(self) -> str:
        return "deleted"

    @staticmethod
    def deploy_configuration(port: Optional[int] = None) -> LocalWebserviceDeploymentConfiguration:
        """A local deployment configuration.

        :param port: Accepted and validated (an int in [1, 65535]); Berth serves every service through
            its gateway, so the scoring URI's port is the server's.
        """
        return LocalWebserviceDeploymentConfiguration(port=port)

    def update(
        self,
        models: Optional[Sequence[Union[Model, str]]] = None,
        image_config: Any = None,
        deployment_config: Optional[LocalWebserviceDeploymentConfiguration] = None,
        wait: bool = False,
        inference_config: Optional[InferenceConfig] = None,
    ) -> None:
        """Updates the service with new models and/or a new inference config (the source directory is
        uploaded again); with nothing to change it starts fresh replicas.

        :param wait: Wait for the update (like :meth:`wait_for_deployment`).
        :raises WebserviceException: Wrong types, an ``image_config``, or a state that forbids updates.
        """
        if self.state not in ("deploying", "failed", "running", "unknown"):
            raise WebserviceException(f"Cannot call update() when service is {self.state}.")
        if deployment_config is not None and not isinstance(deployment_config, LocalWebserviceDeploymentConfiguration):
            raise WebserviceException(
                "Error, provided deployment configuration must be of type LocalWebserviceDeploymentConfiguration "
                "in order to update a local service."
            )
        if inference_config is not None and not isinstance(inference_config, InferenceConfig):
            raise WebserviceException(
                "Error, provided inference configuration must be of type InferenceConfig in order to update a "
                "local service."
            )
        if image_config is not None and inference_config is not None:
            raise WebserviceException("Error, unable to provide both image_config and inference_config.")
        if image_config is not None:
            raise WebserviceException("Error, image_config is not supported by Berth: pass inference_config.")
        if models is not None and (
            isinstance(models, (str, Model)) or not all(isinstance(m, (Model, str)) for m in models)
        ):
            raise WebserviceException("Error, models must be a list of Model objects (or name:version strings).")
        body = self._inference_body(models, inference_config)
        if deployment_config is not None and deployment_config.port is not None:
            body["port"] = deployment_config.port
        if body:
            self._patch(body)
        else:
            self.redeploy()
        if inference_config is not None:
            self._inference_config = inference_config
        if wait:
            self.wait_for_deployment(show_output=True)

    def reload(self, wait: bool = False) -> None:
        """Runs the service again with a fresh copy of its source directory (when this object deployed
        or updated it; otherwise fresh replicas of the same revision)."""
        if self._inference_config is not None:
            self._patch(self._inference_body(None, self._inference_config))
        else:
            self.redeploy()
        if wait:
            self.wait_for_deployment(show_output=True)

    def delete(self, delete_cache: bool = True, delete_image: bool = False, delete_volume: bool = True) -> None:
        """Deletes the service (the cache/image/volume flags are accepted for compatibility)."""
        super().delete()

    def get_keys(self) -> Tuple[str, str]:
        """Not available for local services."""
        raise NotImplementedError("Local webservices do not support key-based authentication.")

    def regen_key(self, key: str, set_key: Optional[str] = None) -> None:
        """Not available for local services."""
        raise NotImplementedError("Local webservices do not support key-based authentication.")

    def get_access_token(self) -> WebserviceAccessToken:
        """Not available for local services."""
        raise NotImplementedError("Local webservices do not support Token Authentication.")

    def get_token(self) -> Any:
        """Not available for local services."""
        raise NotImplementedError("Local webservices do not support Token Authentication.")

    def serialize(self) -> Dict[str, Any]:
        """The service as a dict: the reference's local keys plus Berth's."""
        base = self._base_serialize()
        out = {
            key: base[key]
            for key in (
                "name",
                "tags",
                "properties",
                "state",
                "createdTime",
                "updatedTime",
                "error",
                "computeType",
                "workspaceName",
                "imageId",
                "scoringUri",
            )
        }
        out["swaggerUri"] = self.swagger_uri
        out["port"] = self.port
        out.update(self._berth_serialize())
        return out
