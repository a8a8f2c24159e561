"""Berth Python SDK: register models and environments, deploy, update and call scoring services on
a Berth server, with the Azure ML SDK v1 surface (``berth.core`` mirrors ``azureml.core``,
``berth.exceptions`` mirrors ``azureml.exceptions``), so migrating changes only the imports and the
``Workspace`` construction.

Standard library only.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
