"""How records and sizes look on the command line, for people and for ``--json``."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from drive.domain.model import BlobRecord, PendingOp

# What a terminal or log viewer would act on rather than show: C0 and C1 controls (C1
# holds CSI, U+009B, and NEL, U+0085), DEL, the line and paragraph separators, the
# bidirectional marks, embeddings, overrides and isolates (a U+202E reverses what
# follows), and lone surrogates (undecodable file names). Ids may hold all but C0 and DEL.
_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
# In JSON, C0 is escaped by ``json.dumps`` already and the rest can only sit inside
# strings; the newlines of its indentation must stay.
_UNSAFE_IN_JSON = re.compile(f"[{_BEYOND_C0}]")


def escaped(text: str) -> str:
    """``text`` with every character a terminal would act on written as a ``\\uXXXX`` escape.

    Used on every id, path and message printed for people. A ``\\`` is left as it is, so an
    id that itself holds ``\\u202e`` looks the same as one holding U+202E: ``--json`` is the
    exact form.
    """
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_text(value: object, indent: int | None = None) -> str:
    """Exact JSON (it decodes to ``value``) that shows no character ``escaped`` would escape.

    Inside a JSON string a ``\\uXXXX`` escape means the same character.
    """
    return _UNSAFE_IN_JSON.sub(_escape, json.dumps(value, ensure_ascii=False, indent=indent))


def quoted(text: str) -> str:
    """An id in double quotes, as a JSON string, safe for a terminal."""
    return json_text(text)


def timestamp(moment: datetime) -> str:
    """The HTTP API's form: RFC 3339, UTC, whole seconds."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def record_json(record: BlobRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "size": record.size,
        "sha256": record.sha256,
        "created_at": timestamp(record.created_at),
        "backend": record.backend,
        "storage_key": record.storage_key,
        "content_type": record.content_type,
    }


def pending_json(op: PendingOp) -> dict[str, Any]:
    return {
        "id": op.blob_id,
        "kind": op.kind.value,
        "backend": op.backend,
        "storage_key": op.storage_key,
        "lease_until": timestamp(op.lease_until),
    }


def record_lines(record: BlobRecord) -> list[str]:
    return [
        f"id:          {escaped(record.id)}",
        f"size:        {record.size}",
        f"sha256:      {record.sha256}",
        f"created_at:  {timestamp(record.created_at)}",
        f"backend:     {record.backend}",
        f"storage_key: {record.storage_key}",
        f"type:        {escaped(record.content_type)}",
    ]


def long_line(record: BlobRecord) -> str:
    """One ``ls -l`` line; the id comes last as it may contain spaces.

    A content type may hold spaces too (``text/plain; charset=utf-8``): ``--json`` is the form to parse.
    """
    kind = escaped(record.content_type)
    return f"{record.size:>14}  {timestamp(record.created_at)}  {record.backend:<4}  {kind:<24}  {escaped(record.id)}"


def counted(count: int, noun: str) -> str:
    """``1 blob``, ``2 blobs``: for the nouns used here, plural is singular plus s."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def human_size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def print_json(value: object) -> None:
    print(json_text(value, indent=2))
