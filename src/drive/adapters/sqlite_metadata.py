"""MetadataRepository on SQLite with group commit: every write goes through one ``SqliteWriter``.

Reads stay on the shared SQLAlchemy engine (WAL readers never wait for the writer).
Intents and lease renewals are written ``durable=False``: a crash may lose them, which
only leaves bytes that no intent or record names, and the orphan sweep removes those.
Commits, relocations and removals are durable before they return.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from drive.adapters.sql_engine import async_url
from drive.adapters.sql_metadata import SqlMetadataRepository
from drive.adapters.sqlite_writer import SqliteWriter
from drive.domain.errors import StorageUnavailable
from drive.domain.model import BlobRecord, CommitOutcome, PendingKind, PendingOp

_RECORD_COLUMNS = "id, size, sha256, created_at, backend, storage_key, chunk_size, chunk_digests, content_type"
_RECORD_VALUES = ", ".join("?" * len(_RECORD_COLUMNS.split(",")))


class _AlreadyCommitted(Exception):
    """Rolls the commit's savepoint back (the intent stands) and carries the winner's record."""

    def __init__(self, record: BlobRecord | None) -> None:
        self.record = record


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _record(row: tuple[str, int, str, int, str, str, int | None, bytes | None, str]) -> BlobRecord:
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


def _select_record(conn: sqlite3.Connection, blob_id: str) -> BlobRecord | None:
    row = conn.execute(f"SELECT {_RECORD_COLUMNS} FROM drive_blobs WHERE id = ?", (blob_id,)).fetchone()  # noqa: S608 - constant columns
    return None if row is None else _record(row)


def _insert_pending(conn: sqlite3.Connection, key: str, backend: str, blob_id: str, kind: str, lease: int) -> None:
    conn.execute(
        "INSERT INTO drive_pending (storage_key, backend, blob_id, kind, lease_until) VALUES (?, ?, ?, ?, ?)",
        (key, backend, blob_id, kind, lease),
    )


class SqliteMetadataRepository(SqlMetadataRepository):
    def __init__(self, url: str, *, setting: str = "DATABASE_URL") -> None:
        super().__init__(url, setting=setting)
        database = async_url(url, setting).database
        if not database or database == ":memory:":
            raise ValueError("group commit needs a SQLite file")
        self._writer = SqliteWriter(database)

    async def open(self) -> None:
        await super().open()  # creates or migrates the schema first
        await self._writer.open()

    async def close(self) -> None:
        await self._writer.close()
        await super().close()

    async def begin(self, op: PendingOp) -> None:
        def job(conn: sqlite3.Connection) -> None:
            _insert_pending(conn, op.storage_key, op.backend, op.blob_id, op.kind.value, _millis(op.lease_until))

        await self._writer.run(job, durable=False)

    async def renew(self, storage_key: str, lease_until: datetime) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE drive_pending SET lease_until = ? WHERE storage_key = ?", (_millis(lease_until), storage_key)
            )
            return cursor.rowcount == 1

        return await self._writer.run(job, durable=False)

    async def commit(self, record: BlobRecord) -> CommitOutcome:
        def job(conn: sqlite3.Connection) -> None:
            gone = conn.execute("DELETE FROM drive_pending WHERE storage_key = ?", (record.storage_key,))
            if gone.rowcount != 1:
                raise StorageUnavailable("upload lease was lost; retry the upload")
            inserted = conn.execute(
                f"INSERT INTO drive_blobs ({_RECORD_COLUMNS}) VALUES ({_RECORD_VALUES}) ON CONFLICT (id) DO NOTHING",  # noqa: S608
                (
                    record.id,
                    record.size,
                    record.sha256,
                    int(record.created_at.timestamp()),
                    record.backend,
                    record.storage_key,
                    record.chunk_size,
                    record.chunk_digests,
                    record.content_type,
                ),
            )
            if inserted.rowcount != 1:
                raise _AlreadyCommitted(_select_record(conn, record.id))

        try:
            await self._writer.run(job)
        except _AlreadyCommitted as lost:
            if lost.record is None:  # cannot happen inside one transaction; kept for safety
                raise StorageUnavailable("the id changed while storing; retry") from None
            return CommitOutcome(lost.record, created=False)
        return CommitOutcome(record, created=True)

    async def relocate(self, record: BlobRecord, backend: str, storage_key: str, lease_until: datetime) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            moved = conn.execute(
                "UPDATE drive_blobs SET backend = ?, storage_key = ? WHERE id = ? AND storage_key = ?",
                (backend, storage_key, record.id, record.storage_key),
            )
            if moved.rowcount != 1:
                return False
            gone = conn.execute("DELETE FROM drive_pending WHERE storage_key = ?", (storage_key,))
            if gone.rowcount != 1:
                raise StorageUnavailable("copy lease was lost; retry")  # rolls the update back
            _insert_pending(
                conn, record.storage_key, record.backend, record.id, PendingKind.DELETE.value, _millis(lease_until)
            )
            return True

        return await self._writer.run(job)

    async def add_chunk_digests(self, record: BlobRecord) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE drive_blobs SET chunk_size = ?, chunk_digests = ?"
                " WHERE id = ? AND storage_key = ? AND chunk_size IS NULL",
                (record.chunk_size, record.chunk_digests, record.id, record.storage_key),
            )
            return cursor.rowcount == 1

        return await self._writer.run(job)

    async def finish(self, storage_key: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM drive_pending WHERE storage_key = ?", (storage_key,))

        # Losing this in a crash brings back an intent whose bytes are gone: recovery ends it again.
        await self._writer.run(job, durable=False)

    async def remove(self, blob_id: str, lease_until: datetime) -> BlobRecord | None:
        def job(conn: sqlite3.Connection) -> BlobRecord | None:
            record = _select_record(conn, blob_id)
            if record is None:
                return None
            conn.execute("DELETE FROM drive_blobs WHERE id = ?", (blob_id,))
            _insert_pending(
                conn, record.storage_key, record.backend, blob_id, PendingKind.DELETE.value, _millis(lease_until)
            )
            return record

        return await self._writer.run(job)
