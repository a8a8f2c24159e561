"""The ``azureml`` namespace as berth-azureml provides it (``azureml.core``, ``azureml.exceptions``),
extended like azureml-core's so other ``azureml.*`` packages stay importable."""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)
