"""Training-side names that v1 deployment notebooks import but Berth does not have: importing them
works, using them raises an error that says so."""

from __future__ import annotations

from typing import Any, NoReturn

from berth.exceptions import UserErrorException

__all__ = [
    "Experiment",
    "Run",
    "ScriptRunConfig",
    "RunConfiguration",
    "Dataset",
    "Image",
    "ContainerImage",
]


def _refuse(name: str, instead: str) -> NoReturn:
    raise UserErrorException(f"{name} is not part of Berth (deployment only). {instead}")


class _NotInBerth:
    """Constructing such a class (or calling the static methods notebooks use) raises a clear error."""

    _instead = "Berth deploys and updates models; train elsewhere and register the model files with Model.register."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse(type(self).__name__, self._instead)


class Experiment(_NotInBerth):
    """Not part of Berth."""


class Run(_NotInBerth):
    """Not part of Berth."""

    get_context = staticmethod(lambda *a, **k: _refuse("Run.get_context", _NotInBerth._instead))


class ScriptRunConfig(_NotInBerth):
    """Not part of Berth."""


class RunConfiguration(_NotInBerth):
    """Not part of Berth."""


class Dataset(_NotInBerth):
    """Not part of Berth."""

    class File:
        """Not part of Berth."""

        from_files = staticmethod(lambda *a, **k: _refuse("Dataset.File.from_files", _NotInBerth._instead))

    class Tabular:
        """Not part of Berth."""

        from_delimited_files = staticmethod(
            lambda *a, **k: _refuse("Dataset.Tabular.from_delimited_files", _NotInBerth._instead)
        )

    get_by_name = staticmethod(lambda *a, **k: _refuse("Dataset.get_by_name", _NotInBerth._instead))


_IMAGE_INSTEAD = (
    "Berth has no images: deploy with InferenceConfig(entry_script=..., environment=...) and "
    "Model.deploy(...), as current Azure ML v1 code does."
)


class Image(_NotInBerth):
    """Not part of Berth (images were replaced by InferenceConfig + Environment)."""

    _instead = _IMAGE_INSTEAD


class ContainerImage(Image):
    """Not part of Berth (images were replaced by InferenceConfig + Environment)."""

    _instead = _IMAGE_INSTEAD
    image_configuration = staticmethod(lambda *a, **k: _refuse("ContainerImage.image_configuration", _IMAGE_INSTEAD))
