"""Request bodies, read as streams with the size limit enforced before and while reading."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import AsyncIterator

from drive.domain.errors import InvalidRequest, PayloadTooLarge, RequestTimeout
from drive.entrypoints.http.types import AnyRequest

# Room for every algorithm RFC 9530 registers, several times over; longer is not a digest list.
_MAX_DIGEST_HEADER = 4096
_SHA256_DIGEST = re.compile(r"(?:^|,)\s*sha-256\s*=\s*:([A-Za-z0-9+/=]*):\s*(?:,|$)", re.IGNORECASE)


def check_declared_length(request: AnyRequest, limit: int) -> None:
    """Refuse at once when ``Content-Length`` already says the body is too large."""
    declared_length(request.headers.get("content-length"), limit)


def declared_length(header: str | None, limit: int) -> int | None:
    """``Content-Length`` as a number: ASCII digits only, compared by length before converting."""
    if header is None:
        return None
    if not (header.isascii() and header.isdigit()):
        raise InvalidRequest("Content-Length is not a number")
    digits = header.lstrip("0") or "0"  # leading zeros change nothing, but count towards int's digit limit
    if len(digits) > len(str(limit)) or int(digits) > limit:
        raise PayloadTooLarge(f"body is larger than the limit of {limit} bytes")
    return int(digits)


async def body_stream(request: AnyRequest) -> AsyncIterator[bytes]:
    """The raw body as chunks, as the server receives them.

    Each wait for the next chunk is bounded by ``BODY_TIMEOUT_SECONDS``: a client that stops
    sending gets ``RequestTimeout``, which ends the request (the store discards what it staged).
    """
    timeout = request.app.state.settings.body_timeout_seconds
    chunks = request.stream()
    while True:
        try:
            # asyncio's own timeout, paid per chunk of every body: a third of anyio.fail_after's cost.
            async with asyncio.timeout(timeout):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(f"no body byte arrived for {timeout:g} s; the request was abandoned") from None
        if chunk:
            yield chunk


async def read_body(request: AnyRequest, limit: int) -> bytearray:
    """The whole body, in one growing buffer: never held twice (as its pieces and their join).

    Not sized from ``Content-Length`` up front: a client that declares a large body and sends
    nothing would hold that much memory per connection. A large buffer grows in place (glibc
    moves big blocks by remapping them, not copying).
    """
    check_declared_length(request, limit)
    body = bytearray()
    async for chunk in body_stream(request):
        if len(body) + len(chunk) > limit:
            raise PayloadTooLarge(f"body is larger than the limit of {limit} bytes")
        body += chunk
    return body


def expected_sha256(request: AnyRequest) -> str | None:
    """The hex SHA-256 from an RFC 9530 ``Content-Digest`` header, if it carries one."""
    return content_digest_sha256(request.headers.get("content-digest"))


def content_digest_sha256(header: str | None) -> str | None:
    """The ``sha-256`` member of a ``Content-Digest`` value as hex; None if it has none."""
    if header is None:
        return None
    if len(header) > _MAX_DIGEST_HEADER:
        raise InvalidRequest("Content-Digest is too long")
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
