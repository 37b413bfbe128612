"""RetrieveBlob: committed metadata, and its bytes verified against their SHA-256."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

from drive.domain.backends import Backends
from drive.domain.errors import BlobNotFound, CorruptBlob
from drive.domain.ids import validate_id
from drive.domain.model import BlobRecord
from drive.domain.ports import MetadataRepository

log = logging.getLogger(__name__)


class RetrieveBlob:
    def __init__(self, metadata: MetadataRepository, backends: Backends) -> None:
        self._metadata = metadata
        self._backends = backends

    async def stat(self, blob_id: str) -> BlobRecord:
        validate_id(blob_id)
        record = await self._metadata.get(blob_id)
        if record is None:
            raise BlobNotFound("no blob has that id")
        return record

    def stream(self, record: BlobRecord) -> AsyncIterator[bytes]:
        """The whole blob; raises ``CorruptBlob`` at the end (after the last chunk) on mismatch.

        Callers that must not send unverified bytes buffer; streaming callers abort the
        response, so a client never receives a corrupt body as complete.
        """
        return self._verified(record)

    def stream_range(self, record: BlobRecord, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)``. A partial read cannot be checked against the whole hash."""
        return self._backends.get(record.backend).read(record.storage_key, start, end)

    async def read_all(self, record: BlobRecord) -> bytes:
        return b"".join([chunk async for chunk in self.stream(record)])

    async def _verified(self, record: BlobRecord) -> AsyncIterator[bytes]:
        backend = self._backends.get(record.backend)
        digest = hashlib.sha256()
        size = 0
        held: bytes | None = None
        # Hold back one chunk so the last one is only released once the hash checks out.
        try:
            async for chunk in backend.read(record.storage_key):
                if not chunk:
                    continue
                digest.update(chunk)
                size += len(chunk)
                if held is not None:
                    yield held
                held = chunk
        except CorruptBlob as exc:  # the backend itself saw damage, or the bytes are gone
            _log_corrupt(record, exc.message)
            raise
        if size != record.size or digest.hexdigest() != record.sha256:
            _log_corrupt(record, f"stored size={size} sha256={digest.hexdigest()}")
            raise CorruptBlob("stored bytes do not match their checksum")
        if held is not None:
            yield held


def _log_corrupt(record: BlobRecord, found: str) -> None:
    log.error(
        "CORRUPT BLOB: id=%r backend=%s key=%s: %s; expected size=%d sha256=%s",
        record.id,
        record.backend,
        record.storage_key,
        found,
        record.size,
        record.sha256,
    )
