"""Model aliases from the SDK against a real server: ``Model(ws, name, alias=...)``,
``Model.set_alias``/``remove_alias``, a service deployed from an aliased model follows it."""

from __future__ import annotations

import json
import os
import time
import unittest

from _server import SCORE_PY, ServerTestCase, model_file, silence

from berth.core import Model, Webservice
from berth.core.model import InferenceConfig
from berth.core.webservice import LocalWebservice, Rollout
from berth.exceptions import ModelNotFoundException, WebserviceException


class AliasTests(ServerTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        with silence():
            cls.v1 = Model.register(cls.ws, model_file(os.path.join(cls.tmp, "a1"), "one"), "aliased")
            cls.v2 = Model.register(cls.ws, model_file(os.path.join(cls.tmp, "a2"), "two"), "aliased")
        cls.src = os.path.join(cls.tmp, "src")
        os.makedirs(cls.src, exist_ok=True)
        with open(os.path.join(cls.src, "score.py"), "w", encoding="utf-8") as f:
            f.write(SCORE_PY)

    def test_set_get_move_and_remove(self) -> None:
        with silence():
            v1 = Model.register(self.ws, model_file(self.path("s1"), "one"), "solo")
            v2 = Model.register(self.ws, model_file(self.path("s2"), "two"), "solo")
        answer = v1.set_alias("stable")
        self.assertEqual((answer["alias"]["version"], answer["previous"], answer["followers"]), (1, None, []))
        got = Model(self.ws, "solo", alias="stable")
        self.assertEqual((got.version, got.reference), (1, "solo@stable"))
        self.assertEqual(got.aliases.get("stable"), 1)
        by_id = Model(self.ws, id="solo@stable")
        self.assertEqual(by_id.version, 1)
        moved = v1.set_alias("stable", version=2)
        self.assertEqual(moved["previous"], 1)
        self.assertEqual(Model(self.ws, "solo", alias="stable").version, 2)
        self.assertEqual(Model(self.ws, "solo", alias="latest").version, 2)
        with self.assertRaises(WebserviceException) as reserved:
            v1.set_alias("latest")
        self.assertEqual(reserved.exception.status_code, 400)
        self.assertIn("reserved", str(reserved.exception))
        with self.assertRaises(WebserviceException) as refused:
            v2.delete()
        self.assertEqual(refused.exception.status_code, 412)
        self.assertIn("solo@stable", str(refused.exception))
        v1.remove_alias("stable")
        with self.assertRaises(ModelNotFoundException):
            Model(self.ws, "solo", alias="stable")
        with self.assertRaises(WebserviceException):
            Model(self.ws, "solo", version=1, alias="stable")

    def test_a_service_deployed_from_an_aliased_model_follows_it(self) -> None:
        self.v1.set_alias("champion")
        champion = Model(self.ws, "aliased", alias="champion")
        config = LocalWebservice.deploy_configuration(rollout=Rollout(strategy="canary", bake="1s"))
        ic = InferenceConfig(entry_script="score.py", source_directory=self.src)
        with silence():
            service = Model.deploy(self.ws, "alias-follower", [champion], ic, config, overwrite=True)
            service.wait_for_deployment()
        self.assertEqual(service.model_ids, ["aliased:1"])
        self.assertEqual(
            service.follows, [{"reference": "aliased@champion", "version": 1, "policy": "auto"}]
        )
        answer = self.v1.set_alias("champion", version=2)
        [plan] = answer["followers"]
        self.assertEqual((plan["service"], plan["action"], plan["from"], plan["to"]), ("alias-follower", "autoRollout", 1, 2))
        deadline = time.monotonic() + 120
        while True:
            current = Webservice(self.ws, "alias-follower")
            if current.model_ids == ["aliased:2"] and current.state in ("Healthy", "running"):
                break
            self.assertLess(time.monotonic(), deadline, f"{current.model_ids} {current.state}")
            time.sleep(0.1)
        self.assertEqual(json.loads(json.dumps(current.run(json.dumps({"x": 1}))))["model"], "two")
        with silence():
            current.delete()


if __name__ == "__main__":
    unittest.main()
