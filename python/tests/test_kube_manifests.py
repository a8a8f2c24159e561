"""Every Kubernetes manifest Berth sends (the golden files of
``crates/berth-server/src/compute/kubernetes/golden``) is valid against the official schemas of
the pinned Kubernetes version (``scripts/kube-validate.sh``, strict: unknown fields are errors).
The validator is installed when missing; a validator that cannot run fails the test."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "kube-validate.sh")
GOLDEN = os.path.join(REPO, "crates", "berth-server", "src", "compute", "kubernetes", "golden")
INSTALL = os.path.join(REPO, "deploy", "kubernetes")


def _validate(*files: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SCRIPT, *files], capture_output=True, text=True, timeout=600)


class KubeManifestSchemaTest(unittest.TestCase):
    def test_kube_golden_manifests_are_valid(self) -> None:
        files = sorted(glob.glob(os.path.join(GOLDEN, "*.json")))
        kinds = set()
        for path in files:
            with open(path, encoding="utf-8") as f:
                kinds.add(json.load(f).get("kind"))
        self.assertEqual(kinds, {"Deployment", "Secret", "Scale"}, files)
        result = _validate(*files)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        for path in files:
            self.assertIn(os.path.basename(path), result.stdout + result.stderr)

    def test_kube_install_manifests_are_valid(self) -> None:
        """The kustomize base that installs Berth in a cluster (the kustomization file itself is
        not a Kubernetes object)."""
        files = sorted(
            f for f in glob.glob(os.path.join(INSTALL, "*.yaml")) if os.path.basename(f) != "kustomization.yaml"
        )
        self.assertEqual(len(files), 6, files)
        result = _validate(*files)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_kube_validator_rejects_a_broken_manifest(self) -> None:
        """The check can fail: a Deployment with an unknown field and a string replica count."""
        with open(os.path.join(GOLDEN, "deployment-default.json"), encoding="utf-8") as f:
            broken = json.load(f)
        broken["spec"]["replicas"] = "two"
        broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(broken, f)
        try:
            result = _validate(f.name)
        finally:
            os.unlink(f.name)
        self.assertNotEqual(result.returncode, 0, result.stdout + result.stderr)


if __name__ == "__main__":
    unittest.main()
