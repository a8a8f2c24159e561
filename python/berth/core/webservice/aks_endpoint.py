"""v1 ``AksEndpoint``: several versions behind one scoring URI, each with a share of the traffic.

On Berth an endpoint is one service; its versions are serving revisions that carry names and
weights. ``create_version`` stages a revision (``POST /v1/services/{name}/revisions``) and splits
traffic onto it (``PUT /v1/services/{name}/traffic`` with ``weights`` and ``names``). As in
azureml-core, each version serves its ``traffic_percentile`` and the default version takes what
the others leave. Percentages are checked here, with the fix named, before anything is sent.

The server keeps each revision's weight (what it serves), not the percentile a default version was
configured with; an ``AksEndpoint`` object remembers the percentiles given through it, and a fresh
object (``AksEndpoint(ws, name)``) starts from the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ...exceptions import WebserviceException
from ..model import InferenceConfig, Model
from .aks import AksServiceDeploymentConfiguration, AksWebservice
from .rollout import Rollout, with_rollout
from .webservice import WebserviceDeploymentConfiguration

__all__ = ["AksEndpoint", "AksEndpointDeploymentConfiguration", "AksEndpointVersion"]

_NAME_RULE = "1 to 32 letters, digits, '-', '_' or '.', starting with a letter or digit"


def _check_version_name(name: Any) -> str:
    text = name if isinstance(name, str) else ""
    valid = (
        0 < len(text) <= 32
        and text[0].isascii()
        and text[0].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in text)
    )
    if not valid:
        raise WebserviceException(f"Error, version_name {name!r} is invalid: use {_NAME_RULE}.")
    return text


def _check_percentile(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100 or value != int(value):
        raise WebserviceException(
            f"Error, traffic_percentile is {value!r}: it must be a whole percent from 0 to 100."
        )
    return int(value)


@dataclass
class AksEndpointVersion:
    """One version of an :class:`AksEndpoint`: a serving revision with a name and a share.

    :ivar name: The version name.
    :ivar revision: The Berth revision it serves.
    :ivar traffic_percentile: Its share of requests, percent (the default version's share is what
        the others leave).
    :ivar is_default: Whether it takes the traffic the other versions leave.
    :ivar is_control_version_type: Kept as given (Berth treats control and treatment alike).
    :ivar state: The endpoint's state.
    """

    name: str
    revision: int
    traffic_percentile: int
    is_default: bool
    is_control_version_type: bool
    state: Optional[str]

    @property
    def version_type(self) -> str:
        """``Control`` or ``Treatment``, as azureml-core names them."""
        return "Control" if self.is_control_version_type else "Treatment"


class AksEndpointDeploymentConfiguration(AksServiceDeploymentConfiguration):
    """The deployment configuration of an :class:`AksEndpoint`'s first version; build it with
    :meth:`AksEndpoint.deploy_configuration`."""

    _webservice_type = "AKSENDPOINT"

    def __init__(
        self,
        *args: Any,
        version_name: Optional[str] = None,
        traffic_percentile: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        self.version_name = _check_version_name(version_name) if version_name is not None else None
        self.traffic_percentile = _check_percentile(traffic_percentile)
        super().__init__(*args, **kwargs)

    @property
    def _service_class(self) -> type:
        return AksEndpoint


class AksEndpoint(AksWebservice):
    """Several versions behind one scoring endpoint, each serving a percentage of the traffic
    (azureml-core's ``AksEndpoint``); one Berth service whose serving revisions are the versions.

    :ivar versions: Version name → :class:`AksEndpointVersion`.
    """

    _webservice_type = "AKSENDPOINT"

    def _setup(self, workspace: Any) -> None:
        super()._setup(workspace)
        self._default_name: Optional[str] = None
        self._control: Dict[str, bool] = {}
        self._percentiles: Dict[str, int] = {}
        self._pending_names: Dict[str, str] = {}
        self._stage_next = False
        self._staged: Optional[Dict[str, Any]] = None

    @staticmethod
    def deploy_configuration(  # type: ignore[override]  # azureml-core's own signature differs from AksWebservice's
        autoscale_enabled: Optional[bool] = None,
        autoscale_min_replicas: Optional[int] = None,
        autoscale_max_replicas: Optional[int] = None,
        autoscale_refresh_seconds: Optional[int] = None,
        autoscale_target_utilization: Optional[int] = None,
        collect_model_data: Optional[bool] = None,
        auth_enabled: Optional[bool] = None,
        cpu_cores: Optional[float] = None,
        memory_gb: Optional[float] = None,
        enable_app_insights: Optional[bool] = None,
        scoring_timeout_ms: Optional[int] = None,
        replica_max_concurrent_requests: Optional[int] = None,
        max_request_wait_time: Optional[int] = None,
        num_replicas: Optional[int] = None,
        primary_key: Optional[str] = None,
        secondary_key: Optional[str] = None,
        tags: Optional[Dict[str, str]] = None,
        properties: Optional[Dict[str, str]] = None,
        description: Optional[str] = None,
        gpu_cores: Optional[int] = None,
        period_seconds: Optional[int] = None,
        initial_delay_seconds: Optional[int] = None,
        timeout_seconds: Optional[int] = None,
        success_threshold: Optional[int] = None,
        failure_threshold: Optional[int] = None,
        namespace: Optional[str] = None,
        token_auth_enabled: Optional[bool] = None,
        version_name: Optional[str] = None,
        traffic_percentile: Optional[int] = None,
        compute_target_name: Optional[str] = None,
        cpu_cores_limit: Optional[float] = None,
        memory_gb_limit: Optional[float] = None,
        *,
        rollout: Optional[Rollout] = None,
    ) -> AksEndpointDeploymentConfiguration:
        """An endpoint's deployment configuration: :meth:`AksWebservice.deploy_configuration`'s
        settings plus the first version's ``version_name`` (default ``<service>-1``) and
        ``traffic_percentile`` (the only version serves 100 % whatever it says). The first
        version gets its name once :meth:`wait_for_deployment` sees it serve.

        :param rollout: Berth: how traffic moves to later revisions (:class:`Rollout`).
        :raises WebserviceException: ``Invalid configuration, ...`` lines, a bad version name or
            percentile.
        """
        return with_rollout(
            AksEndpointDeploymentConfiguration(
                autoscale_enabled=autoscale_enabled,
                autoscale_min_replicas=autoscale_min_replicas,
                autoscale_max_replicas=autoscale_max_replicas,
                autoscale_refresh_seconds=autoscale_refresh_seconds,
                autoscale_target_utilization=autoscale_target_utilization,
                collect_model_data=collect_model_data,
                auth_enabled=auth_enabled,
                cpu_cores=cpu_cores,
                memory_gb=memory_gb,
                enable_app_insights=enable_app_insights,
                scoring_timeout_ms=scoring_timeout_ms,
                replica_max_concurrent_requests=replica_max_concurrent_requests,
                max_request_wait_time=max_request_wait_time,
                num_replicas=num_replicas,
                primary_key=primary_key,
                secondary_key=secondary_key,
                tags=tags,
                properties=properties,
                description=description,
                gpu_cores=gpu_cores,
                period_seconds=period_seconds,
                initial_delay_seconds=initial_delay_seconds,
                timeout_seconds=timeout_seconds,
                success_threshold=success_threshold,
                failure_threshold=failure_threshold,
                namespace=namespace,
                token_auth_enabled=token_auth_enabled,
                compute_target_name=compute_target_name,
                cpu_cores_limit=cpu_cores_limit,
                memory_gb_limit=memory_gb_limit,
                version_name=version_name,
                traffic_percentile=traffic_percentile,
            ),
            rollout,
        )

    # -- versions --------------------------------------------------------------------------------

    def _after_deploy(self, deployment_config: WebserviceDeploymentConfiguration) -> None:
        name = getattr(deployment_config, "version_name", None)
        if name and self.latest_revision is not None:
            # Named once the first revision serves (wait_for_deployment).
            self._pending_names = {str(self.latest_revision): name}
            self._default_name = name
            percentile = getattr(deployment_config, "traffic_percentile", None)
            self._percentiles[name] = 100 if percentile is None else int(percentile)

    def wait_for_deployment(self, show_output: bool = False, timeout_sec: Optional[float] = None) -> None:
        """Waits like :meth:`Webservice.wait_for_deployment`; after the first deployment it names
        the first version (``version_name``) and waits for that too."""
        super().wait_for_deployment(show_output, timeout_sec)
        if self._pending_names:
            names, self._pending_names = self._pending_names, {}
            self.set_traffic({int(rev): 100 for rev in names}, names)
            super().wait_for_deployment(show_output, timeout_sec)

    @property
    def versions(self) -> Dict[str, AksEndpointVersion]:
        """Version name → :class:`AksEndpointVersion`, from the service's traffic split."""
        return {v.name: v for v in self._versions()}

    def _versions(self) -> Sequence[AksEndpointVersion]:
        shares = list(self.traffic)
        if not shares and self.serving_revision is not None:
            shares = [{"revision": self.serving_revision, "weight": 100, "role": "stable"}]
        default = self._default_revision(shares)
        out = []
        for share in shares:
            revision = int(share["revision"])
            name = str(share.get("name") or f"{self.name}-{revision}")
            out.append(
                AksEndpointVersion(
                    name=name,
                    revision=revision,
                    traffic_percentile=int(share.get("weight", 0)),
                    is_default=revision == default,
                    is_control_version_type=self._control.get(name, revision == default),
                    state=self.state,
                )
            )
        return out

    def _default_revision(self, shares: Sequence[Dict[str, Any]]) -> Optional[int]:
        if self._default_name:
            for share in shares:
                if share.get("name") == self._default_name:
                    return int(share["revision"])
        for share in shares:
            if share.get("role") == "stable":
                return int(share["revision"])
        return self.serving_revision

    def _planned(self, current: Sequence[AksEndpointVersion]) -> List[Tuple[str, int, int]]:
        """``(name, revision, configured percentile)`` of each version."""
        return [(v.name, v.revision, self._percentiles.get(v.name, v.traffic_percentile)) for v in current]

    def _find(self, version_name: str) -> AksEndpointVersion:
        versions = self.versions
        if version_name not in versions:
            known = ", ".join(sorted(versions)) or "none"
            raise WebserviceException(
                f"Error, the endpoint {self.name} has no version {version_name!r} (versions: {known})."
            )
        return versions[version_name]

    @staticmethod
    def split(
        versions: Sequence[Tuple[str, int, int]], default: str
    ) -> Dict[int, int]:
        """Revision → weight for ``(name, revision, traffic_percentile)`` versions: each serves its
        percentile and ``default`` takes the rest.

        :raises WebserviceException: The other versions ask for more than 100 %.
        """
        others = [(name, rev, pct) for name, rev, pct in versions if name != default]
        taken = sum(pct for _, _, pct in others)
        if taken > 100:
            listed = ", ".join(f"{name}: {pct}" for name, _, pct in others)
            raise WebserviceException(
                f"Error, the versions other than the default ({default}) ask for {taken}% of the traffic "
                f"({listed}): lower their traffic_percentile so they add up to at most 100."
            )
        weights = {rev: pct for _, rev, pct in others}
        for name, rev, _ in versions:
            if name == default:
                weights[rev] = 100 - taken
        return weights

    def _apply_split(self, versions: Sequence[Tuple[str, int, int]], default: str) -> None:
        weights = self.split(versions, default)
        names = {rev: name for name, rev, _ in versions}
        self._default_name = default
        self.set_traffic(weights, names)

    def _submit_update(self, body: Dict[str, Any]) -> None:
        if self._stage_next:
            self._staged = self._stage(body)
        else:
            super()._submit_update(body)

    def _stage_version(self, **settings: Any) -> int:
        """Stages a revision with ``settings`` (``AksWebservice.update``'s keywords); its number."""
        self._stage_next, self._staged = True, None
        try:
            AksWebservice.update(self, **settings)
        finally:
            self._stage_next = False
        staged: Dict[str, Any] = self._staged or {}
        if "revision" not in staged:
            raise WebserviceException(f"Error, staging a revision of {self.name} returned no revision: {staged!r}.")
        return int(staged["revision"])

    def create_version(
        self,
        version_name: str,
        autoscale_enabled: Optional[bool] = None,
        autoscale_min_replicas: Optional[int] = None,
        autoscale_max_replicas: Optional[int] = None,
        autoscale_refresh_seconds: Optional[int] = None,
        autoscale_target_utilization: Optional[int] = None,
        collect_model_data: Optional[bool] = None,
        cpu_cores: Optional[float] = None,
        memory_gb: Optional[float] = None,
        scoring_timeout_ms: Optional[int] = None,
        replica_max_concurrent_requests: Optional[int] = None,
        max_request_wait_time: Optional[int] = None,
        num_replicas: Optional[int] = None,
        tags: Optional[Dict[str, str]] = None,
        properties: Optional[Dict[str, str]] = None,
        description: Optional[str] = None,
        models: Optional[Sequence[Union[Model, str]]] = None,
        inference_config: Optional[InferenceConfig] = None,
        gpu_cores: Optional[int] = None,
        period_seconds: Optional[int] = None,
        initial_delay_seconds: Optional[int] = None,
        timeout_seconds: Optional[int] = None,
        success_threshold: Optional[int] = None,
        failure_threshold: Optional[int] = None,
        traffic_percentile: Optional[int] = None,
        is_default: Optional[bool] = None,
        is_control_version_type: Optional[bool] = None,
        cpu_cores_limit: Optional[float] = None,
        memory_gb_limit: Optional[float] = None,
    ) -> None:
        """Adds a version: a new revision (the serving one with these changes) that serves
        ``traffic_percentile`` % (or, with ``is_default``, what the others leave). Asynchronous:
        call :meth:`wait_for_deployment`.

        :raises WebserviceException: A taken or invalid name, percentiles over 100, a bad setting,
            or the server's refusal.
        """
        name = _check_version_name(version_name)
        percentile = _check_percentile(traffic_percentile)
        current = self._versions()
        if any(v.name == name for v in current):
            raise WebserviceException(
                f"Error, the endpoint {self.name} already has a version {name!r}: pick another name or "
                "use update_version()."
            )
        settings_given = any(
            v is not None
            for v in (autoscale_enabled, autoscale_min_replicas, autoscale_max_replicas, autoscale_refresh_seconds,
                      autoscale_target_utilization, collect_model_data, cpu_cores, memory_gb, scoring_timeout_ms,
                      replica_max_concurrent_requests, max_request_wait_time, num_replicas, tags, properties,
                      description, models, inference_config, gpu_cores, period_seconds, initial_delay_seconds,
                      timeout_seconds, success_threshold, failure_threshold, cpu_cores_limit, memory_gb_limit)
        )
        if not settings_given:
            raise WebserviceException(
                "Error, create_version needs what the new version runs: models and inference_config, or at least "
                "one setting (num_replicas, cpu_cores, ...)."
            )
        default = name if is_default else self._default_name_of(current)
        planned = self._planned(current)
        # Check the split before writing anything.
        self.split(planned + [(name, 0, percentile or 0)], default)
        revision = self._stage_version(
            autoscale_enabled=autoscale_enabled,
            autoscale_min_replicas=autoscale_min_replicas,
            autoscale_max_replicas=autoscale_max_replicas,
            autoscale_refresh_seconds=autoscale_refresh_seconds,
            autoscale_target_utilization=autoscale_target_utilization,
            collect_model_data=collect_model_data,
            cpu_cores=cpu_cores,
            memory_gb=memory_gb,
            scoring_timeout_ms=scoring_timeout_ms,
            replica_max_concurrent_requests=replica_max_concurrent_requests,
            max_request_wait_time=max_request_wait_time,
            num_replicas=num_replicas,
            tags=tags,
            properties=properties,
            description=description,
            models=models,
            inference_config=inference_config,
            gpu_cores=gpu_cores,
            period_seconds=period_seconds,
            initial_delay_seconds=initial_delay_seconds,
            timeout_seconds=timeout_seconds,
            success_threshold=success_threshold,
            failure_threshold=failure_threshold,
            cpu_cores_limit=cpu_cores_limit,
            memory_gb_limit=memory_gb_limit,
        )
        if is_control_version_type is not None:
            self._control[name] = bool(is_control_version_type)
        self._percentiles[name] = percentile or 0
        self._apply_split(planned + [(name, revision, percentile or 0)], default)

    def _default_name_of(self, current: Sequence[AksEndpointVersion]) -> str:
        for v in current:
            if v.is_default:
                return v.name
        if current:
            return current[0].name
        raise WebserviceException(f"Error, the endpoint {self.name} serves no version yet: wait_for_deployment() first.")

    def update_version(
        self,
        version_name: str,
        autoscale_enabled: Optional[bool] = None,
        autoscale_min_replicas: Optional[int] = None,
        autoscale_max_replicas: Optional[int] = None,
        autoscale_refresh_seconds: Optional[int] = None,
        autoscale_target_utilization: Optional[int] = None,
        collect_model_data: Optional[bool] = None,
        cpu_cores: Optional[float] = None,
        memory_gb: Optional[float] = None,
        scoring_timeout_ms: Optional[int] = None,
        replica_max_concurrent_requests: Optional[int] = None,
        max_request_wait_time: Optional[int] = None,
        num_replicas: Optional[int] = None,
        tags: Optional[Dict[str, str]] = None,
        properties: Optional[Dict[str, str]] = None,
        description: Optional[str] = None,
        models: Optional[Sequence[Union[Model, str]]] = None,
        inference_config: Optional[InferenceConfig] = None,
        gpu_cores: Optional[int] = None,
        period_seconds: Optional[int] = None,
        initial_delay_seconds: Optional[int] = None,
        timeout_seconds: Optional[int] = None,
        success_threshold: Optional[int] = None,
        failure_threshold: Optional[int] = None,
        traffic_percentile: Optional[int] = None,
        is_default: Optional[bool] = None,
        is_control_version_type: Optional[bool] = None,
        cpu_cores_limit: Optional[float] = None,
        memory_gb_limit: Optional[float] = None,
    ) -> None:
        """Changes a version's share, default flag or settings; ``None`` leaves a value unchanged.
        New settings stage a new revision (the serving one with the changes) that takes the
        version's place. Asynchronous: call :meth:`wait_for_deployment`.

        :raises WebserviceException: An unknown version, percentiles over 100, or the server's refusal.
        """
        target = self._find(version_name)
        percentile = _check_percentile(traffic_percentile)
        current = self._versions()
        default = self._default_name_of(current)
        if is_default:
            default = target.name
        elif is_default is False and default == target.name:
            raise WebserviceException(
                f"Error, {target.name} is the default version: make another version the default "
                "(update_version(other, is_default=True)) instead."
            )
        planned = [
            (n, r, percentile if n == target.name and percentile is not None else p)
            for n, r, p in self._planned(current)
        ]
        self.split(planned, default)
        settings = {
            "autoscale_enabled": autoscale_enabled,
            "autoscale_min_replicas": autoscale_min_replicas,
            "autoscale_max_replicas": autoscale_max_replicas,
            "autoscale_refresh_seconds": autoscale_refresh_seconds,
            "autoscale_target_utilization": autoscale_target_utilization,
            "collect_model_data": collect_model_data,
            "cpu_cores": cpu_cores,
            "memory_gb": memory_gb,
            "scoring_timeout_ms": scoring_timeout_ms,
            "replica_max_concurrent_requests": replica_max_concurrent_requests,
            "max_request_wait_time": max_request_wait_time,
            "num_replicas": num_replicas,
            "tags": tags,
            "properties": properties,
            "description": description,
            "models": models,
            "inference_config": inference_config,
            "gpu_cores": gpu_cores,
            "period_seconds": period_seconds,
            "initial_delay_seconds": initial_delay_seconds,
            "timeout_seconds": timeout_seconds,
            "success_threshold": success_threshold,
            "failure_threshold": failure_threshold,
            "cpu_cores_limit": cpu_cores_limit,
            "memory_gb_limit": memory_gb_limit,
        }
        if any(v is not None for v in settings.values()):
            revision = self._stage_version(**settings)
            planned = [(n, revision if n == target.name else r, p) for n, r, p in planned]
        if is_control_version_type is not None:
            self._control[target.name] = bool(is_control_version_type)
        if percentile is not None:
            self._percentiles[target.name] = percentile
        self._apply_split(planned, default)

    def delete_version(self, version_name: str) -> None:
        """Stops serving a version; its share goes to the default version. Asynchronous: call
        :meth:`wait_for_deployment`.

        :raises WebserviceException: An unknown version, the default version (make another the
            default first), or the only version (delete the endpoint instead).
        """
        target = self._find(version_name)
        current = self._versions()
        if len(current) == 1:
            raise WebserviceException(
                f"Error, {target.name} is the only version of {self.name}: delete the endpoint with delete() instead."
            )
        default = self._default_name_of(current)
        if target.name == default:
            raise WebserviceException(
                f"Error, {target.name} is the default version: make another version the default "
                "(update_version(other, is_default=True)) before deleting it."
            )
        self._control.pop(target.name, None)
        self._percentiles.pop(target.name, None)
        self._apply_split([p for p in self._planned(current) if p[0] != target.name], default)

    def serialize(self) -> Dict[str, Any]:
        """The endpoint as a dict: the AKS keys plus its versions."""
        out = super().serialize()
        out["versions"] = {
            v.name: {
                "revision": v.revision,
                "trafficPercentile": v.traffic_percentile,
                "isDefault": v.is_default,
                "versionType": v.version_type,
            }
            for v in self._versions()
        }
        return out
