"""Exceptions raised by the Berth SDK (the names of ``azureml.exceptions``).

Every error the SDK raises derives from :class:`AzureMLException`. Errors answered by the server
carry its stable ``code`` (``invalid_argument``, ``not_found``, ``conflict``, ...), the HTTP
``status_code``, the individual ``details`` and a ``hint`` when the server gave one; the exception
text is the server's message.
"""

from __future__ import annotations

from typing import Any, List, Optional

__all__ = [
    "AzureMLException",
    "UserErrorException",
    "WebserviceException",
    "ModelNotFoundException",
    "ModelPathNotFoundException",
    "ComputeTargetException",
]


class AzureMLException(Exception):
    """Base class of every exception the SDK raises.

    :param exception_message: The text of the error.
    :param inner_exception: The exception that caused this one, if any.
    :param code: The server's error code (for example ``not_found``), when the server answered.
    :param status_code: The HTTP status of the server's answer, when there was one.
    :param details: Every individual problem the server listed.
    :param hint: What to do about it, when the server said.
    """

    def __init__(
        self,
        exception_message: str,
        inner_exception: Optional[BaseException] = None,
        *,
        code: Optional[str] = None,
        status_code: Optional[int] = None,
        details: Optional[List[str]] = None,
        hint: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(exception_message)
        self.message: str = exception_message
        self.inner_exception = inner_exception
        self.code = code
        self.status_code = status_code
        self.details: List[str] = list(details or [])
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UserErrorException(AzureMLException):
    """The caller passed something the SDK or the server cannot use."""


class WebserviceException(AzureMLException):
    """An error about models, environments or web services (the SDK's general error).

    Accepts the reference's ``WebserviceException(message, status_code=None, logger=None)``
    signature.
    """

    def __init__(
        self,
        exception_message: str,
        status_code: Optional[int] = None,
        logger: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(exception_message, status_code=status_code, **kwargs)


class ModelNotFoundException(WebserviceException):
    """A model (or a model path inside a scoring process) does not exist.

    Also a :class:`WebserviceException`, so code written for either name catches it.
    """


class ModelPathNotFoundException(WebserviceException):
    """A local model path given to ``Model.register`` does not exist."""


class ComputeTargetException(AzureMLException):
    """An error about compute targets (``ComputeTarget``, ``AksCompute``)."""
