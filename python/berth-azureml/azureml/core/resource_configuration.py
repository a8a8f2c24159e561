"""``azureml.core.resource_configuration``: recorded by ``Model.register``, not used by Berth."""

from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = ["ResourceConfiguration"]


class ResourceConfiguration:
    """CPU, memory and GPU a model needs (accepted for compatibility)."""

    def __init__(self, cpu: Optional[float] = None, memory_in_gb: Optional[float] = None, gpu: Optional[int] = None) -> None:
        self.cpu = cpu
        self.memory_in_gb = memory_in_gb
        self.gpu = gpu

    def serialize(self) -> Dict[str, Any]:
        """The camelCase JSON form."""
        return {"cpu": self.cpu, "memoryInGB": self.memory_in_gb, "gpu": self.gpu}
