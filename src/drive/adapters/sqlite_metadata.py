"""MetadataRepository on SQLite with group commit: every write goes through one ``SqliteWriter``.

Reads stay on the shared SQLAlchemy engine (WAL readers never wait for the writer).
Intents and lease renewals are written ``durable=False``: a crash may lose them, which
only leaves bytes that no intent or record names, and the orphan sweep removes those.
Commits, relocations and removals are durable before they return.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import datetime

from drive.adapters.record_rows import RECORD_COLUMNS, millis, record_from_row, record_row
from drive.adapters.sql_engine import async_url
from drive.adapters.sql_metadata import SqlMetadataRepository, upload_from_row, upload_values
from drive.adapters.sqlite_writer import SqliteWriter
from drive.domain.errors import StorageUnavailable
from drive.domain.model import BlobRecord, CommitOutcome, PendingOp, Upload

_RECORD_VALUES = ", ".join("?" * len(RECORD_COLUMNS.split(",")))


_UPLOAD_COLUMNS = (
    "id, blob_id, backend, storage_key, length, upload_offset, state, content_type,"
    " created_at, expires_at, completed, lock_owner, lock_until"
)


class _Reclaimed(Exception):
    """Rolls a claim's savepoint back: the upload's intent is gone."""


class _AlreadyCommitted(Exception):
    """Rolls the commit's savepoint back (the intent stands) and carries the winner's record."""

    def __init__(self, record: BlobRecord | None) -> None:
        self.record = record


def _select_record(conn: sqlite3.Connection, blob_id: str) -> BlobRecord | None:
    row = conn.execute(f"SELECT {RECORD_COLUMNS} FROM drive_blobs WHERE id = ?", (blob_id,)).fetchone()  # noqa: S608 - constant columns
    return None if row is None else record_from_row(row)


def _insert_pending(conn: sqlite3.Connection, op: PendingOp) -> None:
    conn.execute(
        "INSERT INTO drive_pending (storage_key, backend, blob_id, kind, lease_until) VALUES (?, ?, ?, ?, ?)",
        (op.storage_key, op.backend, op.blob_id, op.kind.value, millis(op.lease_until)),
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
            _insert_pending(conn, op)

        await self._writer.run(job, durable=False)

    async def begin_store(self, op: PendingOp) -> BlobRecord | None:
        def job(conn: sqlite3.Connection) -> BlobRecord | None:
            # One statement: the writer thread re-takes the GIL after each, and the event
            # loop skips its own lookup (both cost more under write load than the query).
            inserted = conn.execute(
                "INSERT INTO drive_pending (storage_key, backend, blob_id, kind, lease_until)"
                " SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM drive_blobs WHERE id = ?)",
                (op.storage_key, op.backend, op.blob_id, op.kind.value, millis(op.lease_until), op.blob_id),
            )
            if inserted.rowcount == 1:
                return None
            existing = _select_record(conn, op.blob_id)
            if existing is None:  # cannot happen inside one transaction; kept for safety
                raise StorageUnavailable("the id changed while storing; retry")
            return existing

        return await self._writer.run(job, durable=False)

    async def renew(self, storage_key: str, lease_until: datetime) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE drive_pending SET lease_until = ? WHERE storage_key = ?", (millis(lease_until), storage_key)
            )
            return cursor.rowcount == 1

        return await self._writer.run(job, durable=False)

    async def commit(self, record: BlobRecord) -> CommitOutcome:
        def job(conn: sqlite3.Connection) -> None:
            gone = conn.execute("DELETE FROM drive_pending WHERE storage_key = ?", (record.storage_key,))
            if gone.rowcount != 1:
                raise StorageUnavailable("upload lease was lost; retry the upload")
            inserted = conn.execute(
                f"INSERT INTO drive_blobs ({RECORD_COLUMNS}) VALUES ({_RECORD_VALUES}) ON CONFLICT (id) DO NOTHING",  # noqa: S608
                record_row(record),
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
            _insert_pending(conn, PendingOp.deleting(record, lease_until))
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

    async def finish(self, storage_key: str, *, durable: bool = False) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM drive_pending WHERE storage_key = ?", (storage_key,))

        # Unless asked: losing this in a crash brings back an intent whose bytes are gone, which
        # recovery ends again.
        await self._writer.run(job, durable=durable)

    async def finish_all(self, storage_keys: Collection[str], *, durable: bool = False) -> None:
        rows = [(key,) for key in storage_keys]

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM drive_pending WHERE storage_key = ?", rows)

        if rows:
            await self._writer.run(job, durable=durable)

    async def remove(self, blob_id: str, lease_until: datetime) -> BlobRecord | None:
        def job(conn: sqlite3.Connection) -> BlobRecord | None:
            record = _select_record(conn, blob_id)
            if record is None:
                return None
            conn.execute("DELETE FROM drive_blobs WHERE id = ?", (blob_id,))
            _insert_pending(conn, PendingOp.deleting(record, lease_until))
            return record

        return await self._writer.run(job)

    # -- UploadRepository: writes through the group-commit writer, reads inherited ---------

    async def create_upload(self, upload: Upload) -> None:
        values = upload_values(upload)
        intent = PendingOp.uploading(upload)

        def job(conn: sqlite3.Connection) -> None:
            _insert_pending(conn, intent)
            conn.execute(
                f"INSERT INTO drive_uploads ({_UPLOAD_COLUMNS}) VALUES ({', '.join('?' * len(values))})",  # noqa: S608
                tuple(values[name.strip()] for name in _UPLOAD_COLUMNS.split(",")),
            )

        await self._writer.run(job)

    async def claim_upload(
        self, upload_id: str, owner: str, now: datetime, lock_until: datetime, expires_at: datetime
    ) -> Upload | None:
        at, until, expires = millis(now), millis(lock_until), millis(expires_at)

        def job(conn: sqlite3.Connection) -> Upload | None:
            taken = conn.execute(
                "UPDATE drive_uploads SET lock_owner = ?, lock_until = ?, expires_at = ?"
                " WHERE id = ? AND expires_at > ? AND (lock_owner IS NULL OR lock_until < ?)",
                (owner, until, expires, upload_id, at, at),
            )
            if taken.rowcount != 1:
                return None
            cursor = conn.execute(f"SELECT {_UPLOAD_COLUMNS} FROM drive_uploads WHERE id = ?", (upload_id,))  # noqa: S608
            names = [d[0] for d in cursor.description]
            upload = upload_from_row(dict(zip(names, cursor.fetchone(), strict=True)))
            renewed = conn.execute(
                "UPDATE drive_pending SET lease_until = ? WHERE storage_key = ?", (expires, upload.storage_key)
            )
            if renewed.rowcount != 1 and not upload.completed and upload.offset < upload.length:
                raise _Reclaimed  # the job's savepoint rolls back
            return upload

        try:
            return await self._writer.run(job)
        except _Reclaimed:
            return None

    async def renew_upload_lock(self, upload_id: str, owner: str, lock_until: datetime) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE drive_uploads SET lock_until = ? WHERE id = ? AND lock_owner = ?",
                (millis(lock_until), upload_id, owner),
            )
            return cursor.rowcount == 1

        return await self._writer.run(job, durable=False)

    async def advance_upload(self, upload_id: str, owner: str, offset: int, state: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE drive_uploads SET upload_offset = ?, state = ? WHERE id = ? AND lock_owner = ?",
                (offset, state, upload_id, owner),
            )
            return cursor.rowcount == 1

        return await self._writer.run(job)

    async def release_upload(self, upload_id: str, owner: str, *, completed: bool = False) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE drive_uploads SET lock_owner = NULL, lock_until = NULL, completed = completed OR ?"
                " WHERE id = ? AND lock_owner = ?",
                (completed, upload_id, owner),
            )

        await self._writer.run(job)

    async def remove_upload(self, upload_id: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM drive_uploads WHERE id = ?", (upload_id,))

        await self._writer.run(job)

    async def forget_expired_uploads(self, now: datetime, limit: int) -> int:
        def job(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "DELETE FROM drive_uploads WHERE id IN (SELECT u.id FROM drive_uploads u WHERE u.expires_at < ?"
                " AND NOT EXISTS (SELECT 1 FROM drive_pending p WHERE p.storage_key = u.storage_key) LIMIT ?)",
                (millis(now), limit),
            )
            return cursor.rowcount

        return await self._writer.run(job)
