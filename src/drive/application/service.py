"""The use-cases bundled for entrypoints, with the lifecycle of the ports behind them.

The container (drive.container) builds every use-case and hands them over here; this
class only groups them and opens and closes the stores they share.
"""

from __future__ import annotations

import logging

from drive.application.fsck import CheckStore
from drive.application.manage_blobs import DeleteBlob, ListBlobs
from drive.application.migrate import MigrateBlobs
from drive.application.recover import Recover
from drive.application.retrieve_blob import RetrieveBlob
from drive.application.store_blob import StoreBlob
from drive.application.uploads import Uploads
from drive.domain.backends import Backends
from drive.domain.ports import BlobRepository, MetadataRepository

log = logging.getLogger(__name__)


class DriveService:
    def __init__(
        self,
        *,
        metadata: MetadataRepository,
        backends: Backends,
        store: StoreBlob,
        retrieve: RetrieveBlob,
        delete: DeleteBlob,
        list_blobs: ListBlobs,
        recover: Recover,
        migrate: MigrateBlobs,
        check: CheckStore,
        uploads: Uploads,
    ) -> None:
        self.metadata = metadata
        self.backends = backends
        self.store = store
        self.retrieve = retrieve
        self.delete = delete
        self.list = list_blobs
        self.recover = recover
        self.migrate = migrate
        self.check = check
        self.uploads = uploads
        self._opened: list[MetadataRepository | BlobRepository] = []

    async def open(self) -> None:
        """Open the metadata store and every backend; the first failure stops start-up."""
        await self.metadata.open()
        self._opened.append(self.metadata)
        for backend in self.backends:
            await backend.open()
            self._opened.append(backend)

    async def close(self) -> None:
        for port in reversed(self._opened):
            try:
                await port.close()
            except Exception:
                log.warning("error while closing %s", type(port).__name__, exc_info=True)
        self._opened.clear()
