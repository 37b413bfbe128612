"""DeleteBlob and ListBlobs."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from drive.application.commit_protocol import CommitProtocol
from drive.domain.errors import BlobNotFound, InvalidId, InvalidRequest
from drive.domain.ids import validate_id
from drive.domain.model import BlobRecord
from drive.domain.ports import MetadataRepository

MAX_PAGE = 1000


class DeleteBlob:
    """Metadata goes first (with a DELETE intent in the same transaction), then the bytes.

    Once the record is gone the blob is deleted as far as every reader is concerned;
    bytes that cannot be removed now are removed by recovery when the intent's lease ends.
    """

    def __init__(self, protocol: CommitProtocol) -> None:
        self._protocol = protocol

    async def __call__(self, blob_id: str) -> BlobRecord:
        validate_id(blob_id)
        record = await self._protocol.metadata.remove(blob_id, self._protocol.lease_end())
        if record is None:
            raise BlobNotFound("no blob has that id")
        await self._protocol.discard(record.backend, record.storage_key)
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


def encode_cursor(last_id: str) -> str:
    """Opaque to clients: the last id of the page, URL-safe Base64."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        # validate=True: characters outside the alphabet are an error, not silently dropped.
        raw = base64.b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        return validate_id(raw.decode())
    except (binascii.Error, ValueError, InvalidId):
        raise InvalidRequest("cursor is not one this service issued") from None
