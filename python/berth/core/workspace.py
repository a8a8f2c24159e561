"""The workspace: one Berth server (endpoint + token), like ``azureml.core.workspace``."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from .._http import HttpClient
from ..exceptions import UserErrorException

if TYPE_CHECKING:  # pragma: no cover
    from .environment import Environment
    from .model import Model
    from .webservice.webservice import Webservice
    from .compute import ComputeTarget
    from .datastore import Datastore

__all__ = ["Workspace"]

_CONFIG_NAME = "config.json"


def _config_candidates(path: Optional[str], file_name: Optional[str]) -> List[str]:
    """Where :meth:`Workspace.from_config` looks, in order."""
    name = file_name or _CONFIG_NAME
    candidates: List[str] = []
    if path:
        if os.path.isdir(path):
            candidates += [os.path.join(path, name), os.path.join(path, ".berth", name)]
        else:
            candidates.append(path)
    candidates += [os.path.join(".", name), os.path.join(".", ".berth", name)]
    env_config = os.environ.get("BERTH_CONFIG")
    if env_config:
        candidates.append(env_config)
    env_data = os.environ.get("BERTH_DATA")
    if env_data:
        candidates.append(os.path.join(env_data, _CONFIG_NAME))
    candidates.append(os.path.join(os.path.expanduser("~"), ".berth", _CONFIG_NAME))
    return candidates


def _read_config(path: str) -> Optional[Dict[str, Any]]:
    """A Berth config (a JSON object with ``endpoint``), ``None`` when absent or not Berth's."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return None
    except OSError as e:
        raise UserErrorException(f"Cannot read the workspace config {path}: {e}") from e
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UserErrorException(f"The workspace config {path} is not valid JSON: {e}") from e
    if not isinstance(value, dict) or "endpoint" not in value:
        return None
    if not isinstance(value.get("token"), str) or not isinstance(value.get("endpoint"), str):
        raise UserErrorException(
            f"The workspace config {path} is not a Berth config.json: it needs string `endpoint` and "
            "`token` values, as `berth server` writes them."
        )
    return value


def _find_config(path: Optional[str], file_name: Optional[str]) -> Tuple[Dict[str, Any], str]:
    """The first Berth config found (see :meth:`Workspace.from_config`) and its path."""
    if path is not None and not os.path.exists(path):
        raise UserErrorException(f"The workspace config path {path} does not exist.")
    searched = _config_candidates(path, file_name)
    for candidate in searched:
        config = _read_config(candidate)
        if config is not None:
            return config, candidate
    raise UserErrorException(
        "We could not find a Berth config.json (one with an `endpoint`) in: "
        + ", ".join(searched)
        + ". Start `berth server` (it writes <data>/config.json), pass the path of that file, "
        "or use Workspace(endpoint=..., token=...)."
    )


