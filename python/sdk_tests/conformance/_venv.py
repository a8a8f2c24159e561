"""A virtual environment with ``berth`` and ``berth-azureml`` installed from this checkout (pip,
no network), made once per test process, and a runner for v1 scripts inside it."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from typing import Dict, Optional, Sequence

import _server

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "scripts")
SDK_DIR = _server.PYTHON_ROOT
COMPAT_DIR = os.path.join(_server.PYTHON_ROOT, "berth-azureml")

_venv: Optional[str] = None


def _bin(venv: str, name: str) -> str:
    return os.path.join(venv, "bin", name)


def venv_python() -> str:
    """The venv's interpreter, making the venv on first use."""
    global _venv
    if _venv is not None:
        return _bin(_venv, "python")
    root = tempfile.mkdtemp(prefix="berth-azureml-venv-")
    atexit.register(shutil.rmtree, root, True)
    venv = os.path.join(root, "venv")
    install = ["install", "-q", "--no-index", "--no-build-isolation", SDK_DIR, COMPAT_DIR]
    # Fast path: a venv without pip, filled by this interpreter's pip (pip >= 22.3).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    fast = subprocess.run(
        [sys.executable, "-m", "pip", "--python", _bin(venv, "python"), *install],
        capture_output=True,
        text=True,
    )
    if fast.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        made = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True)
        if made.returncode != 0:
            raise unittest.SkipTest(
                f"SKIPPED LOUDLY: cannot make a virtual environment with pip for the berth-azureml install "
                f"test ({made.stderr.strip()}); install python3-venv"
            )
        slow = subprocess.run([_bin(venv, "python"), "-m", "pip", *install], capture_output=True, text=True)
        if slow.returncode != 0:
            raise AssertionError(f"pip install of berth + berth-azureml failed:\n{slow.stdout}\n{slow.stderr}")
    _venv = venv
    return _bin(venv, "python")


def run_script(
    script: str,
    config_path: str,
    cwd: str,
    args: Sequence[str] = (),
    extra_env: Optional[Dict[str, str]] = None,
    timeout: float = 600,
) -> "subprocess.CompletedProcess[str]":
    """Runs ``scripts/<script>`` with the venv's Python in ``cwd``; the workspace is found through
    ``BERTH_CONFIG`` (what ``Workspace.from_config()`` reads), nothing else is set up for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BERTH_", "PYTHON"))}
    env["BERTH_CONFIG"] = config_path
    env.update(extra_env or {})
    return subprocess.run(
        [venv_python(), "-u", os.path.join(SCRIPTS, script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
