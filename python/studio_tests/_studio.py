"""Shared set-up for the console's browser tests: a real ``berth server`` (``$BERTH_BIN``), the
``berth`` CLI, and headless Chromium from the system packages driven by Playwright.

Chromium is ``/usr/bin/chromium`` (``$BERTH_CHROMIUM`` overrides); Playwright never downloads a
browser. ``scripts/studio-python.sh`` installs both. Screenshots go to ``$BERTH_STUDIO_SHOTS`` or a
fresh temporary folder, printed at start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(PYTHON_ROOT, "sdk_tests"))

from _server import BERTH_BIN, BerthServer  # noqa: E402

CHROMIUM = os.environ.get("BERTH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

try:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright
except ImportError as e:  # pragma: no cover - reported loudly, never silently
    raise unittest.SkipTest(
        f"SKIPPED LOUDLY: Playwright for Python is not importable ({e}); run the tests with the interpreter "
        "`bash scripts/studio-python.sh` prints"
    ) from e

if not os.path.isfile(CHROMIUM):
    raise unittest.SkipTest(
        f"SKIPPED LOUDLY: no Chromium at {CHROMIUM}; `bash scripts/studio-python.sh` installs it (apt-get install chromium)"
    )

SHOTS = os.environ.get("BERTH_STUDIO_SHOTS") or tempfile.mkdtemp(prefix="berth-studio-shots-")
os.makedirs(SHOTS, exist_ok=True)
print(f"studio screenshots: {SHOTS}", file=sys.stderr, flush=True)

SCORE_PY = '''\
import json
import os


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt"), encoding="utf-8") as f:
        model = f.read().strip()
    if model == "broken":
        raise RuntimeError("the model file says broken: refusing to start")
    print("init done, model", model, flush=True)


def run(raw_data):
    if model == "failing":
        raise RuntimeError("this model fails every request")
    data = json.loads(raw_data)
    if isinstance(data, dict) and "marker" in data:
        print("scored marker", data["marker"], flush=True)
    return {"model": model}
'''


class Studio:
    """One server, its CLI, one browser."""

    def __init__(self) -> None:
        self.server = BerthServer()
        self.endpoint: str = self.server.config["endpoint"]
        self.token: str = self.server.config["token"]
        self.work = tempfile.mkdtemp(prefix="berth-studio-work-")
        self._pw = sync_playwright().start()
        self.browser: Browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self._pw.stop()
            self.server.stop()

    # ----- CLI and HTTP -----
    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        for k in ("BERTH_ENDPOINT", "BERTH_TOKEN", "BERTH_DATA"):
            env.pop(k, None)
        env["BERTH_CONFIG"] = self.server.config_path
        env["HOME"] = self.work
        out = subprocess.run([BERTH_BIN, *args], cwd=self.work, env=env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"berth {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}\n{self.server.log()[-4000:]}")
        return out

    def write(self, relative: str, text: str) -> str:
        path = os.path.join(self.work, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def api(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    def patch_service(self, service: str, body: Dict[str, Any]) -> str:
        """Starts an update through the API; returns its operation id."""
        status, accepted = self.api("PATCH", f"/v1/services/{service}", body)
        if status != 202:
            raise AssertionError(f"PATCH {service} answered {status}: {accepted}")
        return str(accepted["operation"]["id"])

    def score(self, service: str, body: Dict[str, Any], key: Optional[str] = None) -> Tuple[int, Dict[str, str], bytes]:
        req = urllib.request.Request(f"{self.endpoint}/api/v1/service/{service}/score", data=json.dumps(body).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", "Bearer " + key)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def deploy(self, service: str, model: str, auth: bool = True) -> None:
        """Registers ``model`` (content ``v1``) and deploys ``service`` with the CLI."""
        self.write("src/score.py", SCORE_PY)
        self.write(f"{model}-1/model.txt", "v1\n")
        self.write("dc.json", json.dumps({"computeType": "AKS", "numReplicas": 1, "authEnabled": auth}))
        self.cli("model", "register", "-n", model, "-p", f"{model}-1/model.txt")
        self.cli("model", "deploy", "-n", service, "-m", f"{model}:1", "--es", "score.py", "--sd", "src", "--dc", "dc.json")

    # ----- browser -----
    def context(self, width: int = 1280, height: int = 800) -> BrowserContext:
        return self.browser.new_context(viewport={"width": width, "height": height}, base_url=self.endpoint)

    def page(self, context: BrowserContext) -> Tuple[Page, List[str]]:
        """A page that records console errors and uncaught exceptions into the returned list."""
        page = context.new_page()
        errors: List[str] = []

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                errors.append(f"console error at {page.url}: {msg.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: errors.append(f"uncaught at {page.url}: {exc}"))
        page.on("dialog", lambda dialog: dialog.accept())
        return page, errors

    def sign_in(self, page: Page) -> None:
        page.goto("/")
        page.fill("#token", self.token)
        page.click("button[type=submit]")
        page.wait_for_selector("#main h1")

    def shot(self, page: Page, name: str) -> str:
        path = os.path.join(SHOTS, name + ".png")
        page.screenshot(path=path, full_page=True)
        return path


def wait_until(what: str, predicate, timeout: float = 120.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_js(page: Any, expression: str, arg: Any = None, timeout: float = 30.0) -> Any:
    """Polls ``expression`` (a JS function of ``arg``) with ``page.evaluate`` until it is truthy.

    ``page.wait_for_function`` evaluates its predicate inside the page, which the console's
    Content-Security-Policy (no ``unsafe-eval``) forbids; ``evaluate`` goes through DevTools."""
    return wait_until(f"`{expression}` in the page", lambda: page.evaluate(expression, arg), timeout=timeout, interval=0.1)


def wait_operation(studio: Studio, operation: str, timeout: float = 180.0) -> Dict[str, Any]:
    """Polls an operation until it ends; returns it."""

    def ended() -> Any:
        op = studio.api("GET", f"/v1/operations/{operation}")[1]
        return op if op and op.get("state") not in ("Running", "NotStarted") else None

    return wait_until(f"operation {operation} to end", ended, timeout=timeout, interval=0.3)
