"""Berth's built-in scorer for a no-code scikit-learn deployment (one model registered with
model_framework=ScikitLearn and deployed without an inference config), as Azure ML's no-code
scikit-learn deployment: ``{"data": [[...], ...]}`` (rows of features) is answered with the list of
predictions. Also taken: a bare JSON list of rows, ``{"data": [{FEATURE: value, ...}, ...]}``
(records) and ``{FEATURE: [values...], ...}`` (columns) for a model fitted with feature names.

The model file is read with joblib (which reads plain pickles too). Input the model cannot take is
answered with 400 and the reason.
"""

import json
import os

import joblib
import numpy as np

try:
    from azureml.contrib.services.aml_response import AMLResponse
except ImportError:  # pragma: no cover - the Berth worker always provides it
    AMLResponse = None

model = None
features = None


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
    global model, features
    path = _find_model(os.environ["AZUREML_MODEL_DIR"], (".pkl", ".joblib", ".pickle", ".sav"))
    model = joblib.load(path)
    names = getattr(model, "feature_names_in_", None)
    features = [str(n) for n in names] if names is not None else None
    print(f"no-code scikit-learn scorer: loaded {type(model).__name__} from {path}")


def _bad(message):
    body = json.dumps({"message": message})
    if AMLResponse is None:
        raise BadInput(message)
    return AMLResponse(body, 400, {"Content-Type": "application/json"})


def _columns_to_rows(columns):
    if features is None:
        raise BadInput('the model was fitted without feature names: send {"data": [[...], ...]} (rows of numbers)')
    missing = [f for f in features if f not in columns]
    unknown = [k for k in columns if k not in features]
    if missing or unknown:
        raise BadInput(f"the model's features are {', '.join(features)}; missing: {', '.join(missing) or 'none'}; unknown: {', '.join(unknown) or 'none'}")
    values = [columns[f] if isinstance(columns[f], list) else [columns[f]] for f in features]
    lengths = {len(v) for v in values}
    if len(lengths) != 1:
        raise BadInput("every feature column must have the same number of values")
    return [list(row) for row in zip(*values)]


def _frame(rows):
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows, columns=features)


def _rows(body):
    if isinstance(body, dict) and "data" in body:
        data = body["data"]
    elif isinstance(body, list):
        data = body
    elif isinstance(body, dict):
        return _frame(_columns_to_rows(body))
    else:
        raise BadInput('the body must be {"data": [[...], ...]}')
    if isinstance(data, dict):
        return _frame(_columns_to_rows(data))
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        if features is None:
            raise BadInput('the model was fitted without feature names: send rows as lists, not objects')
        rows = []
        for i, record in enumerate(data):
            missing = [f for f in features if f not in record]
            if missing:
                raise BadInput(f"row {i} lacks feature(s) {', '.join(missing)}")
            rows.append([record[f] for f in features])
        return _frame(rows)
    if not isinstance(data, list) or not data:
        raise BadInput('`data` must be a non-empty list of rows, e.g. {"data": [[1.0, 2.0]]}')
    try:
        array = np.asarray(data, dtype=float)
    except (TypeError, ValueError) as e:
        raise BadInput(f"`data` is not a table of numbers: {e}") from None
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise BadInput(f"`data` must be a list of rows (2 dimensions); it has {array.ndim}")
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and array.shape[1] != expected:
        raise BadInput(f"each row must have {expected} features; got {array.shape[1]}")
    if features is not None:
        return _frame(array.tolist())
    return array


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def run(raw_data):
    try:
        body = json.loads(raw_data)
    except ValueError as e:
        return _bad(f"the body is not JSON: {e}")
    try:
        rows = _rows(body)
        try:
            predictions = model.predict(rows)
        except (ValueError, TypeError) as e:
            raise BadInput(f"the model rejected the input: {e}") from None
        return _jsonable(predictions)
    except BadInput as e:
        return _bad(str(e))
