"""Environments against a server: register, get, list, build, and use in a deployment."""

from __future__ import annotations

import time
import unittest

from _server import ServerTestCase, silence

from berth.core import Environment
from berth.exceptions import UserErrorException, WebserviceException


class EnvironmentTests(ServerTestCase):
    def test_register_versions_and_unchanged_spec(self) -> None:
        env = Environment("plain-env")
        env.environment_variables = {"GREETING": "hello"}
        with silence():
            first = env.register(self.ws)
            again = env.register(self.ws)
        self.assertEqual((first.name, first.version, first.id), ("plain-env", "1", "plain-env:1"))
        self.assertEqual(again.version, "1", "an unchanged spec is not a new version")
        self.assertEqual(first.environment_variables, {"GREETING": "hello"})
        env.environment_variables["OTHER"] = "x"
        with silence():
            second = env.register(self.ws)
        self.assertEqual(second.version, "2")

    def test_from_pip_requirements_no_index(self) -> None:
        path = self.write("pip/requirements.txt", "--no-index\n")
        env = Environment.from_pip_requirements("pip-env", path)
        with silence():
            registered = env.register(self.ws)
        self.assertEqual(registered.get_pip_requirements(), "--no-index")
        self.assertEqual(registered.version, "1")
        build = registered.build(self.ws)
        self.assertIn(build["state"], ("NotStarted", "Running", "Succeeded"))
        deadline = time.monotonic() + 120
        while True:
            fetched = Environment.get(self.ws, "pip-env", version="1")
            assert fetched.build_details is not None
            if fetched.build_details["state"] in ("Succeeded", "Failed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(fetched.build_details["state"], "Succeeded", fetched.build_details)

    def test_from_conda_specification(self) -> None:
        path = self.write("conda/env.yml", "name: project_environment\ndependencies:\n  - pip:\n    - --no-index\n")
        env = Environment.from_conda_specification("conda-env", path)
        with silence():
            registered = env.register(self.ws)
        self.assertEqual(registered.version, "1")
        self.assertEqual(registered.get_pip_requirements(), "--no-index")

    def test_get_latest_version_and_errors(self) -> None:
        env = Environment("get-env")
        with silence():
            env.register(self.ws)
            env.environment_variables["V"] = "2"
            env.register(self.ws)
        self.assertEqual(Environment.get(self.ws, "get-env").version, "2")
        self.assertEqual(Environment.get(workspace=self.ws, name="get-env", version="1").version, "1")
        self.assertEqual(Environment.get(self.ws, "get-env", version=1).version, "1")  # type: ignore[arg-type]
        with self.assertRaises(WebserviceException) as ctx:
            Environment.get(self.ws, "get-env", version="7")
        self.assertEqual((ctx.exception.status_code, ctx.exception.code), (404, "not_found"))
        with self.assertRaises(UserErrorException) as ue:
            Environment.get(self.ws, "get-env", version="1", label="prod")
        self.assertEqual(str(ue.exception), "Only one of version or label can be specified")

    def test_list_and_workspace_property(self) -> None:
        with silence():
            Environment("list-env").register(self.ws)
        listed = Environment.list(self.ws)
        self.assertIn("list-env", listed)
        self.assertIsInstance(listed["list-env"], Environment)
        self.assertIn("list-env", self.ws.environments)

    def test_reserved_and_invalid_names_are_refused_by_the_server(self) -> None:
        with self.assertRaises(WebserviceException) as ctx:
            Environment("AzureML-Minimal").register(self.ws)
        self.assertEqual(ctx.exception.code, "invalid_argument")
        self.assertIn("reserved", str(ctx.exception))

    def test_reference_reuses_fetched_versions(self) -> None:
        with silence():
            Environment("ref-env").register(self.ws)
            env = Environment("ref-env")
            env.environment_variables = {"B": "1"}
            env.register(self.ws)
        old = Environment.get(self.ws, "ref-env", version="1")
        self.assertEqual(old._reference(self.ws), "ref-env:1", "a fetched version is used as is")
        old.environment_variables["C"] = "changed"
        with silence():
            self.assertEqual(old._reference(self.ws), "ref-env:3", "a changed spec is registered")


if __name__ == "__main__":
    unittest.main()
