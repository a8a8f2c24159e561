"""The default datastore, like ``azureml.core.datastore``, as far as deployment code touches it.

Berth is for deployment only: a datastore object exists so v1 code that asks for
``ws.get_default_datastore()`` keeps running, and each training-data call raises an error saying
so and what to do instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from ..exceptions import UserErrorException

if TYPE_CHECKING:  # pragma: no cover
    from .workspace import Workspace

__all__ = ["Datastore"]


def _not_in_berth(what: str) -> NoReturn:
    raise UserErrorException(
        f"Datastore.{what} is not part of Berth (deployment only): Berth has no datastores or training "
        "data. Register model files with Model.register(workspace, model_path=..., model_name=...) and "
        "read data in your own code."
    )


class Datastore:
    """A named placeholder for a datastore.

    :ivar name: The datastore name (``workspaceblobstore`` for the default one).
    :ivar datastore_type: ``AzureBlob``, as the reference's default datastore.
    """

    def __init__(self, workspace: "Workspace", name: str = "workspaceblobstore") -> None:
        self.workspace = workspace
        self.name = name
        self.datastore_type = "AzureBlob"
        self.container_name = name
        self.account_name = None

    @staticmethod
    def get(workspace: "Workspace", datastore_name: str) -> "Datastore":
        """The datastore of that name (a placeholder)."""
        return Datastore(workspace, datastore_name)

    @staticmethod
    def get_default(workspace: "Workspace") -> "Datastore":
        """The default datastore (a placeholder)."""
        return Datastore(workspace)

    def upload(
        self,
        src_dir: str,
        target_path: Any = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> NoReturn:
        """Not part of Berth (deployment only)."""
        _not_in_berth("upload")

    def upload_files(
        self,
        files: Any,
        relative_root: Any = None,
        target_path: Any = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> NoReturn:
        """Not part of Berth (deployment only)."""
        _not_in_berth("upload_files")

    def download(
        self,
        target_path: str,
        prefix: Any = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> NoReturn:
        """Not part of Berth (deployment only)."""
        _not_in_berth("download")

    def path(self, path: Any = None, data_reference_name: Any = None) -> NoReturn:
        """Not part of Berth (deployment only)."""
        _not_in_berth("path")

    def as_mount(self) -> NoReturn:
        """Not part of Berth (deployment only)."""
        _not_in_berth("as_mount")

    def as_download(self, path_on_compute: Any = None) -> NoReturn:
        """Not part of Berth (deployment only)."""
        _not_in_berth("as_download")

    def as_upload(self, path_on_compute: Any = None) -> NoReturn:
        """Not part of Berth (deployment only)."""
        _not_in_berth("as_upload")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        _not_in_berth(name)

    def __repr__(self) -> str:
        return f"Datastore(name={self.name!r}, datastore_type={self.datastore_type!r}) [not part of Berth]"
