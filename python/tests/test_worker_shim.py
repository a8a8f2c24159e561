"""Drive the real worker shim (crates/berth-worker/shim/berth_worker.py) through the protocol.

Conformance cases live in crates/berth-worker/fixtures/scripts/<case>/case.json (format: the README
there); each becomes one test here. Run: python3 -m unittest discover -s python/tests
"""

from __future__ import annotations

import base64
import importlib.util
import os
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path
from typing import Any, Dict, Mapping

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import worker_gateway as gw  # noqa: E402


def _load_shim_module() -> Any:
    spec = importlib.util.spec_from_file_location("berth_worker_shim_under_test", gw.SHIM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shim = _load_shim_module()
_HAS_MODULE: Dict[str, bool] = {}


def _python_has(module: str) -> bool:
    if module not in _HAS_MODULE:
        _HAS_MODULE[module] = gw.python_has_module(gw.test_python(), module)
    return _HAS_MODULE[module]


class ConformanceTests(unittest.TestCase):
    """One test per fixture case; generated below from case.json files."""

    maxDiff = None

    def run_case(self, name: str) -> None:
        case = gw.load_case(name)
        for module in case.get("requires", []):
            if not _python_has(module):
                self.skipTest(f"{module} is not importable by {gw.test_python()}")
        with gw.WorkerProcess(gw.FIXTURES / name, env=case["env"], entry_script=case.get("entry_script", "score.py")) as worker:
            init = worker.start()
            assert worker.hello is not None and worker.proc is not None
            self.assertEqual(worker.hello.protocol_version, gw.PROTOCOL_VERSION)
            self.assertEqual(worker.hello.pid, worker.proc.pid)
            expected_init = case["init"]
            if expected_init["ok"]:
                self.assertTrue(init.ok, f"init failed at stage {init.stage}:\n{init.message}")
                self.assertEqual(init.input_mode, expected_init["input_mode"])
                for request in case.get("requests", []):
                    with self.subTest(request=request["name"]):
                        self.check_request(worker, request)
                for swagger in case.get("swagger", []):
                    with self.subTest(swagger=swagger["version"]):
                        self.check_swagger(worker, swagger)
                self.assertEqual(worker.shutdown(), 0)
            else:
                self.assertFalse(init.ok, "init unexpectedly succeeded")
                self.assertEqual(init.stage, expected_init["stage"], init.message)
                for needle in expected_init.get("message_contains", []):
                    self.assertIn(needle, init.message)
                for needle in expected_init.get("message_excludes", []):
                    self.assertNotIn(needle, init.message)
                self.assertEqual(worker.wait(), 3)
            output = case.get("output_contains", {})
            for needle in output.get("stdout", []):
                self.assertIn(needle, worker.stdout_text())
            for needle in output.get("stderr", []):
                self.assertIn(needle, worker.stderr_text())

    def check_request(self, worker: gw.WorkerProcess, request: Mapping[str, Any]) -> None:
        result = worker.score(
            request["method"],
            gw.request_body(request),
            request.get("query", "").encode("latin-1"),
            gw.request_headers(request),
        )
        expect = request["expect"]
        self.assertEqual(result.status, expect["status"], result.body[:2000])
        if "json" in expect:
            self.assertEqual(result.json(), expect["json"])
        if "body" in expect:
            self.assertEqual(result.body.decode("utf-8"), expect["body"])
        if "body_b64" in expect:
            self.assertEqual(result.body, base64.b64decode(expect["body_b64"]))
        for name, value in expect.get("headers", {}).items():
            values = result.header_values(name)
            wanted = [] if value is None else (value if isinstance(value, list) else [value])
            self.assertEqual(values, wanted, f"header {name}")
        if "run_failed" in expect:
            self.assertEqual(result.run_failed, expect["run_failed"])
        if "run_returned" in expect:
            self.assertEqual(result.run_returned, expect["run_returned"])
        if not result.run_returned:
            self.assertEqual(result.exec_us, 0)
        names = [name for name, _ in result.headers]
        self.assertEqual(names, [name.lower() for name in names], "header names are lowercase")
        self.assertNotIn("x-ms-run-function-failed", names)

    def check_swagger(self, worker: gw.WorkerProcess, swagger: Mapping[str, Any]) -> None:
        status, document = worker.swagger(swagger["version"])
        self.assertEqual(status, swagger["status"], document)
        if "json" in swagger:
            self.assertEqual(document, swagger["json"])
        for path, value in swagger.get("json_path", {}).items():
            self.assertEqual(gw.json_path(document, path), value, path)


def _make_case_test(name: str) -> Any:
    def test(self: ConformanceTests) -> None:
        self.run_case(name)

    test.__doc__ = f"fixture case {name}"
    return test


for _name in gw.case_names():
    setattr(ConformanceTests, f"test_case_{_name}", _make_case_test(_name))


class ProtocolTests(unittest.TestCase):
    """Framing, ordering and lifecycle of the worker end of the protocol."""

    def start_echo(self, *extra_args: str) -> gw.WorkerProcess:
        worker = gw.WorkerProcess(gw.FIXTURES / "echo", extra_args=extra_args)
        self.addCleanup(worker.close)
        init = worker.start()
        self.assertTrue(init.ok, init.message)
        return worker

    def test_hello_fields(self) -> None:
        worker = self.start_echo()
        assert worker.hello is not None
        self.assertEqual(worker.hello.protocol_version, 1)
        self.assertEqual(worker.hello.shim_version, shim.SHIM_VERSION)
        self.assertRegex(worker.hello.python_version, r"^\d+\.\d+\.\d+$")

    def test_pipelined_requests_answer_in_order(self) -> None:
        worker = self.start_echo()
        seqs = [worker.send_score("POST", f"body-{i}".encode()) for i in range(200)]
        worker.send(gw.frame(gw.T_PING, struct.pack(">Q", 77)))
        more = [worker.send_score("POST", f"more-{i}".encode()) for i in range(5)]
        for i, seq in enumerate(seqs):
            result = worker.read_result()
            self.assertEqual(result.seq, seq)
            self.assertEqual(result.json(), f"body-{i}")
        kind, payload = worker.read_frame()
        self.assertEqual((kind, struct.unpack(">Q", payload)[0]), (gw.T_PONG, 77))
        for i, seq in enumerate(more):
            result = worker.read_result()
            self.assertEqual((result.seq, result.json()), (seq, f"more-{i}"))

    def test_score_by_runs_before_its_deadline_and_is_skipped_after_it(self) -> None:
        worker = self.start_echo()
        now = time.monotonic_ns()
        worker.send(gw.encode_score_by(now + 60 * 10**9, 1, "POST", b"in time"))
        worker.send(gw.encode_score_by(now - 1, 2, "POST", b"too late"))
        worker.send(gw.encode_score_by(now + 60 * 10**9, 3, "POST", b"after"))
        result = worker.read_result()
        self.assertEqual((result.seq, result.json()), (1, "in time"))
        kind, payload = worker.read_frame()
        self.assertEqual((kind, struct.unpack(">Q", payload)[0]), (gw.T_SCORE_EXPIRED, 2))
        result = worker.read_result()
        self.assertEqual((result.seq, result.json()), (3, "after"))

    def test_malformed_score_by_is_a_protocol_error(self) -> None:
        worker = self.start_echo()
        worker.send(gw.frame(gw.T_SCORE_BY, b"\x00" * 7))
        self.assertEqual(worker.wait(), 4)
        self.assertIn("berth-worker: protocol error: malformed SCORE_BY frame", worker.stderr_text())

    def test_ping_and_swagger_between_requests(self) -> None:
        worker = self.start_echo()
        self.assertEqual(worker.ping(2**64 - 1), 2**64 - 1)
        self.assertEqual(worker.score("POST", b"a").json(), "a")
        status, document = worker.swagger("")
        self.assertEqual((status, document["swagger"]), (200, "2.0"))
        self.assertEqual(worker.ping(0), 0)

    def test_shutdown_answers_queued_requests_first(self) -> None:
        worker = self.start_echo()
        seqs = [worker.send_score("POST", b"x") for _ in range(10)]
        worker.send(gw.frame(gw.T_SHUTDOWN))
        for seq in seqs:
            self.assertEqual(worker.read_result().seq, seq)
        self.assertEqual(worker.wait(), 0)

    def test_end_of_stream_exits_zero(self) -> None:
        worker = self.start_echo()
        assert worker.sock is not None
        worker.sock.shutdown(socket.SHUT_WR)
        self.assertEqual(worker.wait(), 0)

    def test_unknown_frame_type_is_a_protocol_error(self) -> None:
        worker = self.start_echo()
        worker.send(gw.frame(0x7F, b"??"))
        self.assertEqual(worker.wait(), 4)
        self.assertIn("berth-worker: protocol error: unknown frame type 0x7f", worker.stderr_text())

    def test_oversized_frame_is_a_protocol_error(self) -> None:
        worker = self.start_echo("--max-frame", "1024")
        self.assertEqual(worker.score("POST", b"x" * 900).status, 200)
        worker.send_score("POST", b"x" * 2000)
        self.assertEqual(worker.wait(), 4)
        self.assertIn("exceeds the maximum of 1024", worker.stderr_text())

    def test_oversized_response_is_a_500(self) -> None:
        worker = self.start_echo("--max-frame", "1024")
        result = worker.score("POST", b'"' * 600)  # JSON-escaping doubles it past the limit
        self.assertEqual(result.status, 500)
        self.assertEqual(result.json(), {"message": shim.MSG_INTERNAL})

    def test_truncated_score_frame_is_a_protocol_error(self) -> None:
        worker = self.start_echo()
        worker.send(gw.frame(gw.T_SCORE, struct.pack(">QH", 1, 40) + b"POST"))
        self.assertEqual(worker.wait(), 4)
        self.assertIn("malformed SCORE frame", worker.stderr_text())

    def test_stream_ending_inside_a_frame_is_a_protocol_error(self) -> None:
        worker = self.start_echo()
        worker.send(struct.pack(">IB", 100, gw.T_SCORE) + b"abc")
        assert worker.sock is not None
        worker.sock.shutdown(socket.SHUT_WR)
        self.assertEqual(worker.wait(), 4)

    def test_missing_socket_argument_is_a_usage_error(self) -> None:
        proc = subprocess.run([gw.test_python(), str(gw.SHIM)], capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("berth-worker: usage:", proc.stderr)

    def test_absent_entry_script_fails_at_stage_zero(self) -> None:
        with gw.WorkerProcess(gw.FIXTURES / "echo", entry_script="does_not_exist.py") as worker:
            init = worker.start()
            self.assertFalse(init.ok)
            self.assertEqual(init.stage, 0)
            self.assertIn("does_not_exist.py", init.message)
            self.assertEqual(worker.wait(), 3)

    def test_exec_time_is_reported(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "score.py").write_text(
                "import time\ndef init():\n    pass\ndef run(data):\n    time.sleep(0.05)\n    return 1\n"
            )
            with gw.WorkerProcess(Path(tmp)) as worker:
                self.assertTrue(worker.start().ok)
                result = worker.score("POST", b"x")
                self.assertTrue(result.run_returned)
                self.assertGreaterEqual(result.exec_us, 50_000)
                self.assertLess(result.exec_us, 5_000_000)

    def test_rare_path_modules_are_not_imported_at_start(self) -> None:
        # What an idle replica holds is what it imported: these are imported where they are used.
        lazy = {
            "inspect", "traceback", "http", "urllib.parse", "importlib.abc", "importlib.util",
            "typing", "threading", "socket", "json",
        }
        bare = subprocess.run(
            [gw.test_python(), "-u", "-c", "import sys; print(' '.join(sys.modules))"],
            check=True, capture_output=True, text=True,
        ).stdout.split()
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "score.py").write_text(
                "import sys\ndef init():\n    pass\ndef run(data):\n    return sorted(sys.modules)\n"
            )
            with gw.WorkerProcess(Path(tmp)) as worker:
                self.assertTrue(worker.start().ok)
                loaded = set(worker.score("POST", b"x").json())
        self.assertIn("entry_module", loaded)
        self.assertEqual(sorted((loaded & lazy) - set(bare)), [])


class CompatModuleTests(unittest.TestCase):
    """The azureml stand-ins are served only when the real packages cannot be imported."""

    def test_real_package_wins_over_the_stand_in(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            site = Path(tmp, "site")
            pkg = site / "azureml" / "contrib" / "services"
            pkg.mkdir(parents=True)
            for directory in (site / "azureml", site / "azureml" / "contrib", pkg):
                (directory / "__init__.py").write_text("")
            (pkg / "aml_response.py").write_text("REAL = True\nclass AMLResponse:\n    pass\n")
            app = Path(tmp, "app")
            app.mkdir()
            (app / "score.py").write_text(
                textwrap.dedent(
                    """
                    import azureml.contrib.services.aml_response as response_module
                    import azureml.core.model as model_module

                    def init():
                        pass

                    def run(data):
                        return {
                            "response_real": getattr(response_module, "REAL", False),
                            "model_stand_in": getattr(model_module, "__berth_compat__", False),
                        }
                    """
                )
            )
            with gw.WorkerProcess(app, env={"PYTHONPATH": str(site)}) as worker:
                init = worker.start()
                self.assertTrue(init.ok, init.message)
                # the real azureml package has no azureml.core here, so that one is still the stand-in
                self.assertEqual(worker.score("POST", b"x").json(), {"response_real": True, "model_stand_in": True})

    def test_stand_ins_share_classes_across_import_paths(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "score.py").write_text(
                textwrap.dedent(
                    """
                    from azureml.contrib.services.aml_response import AMLResponse as A
                    from azureml_inference_server_http.api.aml_response import AMLResponse as B
                    from azureml.contrib.services.aml_request import AMLRequest as C
                    from azureml_inference_server_http.api.aml_request import AMLRequest as D

                    def init():
                        pass

                    def run(data):
                        return [A is B, C is D]
                    """
                )
            )
            with gw.WorkerProcess(Path(tmp)) as worker:
                self.assertTrue(worker.start().ok)
                self.assertEqual(worker.score("POST", b"x").json(), [True, True])


class ShimUnitTests(unittest.TestCase):
    """Pieces of the shim that scripts observe directly."""

    def test_werkzeug_header_names(self) -> None:
        self.assertEqual(shim.werkzeug_header_name("x-request-id"), "X-Request-Id")
        self.assertEqual(shim.werkzeug_header_name("content-type"), "Content-Type")
        self.assertEqual(shim.werkzeug_header_name("x_under"), "X-Under")
        self.assertEqual(shim.werkzeug_header_name("x-b3-traceid"), "X-B3-Traceid")

    def test_headers_are_case_insensitive_and_multi_valued(self) -> None:
        headers = shim.Headers()
        headers.add("X-A", "1")
        headers.add("x-a", "2")
        self.assertEqual(headers["x-A"], "1")
        self.assertEqual(headers.getlist("X-a"), ["1", "2"])
        self.assertIn("X-A", headers)
        headers["X-A"] = 3
        self.assertEqual(headers.getlist("x-a"), ["3"])
        self.assertEqual(dict(shim.Headers({"A": "b"})), {"A": "b"})

    def test_multidict(self) -> None:
        md = shim.MultiDict([("a", "1"), ("a", "2"), ("b", "3")])
        self.assertEqual(md["a"], "1")
        self.assertEqual(md.getlist("a"), ["1", "2"])
        self.assertEqual(md.to_dict(), {"a": "1", "b": "3"})
        self.assertEqual(dict(md), {"a": "1", "b": "3"})
        self.assertEqual(md.get("c", "x"), "x")
        self.assertEqual(md.get("b", type=int), 3)

    def test_aml_response_defaults(self) -> None:
        response = shim.AMLResponse("hi", 200)
        self.assertEqual(response.get_data(), b"hi")
        self.assertEqual(response.headers["Content-Type"], "text/html; charset=utf-8")
        self.assertEqual(response.headers["x-ms-run-function-failed"], "False")
        self.assertEqual(response.status, "200 OK")
        repeated = shim.AMLResponse(b"x", 200, {"Vary": "a, b", "Content-Type": "image/png"})
        self.assertEqual(repeated.headers.getlist("Vary"), ["a", "b"])
        self.assertEqual(repeated.headers.getlist("Content-Type"), ["image/png"])
        self.assertEqual(shim.AMLResponse(None, 204).get_data(), b"{}")
        self.assertEqual(shim.AMLResponse({"a": 1}, 200, json_str=True).get_json(), {"a": 1})

    def test_get_params(self) -> None:
        self.assertEqual(shim.parse_get_params(b"a=1&a=x&b=%5B1%5D&c"), {"a": [1, "x"], "b": [1], "c": ""})
        self.assertEqual(shim.parse_get_params(b""), {})

    def test_request_get_json(self) -> None:
        request = shim.AMLRequest("POST", b"", [("content-type", b"text/plain")], b'{"a": 1}')
        with self.assertRaises(shim.BadRequest) as caught:
            request.get_json()
        self.assertEqual(caught.exception.code, 415)
        self.assertIsNone(request.get_json(silent=True))
        self.assertEqual(request.get_json(force=True), {"a": 1})

    def test_form_consumes_data_unless_read_first(self) -> None:
        pairs = [("content-type", b"application/x-www-form-urlencoded")]
        request = shim.AMLRequest("POST", b"", pairs, b"a=1&a=2")
        self.assertEqual(request.form.getlist("a"), ["1", "2"])
        self.assertEqual(request.get_data(), b"")
        request = shim.AMLRequest("POST", b"", pairs, b"a=1")
        self.assertEqual(request.get_data(), b"a=1")
        self.assertEqual(request.form["a"], "1")
        self.assertEqual(request.data, b"a=1")

    def test_model_path_single_entry_rule(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            version_dir = Path(tmp, "m", "2")
            version_dir.mkdir(parents=True)
            (version_dir / "a.bin").write_text("a")
            (version_dir / "b.bin").write_text("b")
            with self.assertRaises(shim.WebserviceException) as caught:
                shim._resolve_in_root(tmp, "m", None)
            self.assertIn("can contain only 1 file or folder", caught.exception.message)

    def test_run_parameters_match_inspect(self) -> None:
        import functools
        import inspect

        def plain(a, b=2, *, c, d=4):  # type: ignore[no-untyped-def]
            pass

        def star(a, *args, **kwargs):  # type: ignore[no-untyped-def]
            pass

        @functools.wraps(plain)
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            pass

        class Callable:
            def __call__(self, data, request_headers=None):  # type: ignore[no-untyped-def]
                pass

        for fn in (plain, star, wrapped, Callable(), functools.partial(plain, 1), lambda data: data):
            expected = [
                (p.name, int(p.kind), shim.NO_DEFAULT if p.default is inspect.Parameter.empty else p.default)
                for p in inspect.signature(fn).parameters.values()
            ]
            got = [(p.name, p.kind, p.default) for p in shim.run_parameters(fn)]
            self.assertEqual(got, expected, fn)

    def test_user_traceback_hides_the_shim(self) -> None:
        try:
            shim.UserScript("/nonexistent-app-root", "nope.py", None).load()
        except shim.InitFailure as failure:
            self.assertEqual(failure.stage, shim.STAGE_LOAD)
            self.assertNotIn("berth_worker.py", failure.message)
            self.assertIn("nope.py", failure.message)
        else:
            self.fail("loading a missing script succeeded")


if __name__ == "__main__":
    unittest.main()
