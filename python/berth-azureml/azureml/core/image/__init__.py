"""``azureml.core.image``: importable for old notebooks; Berth has no images (use InferenceConfig)."""

from .._not_in_berth import ContainerImage, Image

__all__ = ["Image", "ContainerImage"]
