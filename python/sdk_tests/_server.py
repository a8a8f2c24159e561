"""Starts a real ``berth server`` for a test class and tears it down.

The binary is ``$BERTH_BIN`` or ``<repo>/target/debug/berth``; each server gets a fresh data
directory and an ephemeral port, and writes ``config.json`` once it listens.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any, Dict, Iterator, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_ROOT = os.path.dirname(HERE)
REPO_ROOT = os.path.dirname(PYTHON_ROOT)
if PYTHON_ROOT not in sys.path:
    sys.path.insert(0, PYTHON_ROOT)

from berth.core import Workspace  # noqa: E402
from berth.core.webservice.webservice import Webservice  # noqa: E402

BERTH_BIN = os.environ.get("BERTH_BIN") or os.path.join(REPO_ROOT, "target", "debug", "berth")

# Poll operations quickly in tests.
Webservice._poll_interval = 0.1


class BerthServer:
    """One running server with its own data directory."""

    def __init__(self, args: Sequence[str] = ()) -> None:
        if not os.path.isfile(BERTH_BIN):
            missing = f"berth binary not found at {BERTH_BIN}: build it (cargo build -p berth) or set BERTH_BIN"
            if os.environ.get("CI") == "true" or "BERTH_BIN" in os.environ:
                # In CI, or when a binary was named, a missing server is a failure, never a skip.
                raise RuntimeError(missing)
            raise unittest.SkipTest(missing)
        self.root = tempfile.mkdtemp(prefix="berth-sdk-test-")
        self.data = os.path.join(self.root, "data")
        self.log_path = os.path.join(self.root, "server.log")
        self._log = open(self.log_path, "wb")
        env = dict(os.environ)
        env.pop("BERTH_CONFIG", None)
        env.pop("BERTH_DATA", None)
        env.setdefault("RUST_LOG", "info")
        self.process = subprocess.Popen(
            # venv + pip unless BERTH_TEST_UV names the uv to test: never whatever is on PATH.
            [
                BERTH_BIN, "server", "--data", self.data, "--addr", "127.0.0.1:0",
                "--uv", os.environ.get("BERTH_TEST_UV") or "none", *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.config_path = os.path.join(self.data, "config.json")
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"berth server exited with {self.process.returncode}; log:\n{self.log()}")
            if os.path.isfile(self.config_path):
                try:
                    with open(self.config_path, encoding="utf-8") as f:
                        self.config: Dict[str, Any] = json.load(f)
                    break
                except ValueError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"berth server did not write config.json within 60 s; log:\n{self.log()}")
            time.sleep(0.05)

    def workspace(self) -> Workspace:
        """A workspace for this server."""
        return Workspace.from_config(self.config_path)

    def log(self) -> str:
        """The server's output so far."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> None:
        """Stops the server and removes its data."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)


class ServerTestCase(unittest.TestCase):
    """A test class with one server (``cls.server``) and workspace (``cls.ws``)."""

    server: BerthServer
    ws: Workspace
    #: Extra ``berth server`` flags for this class.
    server_args: Sequence[str] = ()

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.server = BerthServer(cls.server_args)
        cls.ws = cls.server.workspace()
        cls.tmp = tempfile.mkdtemp(prefix="berth-sdk-files-")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def path(self, *parts: str) -> str:
        """A path under this class's scratch directory."""
        return os.path.join(self.tmp, *parts)

    def write(self, relative: str, text: str) -> str:
        """Writes a scratch file and returns its path."""
        path = self.path(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path


@contextlib.contextmanager
def captured_stdout() -> Iterator[io.StringIO]:
    """Captures what is printed."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield buffer


@contextlib.contextmanager
def chdir(path: str) -> Iterator[None]:
    """Runs the block in another working directory."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


SCORE_PY = '''\
import json
import os


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt"), encoding="utf-8") as f:
        model = f.read().strip()
    print("init done, model", model)


def run(raw_data):
    return {"model": model, "input": json.loads(raw_data)}
'''

FAILING_SCORE_PY = '''\
def init():
    raise RuntimeError("init exploded on purpose")


def run(raw_data):
    return raw_data
'''


def model_file(directory: str, content: str) -> str:
    """Writes ``<directory>/model.txt`` and returns its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "model.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(content + "\n")
    return path


@contextlib.contextmanager
def silence() -> Iterator[io.StringIO]:
    """Silences stdout (yielded) and the SDK's ``berth`` logger warnings for a block."""
    import logging

    logger = logging.getLogger("berth")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    finally:
        logger.setLevel(previous)
