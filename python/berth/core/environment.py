"""Environments: versioned Python environment specs, like ``azureml.core.environment``.

Berth builds an environment as a virtual environment of the server's (or the requested) Python with
pip (or uv); workers run in it. Docker settings are accepted and recorded, and the server says in the
registration's warnings what it did not use.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ..exceptions import UserErrorException
from .conda_dependencies import CondaDependencies

if TYPE_CHECKING:  # pragma: no cover
    from .workspace import Workspace

__all__ = ["Environment", "PythonSection", "DockerSection"]

_logger = logging.getLogger("berth")

#: File names of :meth:`Environment.save_to_directory`, as azureml-core writes them.
_ENV_FILE = "azureml_environment.json"
_CONDA_FILE = "conda_dependencies.yml"


class PythonSection:
    """The Python part of an environment.

    :ivar user_managed_dependencies: ``True`` to run an existing interpreter as is
        (``interpreter_path``) without installing anything.
    :ivar interpreter_path: The interpreter used when ``user_managed_dependencies`` is true.
    :ivar conda_dependencies: The packages, as a conda spec: an empty ``CondaDependencies()`` by
        default (so ``add_pip_package`` works); for an environment made from pip requirements or
        fetched from the server, those requirements as a pip section.
    :ivar conda_dependencies_file: Accepted for compatibility; the server cannot read client files.
    """

    def __init__(self) -> None:
        self.user_managed_dependencies: bool = False
        self.interpreter_path: str = "python"
        default = CondaDependencies()
        self.conda_dependencies: Optional[CondaDependencies] = default
        self.conda_dependencies_file: Optional[str] = None
        self.base_conda_environment: Optional[str] = None
        #: The YAML of ``conda_dependencies`` when the spec was made or fetched: unchanged, the
        #: pip requirements the environment was made from are registered as they are.
        self._conda_baseline: Optional[str] = default.serialize_to_string()

    def _conda_changed(self) -> bool:
        """Whether ``conda_dependencies`` was replaced or edited since the spec was made."""
        conda = self.conda_dependencies
        if conda is None:
            return False
        return conda.serialize_to_string() != self._conda_baseline


class DockerSection:
    """Docker settings, recorded for compatibility; the local compute target runs workers without
    containers, so the server does not use them (it says so in the registration's warnings)."""

    def __init__(self) -> None:
        self.enabled: bool = False
        self._base_image: Optional[str] = None
        self._base_dockerfile: Optional[str] = None
        self.base_image_registry: Optional[Dict[str, Any]] = None
        self.shm_size: str = "2g"
        self.arguments: List[str] = []

    @property
    def base_image(self) -> Optional[str]:
        """The Docker base image (recorded, not used: a warning says so whenever it is set)."""
        return self._base_image

    @base_image.setter
    def base_image(self, value: Optional[str]) -> None:
        if value is not None:
            _warn_docker("base_image", value)
        self._base_image = value

    @property
    def base_dockerfile(self) -> Optional[str]:
        """The Dockerfile text (recorded, not used: a warning says so whenever it is set)."""
        return self._base_dockerfile

    @base_dockerfile.setter
    def base_dockerfile(self, value: Optional[str]) -> None:
        if value is not None:
            _warn_docker("base_dockerfile", value)
        self._base_dockerfile = value


def _warn_docker(field: str, value: str) -> None:
    shown = value if len(value) <= 60 else value[:57] + "..."
    _logger.warning(
        "Environment docker.%s is set (%r), but Berth runs workers without containers and does not use it: "
        "the service gets the environment's Python and packages only. Put what the image provided in "
        "the environment's pip or conda packages.",
        field,
        shown,
    )


class Environment:
    """A Python environment for scoring: packages, Python version and environment variables.

    ``Environment(name)`` starts an empty spec (the server's Python, no packages); register it with
    :meth:`register`, or pass it to an ``InferenceConfig`` and it is registered when deployed.

    :param name: The environment name (names starting with ``Microsoft`` or ``AzureML`` are reserved).
    :ivar version: The registered version as a string (``"1"``, ``"2"``, ...); ``None`` until registered.
    :ivar environment_variables: Variables set for the workers.
    :ivar python: :class:`PythonSection`.
    :ivar docker: :class:`DockerSection` (not used by Berth).
    :ivar python_version: Berth: the Python ``X.Y`` to build with (``None``: the server's default, or
        the one a conda spec names).
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        if not isinstance(name, str) or not name:
            raise UserErrorException("Error, environment name must be a non-empty string.")
        self.name: str = name
        self.version: Optional[str] = None
        self.description: Optional[str] = None
        self.environment_variables: Dict[str, str] = {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}
        self.python = PythonSection()
        self.docker = DockerSection()
        self.inferencing_stack_version: Optional[str] = None
        self.python_version: Optional[str] = None
        #: The text of the requirements file this environment was made from, if any.
        self._pip_requirements: Optional[str] = None
        #: Server-side details once registered or fetched.
        self.id: Optional[str] = None
        self.created_time: Optional[str] = None
        #: Berth: the server's build details (``state``, ``pythonPath``, ``logTail``, ...).
        self.build_details: Optional[Dict[str, Any]] = None
        self.warnings: List[str] = []
        self._registered: Optional[Tuple[str, str]] = None  # (endpoint, fingerprint)

    # -- constructors ----------------------------------------------------------------------------

    @staticmethod
    def from_pip_requirements(name: str, file_path: str, pip_version: Optional[str] = None) -> "Environment":
        """An environment with the packages of a pip requirements file (options such as
        ``--no-index`` or ``--find-links`` included).

        :param name: Environment name.
        :param file_path: Path of the ``requirements.txt``.
        :param pip_version: Accepted for compatibility (each environment comes with its installer).
        """
        if not os.path.isfile(file_path):
            raise UserErrorException(f"Error, pip requirements file {file_path} does not exist.")
        with open(file_path, encoding="utf-8") as f:
            text = f.read()
        env = Environment(name)
        env._pip_requirements = text
        return env

    @staticmethod
    def from_conda_specification(name: str, file_path: str) -> "Environment":
        """An environment from a conda environment file (YAML). Its ``pip:`` section is installed
        with pip, ``python=X.Y`` picks the interpreter, and other conda packages are installed with
        pip under the same name.

        :param name: Environment name.
        :param file_path: Path of the conda YAML file.
        """
        if not os.path.isfile(file_path):
            raise UserErrorException(f"Error, conda specification file {file_path} does not exist.")
        env = Environment(name)
        env.python.conda_dependencies = CondaDependencies(conda_dependencies_file_path=file_path)
        return env

    @staticmethod
    def from_existing_conda_environment(name: str, conda_environment_name: str) -> "Environment":
        """Not available: Berth builds environments from specs, not from local conda envs."""
        raise UserErrorException(
            "from_existing_conda_environment is not supported by Berth: export the environment "
            "(`conda env export`) and use Environment.from_conda_specification."
        )

    @staticmethod
    def from_docker_image(
        name: str,
        image: str,
        container_registry: Any = None,
        conda_specification: Optional[str] = None,
        pip_requirements: Optional[str] = None,
    ) -> "Environment":
        """An environment "on" a Docker image: Berth records the image (with a warning: it runs no
        containers) and uses the conda or pip file given for the packages.

        :param conda_specification: A conda YAML file for the packages.
        :param pip_requirements: A requirements file for the packages (not with
            ``conda_specification``).
        """
        env = Environment._with_packages(name, conda_specification, pip_requirements)
        env.docker.base_image = image
        env.docker.base_image_registry = container_registry
        return env

    @staticmethod
    def from_dockerfile(
        name: str,
        dockerfile: str,
        conda_specification: Optional[str] = None,
        pip_requirements: Optional[str] = None,
    ) -> "Environment":
        """An environment from a Dockerfile (a path or its text): Berth records it (with a warning:
        it runs no containers) and uses the conda or pip file given for the packages."""
        env = Environment._with_packages(name, conda_specification, pip_requirements)
        if os.path.isfile(dockerfile):
            with open(dockerfile, encoding="utf-8") as f:
                dockerfile = f.read()
        env.docker.base_dockerfile = dockerfile
        return env

    @staticmethod
    def _with_packages(
        name: str, conda_specification: Optional[str], pip_requirements: Optional[str]
    ) -> "Environment":
        if conda_specification and pip_requirements:
            raise UserErrorException(
                "Error, give conda_specification or pip_requirements for the packages, not both."
            )
        if conda_specification:
            return Environment.from_conda_specification(name, conda_specification)
        if pip_requirements:
            return Environment.from_pip_requirements(name, pip_requirements)
        return Environment(name)

    def save_to_directory(self, path: str, overwrite: bool = False) -> None:
        """Writes ``azureml_environment.json`` (and ``conda_dependencies.yml`` when there are conda
        dependencies) to ``path``, as azureml-core does; :meth:`load_from_directory` reads them.

        :raises UserErrorException: The files exist and ``overwrite`` is false.
        """
        os.makedirs(path, exist_ok=True)
        target = os.path.join(path, _ENV_FILE)
        conda_target = os.path.join(path, _CONDA_FILE)
        if not overwrite and (os.path.exists(target) or os.path.exists(conda_target)):
            raise UserErrorException(
                f"Error, {path} already holds an environment definition; pass overwrite=True to replace it."
            )
        with open(target, "w", encoding="utf-8") as f:
            json.dump(Environment._serialize_to_dict(self), f, indent=4)
        conda = self.python.conda_dependencies
        if conda is not None:
            conda.save(conda_target)

    @staticmethod
    def load_from_directory(path: str) -> "Environment":
        """The environment :meth:`save_to_directory` (or azureml-core) wrote to ``path``."""
        target = os.path.join(path, _ENV_FILE)
        try:
            with open(target, encoding="utf-8") as f:
                definition = json.load(f)
        except FileNotFoundError:
            raise UserErrorException(f"Error, {target} does not exist.") from None
        except ValueError as e:
            raise UserErrorException(f"Error, {target} is not valid JSON: {e}") from None
        if not isinstance(definition, dict) or not isinstance(definition.get("name"), str):
            raise UserErrorException(f"Error, {target} is not an environment definition (it needs a `name`).")
        env = Environment(definition["name"])
        env.environment_variables = dict(definition.get("environmentVariables") or {})
        env.inferencing_stack_version = definition.get("inferencingStackVersion")
        python = definition.get("python") or {}
        env.python.user_managed_dependencies = bool(python.get("userManagedDependencies", False))
        env.python.interpreter_path = str(python.get("interpreterPath") or "python")
        conda_file = os.path.join(path, _CONDA_FILE)
        if isinstance(python.get("condaDependencies"), dict):
            env.python.conda_dependencies = CondaDependencies(_underlying_structure=python["condaDependencies"])
        elif os.path.isfile(conda_file):
            env.python.conda_dependencies = CondaDependencies(conda_dependencies_file_path=conda_file)
        docker = definition.get("docker") or {}
        if docker.get("baseImage"):
            env.docker.base_image = docker["baseImage"]
        if docker.get("baseDockerfile"):
            env.docker.base_dockerfile = docker["baseDockerfile"]
        return env

    def clone(self, new_name: str) -> "Environment":
        """A copy under another name, not registered."""
        env = copy.deepcopy(self)
        env.name = new_name
        env.version = None
        env.id = None
        env.created_time = None
        env.build_details = None
        env._registered = None
        return env

    # -- registry --------------------------------------------------------------------------------

    def register(self, workspace: "Workspace") -> "Environment":
        """Registers the spec; the server assigns the version (an unchanged spec returns the newest
        version). Returns the registered environment.
        """
        if self.version is not None and self._registered is None:
            _logger.warning(
                "Environment version is set (%s); the server assigns versions and ignores it.", self.version
            )
        request = self._registration_request()
        answer = workspace.service_context.json(
            "POST", "/v1/environments", json_body=request, expect=(200, 201), what="register environment"
        )
        env = Environment._from_server(answer["environment"], workspace)
        for warning in env.warnings:
            _logger.warning("Environment %s: %s", env.id, warning)
        return env

    @staticmethod
    def get(
        workspace: "Workspace", name: str, version: Optional[str] = None, label: Optional[str] = None
    ) -> "Environment":
        """A registered environment: ``version`` (a string or int), else the newest.

        :raises WebserviceException: Not found (code ``not_found``), or ``label`` was given (Berth
            has no labels).
        """
        if version is not None and label is not None:
            raise UserErrorException("Only one of version or label can be specified")
        if label is not None:
            raise UserErrorException("Environment labels are not supported by Berth; pass version= instead.")
        if version is None:
            path = f"/v1/environments/{_quote(name)}"
        else:
            path = f"/v1/environments/{_quote(name)}/versions/{_quote(str(version))}"
        payload = workspace.service_context.json("GET", path, what="get environment")
        return Environment._from_server(payload, workspace)

    @staticmethod
    def list(workspace: "Workspace") -> Dict[str, "Environment"]:
        """The newest version of every environment, by name, curated ones (``AzureML-...``)
        included as in Azure ML."""
        payload = workspace.service_context.json(
            "GET", "/v1/environments", params={"latest": True, "curated": True}
        )
        out: Dict[str, Environment] = {}
        for item in payload.get("value", []):
            env = Environment._from_server(item, workspace)
            out.setdefault(env.name, env)
        return out

    def build(self, workspace: "Workspace", image_build_compute: Optional[str] = None) -> Dict[str, Any]:
        """Starts building this registered environment on the server now (instead of at its first
        deployment) and returns the build details (``state``, ``logTail``, ...); poll with
        :meth:`get` to follow it.

        :param image_build_compute: Accepted for compatibility (there is no image build compute).
        """
        if self.version is None:
            raise UserErrorException("Error, register the environment before building it.")
        payload = workspace.service_context.json(
            "POST",
            f"/v1/environments/{_quote(self.name)}/versions/{_quote(self.version)}/build",
            expect=(200, 202),
        )
        self.build_details = payload.get("build")
        return dict(self.build_details or {})

    # -- conversions -----------------------------------------------------------------------------

    @staticmethod
    def _from_server(payload: Dict[str, Any], workspace: Optional["Workspace"] = None) -> "Environment":
        env = Environment(str(payload["name"]))
        env.version = str(payload["version"])
        env.id = payload.get("id") or f"{env.name}:{env.version}"
        env.description = payload.get("description")
        env.created_time = payload.get("createdTime")
        env.build_details = payload.get("build")
        env.warnings = list(payload.get("warnings") or [])
        spec = payload.get("spec") or {}
        env.environment_variables = dict(spec.get("environmentVariables") or {})
        env.python_version = spec.get("pythonVersion")
        interpreter = spec.get("interpreterPath")
        if interpreter:
            env.python.user_managed_dependencies = True
            env.python.interpreter_path = interpreter
        else:
            requirements = [str(r) for r in spec.get("requirements") or []]
            env._pip_requirements = "\n".join(requirements)
            dependencies: List[Any] = [f"python={env.python_version}"] if env.python_version else []
            if requirements:
                dependencies.append({"pip": requirements})
            fetched = CondaDependencies(
                _underlying_structure={"name": "project_environment", "dependencies": dependencies, "channels": []}
            )
            env.python.conda_dependencies = fetched
            env.python._conda_baseline = fetched.serialize_to_string()
        if workspace is not None:
            env._registered = (workspace.endpoint, env._fingerprint())
        return env

    def _registration_request(self) -> Dict[str, Any]:
        """The ``POST /v1/environments`` body for this spec."""
        request: Dict[str, Any] = {"name": self.name}
        if self.description:
            request["description"] = self.description
        if self.python_version:
            request["pythonVersion"] = self.python_version
        bad = {k: v for k, v in self.environment_variables.items() if not isinstance(v, str)}
        if bad:
            raise UserErrorException(f"Error, environment variable values must be strings: {sorted(bad)}")
        if (
            self._pip_requirements is not None
            and not self.python.user_managed_dependencies
            and not self.python._conda_changed()
        ):
            request["pipRequirements"] = self._pip_requirements
            request["environmentVariables"] = dict(self.environment_variables)
            return request
        request["azureEnvironment"] = Environment._serialize_to_dict(self)
        conda = self.python.conda_dependencies
        if conda is not None and conda._raw_text is not None:
            request["azureEnvironment"]["python"]["condaDependencies"] = None
            request["condaFile"] = conda._raw_text
        return request

    def _fingerprint(self) -> str:
        return json.dumps(self._registration_request(), sort_keys=True)

    def _reference(self, workspace: "Workspace") -> str:
        """``name:version`` of this spec in ``workspace``, registering it when it is new or was
        changed since it was fetched or registered."""
        if (
            self.version is not None
            and self._registered is not None
            and self._registered == (workspace.endpoint, self._fingerprint())
        ):
            return f"{self.name}:{self.version}"
        registered = self.register(workspace)
        self.version = registered.version
        self.id = registered.id
        self.build_details = registered.build_details
        self._registered = (workspace.endpoint, self._fingerprint())
        return f"{registered.name}:{registered.version}"

    @staticmethod
    def _serialize_to_dict(environment: "Environment") -> Dict[str, Any]:
        """The Azure Environment JSON of an environment (``inferenceconfig.json``'s shape)."""
        conda = environment.python.conda_dependencies
        conda_json: Optional[Dict[str, Any]] = conda.as_dict() if conda is not None else None
        if environment._pip_requirements is not None and not environment.python._conda_changed():
            lines = [line.strip() for line in environment._pip_requirements.splitlines()]
            pip = [line for line in lines if line and not line.startswith("#")]
            conda_json = {"name": "project_environment", "dependencies": [{"pip": pip}] if pip else []}
            if environment.python_version:
                conda_json["dependencies"].insert(0, f"python={environment.python_version}")
        docker: Dict[str, Any] = {
            "enabled": environment.docker.enabled,
            "baseImage": environment.docker.base_image,
            "baseDockerfile": environment.docker.base_dockerfile,
            "shmSize": environment.docker.shm_size,
            "arguments": list(environment.docker.arguments),
            "baseImageRegistry": environment.docker.base_image_registry,
        }
        out: Dict[str, Any] = {
            "name": environment.name,
            "version": environment.version,
            "environmentVariables": dict(environment.environment_variables),
            "python": {
                "userManagedDependencies": environment.python.user_managed_dependencies,
                "interpreterPath": environment.python.interpreter_path,
                "condaDependencies": conda_json,
                "baseCondaEnvironment": environment.python.base_conda_environment,
            },
            "inferencingStackVersion": environment.inferencing_stack_version,
        }
        if environment.docker.base_image or environment.docker.base_dockerfile:
            out["docker"] = docker
        return out

    def get_pip_requirements(self) -> Optional[str]:
        """Berth: the pip requirements text this environment was made from or registered with."""
        return self._pip_requirements

    def __repr__(self) -> str:
        return json.dumps(Environment._serialize_to_dict(self), indent=4)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Environment) and self._fingerprint() == other._fingerprint()

    def __hash__(self) -> int:
        return hash((self.name, self.version))


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")

