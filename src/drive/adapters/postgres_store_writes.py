"""A store's two metadata writes on PostgreSQL, on asyncpg directly: the intent and the commit.

Through SQLAlchemy's async layer each of them cost more of the event loop than the rest of
the store together (py-spy under `PUT` load: pool checkout with its ping, transaction set-up,
statement compilation, result processing: about half of the loop's samples). Here:

- the intent (``begin_store``) is one autocommit ``INSERT ... SELECT ... WHERE NOT EXISTS``
  on a connection whose session has ``synchronous_commit = off`` (as ``_write_without_fsync``:
  losing an intent in a server crash only leaves bytes the orphan sweep removes);
- the commit is one transaction that turns ``synchronous_commit`` back on for itself, deletes
  the intent (which must still be there) and inserts the record.

Both use the point reads' connections (sql_point_reads.py, postgres_connections.py), which
carry that session setting; the reads are unaffected. A connection the server dropped (a
restart) is replaced and the write tried once more (``PostgresPointReads.on_connection``), but
only where the first try cannot have taken effect: the intent's own key makes a repeated
insert a no-op, and a commit is repeated only when the failure came before its ``COMMIT`` was
sent.
"""

from __future__ import annotations

from typing import Any

from drive.adapters.record_rows import RECORD_COLUMNS, millis, record_row
from drive.adapters.sql_point_reads import PostgresPointReads
from drive.domain.errors import StorageUnavailable
from drive.domain.model import BlobRecord, CommitOutcome, PendingOp

_INTEND = (
    "INSERT INTO drive_pending (storage_key, backend, blob_id, kind, lease_until)"
    " SELECT $1::text, $2::text, $3::text, $4::text, $5::bigint"
    " WHERE NOT EXISTS (SELECT 1 FROM drive_blobs WHERE id = $3::text)"
    " ON CONFLICT (storage_key) DO NOTHING"
)
_INTENT_STANDS = "SELECT 1 FROM drive_pending WHERE storage_key = $1"
_END_INTENT = "DELETE FROM drive_pending WHERE storage_key = $1"
_INSERT_RECORD = (
    f"INSERT INTO drive_blobs ({RECORD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"  # noqa: S608 - constant
    " ON CONFLICT (id) DO NOTHING"
)


class _LostLease(Exception):
    """Rolls the commit's transaction back: the intent is gone."""


class _Taken(Exception):
    """Rolls the commit's transaction back: the id was committed first."""


class PostgresStoreWrites:
    def __init__(self, reads: PostgresPointReads) -> None:
        self._reads = reads

    async def begin_store(self, op: PendingOp) -> BlobRecord | None:
        async def attempt(conn: Any) -> bool:
            status = await conn.execute(
                _INTEND, op.storage_key, op.backend, op.blob_id, op.kind.value, millis(op.lease_until)
            )
            # A repeat of an insert that was made before the connection dropped inserts nothing
            # either: the key is ours alone, so its row is the intent.
            return bool(status == "INSERT 0 1" or await conn.fetchval(_INTENT_STANDS, op.storage_key))

        if await self._reads.on_connection(attempt):
            return None
        existing = await self._reads.get(op.blob_id)
        if existing is None:  # committed and removed again in between: let the client retry
            raise StorageUnavailable("the id changed while storing; retry")
        return existing

    async def commit(self, record: BlobRecord) -> CommitOutcome:
        committing = False

        async def attempt(conn: Any) -> None:
            nonlocal committing
            committing = False
            async with conn.transaction():  # rolled back on any exception raised inside
                await conn.execute("SET LOCAL synchronous_commit = on")
                if await conn.execute(_END_INTENT, record.storage_key) != "DELETE 1":
                    raise _LostLease
                if await conn.execute(_INSERT_RECORD, *record_row(record)) != "INSERT 0 1":
                    raise _Taken
                # The COMMIT is sent on leaving the block: a connection lost from here on leaves
                # the outcome unknown.
                committing = True

        try:
            await self._reads.on_connection(attempt, repeatable=lambda: not committing)
        except _LostLease:
            raise StorageUnavailable("upload lease was lost; retry the upload") from None
        except _Taken:
            existing = await self._reads.get(record.id)
            if existing is None:  # committed and deleted again in between: let the client retry
                raise StorageUnavailable("the id changed while storing; retry") from None
            return CommitOutcome(existing, created=False)
        return CommitOutcome(record, created=True)
