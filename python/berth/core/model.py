"""The model registry and inference configurations, like ``azureml.core.model``."""

from __future__ import annotations

import ast
import json
import keyword
import logging
import os
import re
import shutil
import tempfile
from datetime import datetime
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Union
from urllib.parse import quote

from .._archive import extract_tar, pack_directory, pack_file
from .._http import MultipartBody
from ..exceptions import (
    ModelNotFoundException,
    ModelPathNotFoundException,
    UserErrorException,
    WebserviceException,
)
from .environment import Environment

if TYPE_CHECKING:  # pragma: no cover
    from .webservice.webservice import Webservice, WebserviceDeploymentConfiguration
    from .workspace import Workspace

__all__ = ["Model", "InferenceConfig"]

_logger = logging.getLogger("berth")

MODEL_NAME_REGEX = r"^[a-zA-Z0-9][a-zA-Z0-9\-\._]{0,254}$"

#: Frameworks a model can be registered with (``Model.Framework.*``).
_FRAMEWORKS = ("Custom", "TensorFlow", "ScikitLearn", "Onnx", "TfKeras", "PyTorch", "Multi")
#: Frameworks the reference deploys without an entry script ("no-code").
_NO_CODE_FRAMEWORKS = ("Onnx", "ScikitLearn", "TensorFlow", "Multi")


