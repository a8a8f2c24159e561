"""``azureml.core.datastore`` (a placeholder: Berth is for deployment only)."""

from berth.core.datastore import Datastore

__all__ = ["Datastore"]
