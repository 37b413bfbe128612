"""DeleteBlob and ListBlobs."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from drive.domain.backends import Backends
from drive.domain.errors import BlobNotFound, InvalidId, InvalidRequest
from drive.domain.ids import validate_id
from drive.domain.model import BlobRecord, utc_now
from drive.domain.ports import MetadataRepository

log = logging.getLogger(__name__)

MAX_PAGE = 1000


class DeleteBlob:
    """Metadata goes first (with a DELETE intent in the same transaction), then the bytes.

    Once the record is gone the blob is deleted as far as every reader is concerned;
    bytes that cannot be removed now are removed by recovery when the intent's lease ends.
    """

    def __init__(
        self,
        metadata: MetadataRepository,
        backends: Backends,
        lease: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._metadata = metadata
        self._backends = backends
        self._lease = lease
        self._clock = clock

    async def __call__(self, blob_id: str) -> BlobRecord:
        validate_id(blob_id)
        record = await self._metadata.remove(blob_id, self._clock() + self._lease)
        if record is None:
            raise BlobNotFound("no blob has that id")
        try:
            await self._backends.get(record.backend).delete(record.storage_key)
            await self._metadata.finish(record.storage_key)
        except Exception:
            log.warning("bytes of deleted blob %r left to recovery", blob_id, exc_info=True)
        return record


@dataclass(frozen=True, slots=True)
class Page:
    items: list[BlobRecord]
    next_cursor: str | None


class ListBlobs:
    def __init__(self, metadata: MetadataRepository) -> None:
        self._metadata = metadata

    async def __call__(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> Page:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")
        after = decode_cursor(cursor) if cursor else None
        items = await self._metadata.page(prefix, after, limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].id) if more else None)


async def all_records(metadata: MetadataRepository, prefix: str = "", page: int = 500) -> AsyncIterator[BlobRecord]:
    """Every committed record under ``prefix``, in id order, a page at a time.

    Ids never change (not even when a blob moves), so paging by id is stable while
    other work goes on.
    """
    after: str | None = None
    while True:
        records = await metadata.page(prefix, after, page)
        for record in records:
            yield record
        if len(records) < page:
            return
        after = records[-1].id


def encode_cursor(last_id: str) -> str:
    """Opaque to clients: the last id of the page, URL-safe Base64."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        last_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return validate_id(last_id)
    except (binascii.Error, UnicodeDecodeError, InvalidId):
        raise InvalidRequest("cursor is not one this service issued") from None
