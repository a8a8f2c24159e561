"""Model registry: register, get, list, download, update, delete, get_model_path."""

from __future__ import annotations

import os
import unittest
from unittest import mock

from _server import SCORE_PY, ServerTestCase, chdir, model_file, silence

from berth.core import Model
from berth.core.model import InferenceConfig
from berth.core.webservice import LocalWebservice
from berth.exceptions import ModelNotFoundException, ModelPathNotFoundException, WebserviceException


class ModelTests(ServerTestCase):
    def register(self, path: str, name: str, **kwargs: object) -> Model:
        with silence():
            return Model.register(workspace=self.ws, model_path=path, model_name=name, **kwargs)  # type: ignore[arg-type]

    def test_register_file_and_versions(self) -> None:
        path = model_file(self.path("file-v1"), "one")
        with silence() as out:
            first = Model.register(
                workspace=self.ws,
                model_path=path,
                model_name="file-model",
                tags={"stage": "dev"},
                properties={"accuracy": "0.9"},
                description="first",
                model_framework=Model.Framework.SCIKITLEARN,
                model_framework_version="1.4",
            )
        self.assertIn("Registering model file-model", out.getvalue())
        self.assertEqual((first.name, first.version, first.id), ("file-model", 1, "file-model:1"))
        self.assertEqual(first.tags, {"stage": "dev"})
        self.assertEqual(first.properties, {"accuracy": "0.9"})
        self.assertEqual(first.description, "first")
        self.assertEqual((first.model_framework, first.model_framework_version), ("ScikitLearn", "1.4"))
        self.assertEqual((first.kind, first.asset_name, first.size), ("file", "model.txt", 4))
        self.assertIsNotNone(first.created_time)
        second = self.register(model_file(self.path("file-v2"), "two"), "file-model")
        self.assertEqual(second.version, 2)
        data = second.serialize()
        for key in ("createdTime", "description", "id", "name", "framework", "tags", "properties", "version", "url"):
            self.assertIn(key, data)
        self.assertEqual(data["id"], "file-model:2")

    def test_register_folder_with_child_paths_and_download(self) -> None:
        root = self.path("folder-model", "my_model")
        for rel, text in (("weights.bin", "w"), ("sub/config.json", "{}"), ("skip.txt", "no")):
            target = os.path.join(root, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
        model = self.register(root, "folder-model", child_paths=["weights.bin", "sub"])
        self.assertEqual((model.kind, model.asset_name, model.file_count), ("folder", "my_model", 2))
        target = self.path("downloads", "folder")
        path = model.download(target_dir=target)
        self.assertEqual(path, os.path.join(target, "my_model"))
        self.assertEqual(sorted(os.listdir(path)), ["sub", "weights.bin"])
        with open(os.path.join(path, "sub", "config.json"), encoding="utf-8") as f:
            self.assertEqual(f.read(), "{}")
        with self.assertRaises(WebserviceException) as ctx:
            model.download(target_dir=target)
        self.assertIn("File already exists.", str(ctx.exception))
        self.assertEqual(model.download(target_dir=target, exist_ok=True), path)

    def test_download_file(self) -> None:
        model = self.register(model_file(self.path("dl-file"), "content"), "dl-file")
        target = self.path("downloads", "file")
        path = model.download(target_dir=target)
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), "content\n")
        with self.assertRaises(WebserviceException):
            model.download(target_dir=target)

    def test_register_validation(self) -> None:
        path = model_file(self.path("val"), "x")
        with self.assertRaises(WebserviceException) as ctx:
            Model.register(workspace=self.ws, model_path=path, model_name="-bad name")
        self.assertIn("provided model name", str(ctx.exception))
        with self.assertRaises(WebserviceException) as ctx:
            Model.register(workspace=self.ws, model_path=path, model_name="ok", model_framework_version="1.0")
        self.assertIn("Model framework version cannot be provided without a valid framework", str(ctx.exception))
        with self.assertRaises(WebserviceException):
            Model.register(workspace=self.ws, model_path=path, model_name="ok", tags={"a": 1})  # type: ignore[dict-item]
        with self.assertRaises(ModelPathNotFoundException):
            Model.register(workspace=self.ws, model_path=self.path("missing.pkl"), model_name="ok")
        with self.assertRaises(WebserviceException):
            Model.register(workspace=self.ws, model_path=path, model_name="ok", child_paths=["x"])

    def test_get_by_name_version_and_id(self) -> None:
        self.register(model_file(self.path("get-1"), "1"), "get-model", tags={"t": "1"})
        self.register(model_file(self.path("get-2"), "2"), "get-model", tags={"t": "2"})
        self.assertEqual(Model(self.ws, name="get-model").version, 2)
        self.assertEqual(Model(self.ws, name="get-model", version=1).version, 1)
        self.assertEqual(Model(self.ws, id="get-model:1").tags, {"t": "1"})
        self.assertEqual(Model(self.ws, name="get-model", tags=[["t", "1"]]).version, 1)
        with self.assertRaises(WebserviceException) as ctx:
            Model(self.ws)
        self.assertEqual(str(ctx.exception), "Error, one of id or name must be provided.")
        with self.assertRaises(ModelNotFoundException) as nf:
            Model(self.ws, name="get-model", version=9)
        self.assertIn("ModelNotFound: Model with name get-model, version 9 not found in provided workspace", str(nf.exception))
        self.assertEqual(nf.exception.status_code, 404)
        with self.assertRaises(WebserviceException):
            Model(self.ws, name="nobody")

    def test_list_filters(self) -> None:
        self.register(model_file(self.path("l1"), "1"), "list-a", tags={"team": "x", "k": "v"}, properties={"p": "1"})
        self.register(model_file(self.path("l2"), "2"), "list-a", tags={"team": "y"}, model_framework="Onnx")
        self.register(model_file(self.path("l3"), "3"), "list-b", tags={"team": "x"})
        names = lambda models: sorted(m.id for m in models)  # noqa: E731
        self.assertEqual(names(Model.list(self.ws, name="list-a")), ["list-a:1", "list-a:2"])
        self.assertEqual(names(Model.list(self.ws, name="list-a", latest=True)), ["list-a:2"])
        self.assertEqual(names([m for m in Model.list(self.ws, tags=[["team", "x"]]) if m.name.startswith("list-")]), ["list-a:1", "list-b:1"])
        self.assertEqual(names(Model.list(self.ws, tags=["k"])), ["list-a:1"])
        self.assertEqual(names(Model.list(self.ws, properties=[["p", "1"]])), ["list-a:1"])
        self.assertEqual(names(Model.list(self.ws, model_framework="Onnx")), ["list-a:2"])
        self.assertIn("list-b", self.ws.models)
        with self.assertRaises(WebserviceException):
            Model.list(self.ws, page_count=5)
        with self.assertRaises(WebserviceException):
            Model.list(self.ws, tags="team")  # type: ignore[arg-type]

    def test_update_tags_description_and_properties(self) -> None:
        model = self.register(model_file(self.path("upd"), "u"), "upd-model", tags={"a": "1"}, properties={"p": "1"})
        model.update(tags={"b": "2"}, description="new description")
        self.assertEqual((model.tags, model.description), ({"b": "2"}, "new description"))
        model.add_tags({"c": "3"})
        self.assertEqual(model.tags, {"b": "2", "c": "3"})
        model.remove_tags(["b"])
        self.assertEqual(model.tags, {"c": "3"})
        model.add_properties({"q": "2"})
        self.assertEqual(model.properties, {"p": "1", "q": "2"})
        with self.assertRaises(WebserviceException) as ctx:
            model.add_properties({"p": "changed"})
        self.assertIn("properties are immutable, the following keys cannot be added/modified: p", str(ctx.exception))
        fresh = Model(self.ws, id=model.id)
        self.assertEqual((fresh.tags, fresh.properties, fresh.description), (model.tags, model.properties, "new description"))

    def test_delete_and_in_use(self) -> None:
        model = self.register(model_file(self.path("del"), "d"), "del-model")
        model.delete()
        with self.assertRaises(ModelNotFoundException):
            Model(self.ws, id=model.id)
        used = self.register(model_file(self.path("used"), "u"), "used-model")
        with open(self.path("used", "score.py"), "w", encoding="utf-8") as f:
            f.write(SCORE_PY)
        with silence():
            ic = InferenceConfig(entry_script="score.py", source_directory=self.path("used"))
            service = Model.deploy(self.ws, "uses-model", [used], ic, LocalWebservice.deploy_configuration())
            service.wait_for_deployment()
        with self.assertRaises(WebserviceException) as ctx:
            used.delete()
        self.assertEqual((ctx.exception.status_code, ctx.exception.code), (412, "precondition_failed"))
        self.assertIn("uses-model", str(ctx.exception))
        with silence():
            service.delete()
        used.delete()


