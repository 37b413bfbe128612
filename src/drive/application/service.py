"""The use-cases bundled for entrypoints, with the lifecycle of the ports behind them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from drive.application.manage_blobs import DeleteBlob, ListBlobs
from drive.application.recover import Recover
from drive.application.retrieve_blob import RetrieveBlob
from drive.application.store_blob import StoreBlob
from drive.domain.backends import Backends
from drive.domain.model import utc_now
from drive.domain.ports import BlobRepository, MetadataRepository

log = logging.getLogger(__name__)


class DriveService:
    def __init__(
        self,
        metadata: MetadataRepository,
        backends: Backends,
        lease: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.metadata = metadata
        self.backends = backends
        self.store = StoreBlob(metadata, backends, lease, clock)
        self.retrieve = RetrieveBlob(metadata, backends)
        self.delete = DeleteBlob(metadata, backends, lease, clock)
        self.list = ListBlobs(metadata)
        self.recover = Recover(metadata, backends, clock)
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
