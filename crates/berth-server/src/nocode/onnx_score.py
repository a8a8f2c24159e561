"""Berth's built-in scorer for a no-code ONNX deployment (one model registered with
model_framework=Onnx and deployed without an inference config).

Requests, as Azure ML's no-code ONNX deployment (the ONNX Runtime server's JSON API) takes them:

* a ``PredictRequest``: ``{"inputs": {NAME: {"dims": ["1", "784"], "dataType": 1, "rawData": BASE64}},
  "outputFilter": [NAME, ...]}`` (``floatData``/``int64Data``/... lists instead of ``rawData`` too),
  answered with the matching ``PredictResponse``: ``{"outputs": {NAME: {"dims", "dataType", "rawData"}}}``;
* plain JSON: ``{"data": [[...]]}`` for a single-input model, or ``{NAME: [[...]], ...}`` with one
  entry per input, answered with ``{OUTPUT_NAME: nested lists, ...}``.

Input the model cannot take (bad JSON, unknown names, wrong type, shape or size) is answered with
400 and the reason.
"""

import base64
import json
import os

import numpy as np
import onnxruntime

try:
    from azureml.contrib.services.aml_response import AMLResponse
except ImportError:  # pragma: no cover - the Berth worker always provides it
    AMLResponse = None

# TensorProto.DataType numbers.
_DTYPES = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    4: np.uint16,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    8: np.object_,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
    12: np.uint32,
    13: np.uint64,
}
_TYPE_NAMES = {
    "FLOAT": 1, "UINT8": 2, "INT8": 3, "UINT16": 4, "INT16": 5, "INT32": 6, "INT64": 7, "STRING": 8,
    "BOOL": 9, "FLOAT16": 10, "DOUBLE": 11, "UINT32": 12, "UINT64": 13,
}
_ORT_TYPES = {
    "tensor(float)": 1, "tensor(uint8)": 2, "tensor(int8)": 3, "tensor(uint16)": 4, "tensor(int16)": 5,
    "tensor(int32)": 6, "tensor(int64)": 7, "tensor(string)": 8, "tensor(bool)": 9, "tensor(float16)": 10,
    "tensor(double)": 11, "tensor(uint32)": 12, "tensor(uint64)": 13,
}
_TYPED_FIELDS = ("floatData", "doubleData", "int32Data", "int64Data", "uint64Data", "stringData")
_TENSOR_KEYS = {"dims", "dataType", "rawData", "name", "docString", "segment"} | set(_TYPED_FIELDS)

session = None
inputs = {}
outputs = []


class BadInput(Exception):
    """Input the model cannot take: answered with 400."""


def _find_model(root, suffixes):
    if os.path.isfile(root):
        return root
    found = []
    for folder, _, files in os.walk(root):
        found.extend(os.path.join(folder, f) for f in files)
    found.sort()
    for path in found:
        if path.lower().endswith(suffixes):
            return path
    if len(found) == 1:
        return found[0]
    raise RuntimeError(f"no {'/'.join(suffixes)} file in the model directory {root}; it holds {found[:20]}")


def init():
    global session, inputs, outputs
    path = _find_model(os.environ["AZUREML_MODEL_DIR"], (".onnx",))
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    described = ", ".join(f"{i.name} {i.type} {i.shape}" for i in session.get_inputs())
    print(f"no-code ONNX scorer: loaded {path}; inputs: {described}; outputs: {', '.join(outputs)}")


def _bad(message):
    body = json.dumps({"message": message})
    if AMLResponse is None:
        raise BadInput(message)
    return AMLResponse(body, 400, {"Content-Type": "application/json"})


def _expected_code(name):
    return _ORT_TYPES.get(inputs[name].type)


def _check_shape(name, array):
    shape = inputs[name].shape
    if shape is None:
        return
    if array.ndim != len(shape):
        raise BadInput(f"input `{name}` has {array.ndim} dimension(s) {list(array.shape)}; the model expects {len(shape)}: {shape}")
    for i, (want, got) in enumerate(zip(shape, array.shape)):
        if isinstance(want, int) and want > 0 and want != got:
            raise BadInput(f"input `{name}` has size {got} in dimension {i}; the model expects {want} (shape {shape})")


def _dims(name, tensor):
    if "dims" not in tensor:
        raise BadInput(f"input `{name}` has no `dims`")
    try:
        return [int(d) for d in tensor["dims"]]
    except (TypeError, ValueError):
        raise BadInput(f"input `{name}`: `dims` must be a list of integers, not {tensor['dims']!r}") from None


def _data_type(name, tensor):
    given = tensor.get("dataType")
    expected = _expected_code(name)
    if given is None:
        if expected is None:
            raise BadInput(f"input `{name}` has no `dataType`")
        return expected
    code = _TYPE_NAMES.get(given.upper()) if isinstance(given, str) and not given.isdigit() else None
    if code is None:
        try:
            code = int(given)
        except (TypeError, ValueError):
            raise BadInput(f"input `{name}`: `dataType` {given!r} is not a TensorProto data type") from None
    if code not in _DTYPES:
        raise BadInput(f"input `{name}`: `dataType` {given!r} is not supported")
    if expected is not None and code != expected:
        raise BadInput(f"input `{name}` has dataType {code}; the model expects {inputs[name].type} (dataType {expected})")
    return code


