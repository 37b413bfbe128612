"""Content type on the wire: the type a raw ``PUT`` records, and the headers a raw answer carries.

Stored bytes are served as their recorded type, so a browser may render them; on the
service's own origin that must never run script. Every raw answer therefore carries
``X-Content-Type-Options: nosniff`` (the type is taken as given, never guessed) and
``Content-Security-Policy: sandbox`` (a document opened from here is a unique opaque origin:
no script, no forms, no cookies or storage of this origin).

``?download=<name>`` asks for ``Content-Disposition: attachment`` (RFC 6266) with the name
in ``filename*`` (RFC 8187: UTF-8, percent-encoded) and an ASCII stand-in in ``filename``
for clients that know only that. Both are built from a fixed set of characters, so no name
can end the header or add another.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, unquote_to_bytes

from drive.domain.errors import InvalidRequest
from drive.domain.media_types import DEFAULT_CONTENT_TYPE, validate_media_type
from drive.entrypoints.http.types import AnyRequest

SAFETY_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}

MAX_DOWNLOAD_NAME_BYTES = 1024
# C0 and C1 controls and DEL: no place in a file name, and CR/LF would split a header.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# Kept as they are in the quoted ``filename``: printable ASCII but '"' (ends the string),
# '\' (escapes in it, a path separator to some clients) and '%' (decoded by some clients).
_FALLBACK_UNSAFE = re.compile(r"[^ !#-$&-\[\]-~]")
# RFC 8187 attr-char besides letters and digits: sent as is in ``filename*``.
_ATTR_CHAR = "!#$&+-.^_`|~"


def request_content_type(request: AnyRequest) -> str:
    """The content type a raw ``PUT`` stores: its ``Content-Type``, or the default when none was sent."""
    values = request.headers.getall("content-type", [])
    if not values:
        return DEFAULT_CONTENT_TYPE
    if len(values) > 1:
        raise InvalidRequest("Content-Type may be sent at most once")
    return validate_media_type(values[0])


def download_name(request: AnyRequest) -> str | None:
    """The ``download`` query parameter, checked; None when absent.

    Read from the raw query string: the framework's parser puts U+FFFD in place of bytes
    that are not UTF-8, and a name must be refused for that, not changed.
    """
    query = request.scope.get("query_string", b"")
    if not query:  # nearly every request
        return None
    values = [value for name, value in _query_pairs(query if isinstance(query, bytes) else b"") if name == b"download"]
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest("download may be given at most once")
    try:
        name = values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("download must be valid UTF-8") from None
    if not 1 <= len(values[0]) <= MAX_DOWNLOAD_NAME_BYTES:
        raise InvalidRequest(f"download must be a file name of 1 to {MAX_DOWNLOAD_NAME_BYTES} bytes of UTF-8")
    return name


def _query_pairs(query: bytes) -> list[tuple[bytes, bytes]]:
    """``application/x-www-form-urlencoded`` pairs, percent-decoded to bytes ('+' is a space)."""
    pairs = []
    for piece in query.split(b"&"):
        if piece:
            name, _, value = piece.partition(b"=")
            pairs.append((unquote_to_bytes(name.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" "))))
    return pairs


def content_disposition(name: str) -> str:
    """``attachment`` with ``name``: exact (bar control characters, made ``_``) in ``filename*``,
    an ASCII approximation in ``filename``."""
    cleaned = _CONTROL.sub("_", name)
    encoded = quote(cleaned, safe=_ATTR_CHAR, encoding="utf-8")
    return f"attachment; filename=\"{ascii_fallback(cleaned)}\"; filename*=UTF-8''{encoded}"


def ascii_fallback(name: str) -> str:
    """``café.txt`` becomes ``cafe.txt``; what has no ASCII form becomes ``_``."""
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    fallback = _FALLBACK_UNSAFE.sub("_", ascii_only)
    return fallback or "download"