def _parse_time(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _check_str_dict(value: Any, what: str) -> Dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise WebserviceException(f"Error, {what} must be a dict of string keys and string values.")
    return dict(value)


def _filter_params(values: Optional[Sequence[Any]], what: str) -> List[str]:
    """``["k", ["k2", "v2"]]`` → ``["k", "k2=v2"]`` (the reference's list filters)."""
    if values is None:
        return []
    if not isinstance(values, list):
        raise WebserviceException(f'Error, {what} must be a list of keys or [key, value] pairs, e.g. ["k", ["k2", "v2"]].')
    out: List[str] = []
    for item in values:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            out.append(f"{item[0]}={item[1]}")
        else:
            raise WebserviceException(f"Error, invalid {what} filter {item!r}: use a key or a [key, value] pair.")
    return out


class Model:
    """A registered model version: an immutable file or folder with tags, properties and a framework.

    ``Model(workspace, name=..., version=...)`` (or ``id="name:version"``) fetches a version; with a
    name only, the newest version matching the other filters. Berth: ``Model(workspace, name,
    alias="champion")`` (or ``id="name@champion"``, ``alias="latest"``) fetches what an alias points
    at; deploying that model makes the service follow the alias.

    :raises ModelNotFoundException: No such model (also a ``WebserviceException``).
    """

    class Framework:
        """Model framework names."""

        CUSTOM = "Custom"
        TENSORFLOW = "TensorFlow"
        SCIKITLEARN = "ScikitLearn"
        ONNX = "Onnx"
        TFKERAS = "TfKeras"
        PYTORCH = "PyTorch"
        MULTI = "Multi"

    def __init__(
        self,
        workspace: "Workspace",
        name: Optional[str] = None,
        id: Optional[str] = None,
        tags: Optional[List[Any]] = None,
        properties: Optional[List[Any]] = None,
        version: Optional[int] = None,
        run_id: Optional[str] = None,
        model_framework: Optional[str] = None,
        expand: bool = True,
        **kwargs: Any,
    ) -> None:
        # Berth: ``alias="champion"`` (or ``id="name@champion"``) fetches the version an alias
        # points at; a keyword argument, so the v1 signature stays as azureml-core's.
        alias: Optional[str] = kwargs.pop("alias", None)
        self.workspace = workspace
        self._init_empty()
        payload = kwargs.get("_payload")
        if payload is not None:
            self._apply(payload)
            return
        if not id and not name:
            raise WebserviceException("Error, one of id or name must be provided.")
        if id and "@" in id:
            name, _, alias = id.partition("@")
            id = None
        if alias is not None:
            if version is not None:
                raise WebserviceException(
                    f"Error, give either version ({version}) or alias ({alias!r}) for model {name}, not both."
                )
            assert name is not None
            if alias == "latest":
                payload = Model._fetch(workspace, name, None)
            else:
                payload = Model._fetch(workspace, name, Model._alias_version(workspace, name, alias))
            self._apply(payload)
            self.reference = f"{name}@{alias}"
            return
        if id:
            if ":" not in id:
                raise WebserviceException(f"Error, invalid model id {id}: it must be <name>:<version>.")
            name, _, text = id.rpartition(":")
            version = int(text) if text.isdigit() else None
            if version is None:
                raise WebserviceException(f"Error, invalid model id {id}: the version must be a number.")
        assert name is not None
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        if version is not None and tags is None and properties is None and run_id is None and model_framework is None:
            payload = Model._fetch(workspace, name, version)
        elif version is None and tags is None and properties is None and run_id is None and model_framework is None:
            payload = Model._fetch(workspace, name, None)
        else:
            matches = Model.list(
                workspace, name=name, tags=tags, properties=properties, run_id=run_id, model_framework=model_framework
            )
            matches = [m for m in matches if version is None or m.version == version]
            if not matches:
                raise ModelNotFoundException(
                    f"ModelNotFound: Model with name {name}{', version ' + str(version) if version is not None else ''} "
                    "and the given filters not found in provided workspace",
                    code="not_found",
                    status_code=404,
                )
            payload = matches[0]._payload
        self._apply(payload)

    def _init_empty(self) -> None:
        self._payload: Dict[str, Any] = {}
        self.id: str = ""
        self.name: str = ""
        self.version: int = 0
        self.description: Optional[str] = None
        self.tags: Dict[str, str] = {}
        self.properties: Dict[str, str] = {}
        self.created_time: Optional[datetime] = None
        self.created_by: Optional[str] = None
        self.model_framework: Optional[str] = None
        self.model_framework_version: Optional[str] = None
        self.experiment_name: Optional[str] = None
        self.run_id: Optional[str] = None
        self.mime_type = "application/json"
        self.unpack = False
        self.url: Optional[str] = None
        self.datasets: Dict[str, Any] = {}
        self.resource_configuration: Any = None
        self.sample_input_dataset_id: Optional[str] = None
        self.sample_output_dataset_id: Optional[str] = None
        #: Berth: ``file`` or ``folder``.
        self.kind: str = "file"
        #: Berth: the basename of the registered path (the name scoring code sees).
        self.asset_name: str = ""
        #: Berth: total size in bytes, number of files and content digest.
        self.size: int = 0
        self.file_count: int = 0
        self.content_digest: str = ""
        #: Berth: services whose revisions use this version.
        self.used_by: List[str] = []
        #: Berth: the aliases of this model name, alias → version.
        self.aliases: Dict[str, int] = {}
        #: Berth: ``name@alias`` when fetched by alias (deploying it makes the service follow it).
        self.reference: Optional[str] = None
        #: Berth: after a registration, the services following ``name@latest`` and what happens to each.
        self.followers: List[Dict[str, Any]] = []

    def _apply(self, payload: Dict[str, Any]) -> None:
        self._payload = dict(payload)
        self.id = str(payload.get("id") or f"{payload['name']}:{payload['version']}")
        self.name = str(payload["name"])
        self.version = int(payload["version"])
        self.description = payload.get("description")
        self.tags = dict(payload.get("tags") or {})
        self.properties = dict(payload.get("properties") or {})
        self.created_time = _parse_time(payload.get("createdTime"))
        self.created_by = payload.get("createdBy")
        self.model_framework = payload.get("framework")
        self.model_framework_version = payload.get("frameworkVersion")
        self.experiment_name = payload.get("experimentName")
        self.run_id = payload.get("runId")
        self.kind = str(payload.get("kind") or "file")
        self.asset_name = str(payload.get("assetName") or "")
        self.size = int(payload.get("size") or 0)
        self.file_count = int(payload.get("fileCount") or 0)
        self.content_digest = str(payload.get("contentDigest") or "")
        self.used_by = list(payload.get("usedBy") or [])
        self.aliases = {str(k): int(v) for k, v in (payload.get("aliases") or {}).items()}
        self.followers = list(payload.get("followers") or [])
        self.url = f"{self.workspace.endpoint}/v1/models/{quote(self.name, safe='')}/versions/{self.version}/content"

    @staticmethod
    def _fetch(workspace: "Workspace", name: str, version: Optional[int]) -> Dict[str, Any]:
        if version is not None and not isinstance(version, int):
            raise WebserviceException("Error, version must be an int.")
        path = f"/v1/models/{quote(name, safe='')}" + (f"/versions/{version}" if version is not None else "")
        try:
            payload: Dict[str, Any] = workspace.service_context.json("GET", path)
        except WebserviceException as e:
            if e.status_code == 404:
                shown = f"name {name}" + (f", version {version}" if version is not None else "")
                raise ModelNotFoundException(
                    f"ModelNotFound: Model with {shown} not found in provided workspace",
                    code=e.code,
                    status_code=404,
                    hint=e.hint,
                ) from None
            raise
        return payload

    @staticmethod
    def deserialize(workspace: "Workspace", model_payload: Dict[str, Any]) -> "Model":
        """A Model from a server payload (or :meth:`serialize` output)."""
        payload = dict(model_payload)
        payload.setdefault("framework", payload.get("framework"))
        return Model(workspace, _payload=payload)

    # -- registry --------------------------------------------------------------------------------

    @staticmethod
    def register(
        workspace: "Workspace",
        model_path: str,
        model_name: str,
        tags: Optional[Dict[str, str]] = None,
        properties: Optional[Dict[str, str]] = None,
        description: Optional[str] = None,
        datasets: Optional[List[Any]] = None,
        model_framework: Optional[str] = None,
        model_framework_version: Optional[str] = None,
        child_paths: Optional[List[str]] = None,
        sample_input_dataset: Any = None,
        sample_output_dataset: Any = None,
        resource_configuration: Any = None,
        **kwargs: Any,
    ) -> "Model":
        """Registers a file or folder as a new version of ``model_name`` (version = previous + 1).

        :param model_path: A local file or folder; its basename is kept (scoring code finds
            ``$AZUREML_MODEL_DIR/<basename>``).
        :param child_paths: For a folder: the files or subfolders (relative to it) to include.
        :param kwargs: Berth: ``experiment_name`` and ``run_id`` recorded with the model.
        :raises WebserviceException: Invalid arguments, or the server refused the upload.
        """
        unexpected = sorted(set(kwargs) - {"experiment_name", "run_id"})
        if unexpected:
            raise TypeError(f"register() got an unexpected keyword argument '{unexpected[0]}'")
        errors: List[str] = []
        if not isinstance(model_name, str) or not re.match(MODEL_NAME_REGEX, model_name):
            errors.append(
                f"Error, provided model name {model_name!r} is invalid. It must only consist of letters, "
                "numbers, dashes, periods, or underscores, start with a letter or number, and be between "
                "1 and 255 characters long."
            )
        if model_framework_version and not model_framework:
            errors.append("Model framework version cannot be provided without a valid framework")
        try:
            tags = _check_str_dict(tags, "tags")
            properties = _check_str_dict(properties, "properties")
        except WebserviceException as e:
            errors.append(e.message)
        if errors:
            raise WebserviceException("\n".join(errors))
        if not isinstance(model_path, str) or not os.path.exists(model_path):
            raise ModelPathNotFoundException(f'Error, provided model path "{model_path}" cannot be found.')
        for name, value in (
            ("datasets", datasets),
            ("sample_input_dataset", sample_input_dataset),
            ("sample_output_dataset", sample_output_dataset),
            ("resource_configuration", resource_configuration),
        ):
            if value:
                _logger.warning("Model.register: %s is not used by Berth and was ignored.", name)
        is_dir = os.path.isdir(model_path)
        if child_paths and not is_dir:
            raise WebserviceException("Error, child_paths can only be given when model_path is a folder.")
        asset_name = os.path.basename(os.path.normpath(os.path.abspath(model_path)))
        metadata: Dict[str, Any] = {
            "name": model_name,
            "kind": "folder" if is_dir else "file",
            "assetName": asset_name,
            "description": description,
            "tags": tags,
            "properties": properties,
            "framework": model_framework,
            "frameworkVersion": model_framework_version,
            "experimentName": kwargs.get("experiment_name"),
            "runId": kwargs.get("run_id"),
        }
        print(f"Registering model {model_name}")
        if is_dir:
            content, size, _ = pack_directory(model_path, only=child_paths)
            content_type = "application/x-tar"
        else:
            content = open(model_path, "rb")
            size = os.fstat(content.fileno()).st_size
            content_type = "application/octet-stream"
        try:
            body = MultipartBody(
                [
                    ("metadata", "application/json", json.dumps(metadata).encode("utf-8"), 0),
                    ("content", content_type, content, size),  # type: ignore[list-item]
                ]
            )
            payload = workspace.service_context.json(
                "POST",
                "/v1/models",
                body=body,  # type: ignore[arg-type]
                content_type=body.content_type,
                content_length=body.length,
                expect=(201,),
                what="register model",
            )
        finally:
            content.close()
        return Model(workspace, _payload=payload)

    @staticmethod
    def list(
        workspace: "Workspace",
        name: Optional[str] = None,
        tags: Optional[List[Any]] = None,
        properties: Optional[List[Any]] = None,
        run_id: Optional[str] = None,
        latest: bool = False,
        dataset_id: Optional[str] = None,
        expand: bool = True,
        page_count: int = 255,
        model_framework: Optional[str] = None,
    ) -> List["Model"]:
        """Registered model versions, newest first, filtered.

        :param tags: ``["key", ["key2", "value2"]]``: every entry must match.
        :param properties: Same form as ``tags``.
        :param latest: Only the newest matching version of each name.
        :param page_count: Accepted for compatibility (20..255); the server answers in one page.
        """
        if not isinstance(page_count, int) or page_count < 20 or page_count > 255:
            raise WebserviceException("Error, page_count must be between 20 and 255.")
        params: List[Any] = []
        if name:
            params.append(("name", name))
        params += [("tag", t) for t in _filter_params(tags, "tags")]
        params += [("property", p) for p in _filter_params(properties, "properties")]
        if model_framework:
            params.append(("framework", model_framework))
        if latest and not run_id:
            params.append(("latest", True))
        if dataset_id:
            _logger.warning("Model.list: dataset_id is not used by Berth and was ignored.")
        payload = workspace.service_context.json("GET", "/v1/models", params=params)
        models = [Model(workspace, _payload=item) for item in payload.get("value", [])]
        if run_id:
            models = [m for m in models if m.run_id == run_id]
            if latest:
                seen: Dict[str, Model] = {}
                for m in models:
                    seen.setdefault(m.name, m)
                models = list(seen.values())
        return models

    # -- one version -----------------------------------------------------------------------------

    def _path(self) -> str:
        return f"/v1/models/{quote(self.name, safe='')}/versions/{self.version}"

    def download(self, target_dir: str = ".", exist_ok: bool = False, exists_ok: Optional[bool] = None) -> str:
        """Downloads the model file or folder into ``target_dir``.

        :param exist_ok: Replace files that already exist.
        :return: The path of the downloaded file or folder (``target_dir/<basename>``).
        :raises WebserviceException: ``File already exists.`` when it does and ``exist_ok`` is false.
        """
        if exists_ok is not None:
            exist_ok = exists_ok
        os.makedirs(target_dir, exist_ok=True)
        destination = os.path.join(target_dir, self.asset_name)
        if os.path.exists(destination) and not exist_ok:
            raise WebserviceException(f"File already exists. {destination}")
        with tempfile.TemporaryFile(prefix="berth-download-") as sink:
            self.workspace.service_context.request(
                "GET", self._path() + "/content", sink=sink, what="download model"  # type: ignore[arg-type]
            )
            sink.seek(0)
            if self.kind == "folder":
                extract_tar(sink, target_dir, exist_ok=True)  # type: ignore[arg-type]
                os.makedirs(destination, exist_ok=True)
            else:
                with open(destination, "wb") as out:
                    shutil.copyfileobj(sink, out)
        return destination

    def _patch(self, body: Dict[str, Any]) -> None:
        payload = self.workspace.service_context.json("PATCH", self._path(), json_body=body, what="update model")
        self._apply(payload)

    def update(
        self,
        tags: Optional[Dict[str, str]] = None,
        description: Optional[str] = None,
        sample_input_dataset: Any = None,
        sample_output_dataset: Any = None,
        resource_configuration: Any = None,
    ) -> None:
        """Replaces the tags (the whole dict) and/or the description."""
        body: Dict[str, Any] = {}
        if tags is not None:
            body["tags"] = _check_str_dict(tags, "tags")
        if description is not None:
            body["description"] = description
        for name, value in (
            ("sample_input_dataset", sample_input_dataset),
            ("sample_output_dataset", sample_output_dataset),
            ("resource_configuration", resource_configuration),
        ):
            if value is not None:
                _logger.warning("Model.update: %s is not used by Berth and was ignored.", name)
        if not body:
            return
        self._patch(body)

    def update_tags_properties(
        self,
        add_tags: Optional[Dict[str, str]] = None,
        remove_tags: Optional[List[str]] = None,
        add_properties: Optional[Dict[str, str]] = None,
    ) -> None:
        """Adds and removes tags and adds properties in one call."""
        body: Dict[str, Any] = {}
        if add_tags:
            body["addTags"] = _check_str_dict(add_tags, "tags")
        if remove_tags:
            body["removeTags"] = list(remove_tags)
        if add_properties:
            body["addProperties"] = self._new_properties(add_properties)
        if body:
            self._patch(body)

    def add_tags(self, tags: Dict[str, str]) -> None:
        """Adds (or changes) tags."""
        self._patch({"addTags": _check_str_dict(tags, "tags")})

    def remove_tags(self, tags: List[str]) -> None:
        """Removes tags by key."""
        self._patch({"removeTags": list(tags)})

    def _new_properties(self, properties: Dict[str, str]) -> Dict[str, str]:
        properties = _check_str_dict(properties, "properties")
        existing = sorted(k for k in properties if k in self.properties)
        if existing:
            raise WebserviceException(
                "Error, properties are immutable, the following keys cannot be added/modified: " + ", ".join(existing)
            )
        return properties

    def add_properties(self, properties: Dict[str, str]) -> None:
        """Adds properties (add-only: existing keys cannot be changed)."""
        self._patch({"addProperties": self._new_properties(properties)})

    @staticmethod
    def _alias_version(workspace: "Workspace", name: str, alias: str) -> int:
        listed: Dict[str, Any] = workspace.service_context.json(
            "GET", f"/v1/models/{quote(name, safe='')}/aliases", what="list aliases"
        )
        for item in listed.get("value") or []:
            if item.get("alias") == alias:
                return int(item["version"])
        raise ModelNotFoundException(
            f"ModelNotFound: Model {name} has no alias {alias!r}; Model.set_alias sets one",
            code="not_found",
            status_code=404,
        )

    def set_alias(self, alias: str, version: Optional[int] = None) -> Dict[str, Any]:
        """Berth: points ``name@alias`` at ``version`` (this model's version by default).

        Services following the alias are updated (``followPolicy: auto``), queued while busy, or
        shown the update (``manual``). Returns the answer: ``alias``, ``previous`` and ``followers``
        (each with ``service``, ``reference``, ``from``, ``to``, ``action``).

        :raises WebserviceException: ``latest`` or an invalid alias name (400), no such version (404).
        """
        target = self.version if version is None else version
        if not isinstance(target, int) or isinstance(target, bool):
            raise WebserviceException(f"Error, version must be an int, not {target!r}.")
        answer: Dict[str, Any] = self.workspace.service_context.json(
            "PUT",
            f"/v1/models/{quote(self.name, safe='')}/aliases/{quote(alias, safe='')}",
            json_body={"version": target},
            what="set alias",
        )
        self.aliases[alias] = target
        return answer

    def remove_alias(self, alias: str) -> None:
        """Berth: removes ``name@alias``; services following it keep serving their version."""
        self.workspace.service_context.request(
            "DELETE",
            f"/v1/models/{quote(self.name, safe='')}/aliases/{quote(alias, safe='')}",
            expect=(200, 204),
            what="remove alias",
        )
        self.aliases.pop(alias, None)

    def delete(self) -> None:
        """Deletes this version.

        :raises WebserviceException: A service uses it (code ``precondition_failed``, HTTP 412).
        """
        self.workspace.service_context.request("DELETE", self._path(), expect=(200, 204), what="delete model")

    def serialize(self) -> Dict[str, Any]:
        """The model as a dict (the reference's keys plus Berth's)."""
        return {
            "createdTime": self._payload.get("createdTime"),
            "createdBy": self.created_by,
            "description": self.description,
            "id": self.id,
            "mimeType": self.mime_type,
            "name": self.name,
            "framework": self.model_framework,
            "frameworkVersion": self.model_framework_version,
            "tags": dict(self.tags),
            "properties": dict(self.properties),
            "unpack": self.unpack,
            "url": self.url,
            "version": self.version,
            "experimentName": self.experiment_name,
            "runId": self.run_id,
            "runDetails": None,
            "datasets": {},
            "resourceConfiguration": None,
            "sampleInputDatasetId": None,
            "sampleOutputDatasetId": None,
            "kind": self.kind,
            "assetName": self.asset_name,
            "size": self.size,
            "fileCount": self.file_count,
            "contentDigest": self.content_digest,
            "usedBy": list(self.used_by),
        }

    def __repr__(self) -> str:
        return (
            f"Model(workspace={self.workspace!r}, name={self.name}, id={self.id}, version={self.version}, "
            f"tags={self.tags}, properties={self.properties})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.id == self.id and other.workspace == self.workspace

    def __hash__(self) -> int:
        return hash(self.id)

    # -- scoring-side helpers and deployment -----------------------------------------------------

    @staticmethod
    def get_model_path(model_name: str, version: Optional[int] = None, _workspace: Optional["Workspace"] = None) -> str:
        """The local path of a model.

        Inside a scoring worker it resolves from ``AZUREML_MODEL_DIR`` (one model: its version folder;
        several: ``<root>/<name>/<version>/``), then ``$AML_APP_ROOT/azureml-models``, then
        ``./<model_name>``. With ``_workspace`` and nothing found locally, the model is downloaded to
        ``./azureml-models/<name>/<version>/``.

        :raises ModelNotFoundException: Not found.
        """
        if version is not None and not isinstance(version, int):
            raise WebserviceException("version should be an int")
        if model_name is None:
            raise WebserviceException("model_name is None")
        model_dir = os.environ.get("AZUREML_MODEL_DIR", "")
        roots: List[str] = []
        if model_dir:
            roots.append(model_dir)
            normalized = os.path.normpath(model_dir)
            parent = os.path.dirname(normalized)
            if os.path.basename(parent) == model_name and (
                version is None or os.path.basename(normalized) == str(version)
            ):
                roots.insert(0, os.path.dirname(parent))
        app_root = os.environ.get("AML_APP_ROOT") or os.getcwd()
        roots.append(os.path.join(app_root, "azureml-models"))
        for root in roots:
            found = _resolve_in_root(root, model_name, version)
            if found is not None:
                return found
        if version is None and os.path.exists(model_name):
            return model_name
        if _workspace is not None:
            model = Model(_workspace, name=model_name, version=version)
            target = os.path.join("azureml-models", model.name, str(model.version))
            return model.download(target_dir=target, exist_ok=True)
        raise ModelNotFoundException(
            f"Model {model_name} not found in cache at {model_dir or roots[-1]} or in current working "
            f"directory {os.getcwd()}. For more info, set logging level to DEBUG."
        )

    @staticmethod
    def deploy(
        workspace: "Workspace",
        name: str,
        models: Sequence[Union["Model", str]],
        inference_config: Optional["InferenceConfig"] = None,
        deployment_config: Optional["WebserviceDeploymentConfiguration"] = None,
        deployment_target: Any = None,
        overwrite: bool = False,
        show_output: bool = False,
    ) -> "Webservice":
        """Deploys models as a web service and returns it; the deployment runs on the server, so
        call ``wait_for_deployment()`` on the result.

        :param models: ``Model`` objects (or ``"name:version"`` strings).
        :param inference_config: Entry script, source directory and environment. Omitted: a no-code
            deployment of one model registered with ``model_framework`` ``Onnx``, ``ScikitLearn`` or
            ``TensorFlow`` (a built-in scorer and environment, as Azure ML's no-code deployment).
        :param deployment_config: ``AksWebservice``/``AciWebservice``/``LocalWebservice``
            ``.deploy_configuration(...)``; ACI defaults when omitted.
        :param deployment_target: Accepted for compatibility; Berth runs every service itself.
        :param overwrite: Replace an existing service of the same name (as a new revision).
        """
        from .webservice.webservice import Webservice

        return Webservice._deploy(
            workspace, name, models, inference_config, deployment_config, deployment_target, overwrite, show_output
        )


def _resolve_in_root(root: str, model_name: str, version: Optional[int]) -> Optional[str]:
    model_dir = os.path.join(root, model_name)
    if not os.path.isdir(model_dir):
        return None
    chosen: Optional[int] = version
    if chosen is None:
        versions = [int(v) for v in os.listdir(model_dir) if v.isdigit()]
        chosen = max(versions) if versions else None
    if chosen is None:
        return None
    version_dir = os.path.join(model_dir, str(chosen))
    if not os.path.isdir(version_dir):
        return None
    entries = sorted(os.listdir(version_dir))
    if len(entries) != 1:
        raise WebserviceException(f"Dir {version_dir} can contain only 1 file or folder. Found {entries}")
    return os.path.join(version_dir, entries[0])


class InferenceConfig:
    """What runs a model: an entry script (``init()`` + ``run()``), the source directory it lives in,
    and the environment.

    Validated on construction like the reference (``WebserviceException`` with every problem;
    ``UserErrorException`` when the script does not parse).

    :param entry_script: Path of the scoring script, relative to ``source_directory`` when given,
        else to the current directory.
    :param source_directory: Folder uploaded with the script (its basename becomes
        ``AZUREML_SOURCE_DIRECTORY``).
    :param environment: An :class:`~berth.core.environment.Environment` (registered when needed).
    :param conda_file: Legacy: a conda file (relative to ``source_directory``) used as the
        environment ``<service>-env``. Not with ``environment``.
    :param runtime, extra_docker_file_steps, enable_gpu, base_image, base_image_registry,
        cuda_version: Legacy image settings, validated and otherwise not used by Berth.
    """

    def __init__(
        self,
        entry_script: str,
        runtime: Optional[str] = None,
        conda_file: Optional[str] = None,
        extra_docker_file_steps: Optional[str] = None,
        source_directory: Optional[str] = None,
        enable_gpu: Optional[bool] = None,
        description: Optional[str] = None,
        base_image: Optional[str] = None,
        base_image_registry: Any = None,
        cuda_version: Optional[str] = None,
        environment: Optional[Environment] = None,
    ) -> None:
        self.entry_script = entry_script
        self.runtime = runtime
        self.conda_file = conda_file
        self.extra_docker_file_steps = extra_docker_file_steps
        self.source_directory = os.path.abspath(source_directory) if source_directory else None
        self.enable_gpu = enable_gpu
        self.description = description
        self.base_image = base_image
        self.base_image_registry = base_image_registry
        self.cuda_version = cuda_version
        self.environment = environment
        self.validate_configuration()

    def _script_path(self) -> str:
        if self.source_directory:
            return os.path.join(self.source_directory, self.entry_script)
        return self.entry_script

    def validate_configuration(self) -> None:
        """Checks the configuration; raises ``WebserviceException`` listing every problem."""
        errors: List[str] = []
        if not self.entry_script:
            raise WebserviceException("Error, need to specify entry_script.")
        if self.source_directory and not os.path.isdir(self.source_directory):
            raise WebserviceException(f"Error, source_directory {self.source_directory} does not exist.")
        script = self._script_path()
        if not os.path.isfile(script):
            relative_to = "source_directory" if self.source_directory else "current working directory"
            raise WebserviceException(
                f"Error, provided entry_script {script} doesn't exist. "
                f"entry_script should be path relative to {relative_to}"
            )
        if self.source_directory:
            real_root = os.path.realpath(self.source_directory)
            real_script = os.path.realpath(script)
            if os.path.commonpath([real_root, real_script]) != real_root:
                errors.append(f"Error, entry_script {self.entry_script} must be inside source_directory.")
        stem, extension = os.path.splitext(os.path.basename(self.entry_script))
        if extension.lower() != ".py":
            errors.append("Invalid driver type. Currently only Python drivers are supported.")
        elif not stem.isidentifier() or keyword.iskeyword(stem):
            errors.append(
                f"Error, entry_script file name {os.path.basename(self.entry_script)} is not a valid Python "
                "module name: use letters, digits and underscores (e.g. score.py)."
            )
        if self.environment is not None:
            if not isinstance(self.environment, Environment):
                errors.append("Error, environment must be an Environment object.")
            legacy = [
                self.runtime,
                self.conda_file,
                self.extra_docker_file_steps,
                self.enable_gpu,
                self.cuda_version,
                self.base_image,
            ]
            if any(v is not None for v in legacy):
                errors.append(
                    "Error, unable to provide runtime, conda_file, extra_docker_file_steps, enable_gpu, "
                    "cuda_version, or base_image along with an environment object."
                )
            elif (
                isinstance(self.environment, Environment)
                and self.environment.docker.base_dockerfile
                and self.environment.docker.base_image
            ):
                errors.append("Error, only one of base_dockerfile or base_image should be provided.")
        else:
            if self.runtime is not None and self.runtime.lower() not in ("python", "spark-py"):
                errors.append("Error, provided runtime not supported. Possible values are: python, spark-py")
            if self.cuda_version is not None and str(self.cuda_version) not in ("9.0", "9.1", "10.0"):
                errors.append(
                    f"Error, provided cuda_version {self.cuda_version} not supported. Possible values are: 9.0, 9.1, 10.0"
                )
            if self.conda_file is not None:
                conda_path = self._conda_path()
                if not os.path.isfile(conda_path):
                    errors.append(f"Error, unable to find conda_file {conda_path}.")
            if self.extra_docker_file_steps is not None:
                steps = self.extra_docker_file_steps
                if self.source_directory:
                    steps = os.path.join(self.source_directory, steps)
                if not os.path.isfile(steps):
                    errors.append(f"Error, unable to find extra_docker_file_steps {steps}.")
        if self.base_image_registry is not None:
            registry = self.base_image_registry
            parts = [getattr(registry, k, None) for k in ("address", "username", "password")]
            if isinstance(registry, dict):
                parts = [registry.get(k) for k in ("address", "username", "password")]
            if any(parts) and not all(parts):
                errors.append("Error, base_image_registry needs address, username and password together.")
        if errors:
            raise WebserviceException("\n".join(errors))
        try:
            with open(script, "rb") as f:
                ast.parse(f.read(), filename=script)
        except SyntaxError as e:
            raise UserErrorException(
                f"Error, entry_script {script} has a syntax error: {e}. Please check it and try local "
                "deployment to verify."
            ) from e
        for name in ("runtime", "extra_docker_file_steps", "enable_gpu", "base_image", "cuda_version"):
            if getattr(self, name) is not None and self.environment is None:
                _logger.warning("InferenceConfig: %s is a legacy image setting that Berth does not use.", name)

    def _conda_path(self) -> str:
        assert self.conda_file is not None
        if self.source_directory and not os.path.isabs(self.conda_file):
            return os.path.join(self.source_directory, self.conda_file)
        return self.conda_file

    def _request(self, workspace: "Workspace", service_name: str) -> Dict[str, Any]:
        """Uploads the source and resolves the environment: the ``inferenceConfig`` of a create or
        update request (``environment`` is ``None`` for the workspace default)."""
        self.validate_configuration()
        if self.source_directory:
            archive, size, _ = pack_directory(self.source_directory, snapshot_rules=True)
            entry = os.path.normpath(self.entry_script).replace(os.sep, "/")
            directory_name: Optional[str] = os.path.basename(os.path.normpath(self.source_directory))
        else:
            entry = os.path.basename(self.entry_script)
            archive, size = pack_file(self.entry_script, entry)
            directory_name = None
        try:
            snapshot = workspace.service_context.json(
                "POST",
                "/v1/snapshots",
                body=archive,
                content_type="application/x-tar",
                content_length=size,
                expect=(200, 201),
                what="upload source directory",
            )
        finally:
            archive.close()
        environment: Optional[str] = None
        if self.environment is not None:
            environment = self.environment._reference(workspace)
        elif self.conda_file is not None:
            env = Environment.from_conda_specification(f"{service_name}-env", self._conda_path())
            environment = env._reference(workspace)
        return {
            "entryScript": entry,
            "sourceSnapshot": snapshot["id"],
            "sourceDirectoryName": directory_name,
            "environment": environment,
        }

    def serialize(self) -> Dict[str, Any]:
        """The configuration in ``inferenceconfig.json`` form."""
        out: Dict[str, Any] = {
            "entryScript": self.entry_script,
            "sourceDirectory": self.source_directory,
            "description": self.description,
            "environment": Environment._serialize_to_dict(self.environment) if self.environment else None,
        }
        for key, value in (
            ("runtime", self.runtime),
            ("condaFile", self.conda_file),
            ("extraDockerfileSteps", self.extra_docker_file_steps),
            ("enableGpu", self.enable_gpu),
            ("baseImage", self.base_image),
            ("cudaVersion", self.cuda_version),
        ):
            if value is not None:
                out[key] = value
        return out

    def __repr__(self) -> str:
        return f"InferenceConfig({json.dumps(self.serialize())})"


def _no_code_models(models: Iterable[Any]) -> bool:
    """Whether a model list qualifies for the reference's no-code deployment."""
    items = list(models)
    return len(items) == 1 and getattr(items[0], "model_framework", None) in _NO_CODE_FRAMEWORKS
