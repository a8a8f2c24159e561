"""The worker shim applies the server's resource settings before any user code runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import worker_gateway as gw  # noqa: E402


def _load_shim():
    spec = importlib.util.spec_from_file_location("berth_worker_limits_under_test", gw.SHIM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shim = _load_shim()


def _in_child(env: dict) -> subprocess.CompletedProcess:
    """Run apply_resource_limits in a fresh interpreter (affinity and rlimits are per process)."""
    code = (
        "import importlib.util, os, resource, sys\n"
        f"spec = importlib.util.spec_from_file_location('s', {str(gw.SHIM)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "try:\n"
        "    print(m.apply_resource_limits(os.environ))\n"
        "except m.ResourceLimitError as ex:\n"
        "    print('ERROR', ex); sys.exit(5)\n"
        "print(sorted(os.sched_getaffinity(0)), resource.getrlimit(resource.RLIMIT_AS)[0])\n"
    )
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=30)


class ApplyResourceLimitsTests(unittest.TestCase):
    def test_nothing_asked_nothing_applied(self) -> None:
        self.assertEqual(shim.apply_resource_limits({}), [])

    def test_writes_own_pid_into_every_procs_file(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            a, b = os.path.join(tmp, "a.procs"), os.path.join(tmp, "b.procs")
            applied = shim.apply_resource_limits({"BERTH_CGROUP_PROCS": f"{a}:{b}"})
            self.assertEqual(len(applied), 2)
            for path in (a, b):
                with open(path) as f:
                    self.assertEqual(f.read(), str(os.getpid()))

    def test_a_group_it_cannot_join_fails_clearly(self) -> None:
        with self.assertRaises(shim.ResourceLimitError) as ctx:
            shim.apply_resource_limits({"BERTH_CGROUP_PROCS": "/nonexistent/berth/cgroup.procs"})
        self.assertIn("cannot join the replica's cgroup (/nonexistent/berth/cgroup.procs)", str(ctx.exception))

    def test_affinity_and_address_space_are_set(self) -> None:
        first = sorted(os.sched_getaffinity(0))[0]
        done = _in_child({"BERTH_CPU_AFFINITY": str(first), "BERTH_RLIMIT_AS_BYTES": str(4 << 30)})
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn(f"[{first}] {4 << 30}", done.stdout)

    def test_a_bad_affinity_fails_clearly(self) -> None:
        done = _in_child({"BERTH_CPU_AFFINITY": "x"})
        self.assertEqual(done.returncode, 5)
        self.assertIn("cannot set the CPU affinity to 'x'", done.stdout)


if __name__ == "__main__":
    unittest.main()
