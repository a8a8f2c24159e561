"""The workspace: one Berth server (endpoint + token), like ``azureml.core.workspace``."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from .._http import HttpClient
from ..exceptions import UserErrorException

if TYPE_CHECKING:  # pragma: no cover
    from .environment import Environment
    from .model import Model
    from .webservice.webservice import Webservice

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


class Workspace:
    """A Berth workspace: one server with its registry and services.

    ``Workspace(endpoint=..., token=...)`` connects explicitly; :meth:`from_config` reads the
    ``config.json`` that ``berth server`` writes.

    :param endpoint: Base URL of the server's management API, e.g. ``http://127.0.0.1:8080``.
    :param token: The workspace token.
    :param workspace_name: The workspace's name; asked from the server when omitted.
    :param timeout: Seconds any single network operation may take.
    """

    def __init__(
        self,
        endpoint: str,
        token: str,
        workspace_name: Optional[str] = None,
        *,
        timeout: float = 300.0,
    ) -> None:
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise UserErrorException(f"Workspace endpoint must be an http:// or https:// URL, not {endpoint!r}.")
        if not isinstance(token, str) or not token:
            raise UserErrorException("Workspace token must be a non-empty string.")
        self._client = HttpClient(endpoint, token, timeout=timeout)
        self._name = workspace_name
        #: The config file this workspace was read from, if any.
        self.config_path: Optional[str] = None

    # -- construction ----------------------------------------------------------------------------

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
        if path is not None and not os.path.exists(path):
            raise UserErrorException(f"The workspace config path {path} does not exist.")
        searched = _config_candidates(path, _file_name)
        for candidate in searched:
            config = _read_config(candidate)
            if config is None:
                continue
            workspace = Workspace(
                endpoint=config["endpoint"],
                token=config["token"],
                workspace_name=config.get("workspaceName") if isinstance(config.get("workspaceName"), str) else None,
            )
            workspace.config_path = os.path.abspath(candidate)
            return workspace
        raise UserErrorException(
            "We could not find a Berth config.json (one with an `endpoint`) in: "
            + ", ".join(searched)
            + ". Start `berth server` (it writes <data>/config.json), pass the path of that file, "
            "or use Workspace(endpoint=..., token=...)."
        )

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
        """The workspace name."""
        if self._name is None:
            self._name = str(self.get_details().get("name", "default"))
        return self._name

    @property
    def service_context(self) -> HttpClient:
        """The HTTP client the SDK objects use (for advanced calls)."""
        return self._client

    def get_details(self) -> Dict[str, Any]:
        """What the server says about itself: ``name``, ``serverVersion``, ``maxUploadBytes``,
        plus ``endpoint``."""
        details = self._client.json("GET", "/v1/workspace")
        if not isinstance(details, dict):
            details = {}
        details["endpoint"] = self.endpoint
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
