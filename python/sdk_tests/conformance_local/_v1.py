"""The v1 names these scripts import: ``azureml.core`` from the compatibility distribution when it
is installed, else the same SDK under its own name (``berth.core``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import List, Optional, Tuple

try:  # pragma: no cover - depends on what is installed
    from azureml.core import Environment, Model  # type: ignore[import-not-found]
    from azureml.core.model import InferenceConfig  # type: ignore[import-not-found]
    from azureml.core.webservice import AciWebservice, LocalWebservice, Webservice  # type: ignore[import-not-found]
    from azureml.exceptions import WebserviceException  # type: ignore[import-not-found]
except ImportError:
    from berth.core import Environment, Model  # noqa: F401
    from berth.core.model import InferenceConfig  # noqa: F401
    from berth.core.webservice import AciWebservice, LocalWebservice, Webservice  # noqa: F401
    from berth.exceptions import WebserviceException  # noqa: F401


def test_python() -> str:
    """The interpreter with onnx/scikit-learn: $BERTH_TEST_PYTHON (scripts/schema-python.sh)."""
    return os.environ.get("BERTH_TEST_PYTHON") or sys.executable


def missing_modules(modules: List[str]) -> List[str]:
    out = []
    for module in modules:
        probe = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
        if subprocess.run([test_python(), "-c", probe], capture_output=True).returncode != 0:
            out.append(module)
    return out


def run_python(script: str, *args: str) -> None:
    subprocess.run([test_python(), "-c", textwrap.dedent(script), *args], check=True)


def probe(python: str) -> Optional[str]:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def second_interpreter() -> Optional[Tuple[str, str]]:
    """(path, version) of an installed Python 3.8+ whose minor version differs from python3's."""
    default = probe("python3")
    if default is None:
        return None
    root = os.environ.get("PYENV_ROOT") or os.path.join(os.path.expanduser("~"), ".pyenv")
    candidates = []
    versions = os.path.join(root, "versions")
    if os.path.isdir(versions):
        candidates += [os.path.join(versions, v, "bin", "python3") for v in sorted(os.listdir(versions))]
    if os.path.isdir("/usr/bin"):
        candidates += [
            os.path.join("/usr/bin", n)
            for n in sorted(os.listdir("/usr/bin"))
            if n.startswith("python3.") and "-" not in n
        ]
    for path in candidates:
        version = probe(path) if os.path.isfile(path) else None
        if version and minor(version) != minor(default):
            parts = version.split(".")
            if parts[0] == "3" and int(parts[1]) >= 8:
                return path, version
    return None
