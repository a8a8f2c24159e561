"""Progressive delivery in the SDK: ``Rollout`` and the ``rollout`` block it writes, durations and
traffic splits checked client-side, ``wait_for_deployment`` on a rolled-back operation, v1
``AksEndpoint`` versions mapped onto traffic weights and names; then the same against a real server
(rollout settings on deploy and update, the traffic, promote/abort and mirror routes, AksEndpoint)."""

from __future__ import annotations

import json
import os
import unittest
from typing import Any, Dict, List, Optional, Tuple

from _server import SCORE_PY, ServerTestCase, model_file, silence

from berth._http import Response
from berth.core import Model
from berth.core.model import InferenceConfig
from berth.core.webservice import (
    AciWebservice,
    AksEndpoint,
    AksWebservice,
    LocalWebservice,
    Rollout,
    Webservice,
)
from berth.core.webservice.rollout import check_weights, parse_duration
from berth.exceptions import WebserviceException


class FakeContext:
    """Answers the SDK's calls from a script of ``(method, path) -> (status, body, headers)`` and
    records every call."""

    def __init__(self, answers: Dict[Tuple[str, str], Any]) -> None:
        self.answers = answers
        self.calls: List[Tuple[str, str, Any]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        self.calls.append((method, path, kwargs.get("json_body")))
        answer = self.answers.get((method, path))
        if answer is None:
            raise AssertionError(f"unexpected call {method} {path}")
        if callable(answer):
            answer = answer()
        status, body, headers = answer if len(answer) == 3 else (*answer, {})
        return Response(status, "", headers, json.dumps(body).encode() if body is not None else b"")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()


class FakeWorkspace:
    def __init__(self, answers: Dict[Tuple[str, str], Any]) -> None:
        self.service_context = FakeContext(answers)


def service_payload(**extra: Any) -> Dict[str, Any]:
    payload = {
        "name": "svc",
        "state": "Healthy",
        "computeType": "AKS",
        "servingRevision": 3,
        "latestRevision": 4,
        "authEnabled": False,
        "tokenAuthEnabled": False,
        "rollout": {"strategy": "canary", "canaryPercent": 10, "steps": 4, "bakeSeconds": 60,
                    "maxErrorRate": 1.0, "minRequests": 20, "autoRollback": True},
    }
    payload.update(extra)
    return payload


def fake_service(answers: Dict[Tuple[str, str], Any], **extra: Any) -> Webservice:
    ws = FakeWorkspace(answers)
    return Webservice._from_payload(ws, service_payload(**extra))  # type: ignore[arg-type]


ACCEPTED = (202, {"operation": {"id": "op-1"}, "warnings": []}, {"operation-location": "/v1/operations/op-1"})


class RolloutSettingsTests(unittest.TestCase):
    def test_every_setting_reaches_the_rollout_block(self) -> None:
        rollout = Rollout(strategy="canary", canary_percent=20, bake="2m", max_error_rate=0.5, max_p99_ms=300,
                          min_requests=50, auto_rollback=False, shadow_percent=20, shadow_revision=4)
        self.assertEqual(
            rollout.serialize(),
            {"strategy": "canary", "canaryPercent": 20, "bakeSeconds": 120, "maxErrorRate": 0.5, "maxP99Ms": 300,
             "minRequests": 50, "autoRollback": False, "shadow": {"percent": 20, "revision": 4}},
        )
        self.assertEqual(Rollout(strategy="blue-green", bake_seconds=0).serialize(),
                         {"strategy": "blueGreen", "bakeSeconds": 0})
        self.assertEqual(Rollout(steps=5).serialize(), {"steps": 5}, "only the settings given are sent")
        self.assertEqual(Rollout.deserialize(rollout.serialize()), rollout)

    def test_every_problem_is_named_at_once(self) -> None:
        with self.assertRaises(WebserviceException) as caught:
            Rollout(strategy="fast", canary_percent=100, steps=1, max_error_rate=101, max_p99_ms=0,
                    min_requests=0, auto_rollback="yes", shadow_percent=0)  # type: ignore[arg-type]
        message = caught.exception.message
        for needle in (
            "strategy is 'fast': it must be one of rolling, canary, linear, blueGreen",
            "canary_percent is 100: it must be a percent from 1 to 99",
            "steps is 1: it must be a whole number of steps from 2 to 20",
            "max_error_rate is 101",
            "max_p99_ms is 0",
            "min_requests is 0",
            "auto_rollback is 'yes'",
            "shadow_percent is 0",
        ):
            self.assertIn(needle, message)
        for kwargs, needle in (
            ({"bake": "25h"}, "a bake lasts at most 24h"),
            ({"bake": "soon"}, "'soon' is not a duration"),
            ({"bake": "1m", "bake_seconds": 60}, "give bake_seconds or bake, not both"),
            ({"bake_seconds": 90000}, "bake_seconds is 90000"),
            ({"strategy": "linear", "bake": "0s"}, "the linear strategy needs a bake > 0"),
            ({"shadow_revision": 3}, "shadow_revision needs shadow_percent"),
        ):
            with self.assertRaises(WebserviceException) as caught:
                Rollout(**kwargs)
            self.assertIn(needle, caught.exception.message, kwargs)

    def test_durations(self) -> None:
        for text, seconds in (("90", 90), (90, 90), ("15s", 15), ("2m", 120), ("1h", 3600), ("1m30s", 90),
                              (" 45s ", 45), ("0", 0)):
            self.assertEqual(parse_duration(text), seconds, text)
        for bad in ("", "15x", "1.5m", "-5", -5, "m", "30s1m", True):
            with self.assertRaises(WebserviceException, msg=repr(bad)) as caught:
                parse_duration(bad)  # type: ignore[arg-type]
            self.assertIn("'15s'", caught.exception.message)

    def test_deploy_configurations_carry_the_rollout(self) -> None:
        rollout = Rollout(strategy="linear", steps=3, bake="30s")
        block = {"strategy": "linear", "steps": 3, "bakeSeconds": 30}
        aks = AksWebservice.deploy_configuration(num_replicas=1, rollout=rollout)
        self.assertEqual(aks.serialize(), {"computeType": "aks", "numReplicas": 1, "rollout": block})
        self.assertEqual(AciWebservice.deploy_configuration(rollout=rollout).serialize()["rollout"], block)
        self.assertEqual(LocalWebservice.deploy_configuration(rollout=rollout).serialize()["rollout"], block)
        self.assertNotIn("rollout", AksWebservice.deploy_configuration(num_replicas=1).serialize())
        with self.assertRaisesRegex(WebserviceException, "rollout must be a Rollout object"):
            AksWebservice.deploy_configuration(rollout={"strategy": "canary"})  # type: ignore[arg-type]


class TrafficClientTests(unittest.TestCase):
    def test_weights_are_checked_before_anything_is_sent(self) -> None:
        self.assertEqual(check_weights({3: 90, 4: 10}), {"3": 90, "4": 10})
        for weights, needle in (
            ({3: 90, 4: 20}, "sum to 110: they must sum to 100"),
            ({3: 150}, "the weight of revision 3 is 150"),
            ({0: 100}, "0 is not a revision number"),
            ({"x": 100}, "'x' is not a revision number"),
            ({3: 50.5, 4: 49.5}, "whole percent"),
            ({}, "give each serving revision its percent"),
        ):
            with self.assertRaises(WebserviceException, msg=str(weights)) as caught:
                check_weights(weights)  # type: ignore[arg-type]
            self.assertIn(needle, caught.exception.message)
        service = fake_service({})
        with self.assertRaisesRegex(WebserviceException, "sum to 110"):
            service.set_traffic({3: 90, 4: 20})
        self.assertEqual(service.workspace.service_context.calls, [])  # type: ignore[attr-defined]

    def test_set_traffic_sends_weights_and_names_as_an_operation(self) -> None:
        service = fake_service({
            ("PUT", "/v1/services/svc/traffic"): ACCEPTED,
            ("GET", "/v1/services/svc"): (200, service_payload()),
        })
        service.set_traffic({3: 90, 4: 10}, names={4: "blue"})
        calls = service.workspace.service_context.calls  # type: ignore[attr-defined]
        self.assertEqual(calls[0], ("PUT", "/v1/services/svc/traffic",
                                    {"weights": {"3": 90, "4": 10}, "names": {"4": "blue"}}))
        self.assertEqual(service._operation_endpoint, "/v1/operations/op-1")

    def test_update_with_only_a_rollout_patches_the_rollout_block(self) -> None:
        service = fake_service({
            ("PATCH", "/v1/services/svc"): ACCEPTED,
            ("GET", "/v1/services/svc"): (200, service_payload()),
        })
        assert isinstance(service, AksWebservice)
        service.update(rollout=Rollout(strategy="canary", bake="5m"))
        calls = service.workspace.service_context.calls  # type: ignore[attr-defined]
        self.assertEqual(calls[0][2], {"rollout": {"strategy": "canary", "bakeSeconds": 300}})
        self.assertEqual(service.rollout, Rollout.deserialize(service_payload()["rollout"]))

    def test_a_rolled_back_operation_raises_naming_gate_threshold_and_measured_value(self) -> None:
        gates = [
            {"gate": "errorRate", "threshold": 1.2, "measured": 30.5, "baseline": 0.2, "requests": 57,
             "verdict": "failed"},
            {"gate": "p99Latency", "threshold": 300, "measured": 12.0, "requests": 57, "verdict": "passing"},
        ]
        rolled_back = service_payload(rolloutStatus={"operationId": "op-1", "strategy": "canary", "candidate": 4,
                                                     "baseline": 3, "step": 1, "steps": 1, "phase": "done",
                                                     "weights": {"3": 100}, "gates": gates})
        service = fake_service({
            ("GET", "/v1/operations/op-1"): (200, {
                "id": "op-1", "state": "RolledBack", "targetRevision": 4, "events": [],
                "error": {"code": "GateFailed", "step": "canary bake",
                          "message": "error rate 30.5% is above the threshold 1.2%", "output": []},
            }),
            ("GET", "/v1/services/svc"): (200, rolled_back),
        })
        service._operation_endpoint = "/v1/operations/op-1"
        with silence(), self.assertRaises(WebserviceException) as caught:
            service.wait_for_deployment()
        message = caught.exception.message
        self.assertIn("rolled back", message)
        self.assertIn("GateFailed at canary bake: error rate 30.5% is above the threshold 1.2%", message)
        self.assertIn("error rate measured 30.50% (baseline 0.20%), threshold 1.20%, after 57 requests: failed",
                      message)
        self.assertNotIn("p99", message, "only failed gates are named")
        self.assertIn("revision 3 serves requests", message)
        self.assertEqual(caught.exception.code, "GateFailed")


def endpoint(traffic: List[Dict[str, Any]], answers: Optional[Dict[Tuple[str, str], Any]] = None) -> AksEndpoint:
    ws = FakeWorkspace(answers or {})
    return Webservice._from_payload(ws, service_payload(traffic=traffic), AksEndpoint)  # type: ignore


def last_put(service: Webservice) -> Any:
    """The body of the last ``PUT`` the service sent."""
    calls = service.workspace.service_context.calls  # type: ignore[attr-defined]
    return [body for method, _, body in calls if method == "PUT"][-1]


class AksEndpointClientTests(unittest.TestCase):
    TRAFFIC = [
        {"revision": 3, "weight": 80, "role": "stable", "name": "versiona"},
        {"revision": 4, "weight": 20, "role": "split", "name": "versionb"},
    ]

    def test_versions_come_from_the_traffic_split(self) -> None:
        ep = endpoint(self.TRAFFIC)
        versions = ep.versions
        self.assertEqual(sorted(versions), ["versiona", "versionb"])
        self.assertEqual((versions["versiona"].revision, versions["versiona"].traffic_percentile), (3, 80))
        self.assertTrue(versions["versiona"].is_default)
        self.assertFalse(versions["versionb"].is_default)
        self.assertEqual(versions["versionb"].version_type, "Treatment")
        self.assertEqual(ep.serialize()["versions"]["versionb"]["trafficPercentile"], 20)

    def test_the_default_version_takes_what_the_others_leave(self) -> None:
        # azureml-core's example: a 20 % version and a 40 % default version → the default serves 80 %.
        self.assertEqual(AksEndpoint.split([("a", 3, 20), ("b", 4, 40)], default="b"), {3: 20, 4: 80})
        with self.assertRaisesRegex(WebserviceException, r"ask for 110% of the traffic \(a: 60, c: 50\)"):
            AksEndpoint.split([("a", 3, 60), ("b", 4, 0), ("c", 5, 50)], default="b")

    def test_update_version_moves_the_split(self) -> None:
        ep = endpoint(self.TRAFFIC, {
            ("PUT", "/v1/services/svc/traffic"): ACCEPTED,
            ("GET", "/v1/services/svc"): (200, service_payload(traffic=self.TRAFFIC)),
        })
        ep.update_version("versionb", traffic_percentile=40, is_default=True)
        call = ep.workspace.service_context.calls[0]  # type: ignore[attr-defined]
        self.assertEqual(call[2], {"weights": {"3": 80, "4": 20}, "names": {"3": "versiona", "4": "versionb"}})
        ep2 = endpoint(self.TRAFFIC, {
            ("PUT", "/v1/services/svc/traffic"): ACCEPTED,
            ("GET", "/v1/services/svc"): (200, service_payload(traffic=self.TRAFFIC)),
        })
        ep2.update_version("versionb", traffic_percentile=35)
        call = ep2.workspace.service_context.calls[0]  # type: ignore[attr-defined]
        self.assertEqual(call[2]["weights"], {"3": 65, "4": 35})

    def test_configured_percentiles_follow_azureml_core_within_a_session(self) -> None:
        state = {"traffic": [{"revision": 1, "weight": 100, "role": "stable", "name": "versiona"}]}
        answers = {
            ("POST", "/v1/services/svc/revisions"): (201, {"revision": 2, "serving": False, "spec": {}}),
            ("PUT", "/v1/services/svc/traffic"): ACCEPTED,
            ("GET", "/v1/services/svc"): lambda: (200, service_payload(traffic=state["traffic"])),
        }
        ep = endpoint(state["traffic"], answers)
        ep._after_deploy(AksEndpoint.deploy_configuration(version_name="versiona", traffic_percentile=20))
        ep.create_version("versionb", num_replicas=1, traffic_percentile=10)
        sent = last_put(ep)
        self.assertEqual(sent["weights"], {"1": 90, "2": 10})
        state["traffic"] = [{"revision": 1, "weight": 90, "role": "stable", "name": "versiona"},
                            {"revision": 2, "weight": 10, "role": "split", "name": "versionb"}]
        ep.update_deployment_state()
        ep.update_version("versionb", traffic_percentile=40, is_default=True)
        sent = last_put(ep)
        self.assertEqual(sent["weights"], {"1": 20, "2": 80})

    def test_version_mistakes_are_refused_before_anything_is_sent(self) -> None:
        ep = endpoint(self.TRAFFIC)
        for call, needle in (
            (lambda: ep.create_version("versiona", num_replicas=1), "already has a version 'versiona'"),
            (lambda: ep.create_version("bad name", num_replicas=1), "version_name 'bad name' is invalid"),
            (lambda: ep.create_version("versionc", num_replicas=1, traffic_percentile=90), "ask for 110%"),
            (lambda: ep.create_version("versionc", num_replicas=1, traffic_percentile=101), "traffic_percentile is 101"),
            (lambda: ep.create_version("versionc"), "create_version needs what the new version runs"),
            (lambda: ep.update_version("nope", traffic_percentile=5), "has no version 'nope'"),
            (lambda: ep.delete_version("versiona"), "is the default version"),
        ):
            with self.assertRaises(WebserviceException) as caught:
                call()
            self.assertIn(needle, caught.exception.message)
        self.assertEqual(ep.workspace.service_context.calls, [])  # type: ignore[attr-defined]
        alone = endpoint([{"revision": 3, "weight": 100, "role": "stable", "name": "versiona"}])
        with self.assertRaisesRegex(WebserviceException, "only version"):
            alone.delete_version("versiona")

    def test_create_version_stages_a_revision_then_splits_traffic(self) -> None:
        ep = endpoint(self.TRAFFIC, {
            ("POST", "/v1/services/svc/revisions"): (201, {"revision": 5, "serving": False, "spec": {}}),
            ("PUT", "/v1/services/svc/traffic"): ACCEPTED,
            ("GET", "/v1/services/svc"): (200, service_payload(traffic=self.TRAFFIC)),
        })
        ep.create_version("versionc", num_replicas=2, traffic_percentile=10)
        calls = ep.workspace.service_context.calls  # type: ignore[attr-defined]
        self.assertEqual(calls[0], ("POST", "/v1/services/svc/revisions", {"numReplicas": 2}))
        self.assertEqual(calls[1][2], {"weights": {"3": 70, "4": 20, "5": 10},
                                       "names": {"3": "versiona", "4": "versionb", "5": "versionc"}})

    def test_deploy_configuration_checks_the_version(self) -> None:
        config = AksEndpoint.deploy_configuration(num_replicas=1, version_name="versiona", traffic_percentile=20)
        self.assertEqual((config.version_name, config.traffic_percentile), ("versiona", 20))
        with self.assertRaisesRegex(WebserviceException, "version_name '-a' is invalid"):
            AksEndpoint.deploy_configuration(version_name="-a")
        with self.assertRaisesRegex(WebserviceException, "traffic_percentile is 120"):
            AksEndpoint.deploy_configuration(traffic_percentile=120)


# -- against a real server ------------------------------------------------------------------------


class RolloutServerTests(ServerTestCase):
    """Rollout settings through the server's deployment-config parsing (works with the settings
    alone), then the traffic routes (needs the server's progressive-delivery routes)."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        with silence():
            cls.model = Model.register(cls.ws, model_file(os.path.join(cls.tmp, "m"), "one"), "rollout-model")
        cls.src = os.path.join(cls.tmp, "src")
        os.makedirs(cls.src, exist_ok=True)
        with open(os.path.join(cls.src, "score.py"), "w", encoding="utf-8") as f:
            f.write(SCORE_PY)

    def deploy(self, name: str, config: Any) -> Webservice:
        with silence():
            service = Model.deploy(self.ws, name, [self.model],
                                   InferenceConfig(entry_script="score.py", source_directory=self.src), config,
                                   overwrite=True)
            service.wait_for_deployment()
        self.addCleanup(self._delete_quietly, service)
        return service

    @staticmethod
    def _delete_quietly(service: Webservice) -> None:
        try:
            with silence():
                service.delete()
        except WebserviceException:
            pass

    def test_rollout_settings_are_kept_and_a_rollout_only_update_is_live(self) -> None:
        service = self.deploy("ro-settings", AksWebservice.deploy_configuration(
            num_replicas=1, auth_enabled=False, rollout=Rollout(strategy="canary", canary_percent=20, bake="2m")))
        assert isinstance(service, AksWebservice)
        self.assertEqual(service.rollout.serialize()["strategy"], "canary")  # type: ignore[union-attr]
        self.assertEqual(service.rollout.bake_seconds, 120)  # type: ignore[union-attr]
        revision = service.serving_revision
        with silence():
            service.update(rollout=Rollout(strategy="linear", steps=3, bake="30s"))
            service.wait_for_deployment()
        self.assertEqual(service.state, "Healthy")
        self.assertEqual((service.rollout.strategy, service.rollout.steps, service.rollout.bake_seconds),  # type: ignore
                         ("linear", 3, 30))
        self.assertEqual(service.rollout.canary_percent, 20, "settings not given keep their values")  # type: ignore
        self.assertEqual(service.serving_revision, (revision or 0) + 1)
        self.assertEqual(service.run(json.dumps({"data": [1]})), service.run(json.dumps({"data": [1]})))

    def test_the_server_refuses_a_bad_rollout_naming_field_value_and_fix(self) -> None:
        service = self.deploy("ro-bad", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False))
        with self.assertRaises(WebserviceException) as caught:
            self.ws.service_context.request(
                "PATCH", "/v1/services/ro-bad", json_body={"rollout": {"strategy": "canary", "steps": 50,
                                                                       "bake": "soon"}},
                expect=(202,), what="update service",
            )
        text = caught.exception.message + "\n" + "\n".join(caught.exception.details)
        self.assertEqual(caught.exception.status_code, 400)
        self.assertIn("`rollout.steps` is 50", text)
        self.assertIn("`soon` is not a duration", text)
        del service

    # The tests below need the server's traffic, rollout and mirror routes.

    def test_traffic_shows_the_serving_revision(self) -> None:
        service = self.deploy("ro-traffic", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False))
        traffic = service.get_traffic()
        self.assertEqual([(r["revision"], r["weight"]) for r in traffic["revisions"]], [(1, 100)])

    def test_a_split_and_names_by_hand(self) -> None:
        service = self.deploy("ro-split", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False))
        assert isinstance(service, AksWebservice)
        staged = service._stage({"numReplicas": 1, "description": "second"})
        with silence():
            service.set_traffic({1: 50, int(staged["revision"]): 50}, names={1: "blue"})
            service.wait_for_deployment()
        weights = {s["revision"]: s["weight"] for s in service.traffic}
        self.assertEqual(weights, {1: 50, int(staged["revision"]): 50})
        self.assertEqual([s.get("name") for s in service.traffic if s["revision"] == 1], ["blue"])

    def test_promote_and_abort_without_a_rollout_are_409(self) -> None:
        service = self.deploy("ro-idle", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False))
        for call in (service.promote, service.abort):
            with self.assertRaises(WebserviceException) as caught:
                call()
            self.assertEqual(caught.exception.status_code, 409)

    def test_mirror_on_and_off(self) -> None:
        service = self.deploy("ro-mirror", AksWebservice.deploy_configuration(num_replicas=1, auth_enabled=False))
        staged = service._stage({"description": "shadow"})
        status = service.mirror(int(staged["revision"]), 20)
        assert status is not None
        self.assertEqual((status["revision"], status["percent"]), (int(staged["revision"]), 20))
        self.assertEqual(service.mirror_diffs(), [])
        self.assertIsNone(service.mirror(None))

    def test_aks_endpoint_versions(self) -> None:
        config = AksEndpoint.deploy_configuration(num_replicas=1, auth_enabled=False, version_name="versiona",
                                                  traffic_percentile=20)
        ep = self.deploy("ro-endpoint", config)
        self.assertIsInstance(ep, AksEndpoint)
        assert isinstance(ep, AksEndpoint)
        self.assertEqual(list(ep.versions), ["versiona"])
        with silence():
            ep.create_version("versionb", num_replicas=1, description="b", traffic_percentile=10)
            ep.wait_for_deployment()
        self.assertEqual({n: v.traffic_percentile for n, v in ep.versions.items()}, {"versiona": 90, "versionb": 10})
        with silence():
            ep.update_version("versionb", traffic_percentile=40, is_default=True)
            ep.wait_for_deployment()
        # azureml-core's example: versiona keeps its 20 %, the default versionb serves the other 80 %.
        self.assertEqual({n: v.traffic_percentile for n, v in ep.versions.items()}, {"versiona": 20, "versionb": 80})
        with silence():
            ep.delete_version("versiona")
            ep.wait_for_deployment()
        self.assertEqual({n: v.traffic_percentile for n, v in ep.versions.items()}, {"versionb": 100})


if __name__ == "__main__":
    unittest.main()
