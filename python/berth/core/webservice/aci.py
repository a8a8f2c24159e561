"""ACI-style services, like ``azureml.core.webservice.aci``: one replica, key auth off by default.
On Berth they run on the server's compute target; cloud-only settings (location, DNS label, SSL,
customer-managed keys, VNet) are accepted and reported by the server as not used."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

from ...exceptions import WebserviceException
from ..model import InferenceConfig, Model
from .rollout import Rollout, rollout_block, with_rollout
from .webservice import (
    Webservice,
    WebserviceAccessToken,
    WebserviceDeploymentConfiguration,
    _nested,
    _set,
)

__all__ = ["AciWebservice", "AciServiceDeploymentConfiguration"]


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise WebserviceException(f"Error while reading ssl information:\n{e}") from e


class AciServiceDeploymentConfiguration(WebserviceDeploymentConfiguration):
    """The deployment configuration of an ACI-style service; build it with
    :meth:`AciWebservice.deploy_configuration`."""

    _webservice_type = "ACI"
    _compute_type = "ACI"

    def __init__(
        self,
        cpu_cores: Optional[float] = None,
        memory_gb: Optional[float] = None,
        tags: Optional[Dict[str, str]] = None,
        properties: Optional[Dict[str, str]] = None,
        description: Optional[str] = None,
        location: Optional[str] = None,
        auth_enabled: Optional[bool] = None,
        ssl_enabled: Optional[bool] = None,
        enable_app_insights: Optional[bool] = None,
        ssl_cert_pem_file: Optional[str] = None,
        ssl_key_pem_file: Optional[str] = None,
        ssl_cname: Optional[str] = None,
        dns_name_label: Optional[str] = None,
        primary_key: Optional[str] = None,
        secondary_key: Optional[str] = None,
        collect_model_data: Optional[bool] = None,
        cmk_vault_base_url: Optional[str] = None,
        cmk_key_name: Optional[str] = None,
        cmk_key_version: Optional[str] = None,
        vnet_name: Optional[str] = None,
        subnet_name: Optional[str] = None,
    ) -> None:
        super().__init__(AciWebservice, description, tags, properties, primary_key, secondary_key, location)
        self.cpu_cores = cpu_cores
        self.memory_gb = memory_gb
        self.auth_enabled = auth_enabled
        self.ssl_enabled = ssl_enabled
        self.enable_app_insights = enable_app_insights
        self.ssl_cert_pem_file = ssl_cert_pem_file
        self.ssl_key_pem_file = ssl_key_pem_file
        self.ssl_cname = ssl_cname
        self.dns_name_label = dns_name_label
        self.collect_model_data = collect_model_data
        self.cmk_vault_base_url = cmk_vault_base_url
        self.cmk_key_name = cmk_key_name
        self.cmk_key_version = cmk_key_version
        self.vnet_name = vnet_name
        self.subnet_name = subnet_name
        self.validate_configuration()

    def validate_configuration(self) -> None:
        """Raises ``WebserviceException`` with every ``Invalid configuration, ...`` problem."""
        errors: List[str] = []
        if self.cpu_cores is not None and self.cpu_cores <= 0:
            errors.append("Invalid configuration, cpu_cores must be positive.")
        if self.memory_gb is not None and self.memory_gb <= 0:
            errors.append("Invalid configuration, memory_gb must be positive.")
        if self.ssl_enabled:
            if not self.ssl_cert_pem_file or not self.ssl_key_pem_file or not self.ssl_cname:
                errors.append(
                    "Invalid configuration, SSL is enabled: you must provide ssl_cert_pem_file, ssl_key_pem_file "
                    "and ssl_cname."
                )
            for label, path in (("ssl_cert_pem_file", self.ssl_cert_pem_file), ("ssl_key_pem_file", self.ssl_key_pem_file)):
                if path and not os.path.exists(path):
                    errors.append(f"Invalid configuration, unable to find {label} at provided path: {path}")
        cmk = [self.cmk_vault_base_url, self.cmk_key_name, self.cmk_key_version]
        if any(cmk) and not all(cmk):
            errors.append(
                "Invalid configuration, customer managed key cmk_vault_base_url, cmk_key_name and cmk_key_version "
                "must all have values."
            )
        if bool(self.vnet_name) != bool(self.subnet_name):
            errors.append("Invalid configuration, vnet_name and subnet_name must all have values.")
        if errors:
            raise WebserviceException("\n".join(errors) + "\n")

    def _deployment_config(self) -> Dict[str, Any]:
        config: Dict[str, Any] = {"computeType": "aci"}
        _nested(config, "containerResourceRequirements", [("cpu", self.cpu_cores), ("memoryInGB", self.memory_gb)])
        _set(config, "location", self.location)
        _set(config, "authEnabled", self.auth_enabled)
        _set(config, "sslEnabled", self.ssl_enabled)
        _set(config, "appInsightsEnabled", self.enable_app_insights)
        if self.ssl_enabled:
            _set(config, "sslCertificate", _read(self.ssl_cert_pem_file) if self.ssl_cert_pem_file else None)
            _set(config, "sslKey", _read(self.ssl_key_pem_file) if self.ssl_key_pem_file else None)
            _set(config, "cname", self.ssl_cname)
        _set(config, "dnsNameLabel", self.dns_name_label)
        _nested(config, "dataCollection", [("storageEnabled", self.collect_model_data)])
        _set(config, "vaultBaseUrl", self.cmk_vault_base_url)
        _set(config, "keyName", self.cmk_key_name)
        _set(config, "keyVersion", self.cmk_key_version)
        _set(config, "vnetName", self.vnet_name)
        _set(config, "subnetName", self.subnet_name)
        _set(config, "keys", self._keys())
        return config


class AciWebservice(Webservice):
    """A service deployed with an ACI deployment configuration (the default of ``Model.deploy``)."""

    _webservice_type = "ACI"
    _compute_type = "ACI"

    def _apply(self, payload: Dict[str, Any]) -> None:
        super()._apply(payload)
        self.ssl_enabled: Optional[bool] = payload.get("sslEnabled")
        self.location: Optional[str] = payload.get("location")
        self.public_ip: Optional[str] = None
        self.public_fqdn: Optional[str] = None
        self.cname: Optional[str] = payload.get("cname")

    @staticmethod
    def deploy_configuration(
        cpu_cores: Optional[float] = None,
        memory_gb: Optional[float] = None,
        tags: Optional[Dict[str, str]] = None,
        properties: Optional[Dict[str, str]] = None,
        description: Optional[str] = None,
        location: Optional[str] = None,
        auth_enabled: Optional[bool] = None,
        ssl_enabled: Optional[bool] = None,
        enable_app_insights: Optional[bool] = None,
        ssl_cert_pem_file: Optional[str] = None,
        ssl_key_pem_file: Optional[str] = None,
        ssl_cname: Optional[str] = None,
        dns_name_label: Optional[str] = None,
        primary_key: Optional[str] = None,
        secondary_key: Optional[str] = None,
        collect_model_data: Optional[bool] = None,
        cmk_vault_base_url: Optional[str] = None,
        cmk_key_name: Optional[str] = None,
        cmk_key_version: Optional[str] = None,
        vnet_name: Optional[str] = None,
        subnet_name: Optional[str] = None,
        *,
        rollout: Optional[Rollout] = None,
    ) -> AciServiceDeploymentConfiguration:
        """An ACI deployment configuration; ``None`` means the default: 0.1 CPU, 0.5 GB, key auth
        off, SSL off, app insights off.

        :param rollout: Berth: how traffic moves to later revisions (:class:`Rollout`).
        :raises WebserviceException: ``Invalid configuration, ...`` (every problem, one per line).
        """
        return with_rollout(AciServiceDeploymentConfiguration(
            cpu_cores=cpu_cores,
            memory_gb=memory_gb,
            tags=tags,
            properties=properties,
            description=description,
            location=location,
            auth_enabled=auth_enabled,
            ssl_enabled=ssl_enabled,
            enable_app_insights=enable_app_insights,
            ssl_cert_pem_file=ssl_cert_pem_file,
            ssl_key_pem_file=ssl_key_pem_file,
            ssl_cname=ssl_cname,
            dns_name_label=dns_name_label,
            primary_key=primary_key,
            secondary_key=secondary_key,
            collect_model_data=collect_model_data,
            cmk_vault_base_url=cmk_vault_base_url,
            cmk_key_name=cmk_key_name,
            cmk_key_version=cmk_key_version,
            vnet_name=vnet_name,
            subnet_name=subnet_name,
        ), rollout)

    def update(
        self,
        image: Any = None,
        tags: Optional[Dict[str, str]] = None,
        properties: Optional[Dict[str, str]] = None,
        description: Optional[str] = None,
        auth_enabled: Optional[bool] = None,
        ssl_enabled: Optional[bool] = None,
        ssl_cert_pem_file: Optional[str] = None,
        ssl_key_pem_file: Optional[str] = None,
        ssl_cname: Optional[str] = None,
        enable_app_insights: Optional[bool] = None,
        models: Optional[Sequence[Union[Model, str]]] = None,
        inference_config: Optional[InferenceConfig] = None,
        *,
        rollout: Optional[Rollout] = None,
    ) -> None:
        """Changes the service in place; ``None`` leaves a setting unchanged (CPU and memory of an
        ACI service cannot be updated, as in the reference). Asynchronous: call
        :meth:`wait_for_deployment`.

        :raises WebserviceException: "No parameters provided to update."; every validation problem
            as ``Error, ...`` lines; or the server's refusal.
        """
        if (
            image is None
            and tags is None
            and properties is None
            and not description
            and auth_enabled is None
            and ssl_enabled is None
            and not ssl_cert_pem_file
            and not ssl_key_pem_file
            and not ssl_cname
            and enable_app_insights is None
            and models is None
            and inference_config is None
            and rollout is None
        ):
            raise WebserviceException("No parameters provided to update.")
        errors = self._check_models_update(models, inference_config, image)
        if (ssl_cert_pem_file or ssl_key_pem_file) and not ssl_enabled and not self.ssl_enabled:
            errors.append("Error, SSL must be enabled in order to update SSL cert/key.")
        for label, path in (("ssl_cert_pem_file", ssl_cert_pem_file), ("ssl_key_pem_file", ssl_key_pem_file)):
            if path and not os.path.exists(path):
                errors.append(f"Error, unable to find {label} at provided path: {path}")
        if errors:
            raise WebserviceException("\n".join(errors) + "\n")
        body: Dict[str, Any] = {}
        if tags is not None:
            body["tags"] = dict(tags)
        if properties is not None:
            body["properties"] = dict(properties)
        if description:
            body["description"] = description
        _set(body, "authEnabled", auth_enabled)
        _set(body, "sslEnabled", ssl_enabled)
        if ssl_cert_pem_file:
            body["sslCertificate"] = _read(ssl_cert_pem_file)
        if ssl_key_pem_file:
            body["sslKey"] = _read(ssl_key_pem_file)
        _set(body, "cname", ssl_cname)
        _set(body, "appInsightsEnabled", enable_app_insights)
        body.update(self._inference_body(models, inference_config))
        if rollout is not None:
            body["rollout"] = rollout_block(rollout)
        self._patch(body)
        if inference_config is not None:
            self._inference_config = inference_config

    def get_access_token(self) -> WebserviceAccessToken:
        """Not available: ACI services use key auth."""
        raise NotImplementedError("ACI webservices do not support Token Authentication.")

    def get_token(self) -> Any:
        """Not available: ACI services use key auth."""
        raise NotImplementedError("ACI webservices do not support Token Authentication.")

    def serialize(self) -> Dict[str, Any]:
        """The service as a dict: the reference's ACI keys plus Berth's."""
        out = self._base_serialize()
        resources = self.container_resource_requirements
        out.update(
            {
                "containerResourceRequirements": {"cpu": resources.cpu, "memoryInGB": resources.memory_in_gb},
                "location": self.location,
                "authEnabled": self.auth_enabled,
                "sslEnabled": self.ssl_enabled,
                "appInsightsEnabled": self.app_insights_enabled,
                "sslCertificate": None,
                "sslKey": None,
                "cname": self.cname,
                "publicIp": None,
                "publicFqdn": None,
                "environmentDetails": self.environment_id,
                "modelDetails": list(self.model_ids),
                "encryptionProperties": None,
                "vnetConfiguration": None,
            }
        )
        out.update(self._berth_serialize())
        return out
