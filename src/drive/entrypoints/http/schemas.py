"""Request and response bodies (msgspec), and the wire formats of their fields."""

from __future__ import annotations

import binascii
from datetime import datetime

import msgspec

from drive.domain.errors import InvalidBase64
from drive.domain.model import BlobRecord


class StoreRequest(msgspec.Struct):
    id: str
    data: str


class StoredBlob(msgspec.Struct):
    id: str
    size: str
    created_at: str
    sha256: str


class BlobWithData(msgspec.Struct):
    id: str
    data: str
    size: str
    created_at: str


class BlobList(msgspec.Struct):
    items: list[StoredBlob]  # the same fields as a store's answer
    next_cursor: str | None


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def stored_blob(record: BlobRecord) -> StoredBlob:
    return StoredBlob(record.id, str(record.size), timestamp(record.created_at), record.sha256)


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