class Workspace:
    """A Berth workspace: one server with its registry and services.

    Constructed as in Azure ML v1 — ``Workspace(subscription_id, resource_group, workspace_name)``,
    :meth:`get` or :meth:`from_config` — the server is found through the ``config.json`` that
    ``berth server`` writes (see :meth:`from_config` for where it is looked for), and the names
    given are checked against the server's (``--workspace-name``, ``--workspace-resource-group``,
    ``--workspace-subscription-id``). ``Workspace(endpoint=..., token=...)`` connects explicitly.

    :param subscription_id: Checked against the server's subscription id when given.
    :param resource_group: Checked against the server's resource group when given.
    :param workspace_name: Checked against the server's name when given (with ``endpoint``: used
        as the name without asking the server).
    :param auth: Accepted for compatibility; the workspace token is used.
    :param _location, _workspace_id, sku, tags, _cloud: Accepted for compatibility.
    :param _disable_service_check: Skip the name checks.
    :param endpoint: Berth: base URL of the server's management API, e.g. ``http://127.0.0.1:8080``.
    :param token: Berth: the workspace token.
    :param timeout: Berth: seconds any single network operation may take.
    """

    def __init__(
        self,
        subscription_id: Optional[str] = None,
        resource_group: Optional[str] = None,
        workspace_name: Optional[str] = None,
        auth: Any = None,
        _location: Optional[str] = None,
        _disable_service_check: bool = False,
        _workspace_id: Optional[str] = None,
        sku: str = "basic",
        tags: Optional[Dict[str, str]] = None,
        _cloud: str = "AzureCloud",
        *,
        endpoint: Optional[str] = None,
        token: Optional[str] = None,
        timeout: float = 300.0,
    ) -> None:
        if (
            endpoint is None
            and isinstance(subscription_id, str)
            and subscription_id.startswith(("http://", "https://"))
        ):
            # The SDK's earlier positional form: Workspace(endpoint, token).
            endpoint, token, subscription_id, resource_group = subscription_id, resource_group, None, None
        #: The config file this workspace was read from, if any.
        self.config_path: Optional[str] = None
        discovered = endpoint is None and token is None
        if discovered:
            config, found = _find_config(None, None)
            endpoint, token = config["endpoint"], config["token"]
            self.config_path = os.path.abspath(found)
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise UserErrorException(f"Workspace endpoint must be an http:// or https:// URL, not {endpoint!r}.")
        if not isinstance(token, str) or not token:
            raise UserErrorException("Workspace token must be a non-empty string.")
        self._client = HttpClient(endpoint, token, timeout=timeout)
        self._name = None if discovered else workspace_name
        self._details: Optional[Dict[str, Any]] = None
        self.sku = sku
        self.tags = dict(tags or {})
        if not _disable_service_check:
            expected = {
                "subscription_id": subscription_id,
                "resource_group": resource_group,
                "name": workspace_name if discovered else None,
            }
            self._check_identity({k: v for k, v in expected.items() if v is not None})

    def _check_identity(self, expected: Dict[str, str]) -> None:
        """Raises when a given name differs from the server's."""
        flags = {
            "subscription_id": "--workspace-subscription-id",
            "resource_group": "--workspace-resource-group",
            "name": "--workspace-name",
        }
        for attribute, wanted in expected.items():
            actual = getattr(self, attribute)
            if actual != wanted:
                shown = "workspace_name" if attribute == "name" else attribute
                raise UserErrorException(
                    f"Workspace {shown} {wanted!r} does not match the Berth server at {self.endpoint}, whose "
                    f"{shown} is {actual!r}. Pass the server's value, start the server with "
                    f"`{flags[attribute]} {wanted}`, or pass _disable_service_check=True."
                )

    # -- construction ----------------------------------------------------------------------------

    @staticmethod
    def get(
        name: str,
        auth: Any = None,
        subscription_id: Optional[str] = None,
        resource_group: Optional[str] = None,
        location: Optional[str] = None,
        cloud: str = "AzureCloud",
        id: Optional[str] = None,
    ) -> "Workspace":
        """The workspace named ``name``: the Berth server of the ``config.json`` found as
        :meth:`from_config` finds it, checked to carry that name (and the subscription id and
        resource group when given).

        :raises UserErrorException: No config found, or a name differs from the server's.
        """
        return Workspace(subscription_id=subscription_id, resource_group=resource_group, workspace_name=name, auth=auth)

    @staticmethod
    def from_config(
        path: Optional[str] = None,
        auth: Any = None,
        _logger: Any = None,
        _file_name: Optional[str] = None,
    ) -> "Workspace":
        """Returns the workspace described by a ``config.json``.

        Search order (the first file that has an ``endpoint`` wins; a ``config.json`` without one,
        such as an Azure ML config, is skipped): ``path`` (a file, or a folder holding
        ``config.json`` or ``.berth/config.json``), ``./config.json``, ``./.berth/config.json``,
        ``$BERTH_CONFIG``, ``$BERTH_DATA/config.json``, ``~/.berth/config.json``.

        :param path: A config file, or a folder to look in first.
        :param auth: Accepted for compatibility; the token in the file is used.
        :raises UserErrorException: No config was found, or a config is malformed.
        """
        config, found = _find_config(path, _file_name)
        workspace = Workspace(
            endpoint=config["endpoint"],
            token=config["token"],
            workspace_name=config.get("workspaceName") if isinstance(config.get("workspaceName"), str) else None,
        )
        workspace.config_path = os.path.abspath(found)
        return workspace

    def write_config(self, path: Optional[str] = None, file_name: Optional[str] = None) -> str:
        """Writes this workspace's ``config.json`` (mode 0600) to ``<path>/.berth/``.

        :param path: Folder to write under; the current directory by default.
        :param file_name: File name; ``config.json`` by default.
        :return: The path written.
        """
        folder = os.path.join(path or ".", ".berth")
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, file_name or _CONFIG_NAME)
        content = json.dumps(
            {"endpoint": self.endpoint, "token": self._client.token, "workspaceName": self.name}, indent=2
        )
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as f:
            f.write(content + "\n")
        return target

    # -- properties ------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """Base URL of the management API."""
        return self._client.endpoint

    @property
    def name(self) -> str:
        """The workspace name (``--workspace-name``)."""
        if self._name is None:
            self._name = str(self._detail("name"))
        return self._name

    @property
    def resource_group(self) -> str:
        """The resource group the server reports (``--workspace-resource-group``)."""
        return str(self._detail("resourceGroup"))

    @property
    def location(self) -> str:
        """The location the server reports (``--workspace-location``)."""
        return str(self._detail("location"))

    @property
    def subscription_id(self) -> str:
        """The subscription id the server reports (``--workspace-subscription-id``)."""
        return str(self._detail("subscriptionId"))

    def _detail(self, key: str) -> Any:
        if self._details is None:
            self._details = self.get_details()
        return self._details.get(key, "")

    @property
    def service_context(self) -> HttpClient:
        """The HTTP client the SDK objects use (for advanced calls)."""
        return self._client

    def get_details(self) -> Dict[str, Any]:
        """What the server says about itself: ``name``, ``serverVersion``, ``maxUploadBytes``,
        ``resourceGroup``, ``location``, ``subscriptionId``, plus ``endpoint``."""
        details = self._client.json("GET", "/v1/workspace")
        if not isinstance(details, dict):
            details = {}
        details["endpoint"] = self.endpoint
        self._details = dict(details)
        return details

    @property
    def models(self) -> Dict[str, "Model"]:
        """The newest version of every model, by name."""
        from .model import Model

        return {model.name: model for model in Model.list(self, latest=True)}

    @property
    def environments(self) -> Dict[str, "Environment"]:
        """The newest version of every environment, by name."""
        from .environment import Environment

        return Environment.list(self)

    @property
    def compute_targets(self) -> Dict[str, "ComputeTarget"]:
        """Every compute target (``local`` included), by name."""
        from .compute import ComputeTarget

        return {target.name: target for target in ComputeTarget.list(self)}

    @property
    def datastores(self) -> Dict[str, "Datastore"]:
        """The one datastore name v1 code expects (training data is not part of Berth)."""
        datastore = self.get_default_datastore()
        return {datastore.name: datastore}

    def get_default_datastore(self) -> "Datastore":
        """A placeholder for the workspace's default datastore: Berth is for deployment only, so
        its training-data calls raise an error saying so."""
        from .datastore import Datastore

        return Datastore(self, "workspaceblobstore")

    @property
    def webservices(self) -> Dict[str, "Webservice"]:
        """Every service, by name."""
        from .webservice.webservice import Webservice

        return {service.name: service for service in Webservice.list(self)}

    def __repr__(self) -> str:
        return f"Workspace.create(name='{self._name or '?'}', endpoint='{self.endpoint}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and other.endpoint == self.endpoint

    def __hash__(self) -> int:
        return hash(self.endpoint)
