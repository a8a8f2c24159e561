"""Compute targets, like ``azureml.core.compute``: ``ComputeTarget(ws, name)``, ``AksCompute``,
``ComputeTarget.list``, ``create``/``attach`` and ``wait_for_completion``.

A Berth server always has the built-in ``local`` target. An AKS target created or attached by v1
code is recorded on the server under its name and, on a server without a Kubernetes cluster, is
backed by the local target (the server says so once, when the target is created). An AKS target
attached with Kubernetes settings (``AksCompute.attach_configuration(namespace=..., image=...,
kubeconfig=... | in_cluster=True)``) runs its services on that cluster (``backed_by`` is
``"kubernetes"``); its kubeconfig is stored on the server and never returned. Targets are usable
at once: ``provisioning_state`` is ``"Succeeded"``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Type
from urllib.parse import quote

from ..exceptions import ComputeTargetException, WebserviceException

if TYPE_CHECKING:  # pragma: no cover
    from .workspace import Workspace

__all__ = [
    "ComputeTarget",
    "AksCompute",
    "LocalCompute",
    "ComputeTargetProvisioningConfiguration",
    "ComputeTargetAttachConfiguration",
    "AksProvisioningConfiguration",
    "AksAttachConfiguration",
]

class ComputeTargetProvisioningConfiguration:
    """Base of the ``provisioning_configuration(...)`` objects."""

    _compute_type: str = ""

    def __init__(self, type: Optional[Type["ComputeTarget"]] = None, location: Optional[str] = None) -> None:
        self.type = type
        self.location = location

    def validate_configuration(self) -> None:
        """Raises ``ComputeTargetException`` for a bad value."""

    def _properties(self) -> Dict[str, Any]:
        return {}


class ComputeTargetAttachConfiguration:
    """Base of the ``attach_configuration(...)`` objects."""

    _compute_type: str = ""

    def __init__(self, type: Optional[Type["ComputeTarget"]] = None) -> None:
        self.type = type

    def validate_configuration(self) -> None:
        """Raises ``ComputeTargetException`` for a bad value."""

    def _properties(self) -> Dict[str, Any]:
        return {}

    def _kubernetes(self) -> Optional[Dict[str, Any]]:
        return None


class ComputeTarget:
    """A compute target of the workspace.

    ``ComputeTarget(workspace, name)`` fetches a target and returns the subclass of its type
    (:class:`AksCompute` or :class:`LocalCompute`).

    :ivar name: The target's name.
    :ivar type: ``AKS`` or ``Local``.
    :ivar provisioning_state: ``Succeeded``.
    :ivar provisioning_errors: ``None``.
    :ivar backed_by: Berth: the target that runs the replicas (``local``).
    :raises ComputeTargetException: No target of that name (or not of the class's type).
    """

    _compute_type: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "ComputeTarget":
        if cls is ComputeTarget and (args or kwargs):
            workspace = kwargs.get("workspace", args[0] if args else None)
            name = kwargs.get("name", args[1] if len(args) > 1 else None)
            if workspace is not None and name is not None:
                payload = ComputeTarget._get(workspace, name)
                obj = object.__new__(ComputeTarget._class_for(str(payload.get("computeType", ""))))
                obj.__dict__["_prefetched"] = payload
                return obj
        return object.__new__(cls)

    def __init__(self, workspace: "Workspace", name: str) -> None:
        payload = self.__dict__.pop("_prefetched", None)
        if payload is None:
            payload = ComputeTarget._get(workspace, name)
            actual = str(payload.get("computeType", ""))
            if self._compute_type and actual.upper() != self._compute_type.upper():
                raise ComputeTargetException(
                    f"ComputeTargetNotFound: compute target {name} is a {actual} target, not "
                    f"{self._compute_type}; use ComputeTarget(workspace, '{name}').",
                    code="not_found",
                    status_code=404,
                )
        self.workspace = workspace
        self._apply(payload)

    # -- server answers --------------------------------------------------------------------------

    @staticmethod
    def _get(workspace: "Workspace", name: str) -> Dict[str, Any]:
        try:
            payload: Dict[str, Any] = workspace.service_context.json(
                "GET", f"/v1/computes/{quote(name, safe='')}", exception=ComputeTargetException
            )
        except WebserviceException as e:
            raise ComputeTargetException(e.message, code=e.code, status_code=e.status_code, hint=e.hint) from None
        except ComputeTargetException as e:
            if e.status_code == 404:
                raise ComputeTargetException(
                    f"ComputeTargetNotFound: Compute Target with name {name} not found in provided workspace. "
                    f"{e.message}",
                    code=e.code,
                    status_code=404,
                ) from None
            raise
        return payload

    @staticmethod
    def _class_for(compute_type: str) -> Type["ComputeTarget"]:
        return {"AKS": AksCompute, "LOCAL": LocalCompute}.get(compute_type.upper(), ComputeTarget)

    @staticmethod
    def _from_payload(workspace: "Workspace", payload: Dict[str, Any]) -> "ComputeTarget":
        obj = object.__new__(ComputeTarget._class_for(str(payload.get("computeType", ""))))
        obj.workspace = workspace
        obj._apply(payload)
        return obj

    def _apply(self, payload: Dict[str, Any]) -> None:
        self._payload = dict(payload)
        self.name: str = str(payload["name"])
        self.type: str = str(payload.get("computeType", ""))
        self.provisioning_state: str = str(payload.get("provisioningState", "Succeeded"))
        self.provisioning_errors: Optional[List[Dict[str, Any]]] = None
        self.backed_by: str = str(payload.get("backedBy", "local"))
        self.attached: bool = bool(payload.get("attached", False))
        self.created_on: Optional[str] = payload.get("createdTime")
        self.modified_on: Optional[str] = payload.get("createdTime")
        self.location: Optional[str] = (payload.get("properties") or {}).get("location")
        self.tags: Dict[str, str] = {}
        self.description: Optional[str] = None
        self.status = self.provisioning_state

    # -- registry --------------------------------------------------------------------------------

    @staticmethod
    def list(workspace: "Workspace") -> List["ComputeTarget"]:
        """Every compute target of the workspace (``local`` first)."""
        payload = workspace.service_context.json("GET", "/v1/computes", exception=ComputeTargetException)
        return [ComputeTarget._from_payload(workspace, item) for item in payload.get("value", [])]

    @staticmethod
    def create(
        workspace: "Workspace", name: str, provisioning_configuration: ComputeTargetProvisioningConfiguration
    ) -> "ComputeTarget":
        """Creates a compute target from a ``provisioning_configuration(...)``; an existing target of
        that name is returned as it is. Call :meth:`wait_for_completion` as with Azure ML (it returns
        at once: targets are ready when created).

        :raises ComputeTargetException: The configuration is not a provisioning configuration, or
            the server refused the target.
        """
        if not isinstance(provisioning_configuration, ComputeTargetProvisioningConfiguration):
            raise ComputeTargetException(
                "Error, provisioning_configuration must be a provisioning configuration, e.g. "
                "AksCompute.provisioning_configuration()."
            )
        provisioning_configuration.validate_configuration()
        return ComputeTarget._put(
            workspace, name, provisioning_configuration._compute_type, False, provisioning_configuration._properties()
        )

    @staticmethod
    def attach(
        workspace: "Workspace", name: str, attach_configuration: ComputeTargetAttachConfiguration
    ) -> "ComputeTarget":
        """Attaches a compute target from an ``attach_configuration(...)`` (recorded on the server,
        backed by the local target when it has no cluster).

        :raises ComputeTargetException: The configuration is not an attach configuration, or the
            server refused the target.
        """
        if not isinstance(attach_configuration, ComputeTargetAttachConfiguration):
            raise ComputeTargetException(
                "Error, attach_configuration must be an attach configuration, e.g. AksCompute.attach_configuration(...)."
            )
        attach_configuration.validate_configuration()
        return ComputeTarget._put(
            workspace,
            name,
            attach_configuration._compute_type,
            True,
            attach_configuration._properties(),
            attach_configuration._kubernetes(),
        )

    @staticmethod
    def _put(
        workspace: "Workspace",
        name: str,
        compute_type: str,
        attach: bool,
        properties: Dict[str, Any],
        kubernetes: Optional[Dict[str, Any]] = None,
    ) -> "ComputeTarget":
        body: Dict[str, Any] = {"computeType": compute_type, "attach": attach, "properties": properties}
        if kubernetes is not None:
            body["kubernetes"] = kubernetes
        payload = workspace.service_context.json(
            "PUT",
            f"/v1/computes/{quote(name, safe='')}",
            json_body=body,
            expect=(200, 201),
            what="create compute target",
            exception=ComputeTargetException,
        )
        for warning in payload.get("warnings") or []:
            print(f"Note: {warning}")
        return ComputeTarget._from_payload(workspace, payload)

    # -- day-to-day ------------------------------------------------------------------------------

    def wait_for_completion(self, show_output: bool = False, is_delete_operation: bool = False) -> None:
        """Waits for the target's provisioning (or deletion) to end: Berth targets are ready when
        created, so this refreshes the state and returns.

        :raises ComputeTargetException: The target is not ``Succeeded`` (or still exists after a
            delete).
        """
        if is_delete_operation:
            try:
                ComputeTarget._get(self.workspace, self.name)
            except ComputeTargetException as e:
                if e.status_code == 404:
                    if show_output:
                        print("Deleted")
                    return
                raise
            raise ComputeTargetException(f"Compute target {self.name} still exists.")
        self.refresh_state()
        if show_output:
            print(f"{self.provisioning_state}\nProvisioning operation finished, operation \"{self.provisioning_state}\"")
        if self.provisioning_state != "Succeeded":
            raise ComputeTargetException(
                f"Compute object provisioning polling reached non-successful terminal state, current "
                f"provisioning state: {self.provisioning_state}"
            )

    def refresh_state(self) -> None:
        """Reads the target from the server again."""
        self._apply(ComputeTarget._get(self.workspace, self.name))

    def get_status(self) -> str:
        """The provisioning state."""
        self.refresh_state()
        return self.provisioning_state

    def delete(self) -> None:
        """Removes the target from the workspace (its services keep running on the target that
        backed it). A Kubernetes-backed target is refused while services run there."""
        self.workspace.service_context.request(
            "DELETE",
            f"/v1/computes/{quote(self.name, safe='')}",
            expect=(204,),
            what="delete compute target",
            exception=ComputeTargetException,
        )
        self.provisioning_state = "Deleting"

    def detach(self) -> None:
        """Detaches the target (the same as :meth:`delete` on Berth)."""
        self.delete()

    def serialize(self) -> Dict[str, Any]:
        """The target as a dict."""
        return {
            "id": self.name,
            "name": self.name,
            "location": self.location,
            "tags": dict(self.tags),
            "properties": {
                "computeType": self.type,
                "provisioningState": self.provisioning_state,
                "provisioningErrors": None,
                "description": self.description,
                "properties": dict(self._payload.get("properties") or {}),
            },
            "backedBy": self.backed_by,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workspace={self.workspace!r}, name={self.name}, type={self.type}, provisioning_state={self.provisioning_state})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ComputeTarget) and (other.workspace, other.name) == (self.workspace, self.name)

    def __hash__(self) -> int:
        return hash(self.name)


class LocalCompute(ComputeTarget):
    """The built-in ``local`` target: replicas run on the server."""

    _compute_type = "Local"


class AksProvisioningConfiguration(ComputeTargetProvisioningConfiguration):
    """Settings to create an AKS target; build it with :meth:`AksCompute.provisioning_configuration`.
    Berth records them on the target."""

    _compute_type = "AKS"

    def __init__(
        self,
        agent_count: Optional[int],
        vm_size: Optional[str],
        ssl_cname: Optional[str],
        ssl_cert_pem_file: Optional[str],
        ssl_key_pem_file: Optional[str],
        location: Optional[str],
        vnet_resourcegroup_name: Optional[str],
        vnet_name: Optional[str],
        subnet_name: Optional[str],
        service_cidr: Optional[str],
        dns_service_ip: Optional[str],
        docker_bridge_cidr: Optional[str],
        cluster_purpose: Optional[str],
        load_balancer_type: Optional[str],
        load_balancer_subnet: Optional[str],
    ) -> None:
        super().__init__(AksCompute, location)
        self.agent_count = agent_count
        self.vm_size = vm_size
        self.ssl_cname = ssl_cname
        self.ssl_cert_pem_file = ssl_cert_pem_file
        self.ssl_key_pem_file = ssl_key_pem_file
        self.vnet_resourcegroup_name = vnet_resourcegroup_name
        self.vnet_name = vnet_name
        self.subnet_name = subnet_name
        self.service_cidr = service_cidr
        self.dns_service_ip = dns_service_ip
        self.docker_bridge_cidr = docker_bridge_cidr
        self.cluster_purpose = cluster_purpose
        self.load_balancer_type = load_balancer_type
        self.load_balancer_subnet = load_balancer_subnet
        self.validate_configuration()

    def validate_configuration(self) -> None:
        """Raises ``ComputeTargetException`` for a bad value (the reference's rules)."""
        if self.agent_count is not None and (not isinstance(self.agent_count, int) or self.agent_count <= 0):
            raise ComputeTargetException("Invalid configuration, agent count must be a positive integer.")
        ssl = [self.ssl_cname, self.ssl_cert_pem_file, self.ssl_key_pem_file]
        if any(ssl) and not all(ssl):
            raise ComputeTargetException(
                "Invalid configuration, ssl_cname, ssl_cert_pem_file and ssl_key_pem_file go together: provide "
                "all three to enable SSL."
            )
        if self.cluster_purpose is not None and self.cluster_purpose not in (
            AksCompute.ClusterPurpose.FAST_PROD,
            AksCompute.ClusterPurpose.DEV_TEST,
        ):
            raise ComputeTargetException(
                f"Invalid configuration, cluster_purpose {self.cluster_purpose!r}: use "
                "AksCompute.ClusterPurpose.FAST_PROD or AksCompute.ClusterPurpose.DEV_TEST."
            )

    def enable_ssl(
        self,
        ssl_cname: Optional[str] = None,
        ssl_cert_pem_file: Optional[str] = None,
        ssl_key_pem_file: Optional[str] = None,
        leaf_domain_label: Optional[str] = None,
        overwrite_existing_domain: bool = False,
    ) -> None:
        """Records SSL settings for the target (Berth serves TLS per service, see
        ``AksWebservice.deploy_configuration``'s SSL settings and the server's ``--tls-cert``)."""
        self.ssl_cname = ssl_cname
        self.ssl_cert_pem_file = ssl_cert_pem_file
        self.ssl_key_pem_file = ssl_key_pem_file

    def _properties(self) -> Dict[str, Any]:
        keys = {
            "agentCount": self.agent_count,
            "vmSize": self.vm_size,
            "sslCname": self.ssl_cname,
            "location": self.location,
            "vnetResourceGroupName": self.vnet_resourcegroup_name,
            "vnetName": self.vnet_name,
            "subnetName": self.subnet_name,
            "serviceCidr": self.service_cidr,
            "dnsServiceIp": self.dns_service_ip,
            "dockerBridgeCidr": self.docker_bridge_cidr,
            "clusterPurpose": self.cluster_purpose,
            "loadBalancerType": self.load_balancer_type,
            "loadBalancerSubnet": self.load_balancer_subnet,
        }
        return {k: v for k, v in keys.items() if v is not None}


class AksAttachConfiguration(ComputeTargetAttachConfiguration):
    """Settings to attach an AKS cluster; build it with :meth:`AksCompute.attach_configuration`.

    With ``namespace`` and ``image`` (and ``kubeconfig`` or ``in_cluster``) the target runs its
    services on that Kubernetes cluster; otherwise it is recorded and backed by the local target.
    """

    _compute_type = "AKS"

    def __init__(
        self,
        resource_group: Optional[str] = None,
        cluster_name: Optional[str] = None,
        resource_id: Optional[str] = None,
        cluster_purpose: Optional[str] = None,
        kubeconfig: Optional[str] = None,
        in_cluster: bool = False,
        namespace: Optional[str] = None,
        image: Optional[str] = None,
        server_url: Optional[str] = None,
    ) -> None:
        super().__init__(AksCompute)
        self.resource_group = resource_group
        self.cluster_name = cluster_name
        self.resource_id = resource_id
        self.cluster_purpose = cluster_purpose
        self.kubeconfig = kubeconfig
        self.in_cluster = in_cluster
        self.namespace = namespace
        self.image = image
        self.server_url = server_url
        self.validate_configuration()

    def _is_kubernetes(self) -> bool:
        return bool(self.kubeconfig or self.in_cluster or self.namespace or self.image or self.server_url)

    def validate_configuration(self) -> None:
        """Kubernetes settings need ``namespace``, ``image`` and one of ``kubeconfig`` (a file path)
        or ``in_cluster``; otherwise ``resource_id``, or ``resource_group`` with ``cluster_name``
        (the reference's rule)."""
        if self._is_kubernetes():
            problems = []
            if not self.namespace:
                problems.append("namespace is missing: give the namespace of the Deployments, e.g. namespace='berth'")
            if not self.image:
                problems.append(
                    "image is missing: give the replicas' container image, e.g. image='ghcr.io/acme/berth:0.1.0'"
                )
            if self.kubeconfig and self.in_cluster:
                problems.append(
                    f"kubeconfig ({self.kubeconfig!r}) and in_cluster=True are both given: use one of them"
                )
            elif not self.kubeconfig and not self.in_cluster:
                problems.append(
                    "kubeconfig is missing: give the path of the cluster's kubeconfig file, or in_cluster=True "
                    "when the Berth server runs in the cluster"
                )
            elif self.kubeconfig and not os.path.isfile(os.path.expanduser(self.kubeconfig)):
                problems.append(f"kubeconfig {self.kubeconfig!r} is not a file: give the path of a kubeconfig file")
            if problems:
                raise ComputeTargetException("Invalid configuration, " + "; ".join(problems) + ".")
            return
        if not self.resource_id and not (self.resource_group and self.cluster_name):
            raise ComputeTargetException(
                "Invalid configuration, either resource_id or both resource_group and cluster_name must be provided."
            )

    def _kubernetes(self) -> Optional[Dict[str, Any]]:
        if not self._is_kubernetes():
            return None
        settings: Dict[str, Any] = {
            "namespace": self.namespace,
            "image": self.image,
            "inCluster": bool(self.in_cluster),
        }
        if self.kubeconfig:
            with open(os.path.expanduser(self.kubeconfig), encoding="utf-8") as f:
                settings["kubeconfig"] = f.read()
        if self.server_url:
            settings["serverUrl"] = self.server_url
        return settings

    def enable_ssl(
        self,
        ssl_cname: Optional[str] = None,
        ssl_cert_pem_file: Optional[str] = None,
        ssl_key_pem_file: Optional[str] = None,
        leaf_domain_label: Optional[str] = None,
        overwrite_existing_domain: bool = False,
    ) -> None:
        """Accepted for compatibility (TLS is per service on Berth)."""

    def _properties(self) -> Dict[str, Any]:
        keys = {
            "resourceGroup": self.resource_group,
            "clusterName": self.cluster_name,
            "resourceId": self.resource_id,
            "clusterPurpose": self.cluster_purpose,
        }
        return {k: v for k, v in keys.items() if v is not None}


class AksCompute(ComputeTarget):
    """An AKS target: services deployed to it (``Model.deploy(..., deployment_target=aks)``) record
    its name and run on the target that backs it."""

    _compute_type = "AKS"

    class ClusterPurpose:
        """Cluster purposes (recorded)."""

        FAST_PROD = "FastProd"
        DEV_TEST = "DevTest"

    def _apply(self, payload: Dict[str, Any]) -> None:
        super()._apply(payload)
        properties = payload.get("properties") or {}
        self.agent_count: Optional[int] = properties.get("agentCount")
        self.vm_size: Optional[str] = properties.get("vmSize")
        self.cluster_purpose: Optional[str] = properties.get("clusterPurpose")
        self.cluster_resource_id: Optional[str] = properties.get("resourceId")
        self.cluster_fqdn: Optional[str] = None
        self.ssl_configuration: Optional[Dict[str, Any]] = None
        kubernetes = payload.get("kubernetes") or {}
        self.namespace: Optional[str] = kubernetes.get("namespace")
        self.image: Optional[str] = kubernetes.get("image")
        self.server_url: Optional[str] = kubernetes.get("serverUrl")
        self.in_cluster: bool = bool(kubernetes.get("inCluster", False))
        self.kubeconfig_set: bool = bool(kubernetes.get("kubeconfigSet", False))

    @staticmethod
    def provisioning_configuration(
        agent_count: Optional[int] = None,
        vm_size: Optional[str] = None,
        ssl_cname: Optional[str] = None,
        ssl_cert_pem_file: Optional[str] = None,
        ssl_key_pem_file: Optional[str] = None,
        location: Optional[str] = None,
        vnet_resourcegroup_name: Optional[str] = None,
        vnet_name: Optional[str] = None,
        subnet_name: Optional[str] = None,
        service_cidr: Optional[str] = None,
        dns_service_ip: Optional[str] = None,
        docker_bridge_cidr: Optional[str] = None,
        cluster_purpose: Optional[str] = None,
        load_balancer_type: Optional[str] = None,
        load_balancer_subnet: Optional[str] = None,
    ) -> AksProvisioningConfiguration:
        """Settings to create an AKS target with :meth:`ComputeTarget.create` (recorded on the
        target; Berth does not provision clusters)."""
        return AksProvisioningConfiguration(
            agent_count,
            vm_size,
            ssl_cname,
            ssl_cert_pem_file,
            ssl_key_pem_file,
            location,
            vnet_resourcegroup_name,
            vnet_name,
            subnet_name,
            service_cidr,
            dns_service_ip,
            docker_bridge_cidr,
            cluster_purpose,
            load_balancer_type,
            load_balancer_subnet,
        )

    @staticmethod
    def attach_configuration(
        resource_group: Optional[str] = None,
        cluster_name: Optional[str] = None,
        resource_id: Optional[str] = None,
        cluster_purpose: Optional[str] = None,
        *,
        kubeconfig: Optional[str] = None,
        in_cluster: bool = False,
        namespace: Optional[str] = None,
        image: Optional[str] = None,
        server_url: Optional[str] = None,
    ) -> AksAttachConfiguration:
        """Settings to attach an existing cluster with :meth:`ComputeTarget.attach`.

        Berth: with ``namespace``, ``image`` and ``kubeconfig`` (path of a kubeconfig file, sent to
        the server and stored as a secret) or ``in_cluster=True``, services deployed to the target
        run on that cluster; ``server_url`` is the URL the pods reach the Berth server at.
        """
        return AksAttachConfiguration(
            resource_group,
            cluster_name,
            resource_id,
            cluster_purpose,
            kubeconfig=kubeconfig,
            in_cluster=in_cluster,
            namespace=namespace,
            image=image,
            server_url=server_url,
        )

    def serialize(self) -> Dict[str, Any]:
        """The target as a dict (the reference's AKS keys where Berth has them)."""
        out = super().serialize()
        out["properties"]["properties"].update(
            {"agentCount": self.agent_count, "agentVmSize": self.vm_size, "clusterPurpose": self.cluster_purpose}
        )
        return out
