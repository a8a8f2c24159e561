"""Local services, like ``azureml.core.webservice.local``. The reference runs them in a local Docker
container; on Berth a local service runs on the server like every other service (so ``update`` keeps
the old revision serving until the new one is ready), and its state uses the reference's lowercase
local names: ``deploying``, ``running``, ``failed``, ``deleted``, ``unknown``.

As in azureml-core, deploying, ``update()`` and ``reload()`` return once the new revision serves
(raising when it failed); ``run()`` on a deploying service waits for the deployment first; and
``delete()``/``update()`` wait for an operation still running on the service instead of failing with
409. With ``deploy_configuration(port=N)`` the service also listens on ``127.0.0.1:N`` and its
``scoring_uri`` is ``http://localhost:N/score``."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, TypeVar, Union
from urllib.parse import urlsplit

from ...exceptions import WebserviceException
from ..model import InferenceConfig, Model
from .rollout import Rollout, rollout_block, with_rollout
from .webservice import TERMINAL_OPERATION_STATES, Webservice, WebserviceAccessToken, WebserviceDeploymentConfiguration

__all__ = ["LocalWebservice", "LocalWebserviceDeploymentConfiguration"]

_STATES = {"Transitioning": "deploying", "Healthy": "running", "Unhealthy": "failed", "Failed": "failed"}
_T = TypeVar("_T")
#: Longest ``run()`` waits for a deployment it did not start.
_DEPLOYING_WAIT_SEC = 1800.0


class LocalWebserviceDeploymentConfiguration(WebserviceDeploymentConfiguration):
    """The deployment configuration of a local service; build it with
    :meth:`LocalWebservice.deploy_configuration`."""

    _webservice_type = "Local"
    _compute_type = "LOCAL"
    #: ``Model.deploy`` returns once a local service serves.
    _waits_for_deployment = True

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
        #: The service's own port (``deploy_configuration(port=N)``), else the gateway's port.
        self.port: Optional[int] = payload.get("port") or (
            urlsplit(self.scoring_uri).port if self.scoring_uri else None
        )

    def _map_state(self, server_state: str) -> Optional[str]:
        return _STATES.get(server_state, "unknown")

    def _deleted_state(self) -> str:
        return "deleted"

    @staticmethod
    def deploy_configuration(
        port: Optional[int] = None, *, rollout: Optional[Rollout] = None
    ) -> LocalWebserviceDeploymentConfiguration:
        """A local deployment configuration.

        :param port: The service's own port on ``127.0.0.1`` (an int in [1, 65535]): it serves
            ``/score`` and ``/swagger.json`` there and its ``scoring_uri`` is
            ``http://localhost:<port>/score``, as in azureml-core. A port that is taken fails the
            deployment. ``None``: the service is reached through the server's gateway.
        :param rollout: Berth: how traffic moves to later revisions (:class:`Rollout`).
        """
        return with_rollout(LocalWebserviceDeploymentConfiguration(port=port), rollout)

    def update(
        self,
        models: Optional[Sequence[Union[Model, str]]] = None,
        image_config: Any = None,
        deployment_config: Optional[LocalWebserviceDeploymentConfiguration] = None,
        wait: bool = False,
        inference_config: Optional[InferenceConfig] = None,
        *,
        rollout: Optional[Rollout] = None,
    ) -> None:
        """Updates the service with new models and/or a new inference config (the source directory is
        uploaded again); with nothing to change it starts fresh replicas.

        Returns once the new revision serves (the old one serves until then), as azureml-core's
        local update does; an operation still running on the service is waited for first.

        :param wait: Print the update's progress while waiting.
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
        chosen = rollout if rollout is not None else getattr(deployment_config, "rollout", None)
        if chosen is not None:
            body["rollout"] = rollout_block(chosen)
        if body:
            self._after_running_operation(lambda: self._patch(body))
        else:
            self._after_running_operation(self.redeploy)
        if inference_config is not None:
            self._inference_config = inference_config
        self.wait_for_deployment(show_output=wait)

    def reload(self, wait: bool = False) -> None:
        """Runs the service again with a fresh copy of its source directory (when this object deployed
        or updated it; otherwise fresh replicas of the same revision). Returns once the new revision
        serves.

        :param wait: Print the progress while waiting."""
        if self._inference_config is not None:
            body = self._inference_body(None, self._inference_config)
            self._after_running_operation(lambda: self._patch(body))
        else:
            self._after_running_operation(self.redeploy)
        self.wait_for_deployment(show_output=wait)

    def delete(self, delete_cache: bool = True, delete_image: bool = False, delete_volume: bool = True) -> None:
        """Deletes the service (the cache/image/volume flags are accepted for compatibility); an
        operation still running on the service is waited for first."""
        self._after_running_operation(super().delete)

    def run(self, input_data: Any) -> Any:
        """Calls the service (see :meth:`Webservice.run`); while it is ``deploying`` the deployment is
        waited for first, as azureml-core's local service does."""
        self._wait_while_deploying()
        return super().run(input_data)

    def deploy_to_cloud(
        self, name: Optional[str] = None, deployment_config: Any = None, deployment_target: Any = None
    ) -> Webservice:
        """Deploys the same models, entry script, source and environment as this local service as an
        ACI/AKS-style service and returns it (call ``wait_for_deployment()`` on it).

        :param name: The new service's name; ``<this name>-cloud`` when omitted (names are unique in
            a Berth workspace, so the local name cannot be reused while this service exists).
        :param deployment_config: ``AciWebservice``/``AksWebservice.deploy_configuration(...)``; ACI
            defaults when omitted (AKS defaults with an AKS ``deployment_target``).
        :param deployment_target: A compute target, as for ``Model.deploy``.
        """
        from ..model import InferenceConfig

        serving = next((r for r in self.revisions() if r.serving), None) or (self.revisions() or [None])[-1]
        if serving is None:
            raise WebserviceException(f"Error, service {self.name} has no revision to deploy to the cloud.")
        target_name = name or f"{self.name[:26]}-cloud"
        if name is None:
            print(f"Deploying {self.name} to the cloud as {target_name}")
        inference = dict(serving.spec.get("inference") or {})
        config = _RevisionInference(inference)
        assert isinstance(config, InferenceConfig)
        return Webservice._deploy(
            self.workspace,
            target_name,
            serving.models,
            config,
            deployment_config,
            deployment_target,
            False,
            False,
        )

    # -- waiting ---------------------------------------------------------------------------------

    def _wait_operation(self, operation_id: str, timeout_sec: float = _DEPLOYING_WAIT_SEC) -> None:
        deadline = time.monotonic() + timeout_sec
        while time.monotonic() < deadline:
            operation = self.workspace.service_context.json("GET", f"/v1/operations/{operation_id}")
            if str(operation.get("state")) in TERMINAL_OPERATION_STATES:
                return
            time.sleep(self._poll_interval)

    def _after_running_operation(self, call: Callable[[], _T]) -> _T:
        """``call()``; when the server answers 409 because an operation runs on the service, waits
        for that operation and calls again."""
        try:
            return call()
        except WebserviceException as e:
            if e.status_code != 409:
                raise
            self.update_deployment_state()
            if not self.operation_id:
                raise
            self._wait_operation(self.operation_id)
            return call()

    def _wait_while_deploying(self) -> None:
        if self.state != "deploying":
            return
        if self._operation_endpoint:
            try:
                self._wait_for_operation_to_complete(False)
            finally:
                self.update_deployment_state()
            return
        deadline = time.monotonic() + _DEPLOYING_WAIT_SEC
        while self.state == "deploying" and time.monotonic() < deadline:
            time.sleep(self._poll_interval)
            self.update_deployment_state()

    def get_logs(self, num_lines: int = 5000, raw: bool = False, *, init: bool = False) -> str:
        """The replicas' output, as azureml-core's ``LocalWebservice.get_logs``.

        :param num_lines: Lines from the end.
        :param raw: azureml-core returns the container's unformatted output with ``raw=True``;
            Berth's replicas are processes whose output is kept as written, so both are the same.
        :param init: Berth only: the output of the last failed start.
        """
        return super().get_logs(num_lines=num_lines, init=init)

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


class _RevisionInference(InferenceConfig):
    """The inference part of an existing revision (entry script, uploaded source, environment) used
    as an inference config: what :meth:`LocalWebservice.deploy_to_cloud` deploys again."""

    def __init__(self, inference: Dict[str, Any]) -> None:  # noqa: D107 - no validation: it is deployed already
        self._inference = inference
        self.entry_script = str(inference.get("entryScript", ""))
        self.source_directory = None
        self.environment = None
        self.conda_file = None

    def validate_configuration(self) -> None:
        """Nothing to check: the revision was validated when it was deployed."""

    def _request(self, workspace: Any, service_name: str) -> Dict[str, Any]:
        return {
            "entryScript": self._inference.get("entryScript"),
            "sourceSnapshot": self._inference.get("sourceSnapshot"),
            "sourceDirectoryName": self._inference.get("sourceDirectoryName"),
            "environment": self._inference.get("environment"),
        }
