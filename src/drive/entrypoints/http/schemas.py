"""Request and response bodies (msgspec), and the wire formats of their fields."""

from __future__ import annotations

import binascii
import math
from collections.abc import AsyncIterator
from datetime import datetime

import msgspec

from drive.domain.errors import InvalidBase64
from drive.domain.media_types import DEFAULT_CONTENT_TYPE
from drive.domain.model import BlobRecord


class StoreRequest(msgspec.Struct):
    id: str
    data: str
    content_type: str = DEFAULT_CONTENT_TYPE  # checked by the store (drive.domain.media_types)


class StoredBlob(msgspec.Struct):
    """A store's answer and a list item: metadata, never the bytes."""

    id: str
    size: str  # decimal string, as in the seed
    created_at: str  # YYYY-MM-DDTHH:MM:SSZ
    sha256: str  # lowercase hex
    content_type: str  # as stored (v1.1)


class BlobWithData(msgspec.Struct):
    """The seed's JSON ``GET`` answer: exactly these four fields, in this order."""

    id: str
    data: str  # standard Base64
    size: str
    created_at: str


class BlobList(msgspec.Struct):
    items: list[StoredBlob]
    next_cursor: str | None


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def stored_blob(record: BlobRecord) -> StoredBlob:
    return StoredBlob(record.id, str(record.size), timestamp(record.created_at), record.sha256, record.content_type)


def decode_base64(data: str) -> bytes:
    """Strict RFC 4648 §4: standard alphabet, padding required, no whitespace, canonical."""
    try:
        decoded = binascii.a2b_base64(data, strict_mode=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise InvalidBase64("data is not valid Base64") from None
    # Non-zero bits in the last quantum's padding would let two strings mean the same bytes.
    tail = data[-4:]
    if tail and binascii.b2a_base64(binascii.a2b_base64(tail), newline=False).decode() != tail:
        raise InvalidBase64("data is not valid Base64") from None
    return decoded


class BlobWithDataStream:
    """``BlobWithData`` as JSON, encoded chunk by chunk: byte for byte what msgspec would write.

    Base64 turns every 3 bytes into 4 characters, so the 0-2 bytes left over at the end of
    a chunk are carried into the next one; the text is the same as encoding the whole blob.
    """

    def __init__(self, record: BlobRecord, chunks: AsyncIterator[bytes]) -> None:
        encode = msgspec.json.encode
        self._head = b'{"id":' + encode(record.id) + b',"data":"'
        self._tail = b'","size":' + encode(str(record.size)) + b',"created_at":' + encode(timestamp(record.created_at))
        self._tail += b"}"
        self._chunks = chunks
        self.length = len(self._head) + 4 * math.ceil(record.size / 3) + len(self._tail)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._head
        carry = b""
        async for chunk in self._chunks:
            if carry:
                chunk = carry + chunk
            whole = len(chunk) - len(chunk) % 3
            carry = chunk[whole:]
            if whole:
                yield binascii.b2a_base64(memoryview(chunk)[:whole], newline=False)
        yield binascii.b2a_base64(carry, newline=False) + self._tail
