"""AKS-style services, like ``azureml.core.webservice.aks``: replicas or autoscaling, resources,
key or token auth, timeouts, queue limits, probes. On Berth they run on the server's compute target."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Union

from ...exceptions import WebserviceException
from ..model import InferenceConfig, Model
from .rollout import Rollout, rollout_block, with_rollout
from .webservice import (
    NAMESPACE_REGEX,
    AutoScaler,
    ContainerResourceRequirements,
    DataCollection,
    LivenessProbeRequirements,
    Webservice,
    WebserviceAccessToken,
    WebserviceDeploymentConfiguration,
    _nested,
    _set,
)

__all__ = [
    "AksWebservice",
    "AksServiceDeploymentConfiguration",
    "AutoScaler",
    "ContainerResourceRequirements",
    "DataCollection",
    "LivenessProbeRequirements",
    "WebserviceAccessToken",
]

_POSITIVE = (
    "cpu_cores",
    "memory_gb",
    "scoring_timeout_ms",
    "replica_max_concurrent_requests",
    "max_request_wait_time",
    "num_replicas",
    "period_seconds",
    "initial_delay_seconds",
    "timeout_seconds",
    "success_threshold",
    "failure_threshold",
)


class AksServiceDeploymentConfiguration(WebserviceDeploymentConfiguration):
    """The deployment configuration of an AKS-style service; build it with
    :meth:`AksWebservice.deploy_configuration`. Anything left ``None`` gets the server's default."""

    _webservice_type = "AKS"
    _compute_type = "AKS"

    def __init__(
        self,
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
        compute_target_name: Optional[str] = None,
        cpu_cores_limit: Optional[float] = None,
        memory_gb_limit: Optional[float] = None,
        blobfuse_enabled: Optional[bool] = None,
    ) -> None:
        super().__init__(AksWebservice, description, tags, properties, primary_key, secondary_key)
        self.autoscale_enabled = autoscale_enabled
        self.autoscale_min_replicas = autoscale_min_replicas
        self.autoscale_max_replicas = autoscale_max_replicas
        self.autoscale_refresh_seconds = autoscale_refresh_seconds
        self.autoscale_target_utilization = autoscale_target_utilization
        self.collect_model_data = collect_model_data
        self.auth_enabled = auth_enabled
        self.cpu_cores = cpu_cores
        self.memory_gb = memory_gb
        self.gpu_cores = gpu_cores
        self.enable_app_insights = enable_app_insights
        self.scoring_timeout_ms = scoring_timeout_ms
        self.replica_max_concurrent_requests = replica_max_concurrent_requests
        self.max_request_wait_time = max_request_wait_time
        self.num_replicas = num_replicas
        self.period_seconds = period_seconds
        self.initial_delay_seconds = initial_delay_seconds
        self.timeout_seconds = timeout_seconds
        self.success_threshold = success_threshold
        self.failure_threshold = failure_threshold
        self.namespace = namespace
        self.token_auth_enabled = token_auth_enabled
        self.compute_target_name = compute_target_name
        self.cpu_cores_limit = cpu_cores_limit
        self.memory_gb_limit = memory_gb_limit
        self.blobfuse_enabled = blobfuse_enabled
        self.validate_configuration()

    def validate_configuration(self) -> None:
        """Raises ``WebserviceException`` with one ``Invalid configuration, ...`` line per problem."""
        error = ""
        for name in _POSITIVE:
            value = getattr(self, name)
            if value is not None and value <= 0:
                error += f"Invalid configuration, {name} must be greater than zero.\n"
        for name in ("cpu_cores_limit", "memory_gb_limit"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                error += f"Invalid configuration, {name} must be greater than zero.\n"
        if self.cpu_cores and self.cpu_cores_limit and self.cpu_cores_limit < self.cpu_cores:
            error += "Invalid configuration, cpu_cores_limit must be greater than or equal to cpu_cores.\n"
        if self.memory_gb and self.memory_gb_limit and self.memory_gb_limit < self.memory_gb:
            error += "Invalid configuration, memory_gb_limit must be greater than or equal to memory_gb.\n"
        if self.gpu_cores is not None and self.gpu_cores < 0:
            error += "Invalid configuration, gpu_cores must be greater than or equal to zero.\n"
        if self.namespace and not re.match(NAMESPACE_REGEX, self.namespace):
            error += (
                "Invalid configuration, namespace must be a valid Kubernetes namespace. "
                f"Regex for validation is {NAMESPACE_REGEX}\n"
            )
        if self.autoscale_enabled:
            if self.num_replicas:
                error += "Invalid configuration, autoscale enabled and num_replicas provided.\n"
            for name in (
                "autoscale_min_replicas",
                "autoscale_max_replicas",
                "autoscale_refresh_seconds",
                "autoscale_target_utilization",
            ):
                value = getattr(self, name)
                if value is not None and value <= 0:
                    error += f"Invalid configuration, {name} must be greater than zero.\n"
            if (
                self.autoscale_min_replicas
                and self.autoscale_max_replicas
                and self.autoscale_min_replicas > self.autoscale_max_replicas
            ):
                error += "Invalid configuration, autoscale_min_replicas cannot be greater than autoscale_max_replicas.\n"
            if self.autoscale_target_utilization is not None and self.autoscale_target_utilization > 100:
                error += "Invalid configuration, autoscale_target_utilization is a percentage from 1 to 100.\n"
        else:
            if self.autoscale_enabled is False and not self.num_replicas:
                error += "Invalid configuration, autoscale disabled but num_replicas not provided.\n"
            for name in (
                "autoscale_min_replicas",
                "autoscale_max_replicas",
                "autoscale_refresh_seconds",
                "autoscale_target_utilization",
            ):
                if getattr(self, name):
                    error += f"Invalid configuration, {name} provided without enabling autoscaling.\n"
        if self.token_auth_enabled and self.auth_enabled:
            error += "Invalid configuration, auth_enabled and token_auth_enabled cannot both be true.\n"
        if error:
            raise WebserviceException(error)

    def _deployment_config(self) -> Dict[str, Any]:
        config: Dict[str, Any] = {"computeType": "aks"}
        _nested(
            config,
            "autoScaler",
            [
                ("autoscaleEnabled", self.autoscale_enabled),
                ("minReplicas", self.autoscale_min_replicas),
                ("maxReplicas", self.autoscale_max_replicas),
                ("refreshPeriodInSeconds", self.autoscale_refresh_seconds),
                ("targetUtilization", self.autoscale_target_utilization),
            ],
        )
        _nested(config, "dataCollection", [("storageEnabled", self.collect_model_data)])
        _set(config, "authEnabled", self.auth_enabled)
        _set(config, "tokenAuthEnabled", self.token_auth_enabled)
        _nested(
            config,
            "containerResourceRequirements",
            [
                ("cpu", self.cpu_cores),
                ("memoryInGB", self.memory_gb),
                ("cpuLimit", self.cpu_cores_limit),
                ("memoryInGBLimit", self.memory_gb_limit),
            ],
        )
        _set(config, "gpuCores", self.gpu_cores)
        _set(config, "appInsightsEnabled", self.enable_app_insights)
        _set(config, "scoringTimeoutMs", self.scoring_timeout_ms)
        _set(config, "maxConcurrentRequestsPerContainer", self.replica_max_concurrent_requests)
        _set(config, "maxQueueWaitMs", self.max_request_wait_time)
        _set(config, "numReplicas", self.num_replicas)
        _nested(
            config,
            "livenessProbeRequirements",
            [
                ("periodSeconds", self.period_seconds),
                ("initialDelaySeconds", self.initial_delay_seconds),
                ("timeoutSeconds", self.timeout_seconds),
                ("successThreshold", self.success_threshold),
                ("failureThreshold", self.failure_threshold),
            ],
        )
        _set(config, "namespace", self.namespace)
        _set(config, "computeTargetName", self.compute_target_name)
        _set(config, "keys", self._keys())
        return config


class AksWebservice(Webservice):
    """A service deployed with an AKS deployment configuration."""

    _webservice_type = "AKS"
    _compute_type = "AKS"

    @staticmethod
    def deploy_configuration(
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
        compute_target_name: Optional[str] = None,
        cpu_cores_limit: Optional[float] = None,
        memory_gb_limit: Optional[float] = None,
        blobfuse_enabled: Optional[bool] = None,
        *,
        rollout: Optional[Rollout] = None,
    ) -> AksServiceDeploymentConfiguration:
        """An AKS deployment configuration; ``None`` means the default: autoscaling (1..10 replicas,
        70% target, 1 s refresh) unless ``num_replicas`` is given, key auth on, 0.1 CPU, 0.5 GB,
        60 s scoring timeout, 1 concurrent request per replica, 500 ms queue wait, liveness probe
        10 s period / 310 s initial delay / 2 s timeout / 1 success / 3 failures.

        :param rollout: Berth: how traffic moves to later revisions (:class:`Rollout`).
        :raises WebserviceException: ``Invalid configuration, ...`` (every problem, one per line).
        """
        return with_rollout(AksServiceDeploymentConfiguration(
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
            blobfuse_enabled=blobfuse_enabled,
        ), rollout)

    def _validate_update(
        self,
        image: Any,
        autoscale_enabled: Optional[bool],
        autoscale_min_replicas: Optional[int],
        autoscale_max_replicas: Optional[int],
        autoscale_refresh_seconds: Optional[int],
        autoscale_target_utilization: Optional[int],
        auth_enabled: Optional[bool],
        cpu_cores: Optional[float],
        memory_gb: Optional[float],
        scoring_timeout_ms: Optional[int],
        replica_max_concurrent_requests: Optional[int],
        max_request_wait_time: Optional[int],
        num_replicas: Optional[int],
        models: Optional[Sequence[Union[Model, str]]],
        inference_config: Optional[InferenceConfig],
        gpu_cores: Optional[int],
        period_seconds: Optional[int],
        initial_delay_seconds: Optional[int],
        timeout_seconds: Optional[int],
        success_threshold: Optional[int],
        failure_threshold: Optional[int],
        namespace: Optional[str],
        token_auth_enabled: Optional[bool],
        cpu_cores_limit: Optional[float],
        memory_gb_limit: Optional[float],
    ) -> None:
        errors: List[str] = self._check_models_update(models, inference_config, image)
        current = self.container_resource_requirements
        positive = {
            "scoring_timeout_ms": scoring_timeout_ms,
            "replica_max_concurrent_requests": replica_max_concurrent_requests,
            "max_request_wait_time": max_request_wait_time,
            "num_replicas": num_replicas,
            "period_seconds": period_seconds,
            "initial_delay_seconds": initial_delay_seconds,
            "timeout_seconds": timeout_seconds,
            "success_threshold": success_threshold,
            "failure_threshold": failure_threshold,
        }
        for label, request, limit, current_request, current_limit in (
            ("cpu_cores", cpu_cores, cpu_cores_limit, current.cpu, current.cpu_limit),
            ("memory_gb", memory_gb, memory_gb_limit, current.memory_in_gb, current.memory_in_gb_limit),
        ):
            if request is not None and request <= 0:
                errors.append(f"Error, {label} must be greater than zero.")
            if limit is not None and limit <= 0:
                errors.append(f"Error, {label}_limit must be greater than zero.")
            if request is not None and request > 0:
                if limit is not None and limit > 0 and limit < request:
                    errors.append(f"Error, {label}_limit must be greater than or equal to {label}.")
                elif limit is None and current_limit is not None and request > current_limit:
                    errors.append(
                        f"Error, {label} must be less than or equal to the current {label}_limit ({current_limit})."
                    )
            elif limit is not None and limit > 0 and request is None and current_request is not None:
                if limit < current_request:
                    errors.append(
                        f"Error, {label}_limit must be greater than or equal to the current {label} ({current_request})."
                    )
        if gpu_cores is not None and gpu_cores < 0:
            errors.append("Error, gpu_cores must be greater than or equal to zero.")
        for label, value in positive.items():
            if value is not None and value <= 0:
                errors.append(f"Error, {label} must be greater than zero.")
        if namespace and not re.match(NAMESPACE_REGEX, namespace):
            errors.append(f"Error, namespace must be a valid Kubernetes namespace. Regex for validation is {NAMESPACE_REGEX}")
        bounds = {
            "autoscale_min_replicas": autoscale_min_replicas,
            "autoscale_max_replicas": autoscale_max_replicas,
            "autoscale_refresh_seconds": autoscale_refresh_seconds,
            "autoscale_target_utilization": autoscale_target_utilization,
        }
        if autoscale_enabled:
            if num_replicas:
                errors.append("Error, autoscale enabled and num_replicas provided.")
            for label, value in bounds.items():
                if value is not None and value <= 0:
                    errors.append(f"Error, {label} must be greater than zero.")
            if autoscale_min_replicas and autoscale_max_replicas and autoscale_min_replicas > autoscale_max_replicas:
                errors.append("Error, autoscale_min_replicas cannot be greater than autoscale_max_replicas.")
        else:
            if autoscale_enabled is False and not num_replicas:
                errors.append("Error, autoscale disabled but num_replicas not provided.")
            for label, value in bounds.items():
                if value:
                    errors.append(f"Error, {label} provided without enabling autoscaling.")
        if token_auth_enabled and auth_enabled:
            errors.append("Error, cannot set both token_auth_enabled and auth_enabled.")
        elif token_auth_enabled and self.auth_enabled and auth_enabled is not False:
            errors.append("Error, cannot set token_auth_enabled without disabling key auth (set auth_enabled to False).")
        elif auth_enabled and self.token_auth_enabled and token_auth_enabled is not False:
            errors.append(
                "Error, cannot set auth_enabled without disabling token auth (set token_auth_enabled to False)."
            )
        if errors:
            raise WebserviceException("\n".join(errors) + "\n")

    def update(
        self,
        image: Any = None,
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
        namespace: Optional[str] = None,
        token_auth_enabled: Optional[bool] = None,
        cpu_cores_limit: Optional[float] = None,
        memory_gb_limit: Optional[float] = None,
        *,
        rollout: Optional[Rollout] = None,
        **kwargs: Any,
    ) -> None:
        """Changes the service in place; ``None`` leaves a setting unchanged.

        Settings such as tags, auth, timeouts, queue limits, replicas and autoscaling apply without
        restarting replicas; models, inference config, resources and probes roll out new replicas
        while the current revision keeps serving. Asynchronous: call :meth:`wait_for_deployment`.

        :param tags: Replaces all tags.
        :param properties: Added (existing keys cannot change).
        :param models: Replaces the models (needs ``inference_config`` unless it is one no-code model).
        :param inference_config: New entry script / source directory / environment.
        :param rollout: Berth: how traffic moves to this and later revisions (:class:`Rollout`);
            changing only the rollout is a live change.
        :raises WebserviceException: "No parameters provided to update."; every validation problem
            as ``Error, ...`` lines; or the server's refusal (409 while another operation runs).
        """
        unexpected = sorted(set(kwargs) - {"is_migration", "compute_target"})
        if unexpected:
            raise TypeError(f"update() got an unexpected keyword argument '{unexpected[0]}'")
        if kwargs.get("is_migration"):
            raise WebserviceException("Error, service migration is not supported by Berth.")
        if (
            image is None
            and autoscale_enabled is None
            and not autoscale_min_replicas
            and not autoscale_max_replicas
            and not autoscale_refresh_seconds
            and not autoscale_target_utilization
            and collect_model_data is None
            and auth_enabled is None
            and not cpu_cores
            and not memory_gb
            and not gpu_cores
            and enable_app_insights is None
            and not scoring_timeout_ms
            and not replica_max_concurrent_requests
            and not max_request_wait_time
            and not num_replicas
            and tags is None
            and properties is None
            and not description
            and not period_seconds
            and not initial_delay_seconds
            and not timeout_seconds
            and models is None
            and inference_config is None
            and not failure_threshold
            and not success_threshold
            and not namespace
            and token_auth_enabled is None
            and not cpu_cores_limit
            and not memory_gb_limit
            and rollout is None
        ):
            raise WebserviceException("No parameters provided to update.")
        self._validate_update(
            image,
            autoscale_enabled,
            autoscale_min_replicas,
            autoscale_max_replicas,
            autoscale_refresh_seconds,
            autoscale_target_utilization,
            auth_enabled,
            cpu_cores,
            memory_gb,
            scoring_timeout_ms,
            replica_max_concurrent_requests,
            max_request_wait_time,
            num_replicas,
            models,
            inference_config,
            gpu_cores,
            period_seconds,
            initial_delay_seconds,
            timeout_seconds,
            success_threshold,
            failure_threshold,
            namespace,
            token_auth_enabled,
            cpu_cores_limit,
            memory_gb_limit,
        )
        body: Dict[str, Any] = {}
        _nested(
            body,
            "autoScaler",
            [
                ("autoscaleEnabled", autoscale_enabled),
                ("minReplicas", autoscale_min_replicas),
                ("maxReplicas", autoscale_max_replicas),
                ("refreshPeriodInSeconds", autoscale_refresh_seconds),
                ("targetUtilization", autoscale_target_utilization),
            ],
        )
        _nested(body, "dataCollection", [("storageEnabled", collect_model_data)])
        _set(body, "authEnabled", auth_enabled)
        _set(body, "tokenAuthEnabled", token_auth_enabled)
        _nested(
            body,
            "containerResourceRequirements",
            [
                ("cpu", cpu_cores),
                ("cpuLimit", cpu_cores_limit),
                ("memoryInGB", memory_gb),
                ("memoryInGBLimit", memory_gb_limit),
            ],
        )
        _set(body, "gpuCores", gpu_cores)
        _set(body, "appInsightsEnabled", enable_app_insights)
        _set(body, "scoringTimeoutMs", scoring_timeout_ms)
        _set(body, "maxConcurrentRequestsPerContainer", replica_max_concurrent_requests)
        _set(body, "maxQueueWaitMs", max_request_wait_time)
        _set(body, "numReplicas", num_replicas)
        _nested(
            body,
            "livenessProbeRequirements",
            [
                ("periodSeconds", period_seconds),
                ("initialDelaySeconds", initial_delay_seconds),
                ("timeoutSeconds", timeout_seconds),
                ("successThreshold", success_threshold),
                ("failureThreshold", failure_threshold),
            ],
        )
        _set(body, "namespace", namespace)
        if tags is not None:
            body["tags"] = dict(tags)
        if properties is not None:
            body["properties"] = dict(properties)
        if description:
            body["description"] = description
        body.update(self._inference_body(models, inference_config))
        if rollout is not None:
            body["rollout"] = rollout_block(rollout)
        self._submit_update(body)
        if inference_config is not None:
            self._inference_config = inference_config

    def _submit_update(self, body: Dict[str, Any]) -> None:
        """Sends an update body (``AksEndpoint`` stages versions with it instead)."""
        self._patch(body)

    def serialize(self) -> Dict[str, Any]:
        """The service as a dict: the reference's AKS keys plus Berth's."""
        out = self._base_serialize()
        out.update(
            {
                "appInsightsEnabled": self.app_insights_enabled,
                "authEnabled": self.auth_enabled,
                "autoScaler": self.autoscaler.serialize(),
                "computeName": None,
                "containerResourceRequirements": self.container_resource_requirements.serialize(),
                "dataCollection": self.data_collection.serialize(),
                "maxConcurrentRequestsPerContainer": self.max_concurrent_requests_per_container,
                "maxQueueWaitMs": self.max_request_wait_time,
                "livenessProbeRequirements": self.liveness_probe_requirements.serialize(),
                "numReplicas": self.num_replicas,
                "deploymentStatus": dict(self.deployment_status),
                "scoringTimeoutMs": self.scoring_timeout_ms,
                "aadAuthEnabled": self.token_auth_enabled,
                "environmentDetails": self.environment_id,
                "modelDetails": list(self.model_ids),
                "isDefault": None,
                "trafficPercentile": None,
                "versionType": None,
                "namespace": self.namespace,
            }
        )
        out.update(self._berth_serialize())
        return out
