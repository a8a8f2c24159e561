"""The SDK's own build backend: a wheel with the package and valid RECORD, an sdist that can
rebuild it."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tarfile
import tempfile
import unittest
import zipfile

import _server  # noqa: F401  (puts python/ on sys.path)

from berth import _build_backend as backend


class BuildBackendTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="berth-sdk-build-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_wheel(self) -> None:
        self.assertEqual(backend.get_requires_for_build_wheel(), [])
        name = backend.build_wheel(self.dir)
        self.assertEqual(name, "berth-0.1.0-py3-none-any.whl")
        with zipfile.ZipFile(os.path.join(self.dir, name)) as wheel:
            names = wheel.namelist()
            for expected in (
                "berth/__init__.py",
                "berth/py.typed",
                "berth/exceptions.py",
                "berth/core/model.py",
                "berth/core/webservice/aks.py",
                "berth-0.1.0.dist-info/METADATA",
                "berth-0.1.0.dist-info/WHEEL",
                "berth-0.1.0.dist-info/RECORD",
            ):
                self.assertIn(expected, names)
            self.assertNotIn("berth/_build_backend.py", names)
            self.assertFalse([n for n in names if "__pycache__" in n or n.endswith(".pyc")])
            record = wheel.read("berth-0.1.0.dist-info/RECORD").decode("utf-8").splitlines()
            for line in record:
                path, digest, size = line.rsplit(",", 2)
                if not digest:
                    continue
                data = wheel.read(path)
                expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
                self.assertEqual((digest, int(size)), (f"sha256={expected}", len(data)), path)
            metadata = wheel.read("berth-0.1.0.dist-info/METADATA").decode("utf-8")
            self.assertIn("Name: berth\n", metadata)
            self.assertIn("Requires-Python: >=3.8\n", metadata)

    def test_sdist_and_metadata(self) -> None:
        name = backend.build_sdist(self.dir)
        with tarfile.open(os.path.join(self.dir, name)) as sdist:
            names = sdist.getnames()
        for expected in ("berth-0.1.0/pyproject.toml", "berth-0.1.0/PKG-INFO", "berth-0.1.0/berth/_build_backend.py",
                         "berth-0.1.0/berth/core/workspace.py"):
            self.assertIn(expected, names)
        self.assertFalse([n for n in names if "sdk_tests" in n])
        dist_info = backend.prepare_metadata_for_build_wheel(self.dir)
        self.assertTrue(os.path.isfile(os.path.join(self.dir, dist_info, "METADATA")))


if __name__ == "__main__":
    unittest.main()
