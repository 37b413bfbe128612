"""A committed record as a row of ``drive_blobs``, for the adapters that write plain SQL.

The SQLite group-commit jobs, the point reads and PostgreSQL's store writes send their own
statements (not SQLAlchemy's): they share the column order, the row a record becomes and
the record a row becomes here, and the millisecond times of intents.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from drive.domain.model import BlobRecord

RECORD_COLUMNS = "id, size, sha256, created_at, backend, storage_key, chunk_size, chunk_digests, content_type"


def record_row(record: BlobRecord) -> tuple[Any, ...]:
    """``record``'s values in ``RECORD_COLUMNS`` order (``created_at`` in whole seconds)."""
    return (
        record.id,
        record.size,
        record.sha256,
        int(record.created_at.timestamp()),
        record.backend,
        record.storage_key,
        record.chunk_size,
        record.chunk_digests,
        record.content_type,
    )


def record_from_row(row: Sequence[Any]) -> BlobRecord:
    """The record of a row selected as ``RECORD_COLUMNS``."""
    blob_id, size, sha256, created_at, backend, storage_key, chunk_size, chunk_digests, content_type = row
    return BlobRecord(
        id=blob_id,
        size=size,
        sha256=sha256,
        created_at=datetime.fromtimestamp(created_at, UTC),
        backend=backend,
        storage_key=storage_key,
        chunk_size=chunk_size,
        chunk_digests=None if chunk_digests is None else bytes(chunk_digests),
        content_type=content_type,
    )


def millis(moment: datetime) -> int:
    """Unix milliseconds: how leases and upload times are stored."""
    return int(moment.timestamp() * 1000)
