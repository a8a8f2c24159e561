"""scripts/test_summary.py: the closing summary of scripts/test.sh counts what ran, what failed and
what skipped (with reasons), and a stage that left no result is a failure."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import tempfile
import unittest
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test_summary.py"
_spec = importlib.util.spec_from_file_location("test_summary_under_test", SCRIPT)
assert _spec is not None and _spec.loader is not None
summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summary)

NEXTEST = "   Starting 12 tests across 3 binaries\n     Summary [  10.2s] 12 tests run: 10 passed, 1 failed, 1 timed out, 2 skipped\n"
CARGO = "test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured\ntest result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured\n"


def run(files: dict) -> tuple:
    with tempfile.TemporaryDirectory() as d:
        for name, text in files.items():
            (Path(d) / name).write_text(text)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = summary.main(["test_summary.py", d])
        return code, out.getvalue()


class SummaryTests(unittest.TestCase):
    def test_nextest_and_cargo_test_lines_are_counted(self) -> None:
        self.assertEqual(summary.rust_counts(NEXTEST), (10, 2, 2))
        self.assertEqual(summary.rust_counts(CARGO), (7, 1, 1))
        self.assertIsNone(summary.rust_counts("error[E0425]: cannot find value"))

    def test_recorded_rust_skips_and_python_skips_are_listed_with_reasons(self) -> None:
        code, out = run({
            "rust.log": "     Summary [   1.0s] 4 tests run: 4 passed, 0 skipped\n",
            "rust-skips.txt": "resources::cgroup_kill: no writable cgroup\n",
            "py-sdk.expected": "python/sdk_tests\n",
            "py-sdk.json": json.dumps({"suite": "python/sdk_tests", "passed": 3, "failed": 0, "skipped": [["t.T.test_x", "no 3.8"]]}),
        })
        self.assertEqual(code, 0)
        self.assertIn("  - resources::cgroup_kill: no writable cgroup\n", out)
        self.assertIn("  - t.T.test_x: no 3.8\n", out)
        self.assertTrue(out.endswith("summary: 6 passed, 0 failed, 2 skipped\n"), out)

    def test_a_stage_without_a_result_fails(self) -> None:
        code, out = run({"py-shim.expected": "python/tests\n"})
        self.assertEqual(code, 1)
        self.assertIn("the Rust tests left no summary", out)
        self.assertIn("the Python suite python/tests left no result", out)
        self.assertTrue(out.endswith("summary: 0 passed, 2 failed, 0 skipped\n"), out)


if __name__ == "__main__":
    unittest.main()
