"""Refuses to run next to a real azureml-core: both distributions provide ``azureml.core``, and
berth-azureml must never shadow azureml-core silently."""

from __future__ import annotations

import sys
from typing import Optional

#: Distributions that provide the same import paths.
CONFLICTING = ("azureml-core",)


def conflicting_distribution() -> Optional[str]:
    """``name version (location)`` of an installed distribution that provides ``azureml.core``
    too, or ``None``."""
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover (Python < 3.8)
        return None
    for name in CONFLICTING:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        location = getattr(dist, "_path", None)
        where = f" ({location})" if location else ""
        return f"{name} {dist.version}{where}"
    return None


def check() -> None:
    """Raises ``ImportError`` naming the conflicting distribution and the fix."""
    found = conflicting_distribution()
    if found is None:
        return
    raise ImportError(
        f"berth-azureml cannot be used in this Python environment ({sys.prefix}): {found} is installed "
        "here too, and both provide the `azureml.core` import path, so one would silently shadow the "
        "other. Install berth-azureml in its own virtual environment (python -m venv .berth-venv && "
        ".berth-venv/bin/pip install berth-azureml), or `pip uninstall azureml-core` here. The plain "
        "Berth SDK (`import berth.core`) works next to azureml-core."
    )