def _from_tensor(name, tensor):
    if name not in inputs:
        raise BadInput(f"the model has no input `{name}`; its inputs are: {', '.join(inputs)}")
    if not isinstance(tensor, dict):
        raise BadInput(f"input `{name}` must be a tensor object with `dims`, `dataType` and `rawData`")
    unknown = sorted(set(tensor) - _TENSOR_KEYS)
    if unknown:
        raise BadInput(f"input `{name}` has unknown key(s) {', '.join(unknown)}; a tensor has dims, dataType and rawData (or {', '.join(_TYPED_FIELDS)})")
    dims = _dims(name, tensor)
    code = _data_type(name, tensor)
    dtype = np.dtype(_DTYPES[code])
    count = int(np.prod(dims)) if dims else 1
    if "rawData" in tensor:
        if code == 8:
            raise BadInput(f"input `{name}`: string tensors are sent as `stringData`, not `rawData`")
        try:
            raw = base64.b64decode(tensor["rawData"], validate=True)
        except (TypeError, ValueError):
            raise BadInput(f"input `{name}`: `rawData` is not valid base64") from None
        want = count * dtype.itemsize
        if len(raw) != want:
            raise BadInput(f"input `{name}`: `rawData` has {len(raw)} bytes; dims {dims} of {dtype} need {want}")
        array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(dims)
    else:
        field = next((f for f in _TYPED_FIELDS if f in tensor), None)
        if field is None:
            raise BadInput(f"input `{name}` has no data: give `rawData` (base64) or one of {', '.join(_TYPED_FIELDS)}")
        values = tensor[field]
        if not isinstance(values, list):
            raise BadInput(f"input `{name}`: `{field}` must be a list")
        if len(values) != count:
            raise BadInput(f"input `{name}`: `{field}` has {len(values)} values; dims {dims} need {count}")
        try:
            if field == "stringData":
                array = np.array([base64.b64decode(v).decode("utf-8") for v in values], dtype=object)
            elif code == 10 and field == "int32Data":
                array = np.array([int(v) for v in values], dtype=np.uint16).view(np.float16)
            else:
                array = np.array([float(v) if dtype.kind == "f" else int(v) for v in values]).astype(dtype)
        except (TypeError, ValueError) as e:
            raise BadInput(f"input `{name}`: `{field}` holds a value that is not a {dtype}: {e}") from None
        array = array.reshape(dims)
    _check_shape(name, array)
    return array


def _to_tensor(value):
    if not isinstance(value, np.ndarray):
        return {"value": _jsonable(value)}
    out = {"dims": [str(d) for d in value.shape]}
    if value.dtype.kind in ("U", "S", "O"):
        out["dataType"] = 8
        out["stringData"] = [base64.b64encode(str(v).encode("utf-8")).decode("ascii") for v in value.ravel()]
        return out
    code = next((c for c, t in _DTYPES.items() if np.dtype(t) == value.dtype), None)
    if code is None:
        value = value.astype(np.float32)
        code = 1
    out["dataType"] = code
    out["rawData"] = base64.b64encode(np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes()).decode("ascii")
    return out


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _plain_array(name, value):
    code = _expected_code(name)
    dtype = _DTYPES.get(code, np.float32)
    try:
        array = np.array(value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise BadInput(f"input `{name}` cannot be read as {inputs[name].type}: {e}") from None
    _check_shape(name, array)
    return array


def _plain_feeds(body):
    if isinstance(body, dict) and "data" in body and "data" not in inputs:
        if len(inputs) != 1:
            raise BadInput(f'`{{"data": ...}}` needs a model with one input; this one has {len(inputs)}: {", ".join(inputs)}; send {{NAME: value}} for each')
        (name,) = inputs
        return {name: _plain_array(name, body["data"])}
    if isinstance(body, list):
        if len(inputs) != 1:
            raise BadInput(f"a JSON list needs a model with one input; this one has {len(inputs)}: {', '.join(inputs)}")
        (name,) = inputs
        return {name: _plain_array(name, body)}
    if not isinstance(body, dict):
        raise BadInput('the body must be a PredictRequest ({"inputs": {...}}), {"data": [...]} or {INPUT_NAME: [...]}')
    unknown = [k for k in body if k not in inputs]
    if unknown:
        raise BadInput(f"unknown input(s) {', '.join(unknown)}; the model's inputs are: {', '.join(inputs)}")
    missing = [k for k in inputs if k not in body]
    if missing:
        raise BadInput(f"missing input(s) {', '.join(missing)}")
    return {name: _plain_array(name, value) for name, value in body.items()}


def _is_predict_request(body):
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
        return False
    return "inputs" not in inputs


def _output_names(requested):
    if requested in (None, []):
        return list(outputs)
    if not isinstance(requested, list) or not all(isinstance(n, str) for n in requested):
        raise BadInput("`outputFilter` must be a list of output names")
    unknown = [n for n in requested if n not in outputs]
    if unknown:
        raise BadInput(f"`outputFilter` names unknown output(s) {', '.join(unknown)}; the model's outputs are: {', '.join(outputs)}")
    return requested


def _run(feeds, names):
    try:
        return session.run(names, feeds)
    except Exception as e:  # onnxruntime's InvalidArgument/Fail for inputs it cannot take
        kind = type(e).__name__
        if kind in ("InvalidArgument", "Fail", "InvalidProtobuf") or "INVALID_ARGUMENT" in str(e):
            raise BadInput(f"the model rejected the input: {e}") from None
        raise


def run(raw_data):
    try:
        body = json.loads(raw_data)
    except ValueError as e:
        return _bad(f"the body is not JSON: {e}")
    try:
        if _is_predict_request(body):
            if not body["inputs"]:
                raise BadInput("`inputs` is empty")
            feeds = {name: _from_tensor(name, tensor) for name, tensor in body["inputs"].items()}
            names = _output_names(body.get("outputFilter"))
            results = _run(feeds, names)
            return {"outputs": {name: _to_tensor(value) for name, value in zip(names, results)}}
        feeds = _plain_feeds(body)
        results = _run(feeds, outputs)
        return {name: _jsonable(value) for name, value in zip(outputs, results)}
    except BadInput as e:
        return _bad(str(e))
