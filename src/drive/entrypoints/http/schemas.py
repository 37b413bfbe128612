"""Request and response bodies (msgspec), and the wire formats of their fields."""

from __future__ import annotations

import binascii
import functools
import math
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import msgspec

from drive.domain.errors import InvalidBase64, InvalidRequest
from drive.domain.media_types import DEFAULT_CONTENT_TYPE
from drive.domain.model import BlobRecord


class StoreRequest(msgspec.Struct):
    id: str
    # Kept as the JSON text it is (msgspec.Raw points into the request body, no copy), so the
    # Base64 is decoded a piece at a time while storing: see ``base64_pieces``.
    data: msgspec.Raw
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


@functools.lru_cache(maxsize=4096)  # reads of the same blobs repeat; strftime was 3 % of a small GET
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
    _check_canonical_tail(data[-4:].encode("ascii"))
    return decoded


BASE64_PIECE = 1024 * 1024  # characters decoded at a time (a multiple of 4): 768 KiB of bytes


def base64_pieces(text: bytes | bytearray | memoryview, piece: int = BASE64_PIECE) -> Iterator[bytes]:
    """``decode_base64`` of ASCII ``text``, a piece at a time, with the same strict rules.

    A 32 MiB blob's text is 43 MiB: decoding it whole, beside the body that holds it, peaked
    at 3.6 times the blob. In pieces, only the body and one piece are ever held.
    """
    view = memoryview(text)
    if len(view) % 4:
        raise InvalidBase64("data is not valid Base64")
    for start in range(0, len(view), piece):
        chunk = view[start : start + piece]
        final = start + piece >= len(view)
        # Padding ends the data: a piece before the last may not end in it (strict mode finds it anywhere else).
        if not final and chunk[-1] == _PAD:
            raise InvalidBase64("data is not valid Base64")
        try:
            decoded = binascii.a2b_base64(chunk, strict_mode=True)
        except ValueError:
            raise InvalidBase64("data is not valid Base64") from None
        if final:
            _check_canonical_tail(bytes(view[-4:]))
        yield decoded


_PAD = ord("=")


def _check_canonical_tail(tail: bytes) -> None:
    # Non-zero bits in the last quantum's padding would let two strings mean the same bytes.
    if tail and binascii.b2a_base64(binascii.a2b_base64(tail), newline=False) != tail:
        raise InvalidBase64("data is not valid Base64")


def json_string_text(raw: msgspec.Raw) -> memoryview | None:
    """The characters of a JSON string without escapes, as a view of the body; None if it has escapes.

    ``InvalidRequest`` if the value is not a string at all.
    """
    view = memoryview(raw)
    if len(view) < 2 or view[0] != _QUOTE or view[-1] != _QUOTE:
        raise InvalidRequest("invalid body: Expected `str` - at `$.data`")
    inner = view[1:-1]
    return None if _ESCAPE.search(inner) else inner


_QUOTE = ord('"')
_ESCAPE = re.compile(rb"\\")  # searched in C: ``in`` on a memoryview steps through it in Python


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
