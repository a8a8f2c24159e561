"""Packing folders into the uncompressed tar archives the server takes, and unpacking safely."""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
from typing import IO, List, Optional, Sequence, Set, Tuple

from .exceptions import WebserviceException

__all__ = ["pack_directory", "pack_file", "extract_tar", "excluded"]

# Left out of source snapshots, as the CLI does.
_ALWAYS_EXCLUDED = (".git", "__pycache__", ".ipynb_checkpoints", ".amlignore")


def _ignore_patterns(root: str) -> List[str]:
    path = os.path.join(root, ".amlignore")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def excluded(name: str, patterns: Sequence[str]) -> bool:
    """Whether a file or folder name is left out of a source snapshot.

    Always: ``.git``, ``__pycache__``, ``.ipynb_checkpoints``, ``.amlignore`` and ``*.pyc``; plus the
    names in the source directory's ``.amlignore`` (exact names, ``*suffix`` or ``prefix*``).
    """
    if name in _ALWAYS_EXCLUDED or name.endswith(".pyc"):
        return True
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if pattern.startswith("*"):
            if name.endswith(pattern[1:]):
                return True
        elif pattern.endswith("*"):
            if name.startswith(pattern[:-1]):
                return True
        elif name == pattern:
            return True
    return False


def _new_archive() -> Tuple[IO[bytes], tarfile.TarFile]:
    handle = tempfile.TemporaryFile(prefix="berth-upload-", suffix=".tar")
    archive = tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT, dereference=True)
    return handle, archive


def _add_file(archive: tarfile.TarFile, path: str, name: str) -> None:
    info = archive.gettarinfo(path, arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with open(path, "rb") as f:
        archive.addfile(info, f)


def _finish(handle: IO[bytes], archive: tarfile.TarFile) -> Tuple[IO[bytes], int]:
    archive.close()
    size = handle.tell()
    handle.seek(0)
    return handle, size


def pack_directory(
    root: str,
    *,
    snapshot_rules: bool = False,
    only: Optional[Sequence[str]] = None,
) -> Tuple[IO[bytes], int, int]:
    """Packs a folder into a temporary tar file; paths are relative to ``root``.

    Symbolic links are followed (the server accepts regular files only).

    :param snapshot_rules: Leave out what :func:`excluded` names (source directories).
    :param only: Relative paths (files or folders) to include instead of everything.
    :return: The open archive (positioned at its start), its size in bytes, the number of files.
    """
    handle, archive = _new_archive()
    count = 0
    patterns = _ignore_patterns(root) if snapshot_rules else []
    visited: Set[str] = set()

    def walk(directory: str, relative: str) -> None:
        """Adds every file under ``directory`` (following links, each real folder once)."""
        nonlocal count
        real = os.path.realpath(directory)
        if real in visited:
            return
        visited.add(real)
        try:
            names = sorted(os.listdir(directory))
        except OSError as e:
            raise WebserviceException(f"Error, cannot read folder {directory}: {e}") from e
        for name in names:
            if snapshot_rules and excluded(name, patterns):
                continue
            path = os.path.join(directory, name)
            rel = f"{relative}/{name}" if relative else name
            if os.path.isdir(path):
                walk(path, rel)
            elif os.path.isfile(path):
                _add_file(archive, path, rel)
                count += 1

    try:
        if only is None:
            walk(root, "")
        else:
            for child in only:
                rel = posixpath.normpath(child.replace(os.sep, "/")).lstrip("/")
                path = os.path.join(root, *rel.split("/"))
                if os.path.isdir(path):
                    walk(path, rel)
                elif os.path.isfile(path):
                    _add_file(archive, path, rel)
                    count += 1
                else:
                    raise WebserviceException(f"Error, child path {child} does not exist in {root}.")
    except BaseException:
        archive.close()
        handle.close()
        raise
    handle, size = _finish(handle, archive)
    return handle, size, count


def pack_file(path: str, name: str) -> Tuple[IO[bytes], int]:
    """Packs one file into a temporary tar file under ``name``."""
    handle, archive = _new_archive()
    try:
        _add_file(archive, path, name)
    except BaseException:
        archive.close()
        handle.close()
        raise
    return _finish(handle, archive)


def extract_tar(source: IO[bytes], target_dir: str, exist_ok: bool) -> List[str]:
    """Unpacks a tar of regular files and folders into ``target_dir``, refusing links and any
    path that would leave it.

    :return: The relative paths of the files written.
    """
    written: List[str] = []
    root = os.path.realpath(target_dir)
    with tarfile.open(fileobj=source, mode="r|") as archive:
        for member in archive:
            name = posixpath.normpath(member.name)
            if name.startswith("/") or name == ".." or name.startswith("../") or "\\" in member.name:
                raise WebserviceException(f"Error, the downloaded archive holds an unsafe path: {member.name}")
            destination = os.path.join(root, *name.split("/"))
            if member.isdir():
                os.makedirs(destination, exist_ok=True)
                continue
            if not member.isfile():
                raise WebserviceException(
                    f"Error, the downloaded archive holds {member.name}, which is not a regular file."
                )
            if os.path.exists(destination) and not exist_ok:
                raise WebserviceException(f"File already exists. {destination}")
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            stream = archive.extractfile(member)
            if stream is None:
                continue
            with open(destination, "wb") as out:
                shutil.copyfileobj(stream, out)
            written.append(name)
    return written
