"""``azureml.exceptions``, backed by ``berth.exceptions``."""

from .._berth_guard import check as _check

_check()

from berth.exceptions import (  # noqa: E402
    AzureMLException,
    ComputeTargetException,
    ModelNotFoundException,
    ModelPathNotFoundException,
    UserErrorException,
    WebserviceException,
)

__all__ = [
    "AzureMLException",
    "UserErrorException",
    "WebserviceException",
    "ModelNotFoundException",
    "ModelPathNotFoundException",
    "ComputeTargetException",
]
