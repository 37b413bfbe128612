"""The contract's id rules: 1..1024 UTF-8 bytes, no control characters, kept exactly."""

from __future__ import annotations

from drive.domain.errors import InvalidId

MAX_ID_BYTES = 1024
_CONTROL = frozenset(chr(c) for c in range(0x20)) | {"\x7f"}


def validate_id(blob_id: object) -> str:
    """Return ``blob_id`` unchanged if it is a valid id, else raise ``InvalidId``."""
    if not isinstance(blob_id, str):
        raise InvalidId("id must be a string")
    if not blob_id:
        raise InvalidId("id must not be empty")
    try:
        size = len(blob_id.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates cannot be UTF-8
        raise InvalidId("id must be valid UTF-8") from None
    if size > MAX_ID_BYTES:
        raise InvalidId(f"id must be at most {MAX_ID_BYTES} bytes of UTF-8")
    if not _CONTROL.isdisjoint(blob_id):
        raise InvalidId("id must not contain control characters")
    return blob_id
