"""Attaching a Kubernetes cluster with the SDK: ``AksCompute.attach_configuration`` with cluster
settings, ``ComputeTarget.attach``, the kubeconfig kept secret, bad settings named, detach."""

from __future__ import annotations

import unittest

from _server import ServerTestCase, silence

from berth.core.compute import AksCompute, ComputeTarget
from berth.exceptions import ComputeTargetException

KUBECONFIG = (
    "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:1'}\n"
    "users:\n- name: u\n  user: {token: sdk-kube-secret}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
    "current-context: x\n"
)


class KubeComputeTest(ServerTestCase):
    def test_kube_attach_show_and_detach(self) -> None:
        kubeconfig = self.write("kubeconfig", KUBECONFIG)
        config = AksCompute.attach_configuration(
            kubeconfig=kubeconfig, namespace="ml", image="ghcr.io/acme/berth:1", server_url="http://berth:8080"
        )
        with silence():
            target = ComputeTarget.attach(self.ws, "aks-kube", config)
            target.wait_for_completion()
        self.assertIsInstance(target, AksCompute)
        assert isinstance(target, AksCompute)
        self.assertEqual(target.backed_by, "kubernetes")
        self.assertEqual(target.namespace, "ml")
        self.assertEqual(target.image, "ghcr.io/acme/berth:1")
        self.assertEqual(target.server_url, "http://berth:8080")
        self.assertTrue(target.kubeconfig_set)
        self.assertFalse(target.in_cluster)
        again = ComputeTarget(self.ws, "aks-kube")
        self.assertNotIn("sdk-kube-secret", repr(again.serialize()) + repr(again._payload))
        names = [t.name for t in ComputeTarget.list(self.ws)]
        self.assertEqual(names[:2], ["local", "aks-kube"])
        again.detach()
        with self.assertRaises(ComputeTargetException) as raised:
            ComputeTarget(self.ws, "aks-kube")
        self.assertEqual(raised.exception.status_code, 404)

    def test_kube_attach_configuration_names_bad_settings(self) -> None:
        with self.assertRaises(ComputeTargetException) as raised:
            AksCompute.attach_configuration(namespace="ml")
        message = str(raised.exception)
        self.assertIn("image is missing", message)
        self.assertIn("kubeconfig is missing", message)
        with self.assertRaises(ComputeTargetException) as raised:
            AksCompute.attach_configuration(kubeconfig="/nonexistent/kc", namespace="ml", image="i")
        self.assertIn("'/nonexistent/kc' is not a file", str(raised.exception))
        config = AksCompute.attach_configuration(in_cluster=True, namespace="Bad_NS", image="i")
        with self.assertRaises(ComputeTargetException) as raised:
            ComputeTarget.attach(self.ws, "aks-bad", config)
        self.assertIn("`kubernetes.namespace` is `Bad_NS`", str(raised.exception))
        # The v1 form still records a target backed by the local target.
        with silence():
            plain = ComputeTarget.attach(self.ws, "aks-v1", AksCompute.attach_configuration("rg", "cluster"))
        self.assertEqual(plain.backed_by, "local")


if __name__ == "__main__":
    unittest.main()
