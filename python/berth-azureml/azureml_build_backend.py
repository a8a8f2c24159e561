"""berth-azureml's PEP 517 / PEP 660 build backend: the SDK's standard-library backend
(``python/berth/_build_backend.py``) pointed at this folder, so ``pip install ./python/berth-azureml``
works offline and needs neither setuptools nor wheel.

``pyproject.toml`` names it with ``backend-path = ["."]``; it packs ``azureml/`` into a pure-Python
wheel with the metadata of the ``[project]`` table; the sdist carries this file at its root.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile
from typing import Any, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "azureml"
_SELF = os.path.basename(__file__)
_EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))  # 1980-01-01: reproducible archives

__all__ = [
    "get_requires_for_build_wheel",
    "get_requires_for_build_sdist",
    "get_requires_for_build_editable",
    "prepare_metadata_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "build_wheel",
    "build_sdist",
    "build_editable",
]


def _project() -> Dict[str, Any]:
    """The ``[project]`` table (``tomllib`` when available, else its simple ``key = "value"`` and
    string-list entries)."""
    path = os.path.join(ROOT, "pyproject.toml")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        import tomllib

        return dict(tomllib.loads(raw.decode("utf-8")).get("project", {}))
    except ImportError:
        pass
    project: Dict[str, Any] = {}
    section = ""
    open_list: Optional[str] = None
    for line in raw.decode("utf-8").splitlines():
        stripped = line.strip()
        if open_list is not None:
            project[open_list].extend(re.findall(r'"([^"]*)"', stripped))
            if stripped.startswith("]"):
                open_list = None
            continue
        if stripped.startswith("["):
            section = stripped.strip("[]").strip()
            continue
        match = re.match(r'^([A-Za-z0-9_-]+)\s*=\s*(.*)$', stripped)
        if section != "project" or not match:
            continue
        key, value = match.groups()
        if value.startswith('"'):
            project[key] = value.strip('"')
        elif value.startswith("{"):
            inner = re.search(r'text\s*=\s*"([^"]*)"', value)
            project[key] = {"text": inner.group(1)} if inner else {}
        elif value.startswith("["):
            project[key] = re.findall(r'"([^"]*)"', value)
            if not value.endswith("]"):
                open_list = key
    return project


def _name_version() -> Tuple[str, str]:
    project = _project()
    return str(project.get("name", PACKAGE)), str(project.get("version", "0"))


def _dist_info() -> str:
    name, version = _name_version()
    return f"{name.replace('-', '_')}-{version}.dist-info"


def _metadata() -> str:
    project = _project()
    name, version = _name_version()
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
    ]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    license_value = project.get("license")
    if isinstance(license_value, dict):
        license_value = license_value.get("text")
    if license_value:
        lines.append(f"License: {license_value}")
    for classifier in project.get("classifiers", []):
        lines.append(f"Classifier: {classifier}")
    for requirement in project.get("dependencies", []):
        lines.append(f"Requires-Dist: {requirement}")
    return "\n".join(lines) + "\n"


def _package_files() -> List[Tuple[str, str]]:
    """``(absolute path, archive path)`` of every file the wheel ships."""
    out: List[Tuple[str, str]] = []
    base = os.path.join(ROOT, PACKAGE)
    for directory, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, ROOT).replace(os.sep, "/")
            if relative == f"{PACKAGE}/{_SELF}":
                continue
            out.append((path, relative))
    return out


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"{name},sha256={digest},{len(data)}"


def _write_wheel(wheel_directory: str, entries: List[Tuple[str, bytes]]) -> str:
    name, version = _name_version()
    dist_info = _dist_info()
    wheel_name = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    entries = list(entries) + [
        (f"{dist_info}/METADATA", _metadata().encode("utf-8")),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: berth-build-backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
        (f"{dist_info}/top_level.txt", f"{PACKAGE}\n".encode("utf-8")),
    ]
    record = [_record_line(n, d) for n, d in entries] + [f"{dist_info}/RECORD,,"]
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode("utf-8")))
    os.makedirs(wheel_directory, exist_ok=True)
    stamp = time.gmtime(max(_EPOCH, 315532800))[:6]
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as archive:
        for entry_name, data in entries:
            info = zipfile.ZipInfo(entry_name, date_time=stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return wheel_name


def get_requires_for_build_wheel(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    """Nothing to install: the backend is standard library only."""
    return []


def get_requires_for_build_sdist(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    """Nothing to install."""
    return []


def get_requires_for_build_editable(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    """Nothing to install."""
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    """Writes ``<name>-<version>.dist-info`` with METADATA and WHEEL."""
    dist_info = _dist_info()
    target = os.path.join(metadata_directory, dist_info)
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata())
    with open(os.path.join(target, "WHEEL"), "w", encoding="utf-8") as f:
        f.write("Wheel-Version: 1.0\nGenerator: berth-build-backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    return dist_info


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Dict[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """Builds ``berth_azureml-<version>-py3-none-any.whl``."""
    entries: List[Tuple[str, bytes]] = []
    for path, relative in _package_files():
        with open(path, "rb") as f:
            entries.append((relative, f.read()))
    return _write_wheel(wheel_directory, entries)


def build_editable(
    wheel_directory: str,
    config_settings: Optional[Dict[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """Builds an editable wheel: a ``.pth`` file pointing at the source tree."""
    return _write_wheel(wheel_directory, [(f"__editable__.{PACKAGE}.pth", (ROOT + "\n").encode("utf-8"))])


def build_sdist(sdist_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    """Builds ``berth_azureml-<version>.tar.gz`` (``pyproject.toml``, ``PKG-INFO``, the package and this backend)."""
    name, version = _name_version()
    base = f"{name.replace('-', '_')}-{version}"
    os.makedirs(sdist_directory, exist_ok=True)
    target = os.path.join(sdist_directory, f"{base}.tar.gz")
    files = [(os.path.join(ROOT, "pyproject.toml"), "pyproject.toml")] + _package_files()
    files.append((os.path.abspath(__file__), _SELF))

    def add(archive: tarfile.TarFile, arcname: str, data: bytes) -> None:
        """Adds one file with fixed metadata."""
        info = tarfile.TarInfo(f"{base}/{arcname}")
        info.size = len(data)
        info.mtime = _EPOCH
        info.mode = 0o644
        archive.addfile(info, io.BytesIO(data))

    with tarfile.open(target, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        add(archive, "PKG-INFO", _metadata().encode("utf-8"))
        for path, relative in sorted(files, key=lambda item: item[1]):
            with open(path, "rb") as f:
                add(archive, relative, f.read())
    return os.path.basename(target)
