"""Berth's built-in scorer for a no-code TensorFlow deployment (one model registered with
model_framework=TensorFlow, a SavedModel folder, deployed without an inference config). It calls the
SavedModel's ``serving_default`` signature.

Requests: ``{"data": [...]}`` for a single-input signature, ``{INPUT_NAME: [...], ...}`` (named
inputs), and the TensorFlow Serving forms ``{"instances": [...]}`` (answered with
``{"predictions": ...}``) and ``{"inputs": ...}`` (answered with ``{"outputs": ...}``). Other answers
are ``{OUTPUT_NAME: nested lists, ...}``. Input the signature cannot take is answered with 400.
"""

import json
import os

import numpy as np
import tensorflow as tf

try:
    from azureml.contrib.services.aml_response import AMLResponse
except ImportError:  # pragma: no cover - the Berth worker always provides it
    AMLResponse = None

model = None
signature = None
specs = {}


class BadInput(Exception):
    """Input the model cannot take: answered with 400."""


def _saved_model_dir(root):
    for folder, _, files in sorted(os.walk(root)):
        if "saved_model.pb" in files or "saved_model.pbtxt" in files:
            return folder
    raise RuntimeError(f"no SavedModel (saved_model.pb) in the model directory {root}")


def init():
    global model, signature, specs
    path = _saved_model_dir(os.environ["AZUREML_MODEL_DIR"])
    model = tf.saved_model.load(path)
    if "serving_default" not in model.signatures:
        raise RuntimeError(f"the SavedModel at {path} has no `serving_default` signature; it has {list(model.signatures)}")
    signature = model.signatures["serving_default"]
    specs = dict(signature.structured_input_signature[1])
    print(f"no-code TensorFlow scorer: loaded {path}; inputs: {', '.join(f'{k} {v.dtype.name} {v.shape}' for k, v in specs.items())}")


def _bad(message):
    body = json.dumps({"message": message})
    if AMLResponse is None:
        raise BadInput(message)
    return AMLResponse(body, 400, {"Content-Type": "application/json"})


def _tensor(name, value):
    spec = specs[name]
    try:
        array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
    except (TypeError, ValueError) as e:
        raise BadInput(f"input `{name}` cannot be read as {spec.dtype.name}: {e}") from None
    if spec.shape.rank is not None and array.ndim != spec.shape.rank:
        raise BadInput(f"input `{name}` has {array.ndim} dimension(s); the signature expects {spec.shape.rank}: {spec.shape}")
    if not spec.shape.is_compatible_with(array.shape):
        raise BadInput(f"input `{name}` has shape {list(array.shape)}; the signature expects {spec.shape}")
    return tf.constant(array)


def _single(value):
    if len(specs) != 1:
        raise BadInput(f"this form needs a signature with one input; it has {len(specs)}: {', '.join(specs)}")
    (name,) = specs
    return {name: _tensor(name, value)}


def _named(body):
    unknown = [k for k in body if k not in specs]
    missing = [k for k in specs if k not in body]
    if unknown or missing:
        raise BadInput(f"the signature's inputs are {', '.join(specs)}; missing: {', '.join(missing) or 'none'}; unknown: {', '.join(unknown) or 'none'}")
    return {name: _tensor(name, value) for name, value in body.items()}


def _outputs(result):
    return {name: value.numpy().tolist() for name, value in result.items()}


def run(raw_data):
    try:
        body = json.loads(raw_data)
    except ValueError as e:
        return _bad(f"the body is not JSON: {e}")
    try:
        wrap = None
        if isinstance(body, dict) and "instances" in body and "instances" not in specs:
            feeds, wrap = _single(body["instances"]), "predictions"
        elif isinstance(body, dict) and "inputs" in body and "inputs" not in specs:
            inner = body["inputs"]
            feeds = _named(inner) if isinstance(inner, dict) else _single(inner)
            wrap = "outputs"
        elif isinstance(body, dict) and "data" in body and "data" not in specs:
            feeds = _single(body["data"])
        elif isinstance(body, list):
            feeds = _single(body)
        elif isinstance(body, dict):
            feeds = _named(body)
        else:
            raise BadInput('the body must be {"data": [...]}, {INPUT_NAME: [...]}, {"instances": [...]} or {"inputs": ...}')
        try:
            result = _outputs(signature(**feeds))
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            raise BadInput(f"the model rejected the input: {e}") from None
        if wrap is None:
            return result
        if len(result) == 1:
            return {wrap: next(iter(result.values()))}
        return {wrap: result}
    except BadInput as e:
        return _bad(str(e))
