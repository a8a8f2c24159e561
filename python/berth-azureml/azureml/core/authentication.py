"""``azureml.core.authentication``: the v1 credential classes, accepted and unused (a Berth
workspace authenticates with its workspace token from ``config.json``)."""

from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = [
    "AbstractAuthentication",
    "InteractiveLoginAuthentication",
    "ServicePrincipalAuthentication",
    "MsiAuthentication",
    "AzureCliAuthentication",
]


class AbstractAuthentication:
    """Base of the credential classes (no credentials are sent by them)."""

    def get_authentication_header(self) -> Dict[str, str]:
        """Empty: the workspace token is what authenticates to Berth."""
        return {}


class InteractiveLoginAuthentication(AbstractAuthentication):
    """Accepted for compatibility."""

    def __init__(self, force: bool = False, tenant_id: Optional[str] = None, cloud: Optional[str] = None) -> None:
        self.force = force
        self.tenant_id = tenant_id


class ServicePrincipalAuthentication(AbstractAuthentication):
    """Accepted for compatibility; the secret is not kept."""

    def __init__(
        self,
        tenant_id: str,
        service_principal_id: str,
        service_principal_password: str,
        cloud: str = "AzureCloud",
        _enable_caching: bool = True,
    ) -> None:
        self.tenant_id = tenant_id
        self.service_principal_id = service_principal_id


class MsiAuthentication(AbstractAuthentication):
    """Accepted for compatibility."""

    def __init__(self, identity_config: Any = None, cloud: Optional[str] = None) -> None:
        self.identity_config = identity_config


class AzureCliAuthentication(AbstractAuthentication):
    """Accepted for compatibility."""

    def __init__(self, cloud: Optional[str] = None) -> None:
        self.cloud = cloud
