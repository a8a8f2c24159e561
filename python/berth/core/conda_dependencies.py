"""Conda dependency specs, like ``azureml.core.conda_dependencies``.

Berth installs packages with pip: a conda spec's ``pip:`` section is used as is, ``python=X.Y``
selects the interpreter, and other conda packages are installed with pip under the same name (the
server says so in the environment's warnings).
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Dict, Iterator, List, Optional, Union

from ..exceptions import UserErrorException

__all__ = ["CondaDependencies", "DEFAULT_PYTHON_VERSION"]

Dependency = Union[str, Dict[str, List[str]]]


class _DefaultVersion(str):
    """The default of ``CondaDependencies.create(python_version=...)``: shows azureml-core's
    value, and is told apart from the same text passed explicitly by identity."""


#: azureml-core's default ``python_version``; left at it, nothing is pinned (see ``create``).
DEFAULT_PYTHON_VERSION: str = _DefaultVersion("3.8.13")


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _strip_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    cut = line.find(" #")
    return line if cut < 0 else line[:cut]


def parse_conda_yaml(text: str) -> Optional[Dict[str, Any]]:
    """Parses the usual shape of a conda environment file (``name``, ``channels`` and
    ``dependencies`` with an optional ``- pip:`` list), or returns ``None`` for anything else.

    The server parses the full YAML; this is only for inspecting and editing a spec locally.
    """
    result: Dict[str, Any] = {}
    key: Optional[str] = None
    pip_list: Optional[List[str]] = None
    pip_indent = -1
    for raw in text.splitlines():
        line = _strip_comment(raw).rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if "\t" in line[: len(line) - len(line.lstrip())]:
            return None
        if body.startswith("-"):
            if key is None:
                return None
            item = body[1:].strip()
            if pip_list is not None and indent > pip_indent:
                pip_list.append(_unquote(item))
                continue
            pip_list = None
            target = result.get(key)
            if not isinstance(target, list):
                target = []
                result[key] = target
            if item.replace(" ", "") == "pip:":
                pip_list = []
                pip_indent = indent
                target.append({"pip": pip_list})
            elif item.startswith(("pip:", "[", "{")):
                return None
            else:
                target.append(_unquote(item))
            continue
        if indent != 0 or ":" not in body:
            return None
        pip_list = None
        name, _, value = body.partition(":")
        key = name.strip()
        value = value.strip()
        if value == "":
            result[key] = [] if key in ("channels", "dependencies") else None
        elif value == "[]":
            result[key] = []
        elif value.startswith(("[", "{", "|", ">")):
            return None
        else:
            result[key] = _unquote(value)
    return result


class CondaDependencies:
    """A conda environment spec: Python version, conda packages, pip packages and pip options.

    :param conda_dependencies_file_path: A conda environment file (YAML) to start from.
    """

    def __init__(
        self,
        conda_dependencies_file_path: Optional[str] = None,
        _underlying_structure: Optional[Dict[str, Any]] = None,
    ) -> None:
        #: The file's text when the spec was read from a file and not changed since.
        self._raw_text: Optional[str] = None
        if conda_dependencies_file_path is not None:
            if not os.path.isfile(conda_dependencies_file_path):
                raise UserErrorException(
                    f"Error, conda dependencies file {conda_dependencies_file_path} does not exist."
                )
            with open(conda_dependencies_file_path, encoding="utf-8") as f:
                self._raw_text = f.read()
            parsed = parse_conda_yaml(self._raw_text)
            self._structure: Optional[Dict[str, Any]] = parsed
        elif _underlying_structure is not None:
            self._structure = copy.deepcopy(_underlying_structure)
        else:
            self._structure = {"name": "project_environment", "dependencies": [], "channels": []}

    # -- construction ----------------------------------------------------------------------------

    @staticmethod
    def create(
        pip_indexurl: Optional[str] = None,
        pip_packages: Optional[List[str]] = None,
        conda_packages: Optional[List[str]] = None,
        python_version: Optional[str] = DEFAULT_PYTHON_VERSION,
        pin_sdk_version: bool = True,
    ) -> "CondaDependencies":
        """A spec with the given packages (azureml-core's parameters, in its order).

        :param pip_indexurl: An extra index URL for pip.
        :param pip_packages: pip requirement strings.
        :param conda_packages: conda package specs (installed with pip by Berth).
        :param python_version: ``X.Y[.Z]`` to pin. Left at its default, no version is pinned and
            the environment runs on the server's Python (azureml-core's default names the Python of
            its own images); pass a version, even the default's value, to pin it.
        :param pin_sdk_version: Accepted for compatibility (no SDK packages are added).
        """
        spec = CondaDependencies()
        if python_version and python_version is not DEFAULT_PYTHON_VERSION:
            spec.set_python_version(python_version)
        for package in conda_packages or []:
            spec.add_conda_package(package)
        for package in pip_packages or []:
            spec.add_pip_package(package)
        if pip_indexurl:
            spec.set_pip_option(f"--extra-index-url {pip_indexurl}")
        return spec

    @staticmethod
    def _from_text(text: str) -> "CondaDependencies":
        spec = CondaDependencies()
        spec._raw_text = text
        spec._structure = parse_conda_yaml(text)
        return spec

    # -- editing ---------------------------------------------------------------------------------

    def _editable(self) -> Dict[str, Any]:
        if self._structure is None:
            raise UserErrorException(
                "This conda file uses YAML this SDK cannot edit locally; edit the file instead "
                "(the server reads it as it is)."
            )
        self._raw_text = None
        deps = self._structure.get("dependencies")
        if not isinstance(deps, list):
            self._structure["dependencies"] = []
        return self._structure

    def _pip_section(self, create: bool) -> Optional[List[str]]:
        structure = self._editable() if create else (self._structure or {})
        for dep in structure.get("dependencies") or []:
            if isinstance(dep, dict) and isinstance(dep.get("pip"), list):
                return dep["pip"]  # type: ignore[no-any-return]
        if not create:
            return None
        section: List[str] = []
        structure["dependencies"].append({"pip": section})
        return section

    @staticmethod
    def _package_name(spec: str) -> str:
        for i, c in enumerate(spec):
            if c in "=<>!~ [;@":
                return spec[:i].strip().lower()
        return spec.strip().lower()

    def add_pip_package(self, pip_package: str) -> None:
        """Adds (or replaces, by name) a pip requirement."""
        section = self._pip_section(create=True)
        assert section is not None
        name = self._package_name(pip_package)
        section[:] = [p for p in section if p.startswith("-") or self._package_name(p) != name]
        section.append(pip_package)

    def remove_pip_package(self, pip_package: str) -> None:
        """Removes a pip requirement by name."""
        section = self._pip_section(create=True)
        assert section is not None
        name = self._package_name(pip_package)
        section[:] = [p for p in section if p.startswith("-") or self._package_name(p) != name]

    def set_pip_option(self, pip_option: str) -> None:
        """Adds a pip option line (``--no-index``, ``--find-links DIR``, ...)."""
        section = self._pip_section(create=True)
        assert section is not None
        flag = pip_option.split()[0]
        section[:] = [p for p in section if not (p.startswith("-") and p.split()[0] == flag)]
        section.insert(0, pip_option)

    def add_conda_package(self, conda_package: str) -> None:
        """Adds (or replaces, by name) a conda package."""
        structure = self._editable()
        name = self._package_name(conda_package)
        deps = structure["dependencies"]
        deps[:] = [d for d in deps if not (isinstance(d, str) and self._package_name(d) == name)]
        deps.append(conda_package)

    def remove_conda_package(self, conda_package: str) -> None:
        """Removes a conda package by name."""
        structure = self._editable()
        name = self._package_name(conda_package)
        deps = structure["dependencies"]
        deps[:] = [d for d in deps if not (isinstance(d, str) and self._package_name(d) == name)]

    def add_channel(self, channel: str) -> None:
        """Adds a conda channel (recorded; Berth installs from pip's index)."""
        structure = self._editable()
        channels = structure.setdefault("channels", [])
        if channel not in channels:
            channels.append(channel)

    def set_python_version(self, version: str) -> None:
        """Sets ``python=<version>``."""
        self.add_conda_package(f"python={version}")

    def get_python_version(self) -> Optional[str]:
        """The ``python=`` version, if the spec names one."""
        for package in self.conda_packages:
            if self._package_name(package) == "python":
                return package[len("python") :].lstrip("=<>~! ") or None
        return None

    # -- reading ---------------------------------------------------------------------------------

    @property
    def conda_packages(self) -> Iterator[str]:
        """The conda packages (``python=...`` included)."""
        for dep in (self._structure or {}).get("dependencies") or []:
            if isinstance(dep, str):
                yield dep

    @property
    def pip_packages(self) -> Iterator[str]:
        """The pip requirements (options excluded)."""
        for package in self._pip_section(create=False) or []:
            if not package.startswith("-"):
                yield package

    @property
    def pip_options(self) -> Iterator[str]:
        """The pip option lines."""
        for package in self._pip_section(create=False) or []:
            if package.startswith("-"):
                yield package

    def as_dict(self) -> Optional[Dict[str, Any]]:
        """The spec as the JSON object Azure calls ``condaDependencies`` (``None`` when the file
        could not be read locally)."""
        return copy.deepcopy(self._structure) if self._structure is not None else None

    def serialize_to_string(self) -> str:
        """The spec as conda YAML."""
        if self._raw_text is not None:
            return self._raw_text
        structure = self._structure or {}
        lines: List[str] = []
        if structure.get("name"):
            lines.append(f"name: {structure['name']}")
        lines.append("dependencies:")
        for dep in structure.get("dependencies") or []:
            if isinstance(dep, dict):
                lines.append("- pip:")
                lines.extend(f"  - {json.dumps(p) if ': ' in p or p.startswith('#') else p}" for p in dep["pip"])
            else:
                lines.append(f"- {dep}")
        channels = structure.get("channels") or []
        if channels:
            lines.append("channels:")
            lines.extend(f"- {c}" for c in channels)
        return "\n".join(lines) + "\n"

    def save(self, path: str) -> str:
        """Writes the YAML to ``path`` and returns it."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.serialize_to_string())
        return path

    def save_to_file(self, base_directory: str, conda_file_path: Optional[str] = None) -> str:
        """Writes the YAML under ``base_directory`` (``conda_dependencies.yml`` by default)."""
        return self.save(os.path.join(base_directory, conda_file_path or "conda_dependencies.yml"))

    def _equal_spec(self, other: "CondaDependencies") -> bool:
        return self.serialize_to_string() == other.serialize_to_string()

    def __repr__(self) -> str:
        return self.serialize_to_string()
