"""Web services: the base class, the deployment-config base and the settings objects, like
``azureml.core.webservice.webservice``."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Type, Union
from urllib.parse import quote

from ..._http import Response, operation_id_from
from ...exceptions import WebserviceException
from ..model import InferenceConfig, Model, _filter_params, _parse_time
from .rollout import Rollout, rollout_block
from .traffic import ProgressiveDelivery, rolled_back_message

if TYPE_CHECKING:  # pragma: no cover
    from ..environment import Environment
    from ..workspace import Workspace

__all__ = [
    "Webservice",
    "WebserviceDeploymentConfiguration",
    "WebserviceAccessToken",
    "ServiceRevision",
    "AutoScaler",
    "ContainerResourceRequirements",
    "LivenessProbeRequirements",
    "DataCollection",
]

_logger = logging.getLogger("berth")

SERVICE_NAME_REGEX = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAMESPACE_REGEX = r"^[a-z0-9]([a-z0-9-]{,61}[a-z0-9])?$"
TERMINAL_OPERATION_STATES = ("Succeeded", "Failed", "RolledBack", "Cancelled", "TimedOut")
VALID_COMPUTE_TYPES = ("ACI", "AKS", "AKSENDPOINT", "IOT", "MIR", "LOCAL")


def _check_service_name(name: Any) -> None:
    if not isinstance(name, str) or not re.match(SERVICE_NAME_REGEX, name) or not 3 <= len(name) <= 32:
        raise WebserviceException(
            "Error, provided service name is invalid. It must only consist of lowercase letters, numbers, "
            "or dashes, start with a letter, end with a letter or number, and be between 3 and 32 "
            "characters long."
        )


def _format_error(error: Any) -> str:
    return json.dumps(error, indent=2) if error is not None else "null"


def _local_time(text: Optional[str]) -> str:
    moment = _parse_time(text) or datetime.now(timezone.utc)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S%z")


# -- settings objects (the shape of the reference's AKS/ACI attributes) --------------------------


@dataclass
class AutoScaler:
    """Autoscaling settings of a service."""

    autoscale_enabled: bool = False
    max_replicas: int = 10
    min_replicas: int = 1
    refresh_period_in_seconds: int = 1
    target_utilization: int = 70

    def serialize(self) -> Dict[str, Any]:
        """The camelCase JSON form."""
        return {
            "autoscaleEnabled": self.autoscale_enabled,
            "maxReplicas": self.max_replicas,
            "minReplicas": self.min_replicas,
            "refreshPeriodInSeconds": self.refresh_period_in_seconds,
            "targetUtilization": self.target_utilization,
        }

    @staticmethod
    def deserialize(payload: Optional[Dict[str, Any]]) -> "AutoScaler":
        """From the camelCase JSON form."""
        p = payload or {}
        return AutoScaler(
            autoscale_enabled=bool(p.get("autoscaleEnabled", False)),
            max_replicas=int(p.get("maxReplicas", 10)),
            min_replicas=int(p.get("minReplicas", 1)),
            refresh_period_in_seconds=int(p.get("refreshPeriodInSeconds", 1)),
            target_utilization=int(p.get("targetUtilization", 70)),
        )


@dataclass
class ContainerResourceRequirements:
    """CPU, memory and GPU per replica (requests and limits)."""

    cpu: Optional[float] = None
    memory_in_gb: Optional[float] = None
    gpu: Optional[int] = None
    cpu_limit: Optional[float] = None
    memory_in_gb_limit: Optional[float] = None

    def serialize(self) -> Dict[str, Any]:
        """The camelCase JSON form."""
        return {
            "cpu": self.cpu,
            "cpuLimit": self.cpu_limit,
            "memoryInGB": self.memory_in_gb,
            "memoryInGBLimit": self.memory_in_gb_limit,
            "gpu": self.gpu,
        }

    @staticmethod
    def deserialize(payload: Optional[Dict[str, Any]]) -> "ContainerResourceRequirements":
        """From the camelCase JSON form."""
        p = payload or {}
        return ContainerResourceRequirements(
            cpu=p.get("cpu"),
            memory_in_gb=p.get("memoryInGB"),
            gpu=p.get("gpu"),
            cpu_limit=p.get("cpuLimit"),
            memory_in_gb_limit=p.get("memoryInGBLimit"),
        )


@dataclass
class LivenessProbeRequirements:
    """Liveness probe settings."""

    period_seconds: int = 10
    initial_delay_seconds: int = 310
    timeout_seconds: int = 2
    success_threshold: int = 1
    failure_threshold: int = 3

    def serialize(self) -> Dict[str, Any]:
        """The camelCase JSON form."""
        return {
            "periodSeconds": self.period_seconds,
            "initialDelaySeconds": self.initial_delay_seconds,
            "timeoutSeconds": self.timeout_seconds,
            "successThreshold": self.success_threshold,
            "failureThreshold": self.failure_threshold,
        }

    @staticmethod
    def deserialize(payload: Optional[Dict[str, Any]]) -> "LivenessProbeRequirements":
        """From the camelCase JSON form."""
        p = payload or {}
        return LivenessProbeRequirements(
            period_seconds=int(p.get("periodSeconds", 10)),
            initial_delay_seconds=int(p.get("initialDelaySeconds", 310)),
            timeout_seconds=int(p.get("timeoutSeconds", 2)),
            success_threshold=int(p.get("successThreshold", 1)),
            failure_threshold=int(p.get("failureThreshold", 3)),
        )


@dataclass
class DataCollection:
    """Model data collection settings."""

    event_hub_enabled: bool = False
    storage_enabled: bool = False

    def serialize(self) -> Dict[str, Any]:
        """The camelCase JSON form."""
        return {"eventHubEnabled": self.event_hub_enabled, "storageEnabled": self.storage_enabled}

    @staticmethod
    def deserialize(payload: Optional[Dict[str, Any]]) -> "DataCollection":
        """From the camelCase JSON form."""
        p = payload or {}
        return DataCollection(
            event_hub_enabled=bool(p.get("eventHubEnabled", False)),
            storage_enabled=bool(p.get("storageEnabled", False)),
        )


@dataclass
class WebserviceAccessToken:
    """A scoring token (token-auth services)."""

    access_token: str
    token_type: str
    refresh_after: datetime
    expiry_on: datetime

    def serialize(self) -> Dict[str, Any]:
        """The camelCase JSON form (times as epoch seconds)."""
        return {
            "accessToken": self.access_token,
            "tokenType": self.token_type,
            "refreshAfter": int(self.refresh_after.timestamp()),
            "expiryOn": int(self.expiry_on.timestamp()),
        }


@dataclass
class ServiceRevision:
    """Berth: one immutable revision of a service (models + inference config + deployment config)."""

    revision: int
    created_time: Optional[datetime]
    serving: bool
    spec: Dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> List[str]:
        """Model ids (``name:version``)."""
        return list(self.spec.get("models") or [])

    @property
    def entry_script(self) -> Optional[str]:
        """The entry script, relative to the source directory."""
        return (self.spec.get("inference") or {}).get("entryScript")

    @property
    def environment(self) -> Optional[str]:
        """The environment (``name:version``)."""
        return (self.spec.get("inference") or {}).get("environment")

    @property
    def source_snapshot(self) -> Optional[str]:
        """The source snapshot id."""
        return (self.spec.get("inference") or {}).get("sourceSnapshot")

    @property
    def deployment_config(self) -> Dict[str, Any]:
        """The resolved deployment settings."""
        return dict(self.spec.get("deployment") or {})


# -- deployment configuration base ----------------------------------------------------------------


class WebserviceDeploymentConfiguration:
    """Base of the ``deploy_configuration(...)`` objects: what a new service runs with.

    :ivar description, tags, properties: Given to the service created with this configuration.
    :ivar primary_key, secondary_key: Scoring keys; generated when omitted.
    """

    _webservice_type: str = ""
    _compute_type: str = ""
    #: Berth: how traffic moves to a new revision (``deploy_configuration(..., rollout=Rollout(...))``).
    rollout: Optional[Rollout] = None

    def __init__(
        self,
        type: Optional[Type["Webservice"]] = None,
        description: Optional[str] = None,
        tags: Optional[Dict[str, str]] = None,
        properties: Optional[Dict[str, str]] = None,
        primary_key: Optional[str] = None,
        secondary_key: Optional[str] = None,
        location: Optional[str] = None,
    ) -> None:
        self._webservice_class = type
        self.description = description
        self.tags = tags
        self.properties = properties
        self.primary_key = primary_key
        self.secondary_key = secondary_key
        self.location = location

    def validate_configuration(self) -> None:
        """Raises ``WebserviceException`` with every ``Invalid configuration, ...`` problem."""

    def _deployment_config(self) -> Dict[str, Any]:
        """The ``deploymentconfig.json`` object sent to the server (only the keys that were set)."""
        raise NotImplementedError

    def _keys(self) -> Optional[Dict[str, str]]:
        keys = {k: v for k, v in (("primaryKey", self.primary_key), ("secondaryKey", self.secondary_key)) if v}
        return keys or None

    def print_deploy_configuration(self) -> None:
        """Prints the deployment configuration JSON."""
        print(json.dumps(self._deployment_config(), indent=2))

    def serialize(self) -> Dict[str, Any]:
        """The ``deploymentconfig.json`` object."""
        return self._with_rollout(self._deployment_config())

    def _with_rollout(self, config: Dict[str, Any]) -> Dict[str, Any]:
        """``config`` with the Berth ``rollout`` block, when one was given."""
        if self.rollout is not None:
            config["rollout"] = rollout_block(self.rollout)
        return config


def _set(target: Dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def _nested(target: Dict[str, Any], key: str, pairs: Sequence[Tuple[str, Any]]) -> None:
    inner = {k: v for k, v in pairs if v is not None}
    if inner:
        target.setdefault(key, {}).update(inner)


# -- the service ---------------------------------------------------------------------------------


class Webservice(ProgressiveDelivery):
    """A deployed scoring service.

    ``Webservice(workspace, name)`` fetches a service and returns the subclass of its compute type
    (:class:`~berth.core.webservice.AksWebservice`, :class:`~berth.core.webservice.AciWebservice`
    or :class:`~berth.core.webservice.LocalWebservice`).

    :ivar state: ``Transitioning``, ``Healthy``, ``Unhealthy`` or ``Failed``.
    :ivar scoring_uri: ``POST`` here to score (see :meth:`run`).
    :ivar swagger_uri: The service's swagger document.
    :ivar error: The last failure (code, step, message, output), when ``state`` is ``Failed``.
    :ivar serving_revision: Berth: the revision answering requests (kept when an update fails).
    :ivar latest_revision: Berth: the newest revision.
    :ivar traffic: Berth: the serving revisions with their weights (``revision``, ``weight``,
        ``role``, ``name``).
    :ivar rollout: Berth: the :class:`Rollout` settings of the serving (else newest) revision.
    :ivar rollout_status: Berth: the running (or last) rollout: step, weights, gate figures.
    :ivar mirror_status: Berth: shadow traffic figures, while requests are mirrored.
    """

    #: Name used in messages (``ACI``, ``AKS``, ``Local``).
    _webservice_type: str = "Unknown"
    #: The server's ``computeType`` for this class.
    _compute_type: str = ""
    #: Seconds between operation polls.
    _poll_interval: float = 0.5

    def __new__(cls, *args: Any, **kwargs: Any) -> "Webservice":
        if cls is Webservice and (args or kwargs):
            workspace = kwargs.get("workspace", args[0] if args else None)
            name = kwargs.get("name", args[1] if len(args) > 1 else None)
            if workspace is not None and name is not None:
                payload = Webservice._get(workspace, name)
                subclass = Webservice._class_for(str(payload.get("computeType", "")))
                obj = object.__new__(subclass)
                obj.__dict__["_prefetched"] = payload
                return obj
        return object.__new__(cls)

    def __init__(self, workspace: "Workspace", name: str) -> None:
        payload = self.__dict__.pop("_prefetched", None)
        if payload is None:
            payload = Webservice._get(workspace, name)
            actual = str(payload.get("computeType", ""))
            if self._compute_type and actual.upper() != self._compute_type:
                raise WebserviceException(
                    f"WebserviceNotFound: Webservice with name {name} and compute type {self._webservice_type} "
                    f"not found in provided workspace: it is a {actual} service; use Webservice(workspace, name).",
                    code="not_found",
                    status_code=404,
                )
        self._setup(workspace)
        self._apply(payload)

    def _setup(self, workspace: "Workspace") -> None:
        self.workspace = workspace
        self._operation_endpoint: Optional[str] = None
        self._event_offset = 0
        self._inference_config: Optional[InferenceConfig] = None
        self._scoring_credential: Optional[str] = None
        self._token: Optional[WebserviceAccessToken] = None
        self._models_cache: Optional[List[Model]] = None
        self._ended_with_newline = True

    @staticmethod
    def _class_for(compute_type: str) -> Type["Webservice"]:
        from .aci import AciWebservice
        from .aks import AksWebservice
        from .local import LocalWebservice

        return {"AKS": AksWebservice, "ACI": AciWebservice, "LOCAL": LocalWebservice}.get(
            compute_type.upper(), AksWebservice
        )

    @staticmethod
    def _get(workspace: "Workspace", name: str) -> Dict[str, Any]:
        try:
            payload: Dict[str, Any] = workspace.service_context.json("GET", f"/v1/services/{quote(name, safe='')}")
        except WebserviceException as e:
            if e.status_code == 404:
                raise WebserviceException(
                    f"WebserviceNotFound: Webservice with name {name} not found in provided workspace",
                    code=e.code,
                    status_code=404,
                ) from None
            raise
        return payload

    @staticmethod
    def _from_payload(
        workspace: "Workspace", payload: Dict[str, Any], subclass: Optional[Type["Webservice"]] = None
    ) -> "Webservice":
        subclass = subclass or Webservice._class_for(str(payload.get("computeType", "")))
        obj = object.__new__(subclass)
        obj._setup(workspace)
        obj._apply(payload)
        return obj

    @staticmethod
    def deserialize(workspace: "Workspace", webservice_payload: Dict[str, Any]) -> "Webservice":
        """A service object from a server payload."""
        return Webservice._from_payload(workspace, webservice_payload)

    def _apply(self, payload: Dict[str, Any]) -> None:
        self._payload = dict(payload)
        self.name: str = str(payload["name"])
        self.description: Optional[str] = payload.get("description")
        self.tags: Dict[str, str] = dict(payload.get("tags") or {})
        self.properties: Dict[str, str] = dict(payload.get("properties") or {})
        self._server_state: str = str(payload.get("state", "Unknown"))
        self.state: Optional[str] = self._map_state(self._server_state)
        self.created_time: Optional[datetime] = _parse_time(payload.get("createdTime"))
        self.updated_time: Optional[datetime] = _parse_time(payload.get("updatedTime"))
        self.error: Optional[Dict[str, Any]] = payload.get("error")
        self.compute_type: str = self._webservice_type if self._compute_type else str(payload.get("computeType"))
        self.workspace_name: Optional[str] = payload.get("workspaceName")
        self.scoring_uri: Optional[str] = payload.get("scoringUri")
        self.swagger_uri: Optional[str] = payload.get("swaggerUri")
        if self.swagger_uri is None and self.scoring_uri:
            self.swagger_uri = self.scoring_uri.rsplit("/", 1)[0] + "/swagger.json"
        self.image_id: Optional[str] = None
        self.image_digest: Optional[str] = None
        self.image_details: Optional[Dict[str, Any]] = None
        self.created_by: Optional[Dict[str, Any]] = payload.get("createdBy")
        self.model_ids: List[str] = list(payload.get("models") or [])
        self.environment_id: Optional[str] = payload.get("environment")
        self.entry_script: Optional[str] = payload.get("entryScript")
        self.serving_revision: Optional[int] = payload.get("servingRevision")
        self.latest_revision: Optional[int] = payload.get("latestRevision")
        self.operation_id: Optional[str] = payload.get("operationId")
        self.deployment_status: Dict[str, Any] = dict(payload.get("deploymentStatus") or {})
        self.auth_enabled: bool = bool(payload.get("authEnabled", False))
        self.token_auth_enabled: bool = bool(payload.get("tokenAuthEnabled", False))
        self.num_replicas: Optional[int] = payload.get("numReplicas")
        self.autoscaler = AutoScaler.deserialize(payload.get("autoScaler"))
        self.container_resource_requirements = ContainerResourceRequirements.deserialize(
            payload.get("containerResourceRequirements")
        )
        self.liveness_probe_requirements = LivenessProbeRequirements.deserialize(payload.get("livenessProbeRequirements"))
        self.data_collection = DataCollection.deserialize(payload.get("dataCollection"))
        self.scoring_timeout_ms: Optional[int] = payload.get("scoringTimeoutMs")
        self.max_concurrent_requests_per_container: Optional[int] = payload.get("maxConcurrentRequestsPerContainer")
        self.max_request_wait_time: Optional[int] = payload.get("maxQueueWaitMs")
        self.app_insights_enabled: bool = bool(payload.get("appInsightsEnabled", False))
        self.namespace: Optional[str] = payload.get("namespace")
        #: The compute target the service was deployed to (``None``: the local target).
        self.compute_target_name: Optional[str] = payload.get("computeTargetName")
        self.traffic: List[Dict[str, Any]] = list(payload.get("traffic") or [])
        try:
            self.rollout: Optional[Rollout] = Rollout.deserialize(payload.get("rollout"))
        except WebserviceException:
            # Settings the server kept but this SDK would refuse; the raw block stays in serialize().
            self.rollout = None
        self.rollout_status: Optional[Dict[str, Any]] = payload.get("rolloutStatus")
        self.mirror_status: Optional[Dict[str, Any]] = payload.get("mirror")
        self._models_cache = None

    def _map_state(self, server_state: str) -> Optional[str]:
        return server_state

    # -- lookups ---------------------------------------------------------------------------------

    @property
    def models(self) -> List[Model]:
        """The models of the serving (else newest) revision."""
        if self._models_cache is None:
            self._models_cache = [Model(self.workspace, id=model_id) for model_id in self.model_ids]
        return list(self._models_cache)

    @property
    def environment(self) -> Optional["Environment"]:
        """The environment of the serving (else newest) revision."""
        from ..environment import Environment

        if not self.environment_id:
            return None
        name, _, version = self.environment_id.rpartition(":")
        return Environment.get(self.workspace, name, version=version)

    @staticmethod
    def list(
        workspace: "Workspace",
        compute_type: Optional[str] = None,
        image_name: Optional[str] = None,
        image_id: Optional[str] = None,
        model_name: Optional[str] = None,
        model_id: Optional[str] = None,
        tags: Optional[List[Any]] = None,
        properties: Optional[List[Any]] = None,
        image_digest: Optional[str] = None,
    ) -> List["Webservice"]:
        """Services of the workspace, filtered.

        :param compute_type: ``ACI``, ``AKS`` or ``LOCAL`` (``AKSENDPOINT``, ``IOT``, ``MIR`` match none).
        :param model_name: Services using a version of this model.
        :param model_id: Services using this model version (``name:version``).
        :param tags: ``["key", ["key2", "value2"]]``: every entry must match.
        :param properties: Same form as ``tags``.
        :param image_name, image_id, image_digest: Accepted for compatibility; Berth has no images.
        """
        if compute_type and compute_type.upper() not in VALID_COMPUTE_TYPES:
            raise WebserviceException(
                f'Invalid compute type "{compute_type}". Valid options are "ACI", "AKS", "LOCAL", "IOT", '
                '"AKSENDPOINT", "MIR"'
            )
        for name, value in (("image_name", image_name), ("image_id", image_id), ("image_digest", image_digest)):
            if value:
                _logger.warning("Webservice.list: %s is not used by Berth (it has no images) and was ignored.", name)
        tag_filters = _filter_params(tags, "tags")
        property_filters = _filter_params(properties, "properties")
        payload = workspace.service_context.json("GET", "/v1/services")
        out: List[Webservice] = []
        for item in payload.get("value", []):
            if compute_type and str(item.get("computeType", "")).upper() != compute_type.upper():
                continue
            models = list(item.get("models") or [])
            if model_name and not any(m.rsplit(":", 1)[0] == model_name for m in models):
                continue
            if model_id and model_id not in models:
                continue
            if not _matches(item.get("tags") or {}, tag_filters):
                continue
            if not _matches(item.get("properties") or {}, property_filters):
                continue
            out.append(Webservice._from_payload(workspace, item))
        return out

    def update_deployment_state(self) -> None:
        """Refreshes every attribute from the server (the known operation is kept)."""
        self._apply(Webservice._get(self.workspace, self.name))

    # -- deployment ------------------------------------------------------------------------------

    @staticmethod
    def _deploy(
        workspace: "Workspace",
        name: str,
        models: Sequence[Union[Model, str]],
        inference_config: Optional[InferenceConfig],
        deployment_config: Optional[WebserviceDeploymentConfiguration],
        deployment_target: Any,
        overwrite: bool,
        show_output: bool,
    ) -> "Webservice":
        from .aci import AciServiceDeploymentConfiguration
        from .aks import AksServiceDeploymentConfiguration

        _check_service_name(name)
        if models is None or isinstance(models, (str, Model)) or not all(isinstance(m, (Model, str)) for m in models):
            raise WebserviceException("Error, models must be a list of Model objects (or name:version strings).")
        if inference_config is None:
            from ..model import _no_code_models

            resolved = [m if isinstance(m, Model) else Model(workspace, id=m) for m in models]
            if not _no_code_models(resolved):
                frameworks = ", ".join(f"{m.id}: {m.model_framework}" for m in resolved) or "no models"
                raise WebserviceException(
                    "Error, deploying without an inference_config (no-code deployment) needs exactly one model "
                    f"registered with model_framework Onnx, ScikitLearn or TensorFlow ({frameworks}); pass "
                    "InferenceConfig(entry_script=..., environment=...) otherwise."
                )
        elif not isinstance(inference_config, InferenceConfig):
            raise WebserviceException("Error, inference_config must be an InferenceConfig object.")
        if deployment_config is None:
            if deployment_target is None:
                deployment_config = AciServiceDeploymentConfiguration()
            elif str(getattr(deployment_target, "type", "")).upper() == "AKS":
                deployment_config = AksServiceDeploymentConfiguration(
                    compute_target_name=getattr(deployment_target, "name", None)
                )
            else:
                raise WebserviceException("Must provide deployment configuration when not deploying to AKS or ACI")
        if not isinstance(deployment_config, WebserviceDeploymentConfiguration):
            raise WebserviceException("Error, deployment_config must be a deployment configuration object.")
        deployment_config.validate_configuration()
        config = deployment_config._with_rollout(deployment_config._deployment_config())
        if deployment_target is not None and getattr(deployment_target, "name", None):
            config.setdefault("computeTargetName", getattr(deployment_target, "name"))
        body: Dict[str, Any] = {
            "name": name,
            "description": deployment_config.description,
            "tags": dict(deployment_config.tags or {}),
            "properties": dict(deployment_config.properties or {}),
            "models": [_model_id(m) for m in models],
            "deploymentConfig": config,
            "overwrite": bool(overwrite),
        }
        if inference_config is not None:
            body["inferenceConfig"] = inference_config._request(workspace, name)
        response = workspace.service_context.request(
            "POST", "/v1/services", json_body=body, expect=(202,), what="create service"
        )
        _log_warnings(response, name)
        operation_id = operation_id_from(response)
        service = Webservice._from_payload(
            workspace, Webservice._get(workspace, name), getattr(deployment_config, "_service_class", None)
        )
        service._operation_endpoint = f"/v1/operations/{operation_id}"
        service._inference_config = inference_config
        service._after_deploy(deployment_config)
        if getattr(deployment_config, "_waits_for_deployment", False):
            # Local services return once they serve, as azureml-core's do.
            service.wait_for_deployment(show_output=show_output)
        return service

    def _after_deploy(self, deployment_config: WebserviceDeploymentConfiguration) -> None:
        """Hook run once ``Model.deploy`` created this service (``AksEndpoint`` names its first version)."""

    def _start(self, response: Response) -> None:
        """Records the operation a 202 answer started and refreshes the object."""
        _log_warnings(response, self.name)
        self._operation_endpoint = f"/v1/operations/{operation_id_from(response)}"
        self._event_offset = 0
        self.update_deployment_state()

    def _patch(self, body: Dict[str, Any]) -> None:
        response = self.workspace.service_context.request(
            "PATCH", self._path(), json_body=body, expect=(202,), what="update service"
        )
        self._start(response)

    def _path(self) -> str:
        return f"/v1/services/{quote(self.name, safe='')}"

    def _inference_body(
        self,
        models: Optional[Sequence[Union[Model, str]]],
        inference_config: Optional[InferenceConfig],
    ) -> Dict[str, Any]:
        body: Dict[str, Any] = {}
        if models is not None:
            body["models"] = [_model_id(m) for m in models]
        if inference_config is not None:
            body["inferenceConfig"] = inference_config._request(self.workspace, self.name)
        return body

    def _check_models_update(
        self,
        models: Optional[Sequence[Union[Model, str]]],
        inference_config: Optional[InferenceConfig],
        image: Any,
    ) -> List[str]:
        """The reference's image/environment and no-code rules, as ``Error, ...`` lines."""
        errors: List[str] = []
        if image is not None:
            errors.append("Error, unable to use Image object to update Webservice created with Environment object.")
        if image is not None and inference_config is not None:
            errors.append("Error, unable to pass both an Image object and an InferenceConfig object to update.")
        if inference_config is not None and not isinstance(inference_config, InferenceConfig):
            errors.append("Error, inference_config must be an InferenceConfig object.")
        if models is not None:
            if isinstance(models, (str, Model)) or not all(isinstance(m, (Model, str)) for m in models):
                errors.append("Error, models must be a list of Model objects (or name:version strings).")
            elif inference_config is None:
                resolved = [m if isinstance(m, Model) else Model(self.workspace, id=m) for m in models]
                from ..model import _no_code_models

                if not _no_code_models(resolved):
                    errors.append(
                        'Error, both "models" and "inference_config" inputs must be provided in order to '
                        "update the models."
                    )
        return errors

    # -- operations ------------------------------------------------------------------------------

    def _get_operation(self) -> Dict[str, Any]:
        assert self._operation_endpoint is not None
        operation: Dict[str, Any] = self.workspace.service_context.json(
            "GET", self._operation_endpoint, params={"offset": self._event_offset}
        )
        return operation

    def _wait_for_operation_to_complete(
        self, show_output: bool, timeout_sec: Optional[float] = None
    ) -> Tuple[str, Optional[Dict[str, Any]], Dict[str, Any]]:
        if not self._operation_endpoint:
            raise WebserviceException("No operation endpoint")
        start = time.monotonic()
        operation = self._get_operation()
        state = str(operation.get("state"))
        current_state = state
        last_output = time.monotonic()
        if show_output:
            sys.stdout.write(state)
            last_output = self._print_events(operation, last_output)
            sys.stdout.flush()
        self._ended_with_newline = False
        while state not in TERMINAL_OPERATION_STATES:
            if timeout_sec is not None and time.monotonic() - start > timeout_sec:
                raise WebserviceException(
                    f"Deployment polling exceeded timeout override of {timeout_sec}s. Current status: {state}\n"
                    "The operation keeps running on the server; call wait_for_deployment() again to keep waiting."
                )
            time.sleep(self._poll_interval)
            operation = self._get_operation()
            state = str(operation.get("state"))
            if show_output:
                last_output = self._print_events(operation, last_output)
                if state != current_state:
                    sys.stdout.write(f"\n{state}\n")
                    current_state = state
                    last_output = time.monotonic()
                    self._ended_with_newline = True
                elif time.monotonic() - last_output >= 5:
                    sys.stdout.write(".")
                    last_output = time.monotonic()
                    self._ended_with_newline = False
                sys.stdout.flush()
        if show_output and not self._ended_with_newline:
            sys.stdout.write("\n")
            sys.stdout.flush()
        if not show_output:
            self._consume_events(operation)
        return state, operation.get("error"), operation

    def _consume_events(self, operation: Dict[str, Any]) -> None:
        for event in operation.get("events") or []:
            self._event_offset = max(self._event_offset, int(event.get("seq", -1)) + 1)

    def _print_events(self, operation: Dict[str, Any], last_output: float) -> float:
        for event in operation.get("events") or []:
            seq = int(event.get("seq", -1))
            if seq < self._event_offset:
                continue
            self._event_offset = seq + 1
            sys.stdout.write(f"\n{_local_time(event.get('time'))} {event.get('message', '')}")
            last_output = time.monotonic()
            self._ended_with_newline = False
        return last_output

    def wait_for_deployment(self, show_output: bool = False, timeout_sec: Optional[float] = None) -> None:
        """Waits for the deployment, update, rollback or redeploy this object started.

        With ``show_output`` it prints the operation's state and log lines as they come.

        :param timeout_sec: Stop polling after this many seconds (the operation keeps running).
        :raises WebserviceException: The operation ended other than ``Succeeded`` (the message holds
            the service state, the operation id and the error with the worker's output); no
            operation is known; or the timeout passed.
        """
        try:
            if show_output and self._operation_endpoint:
                print(
                    "Tips: You can try get_logs() (get_logs(init=True) for the last failed start) to debug "
                    "if deployment takes longer than 10 minutes."
                )
            operation_state, error, operation = self._wait_for_operation_to_complete(show_output, timeout_sec)
            self.update_deployment_state()
            if operation_state == "RolledBack":
                error = error or {}
                raise WebserviceException(
                    rolled_back_message(operation, self._payload),
                    code=str(error.get("code") or "RolledBack"),
                    details=list(error.get("output") or []),
                )
            if operation_state != "Succeeded":
                step = str((error or {}).get("step", ""))
                code = str((error or {}).get("code", ""))
                if code == "EnvironmentBuildFailed" or step.startswith("build environment"):
                    named = re.match(r"build environment (\S+)", step)
                    env = named.group(1) if named else "the environment"
                    hint = (
                        f"More information can be found here: the build log of {env} "
                        "(Environment.get(...).build_details['logTail'])"
                    )
                elif step:
                    hint = "More information can be found using '.get_logs()'"
                else:
                    hint = "Current sub-operation type not known, more logs unavailable."
                serving = (
                    f"\nRevision {self.serving_revision} is still serving requests."
                    if self.serving_revision is not None
                    else ""
                )
                raise WebserviceException(
                    "Service deployment polling reached non-successful terminal state, current service state: "
                    f"{self.state}\nOperation ID: {operation.get('id')}\n{hint}\nError:\n{_format_error(error)}"
                    f"{serving}",
                    code=code or None,
                    details=list((error or {}).get("output") or []),
                )
            print(f'{self._webservice_type} service creation operation finished, operation "{operation_state}"')
        except WebserviceException as e:
            if e.message == "No operation endpoint":
                self.update_deployment_state()
                raise WebserviceException(
                    f"Long running operation information not known, unable to poll. Current state is {self.state}"
                ) from None
            raise

    def _wait_quietly(self, response: Response) -> Tuple[str, Optional[Dict[str, Any]]]:
        self._operation_endpoint = f"/v1/operations/{operation_id_from(response)}"
        self._event_offset = 0
        state, error, _ = self._wait_for_operation_to_complete(False)
        self.update_deployment_state()
        return state, error

    # -- day-to-day ------------------------------------------------------------------------------

    def get_logs(self, num_lines: int = 5000, init: bool = False) -> str:
        """The replicas' output (``init=True``: the output of the last failed start).

        :param num_lines: Lines from the end.
        """
        payload = self.workspace.service_context.json(
            "GET", self._path() + "/logs", params={"tail": int(num_lines), "init": bool(init)}
        )
        if not isinstance(payload, dict) or "content" not in payload:
            raise WebserviceException('Invalid response, missing "content"')
        return str(payload["content"])

    def get_keys(self) -> Tuple[str, str]:
        """The scoring keys: ``(primary, secondary)``."""
        payload = self.workspace.service_context.json("GET", self._path() + "/keys")
        try:
            return str(payload["primaryKey"]), str(payload["secondaryKey"])
        except (KeyError, TypeError):
            raise WebserviceException(f"Invalid response key: primaryKey/secondaryKey missing in {payload}") from None

    def regen_key(self, key: str, set_key: Optional[str] = None) -> None:
        """Regenerates (or sets) one scoring key and waits until the service uses it.

        :param key: ``Primary`` or ``Secondary`` (any case).
        :param set_key: The new value; a random one when omitted.
        """
        if not key:
            raise WebserviceException("Error, must specify which key with be regenerated: Primary, Secondary")
        key = key.capitalize()
        if key not in ("Primary", "Secondary"):
            raise WebserviceException(f"Error, invalid value provided for key: {key}.\nValid options are: Primary, Secondary")
        response = self.workspace.service_context.request(
            "POST",
            self._path() + "/regenerateKeys",
            json_body={"keyType": key, "keyValue": set_key},
            expect=(200, 202),
            what="regenerate key",
        )
        if response.status == 200 and "operation-location" not in response.headers:
            self._scoring_credential = None
            return
        state, error = self._wait_quietly(response)
        self._scoring_credential = None
        if state != "Succeeded":
            message = (error or {}).get("message", error)
            raise WebserviceException(f'Error, key regeneration operation "{state}" with message "{message}"')

    def get_access_token(self) -> WebserviceAccessToken:
        """A scoring token for a token-auth service."""
        payload = self.workspace.service_context.json("POST", self._path() + "/token", what="get access token")
        try:
            token = WebserviceAccessToken(
                access_token=str(payload["accessToken"]),
                token_type=str(payload.get("tokenType", "Bearer")),
                refresh_after=datetime.fromtimestamp(int(payload["refreshAfter"]), tz=timezone.utc),
                expiry_on=datetime.fromtimestamp(int(payload["expiryOn"]), tz=timezone.utc),
            )
        except (KeyError, TypeError, ValueError):
            raise WebserviceException(f"Invalid response for an access token: {payload}") from None
        self._token = token
        return token

    def get_token(self) -> Tuple[str, datetime]:
        """Deprecated: ``(access_token, refresh_after)``; use :meth:`get_access_token`."""
        token = self.get_access_token()
        return token.access_token, token.refresh_after

    def _credential(self, refresh: bool) -> Optional[str]:
        if self.token_auth_enabled:
            now = datetime.now(timezone.utc)
            if refresh or self._token is None or now >= self._token.refresh_after:
                self.get_access_token()
            assert self._token is not None
            return self._token.access_token
        if self.auth_enabled:
            if refresh or self._scoring_credential is None:
                self._scoring_credential = self.get_keys()[0]
            return self._scoring_credential
        return None

    def run(self, input_data: Any) -> Any:
        """Calls the service with ``input_data`` (a JSON string, bytes, or an object sent as JSON)
        and returns the decoded JSON answer (the text when it is not JSON).

        :raises WebserviceException: The service answered other than 200.
        """
        if not self.scoring_uri:
            raise WebserviceException(
                "Error attempting to call webservice, scoring_uri unavailable. This could be due to a failed "
                f"deployment, or the service is not ready yet.\nCurrent State: {self.state}\nErrors: {self.error}"
            )
        if isinstance(input_data, bytes):
            body = input_data
        elif isinstance(input_data, str):
            body = input_data.encode("utf-8")
        else:
            body = json.dumps(input_data).encode("utf-8")
        response = self._score(body, refresh=False)
        if response.status == 401 and (self.auth_enabled or self.token_auth_enabled):
            response = self._score(body, refresh=True)
        if response.status != 200:
            raise WebserviceException(
                "Received bad response from service. More information can be found by calling `.get_logs()` on "
                f"the webservice object.\nResponse Code: {response.status}\nHeaders: {response.headers}\n"
                f"Content: {response.body!r}",
                status_code=response.status,
            )
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            return response.text()

    def _score(self, body: bytes, refresh: bool) -> Response:
        headers = {"Content-Type": "application/json"}
        credential = self._credential(refresh)
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        assert self.scoring_uri is not None
        return self.workspace.service_context.request(
            "POST", self.scoring_uri, body=body, headers=headers, auth=None, expect=tuple(range(100, 600))
        )

    def delete(self) -> None:
        """Deletes the service: drains and stops its replicas (waits until done)."""
        try:
            response = self.workspace.service_context.request(
                "DELETE", self._path(), expect=(200, 202, 204), what="delete service"
            )
        except WebserviceException as e:
            if e.status_code == 404:
                print(f"No service with name {self.name} found to delete.")
                return
            raise
        if response.status == 204:
            print(f"No service with name {self.name} found to delete.")
            return
        self.state = "Deleting"
        if response.status == 202:
            self._operation_endpoint = f"/v1/operations/{operation_id_from(response)}"
            self._event_offset = 0
            state, error, _ = self._wait_for_operation_to_complete(True)
            if state != "Succeeded":
                raise WebserviceException(
                    f"Error, delete operation for service {self.name} ended \"{state}\":\n{_format_error(error)}"
                )
            self.state = self._deleted_state()

    def _deleted_state(self) -> str:
        return "Deleted"

    # -- tags and properties ---------------------------------------------------------------------

    def _live_change(self, body: Dict[str, Any]) -> None:
        response = self.workspace.service_context.request(
            "PATCH", self._path(), json_body=body, expect=(202,), what="update service"
        )
        state, error = self._wait_quietly(response)
        if state != "Succeeded":
            raise WebserviceException(f'Error, update operation "{state}":\n{_format_error(error)}')

    def add_tags(self, tags: Dict[str, str]) -> None:
        """Adds (or changes) tags and waits for the change."""
        self._live_change({"addTags": dict(tags)})
        print("Webservice tag add operation complete.")

    def remove_tags(self, tags: List[str]) -> None:
        """Removes tags by key and waits for the change."""
        self._live_change({"removeTags": list(tags)})
        print("Webservice tag remove operation complete.")

    def add_properties(self, properties: Dict[str, str]) -> None:
        """Adds properties (add-only) and waits for the change."""
        self._live_change({"properties": dict(properties)})
        print("Webservice add properties operation complete.")

    # -- revisions (Berth) -----------------------------------------------------------------------

    def revisions(self) -> List[ServiceRevision]:
        """Berth: every revision of the service, oldest first."""
        payload = self.workspace.service_context.json("GET", self._path() + "/revisions")
        return [
            ServiceRevision(
                revision=int(item["revision"]),
                created_time=_parse_time(item.get("createdTime")),
                serving=bool(item.get("serving")),
                spec=dict(item.get("spec") or {}),
            )
            for item in payload.get("value", [])
        ]

    def rollback(self, revision: int) -> None:
        """Berth: serves an earlier revision again (new replicas, no downtime). Asynchronous like
        ``update``: call :meth:`wait_for_deployment`."""
        if isinstance(revision, ServiceRevision):
            revision = revision.revision
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
            raise WebserviceException(f"Error, revision must be a positive int, not {revision!r}.")
        response = self.workspace.service_context.request(
            "POST", self._path() + "/rollback", json_body={"revision": revision}, expect=(202,), what="rollback"
        )
        self._start(response)

    def redeploy(self) -> None:
        """Berth: starts fresh replicas of the serving revision. Asynchronous: call
        :meth:`wait_for_deployment`."""
        response = self.workspace.service_context.request(
            "POST", self._path() + "/redeploy", expect=(202,), what="redeploy"
        )
        self._start(response)

    # -- serialisation ---------------------------------------------------------------------------

    def _base_serialize(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "tags": dict(self.tags),
            "properties": dict(self.properties),
            "state": self.state,
            "createdTime": self._payload.get("createdTime"),
            "updatedTime": self._payload.get("updatedTime"),
            "error": self.error,
            "computeType": self.compute_type,
            "workspaceName": self.workspace_name,
            "imageId": None,
            "imageDigest": None,
            "imageDetails": None,
            "scoringUri": self.scoring_uri,
            "createdBy": self.created_by,
        }

    def _berth_serialize(self) -> Dict[str, Any]:
        return {
            "swaggerUri": self.swagger_uri,
            "models": list(self.model_ids),
            "environment": self.environment_id,
            "entryScript": self.entry_script,
            "servingRevision": self.serving_revision,
            "latestRevision": self.latest_revision,
            "operationId": self.operation_id,
            "traffic": list(self.traffic),
            "rollout": self._payload.get("rollout"),
            "rolloutStatus": self.rollout_status,
            "mirror": self.mirror_status,
        }

    def serialize(self) -> Dict[str, Any]:
        """The service as a dict (the reference's keys for its compute type, plus Berth's)."""
        out = self._base_serialize()
        out.update(self._berth_serialize())
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(workspace={self.workspace!r}, name={self.name}, "
            f"state={self.state}, scoring_uri={self.scoring_uri})"
        )


def _matches(values: Dict[str, str], filters: List[str]) -> bool:
    for item in filters:
        key, eq, value = item.partition("=")
        if key not in values or (eq and values[key] != value):
            return False
    return True


def _model_id(model: Union[Model, str]) -> str:
    return model.id if isinstance(model, Model) else str(model)


def _log_warnings(response: Response, name: str) -> None:
    try:
        payload = response.json()
    except ValueError:
        return
    if isinstance(payload, dict):
        for warning in payload.get("warnings") or []:
            _logger.warning("Service %s: %s", name, warning)
