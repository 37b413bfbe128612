"""Request bodies, read as streams with the size limit enforced before and while reading."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator

from drive.domain.errors import InvalidRequest, PayloadTooLarge
from drive.entrypoints.http.types import AnyRequest

_SHA256_DIGEST = re.compile(r"(?:^|,)\s*sha-256\s*=\s*:([A-Za-z0-9+/=]*):\s*(?:,|$)", re.IGNORECASE)


def check_declared_length(request: AnyRequest, limit: int) -> None:
    """Refuse at once when ``Content-Length`` already says the body is too large."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not (declared.isascii() and declared.isdigit()):
        raise InvalidRequest("Content-Length is not a number")
    if len(declared) > len(str(limit)) or int(declared) > limit:
        raise PayloadTooLarge(f"body is larger than the limit of {limit} bytes")


async def body_stream(request: AnyRequest) -> AsyncIterator[bytes]:
    """The raw body as chunks, as the server receives them."""
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def read_body(request: AnyRequest, limit: int) -> bytes:
    check_declared_length(request, limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in body_stream(request):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is larger than the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def expected_sha256(request: AnyRequest) -> str | None:
    """The hex SHA-256 from an RFC 9530 ``Content-Digest`` header, if it carries one."""
    header = request.headers.get("content-digest")
    if header is None:
        return None
    match = _SHA256_DIGEST.search(header)
    if match is None:
        if "sha-256" in header.lower():
            raise InvalidRequest("Content-Digest is malformed")
        return None  # only algorithms we do not check
    try:
        digest = base64.b64decode(match.group(1), validate=True)
    except binascii.Error:
        raise InvalidRequest("Content-Digest is malformed") from None
    if len(digest) != 32:
        raise InvalidRequest("Content-Digest sha-256 must be 32 bytes")
    return digest.hex()
