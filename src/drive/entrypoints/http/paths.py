"""Ids in URLs: taken from the raw path, percent-decoded once, never normalised."""

from __future__ import annotations

from urllib.parse import quote, unquote_to_bytes

from drive.domain.errors import InvalidId
from drive.domain.ids import MAX_ID_BYTES, validate_id
from drive.entrypoints.http.types import AnyRequest

BLOBS_PREFIX = "/v1/blobs/"


def id_from_request(request: AnyRequest) -> str:
    """The id exactly as sent: ``a/b`` and ``a%2Fb`` name the same blob, ``..`` is just a name."""
    raw = request.scope.get("raw_path")
    path = raw if isinstance(raw, bytes) else request.scope["path"].encode()
    # ASGI's raw_path has no query, but some test clients leave it on; a '?' of the path itself arrives as %3F.
    return id_from_path(path.partition(b"?")[0])


def id_from_path(path: bytes) -> str:
    """The id in a raw ``/v1/blobs/<percent-encoded id>`` path, checked against the id rules."""
    prefix = BLOBS_PREFIX.encode()
    if not path.startswith(prefix):
        raise InvalidId("id must follow /v1/blobs/")
    encoded = path[len(prefix) :]
    # Percent-encoding at most triples a byte: longer cannot be a valid id; skip decoding it.
    if len(encoded) > 3 * MAX_ID_BYTES:
        raise InvalidId(f"id must be at most {MAX_ID_BYTES} bytes of UTF-8")
    try:
        return validate_id(unquote_to_bytes(encoded).decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidId("id must be valid UTF-8") from None


def blob_location(blob_id: str) -> str:
    encoded = quote(blob_id, safe="")
    if encoded in (".", ".."):  # dot segments would be collapsed by clients
        encoded = encoded.replace(".", "%2E")
    return BLOBS_PREFIX + encoded
