"""A blob's content type: an RFC 9110 media type (section 8.3.1), at most 255 bytes, kept exactly as sent.

    media-type = type "/" subtype parameters
    parameters = *( OWS ";" OWS [ parameter ] )
    parameter  = token "=" ( token / quoted-string )

Only ASCII is accepted: RFC 9110 keeps non-ASCII bytes in quoted strings as obsolete
``obs-text``, and refusing them keeps "at most 255 bytes" the same as 255 characters. A
value that passes holds only printable ASCII, spaces and tabs, so it can be sent back as a
header (``Content-Type``) without ever splitting it. Nothing is normalised: ``Text/HTML``
and ``text/html`` are different values for a replay, as two different ids would be.
"""

from __future__ import annotations

import re

from drive.domain.errors import InvalidRequest

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_CONTENT_TYPE_BYTES = 255

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110 token: one or more tchar
# qdtext (HTAB, SP, visible ASCII but '"' and '\') or a quoted-pair.
_QUOTED = r'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
_OWS = r"[ \t]*"
MEDIA_TYPE = rf"{_TCHARS}/{_TCHARS}(?:{_OWS};{_OWS}(?:{_TCHARS}=(?:{_TCHARS}|{_QUOTED}))?)*"
"""The grammar as a regular expression (also valid in JSON Schema's dialect, for the API document)."""
_MEDIA_TYPE = re.compile(MEDIA_TYPE)


def validate_media_type(value: object) -> str:
    """Return ``value`` unchanged if it is a valid content type, else raise ``InvalidRequest``."""
    if not isinstance(value, str):
        raise InvalidRequest("content type must be a string")
    # Length first, so the pattern never runs on a long string.
    if len(value) > MAX_CONTENT_TYPE_BYTES or not value.isascii():
        raise InvalidRequest(f"content type must be at most {MAX_CONTENT_TYPE_BYTES} bytes of ASCII")
    if _MEDIA_TYPE.fullmatch(value) is None:
        raise InvalidRequest("content type must be a media type such as text/plain; charset=utf-8")
    return value