class GetModelPathTests(ServerTestCase):
    def test_inside_a_scoring_process(self) -> None:
        root = self.path("azureml-models")
        model_file(os.path.join(root, "m", "1"), "1")
        model_file(os.path.join(root, "m", "3"), "3")
        with mock.patch.dict(os.environ, {"AZUREML_MODEL_DIR": os.path.join(root, "m", "3")}):
            self.assertEqual(Model.get_model_path("m"), os.path.join(root, "m", "3", "model.txt"))
        with mock.patch.dict(os.environ, {"AZUREML_MODEL_DIR": root}):
            self.assertEqual(Model.get_model_path("m", version=1), os.path.join(root, "m", "1", "model.txt"))
            self.assertEqual(Model.get_model_path("m"), os.path.join(root, "m", "3", "model.txt"))
            with self.assertRaises(ModelNotFoundException):
                Model.get_model_path("other")
            with self.assertRaises(WebserviceException) as ctx:
                Model.get_model_path("m", version="1")  # type: ignore[arg-type]
            self.assertEqual(str(ctx.exception), "version should be an int")

    def test_downloads_with_a_workspace(self) -> None:
        with silence():
            Model.register(self.ws, model_file(self.path("gmp"), "remote"), "gmp-model")
        work = self.path("gmp-work")
        os.makedirs(work)
        with chdir(work), mock.patch.dict(os.environ, {"AZUREML_MODEL_DIR": "", "AML_APP_ROOT": work}):
            path = Model.get_model_path("gmp-model", _workspace=self.ws)
            self.assertEqual(path, os.path.join("azureml-models", "gmp-model", "1", "model.txt"))
            self.assertTrue(os.path.isfile(path))
            # Now it resolves locally, without the workspace.
            self.assertTrue(Model.get_model_path("gmp-model").endswith(os.path.join("gmp-model", "1", "model.txt")))


if __name__ == "__main__":
    unittest.main()
