"""Schemathesis hooks (``SCHEMATHESIS_HOOKS``): how to make the document's custom string formats.

``drive-id``, ``drive-cursor`` and ``drive-file-name`` say what no JSON Schema keyword can: an
id's or a download name's limit is 1024 bytes of UTF-8 (not characters), and a cursor is one
the service issued. Schema-valid
requests are made from these; negative ones still break the patterns and lengths.
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

from drive.application.manage_blobs import encode_cursor
from drive.domain.ids import MAX_ID_BYTES
from drive.entrypoints.http.content_headers import MAX_DOWNLOAD_NAME_BYTES

_ID_CHARACTERS = st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"])


def _fits(blob_id: str) -> bool:
    return len(blob_id.encode("utf-8")) <= MAX_ID_BYTES


ids = st.text(_ID_CHARACTERS, min_size=1, max_size=MAX_ID_BYTES).filter(_fits)

schemathesis.openapi.format("drive-id", ids)
schemathesis.openapi.format("drive-cursor", ids.map(encode_cursor))
# Any text at all (control characters become "_" in the header), within the limit in bytes.
file_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=256).filter(
    lambda name: len(name.encode("utf-8")) <= MAX_DOWNLOAD_NAME_BYTES
)
schemathesis.openapi.format("drive-file-name", file_names)
