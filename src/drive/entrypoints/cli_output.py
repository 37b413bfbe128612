"""How records and sizes look on the command line, for people and for ``--json``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from drive.domain.model import BlobRecord, PendingOp


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
        f"id:          {record.id}",
        f"size:        {record.size}",
        f"sha256:      {record.sha256}",
        f"created_at:  {timestamp(record.created_at)}",
        f"backend:     {record.backend}",
        f"storage_key: {record.storage_key}",
    ]


def long_line(record: BlobRecord) -> str:
    """One ``ls -l`` line; the id comes last as it may contain spaces."""
    return f"{record.size:>14}  {timestamp(record.created_at)}  {record.backend:<4}  {record.id}"


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
    print(json.dumps(value, ensure_ascii=False, indent=2))
