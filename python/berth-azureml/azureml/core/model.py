"""``azureml.core.model``."""

from berth.core.model import InferenceConfig, Model

__all__ = ["Model", "InferenceConfig"]
