"""MetadataRepository on async SQLAlchemy: the same code for SQLite, PostgreSQL and MariaDB/MySQL.

Tables: ``drive_blobs`` (committed records, id primary key in byte order),
``drive_pending`` (intents of the commit protocol, keyed by storage key) and
``drive_uploads`` (resumable uploads in progress, ``UploadRepository``). A commit
removes the intent and inserts the record in one transaction, so a blob is visible
exactly when its intent is gone.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    delete,
    func,
    insert,
    not_,
    or_,
    select,
    text,
    type_coerce,
    union,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects.mysql import VARBINARY
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from drive.adapters.postgres_store_writes import PostgresStoreWrites
from drive.adapters.record_rows import millis
from drive.adapters.sql_engine import MYSQL_TABLE_OPTIONS, Deadlock, SqlDatabase, async_url
from drive.adapters.sql_point_reads import PostgresPointReads, point_reads_for
from drive.adapters.sql_schema import METADATA, upgrade
from drive.domain.errors import StorageUnavailable
from drive.domain.media_types import DEFAULT_CONTENT_TYPE
from drive.domain.model import BlobRecord, CommitOutcome, PendingKind, PendingOp, Upload

# The tables as the queries see them; sql_schema's revisions create and change them.
schema = MetaData()


class Utf8Bytes(TypeDecorator[str]):
    """A str kept as its UTF-8 bytes: MariaDB/MySQL then compare and order ids byte by byte.

    A binary column, not utf8mb4 text: no collation folds case or accents, and 1024 bytes
    index within InnoDB's 3072-byte key limit (utf8mb4 VARCHAR(1024) would need 4096).
    """

    impl = VARBINARY
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> bytes | None:
        return None if value is None else value.encode("utf-8")

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else bytes(value).decode("utf-8")


# Ids compare in byte order everywhere: PostgreSQL's "C" collation and SQLite's default
# BINARY do it for text; MariaDB/MySQL get the UTF-8 bytes themselves.
_IdText = Text().with_variant(Text(collation="C"), "postgresql").with_variant(Utf8Bytes(1024), "mysql", "mariadb")

# 32 bytes per chunk: past MariaDB's 64 KiB BLOB for blobs over 2 GiB, hence LONGBLOB there.
_Digests = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")

blobs = Table(
    "drive_blobs",
    schema,
    Column("id", _IdText, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),  # unix seconds, UTC
    Column("backend", String(32), nullable=False),
    Column("storage_key", String(32), nullable=False, unique=True),
    # Chunk digests (revision 0002); NULL for blobs stored before them.
    Column("chunk_size", Integer, nullable=True),
    Column("chunk_digests", _Digests, nullable=True),
    # Content type (revision 0003); rows from before it hold the default.
    Column("content_type", String(255), nullable=False, server_default=DEFAULT_CONTENT_TYPE),
    **MYSQL_TABLE_OPTIONS,
)

pending = Table(
    "drive_pending",
    schema,
    Column("storage_key", String(32), primary_key=True),
    Column("backend", String(32), nullable=False),
    Column("blob_id", _IdText, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("lease_until", BigInteger, nullable=False, index=True),  # unix milliseconds
    **MYSQL_TABLE_OPTIONS,
)

uploads = Table(
    "drive_uploads",
    schema,
    Column("id", String(64), primary_key=True),
    Column("blob_id", _IdText, nullable=False),
    Column("backend", String(32), nullable=False),
    Column("storage_key", String(32), nullable=False, unique=True),
    Column("length", BigInteger, nullable=False),
    Column("upload_offset", BigInteger, nullable=False),  # "offset" is reserved in SQL
    Column("state", Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
    Column("content_type", String(255), nullable=True),
    Column("created_at", BigInteger, nullable=False),  # unix milliseconds, as every time below
    Column("expires_at", BigInteger, nullable=False, index=True),
    Column("completed", Boolean, nullable=False),
    Column("lock_owner", String(64), nullable=True),
    Column("lock_until", BigInteger, nullable=True),
    **MYSQL_TABLE_OPTIONS,
)

# Kept for the releases before Alembic, which refuse to start on a version above theirs (1).
schema_version = Table("drive_schema", schema, Column("version", Integer, nullable=False), **MYSQL_TABLE_OPTIONS)


_DEADLOCK_ATTEMPTS = 3
_KEYS_PER_STATEMENT = 500  # well under every dialect's limit on bound parameters


class _Reclaimed(Exception):
    """Rolls a claim back: the upload's intent is gone."""


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _moment(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


def upload_from_row(m: Any) -> Upload:
    """An ``Upload`` from a ``drive_uploads`` row's mapping (any driver's)."""
    return Upload(
        id=m["id"],
        blob_id=m["blob_id"],
        backend=m["backend"],
        storage_key=m["storage_key"],
        length=m["length"],
        offset=m["upload_offset"],
        state=m["state"],
        content_type=m["content_type"],
        created_at=_moment(m["created_at"]),
        expires_at=_moment(m["expires_at"]),
        completed=bool(m["completed"]),
        lock_owner=m["lock_owner"],
        lock_until=None if m["lock_until"] is None else _moment(m["lock_until"]),
    )


def upload_values(upload: Upload) -> dict[str, Any]:
    """A new upload's ``drive_uploads`` row."""
    return {
        "id": upload.id,
        "blob_id": upload.blob_id,
        "backend": upload.backend,
        "storage_key": upload.storage_key,
        "length": upload.length,
        "upload_offset": upload.offset,
        "state": upload.state,
        "content_type": upload.content_type,
        "created_at": millis(upload.created_at),
        "expires_at": millis(upload.expires_at),
        "completed": upload.completed,
        "lock_owner": upload.lock_owner,
        "lock_until": None if upload.lock_until is None else millis(upload.lock_until),
    }


def _record(row: object) -> BlobRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return BlobRecord(
        id=m["id"],
        size=m["size"],
        sha256=m["sha256"],
        created_at=datetime.fromtimestamp(m["created_at"], UTC),
        backend=m["backend"],
        storage_key=m["storage_key"],
        chunk_size=m["chunk_size"],
        chunk_digests=None if m["chunk_digests"] is None else bytes(m["chunk_digests"]),
        content_type=m["content_type"],
    )


class SqlMetadataRepository:
    def __init__(self, url: str, *, setting: str = "DATABASE_URL") -> None:
        self._db = SqlDatabase(url, setting, label="metadata store")
        # GET's lookup by id, on the driver directly (sql_point_reads.py); None: the engine.
        self._point_reads = point_reads_for(async_url(url, setting))
        # A store's intent and commit, likewise on PostgreSQL (postgres_store_writes.py).
        reads = self._point_reads
        self._store_writes = PostgresStoreWrites(reads) if isinstance(reads, PostgresPointReads) else None

    @property
    def engine(self) -> AsyncEngine:
        return self._db.engine

    def _read(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self._db.read()

    def _write(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self._db.write()

    @contextlib.asynccontextmanager
    async def _write_without_fsync(self) -> AsyncIterator[AsyncConnection]:
        """A transaction whose commit may be lost in a crash, though never seen half done.

        For intents, renewals and finishes: a lost one only leaves bytes that no intent or
        record names, which the orphan sweep removes. On PostgreSQL the commit then skips
        its WAL flush; the next durable commit flushes it along with its own.
        """
        async with self._write() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SET LOCAL synchronous_commit = off"))
            yield conn

    async def open(self) -> None:
        # Migrated under a database-wide lock: replicas starting together take turns.
        await self._db.open(functools.partial(upgrade, chain=METADATA))

    async def close(self) -> None:
        try:
            if self._point_reads is not None:
                await self._point_reads.close()
        finally:
            await self._db.close()

    async def ping(self) -> None:
        async with self._read() as conn:
            await conn.execute(select(1))

    async def get(self, blob_id: str) -> BlobRecord | None:
        if self._point_reads is not None:
            return await self._point_reads.get(blob_id)
        async with self._read() as conn:
            row = (await conn.execute(select(blobs).where(blobs.c.id == blob_id))).first()
        return None if row is None else _record(row)

    async def begin(self, op: PendingOp) -> None:
        async with self._write_without_fsync() as conn:
            await conn.execute(_insert_intent(op))

    async def begin_store(self, op: PendingOp) -> BlobRecord | None:
        if self._store_writes is not None:
            return await self._store_writes.begin_store(op)
        # Two steps here: the point read is the cheap path to an existing record.
        existing = await self.get(op.blob_id)
        if existing is None:
            await self.begin(op)
        return existing

    async def renew(self, storage_key: str, lease_until: datetime) -> bool:
        async with self._write_without_fsync() as conn:
            result = await conn.execute(
                update(pending).where(pending.c.storage_key == storage_key).values(lease_until=millis(lease_until))
            )
        return bool(result.rowcount)

    async def commit(self, record: BlobRecord) -> CommitOutcome:
        if self._store_writes is not None:
            return await self._store_writes.commit(record)
        # InnoDB may pick this transaction as a deadlock victim when others commit the same
        # id at once; it was rolled back whole, so it is simply run again.
        for attempt in range(_DEADLOCK_ATTEMPTS):
            try:
                return await self._commit_once(record)
            except Deadlock:
                if attempt == _DEADLOCK_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _commit_once(self, record: BlobRecord) -> CommitOutcome:
        try:
            async with self._write() as conn:
                gone = await conn.execute(delete(pending).where(pending.c.storage_key == record.storage_key))
                if gone.rowcount != 1:
                    raise StorageUnavailable("upload lease was lost; retry the upload")
                await conn.execute(
                    insert(blobs).values(
                        id=record.id,
                        size=record.size,
                        sha256=record.sha256,
                        created_at=_seconds(record.created_at),
                        backend=record.backend,
                        storage_key=record.storage_key,
                        chunk_size=record.chunk_size,
                        chunk_digests=record.chunk_digests,
                        content_type=record.content_type,
                    )
                )
        except IntegrityError:
            # Someone committed this id first; the transaction rolled back, our intent stands.
            existing = await self.get(record.id)
            if existing is None:  # committed and deleted again in between: let the client retry
                raise StorageUnavailable("the id changed while storing; retry") from None
            return CommitOutcome(existing, created=False)
        return CommitOutcome(record, created=True)

    async def relocate(self, record: BlobRecord, backend: str, storage_key: str, lease_until: datetime) -> bool:
        async with self._write() as conn:
            moved = await conn.execute(
                update(blobs)
                .where(and_(blobs.c.id == record.id, blobs.c.storage_key == record.storage_key))
                .values(backend=backend, storage_key=storage_key)
            )
            if moved.rowcount != 1:
                return False
            gone = await conn.execute(delete(pending).where(pending.c.storage_key == storage_key))
            if gone.rowcount != 1:
                raise StorageUnavailable("copy lease was lost; retry")  # rolls the update back
            await conn.execute(_insert_intent(PendingOp.deleting(record, lease_until)))
        return True

    async def add_chunk_digests(self, record: BlobRecord) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                update(blobs)
                .where(
                    and_(
                        blobs.c.id == record.id,
                        blobs.c.storage_key == record.storage_key,
                        blobs.c.chunk_size.is_(None),
                    )
                )
                .values(chunk_size=record.chunk_size, chunk_digests=record.chunk_digests)
            )
        return bool(result.rowcount)

    async def finish(self, storage_key: str, *, durable: bool = False) -> None:
        async with self._write() if durable else self._write_without_fsync() as conn:
            await conn.execute(delete(pending).where(pending.c.storage_key == storage_key))

    async def finish_all(self, storage_keys: Collection[str], *, durable: bool = False) -> None:
        # Sorted: concurrent batches (two servers recovering) then lock rows in one order.
        wanted = sorted(storage_keys)
        for start in range(0, len(wanted), _KEYS_PER_STATEMENT):
            batch = wanted[start : start + _KEYS_PER_STATEMENT]
            async with self._write() if durable else self._write_without_fsync() as conn:
                await conn.execute(delete(pending).where(pending.c.storage_key.in_(batch)))

    async def remove(self, blob_id: str, lease_until: datetime) -> BlobRecord | None:
        async with self._write() as conn:
            row = (await conn.execute(select(blobs).where(blobs.c.id == blob_id))).first()
            if row is None:
                return None
            record = _record(row)
            gone = await conn.execute(
                delete(blobs).where(and_(blobs.c.id == blob_id, blobs.c.storage_key == record.storage_key))
            )
            if gone.rowcount != 1:
                return None
            await conn.execute(_insert_intent(PendingOp.deleting(record, lease_until)))
        return record

    async def page(self, prefix: str, after: str | None, limit: int) -> list[BlobRecord]:
        query = select(blobs).order_by(blobs.c.id).limit(limit)
        if prefix:
            # Range start uses the index; the exact prefix test is case- and wildcard-safe.
            # SUBSTR counts bytes on MariaDB/MySQL's binary ids, characters on text.
            length = len(prefix.encode("utf-8")) if self._db.mysql else len(prefix)
            head = type_coerce(func.substr(blobs.c.id, 1, length), blobs.c.id.type)
            query = query.where(blobs.c.id >= prefix, head == prefix)
        if after is not None:
            query = query.where(blobs.c.id > after)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]

    async def expired(self, now: datetime, limit: int, backends: Collection[str] | None = None) -> list[PendingOp]:
        query = select(pending).where(pending.c.lease_until < millis(now))
        if backends is not None:
            query = query.where(pending.c.backend.in_(list(backends)))
        query = query.order_by(pending.c.lease_until).limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            PendingOp(
                storage_key=r.storage_key,
                backend=r.backend,
                blob_id=r.blob_id,
                kind=PendingKind(r.kind),
                lease_until=datetime.fromtimestamp(r.lease_until / 1000, UTC),
            )
            for r in rows
        ]

    async def known_keys(self, backend: str, keys: Collection[str]) -> set[str]:
        if not keys:
            return set()
        wanted = list(keys)
        known: set[str] = set()
        async with self._read() as conn:
            for i in range(0, len(wanted), _KEYS_PER_STATEMENT):
                batch = wanted[i : i + _KEYS_PER_STATEMENT]
                committed = select(blobs.c.storage_key).where(
                    and_(blobs.c.backend == backend, blobs.c.storage_key.in_(batch))
                )
                intended = select(pending.c.storage_key).where(
                    and_(pending.c.backend == backend, pending.c.storage_key.in_(batch))
                )
                # One statement, so one snapshot: as two queries, a commit landing between them
                # (intent gone, record not yet seen) made a just-committed key look orphaned.
                known.update((await conn.execute(union(committed, intended))).scalars())
        return known

    # -- UploadRepository ---------------------------------------------------------------

    async def create_upload(self, upload: Upload) -> None:
        async with self._write() as conn:
            await conn.execute(_insert_intent(PendingOp.uploading(upload)))
            await conn.execute(insert(uploads).values(**upload_values(upload)))

    async def get_upload(self, upload_id: str) -> Upload | None:
        async with self._read() as conn:
            row = (await conn.execute(select(uploads).where(uploads.c.id == upload_id))).first()
        return None if row is None else upload_from_row(row._mapping)

    async def claim_upload(
        self, upload_id: str, owner: str, now: datetime, lock_until: datetime, expires_at: datetime
    ) -> Upload | None:
        at = millis(now)
        try:
            return await self._claim(upload_id, owner, at, millis(lock_until), millis(expires_at))
        except _Reclaimed:
            return None

    async def _claim(self, upload_id: str, owner: str, at: int, lock_until: int, expires_at: int) -> Upload | None:
        async with self._write() as conn:
            # One conditional UPDATE takes the lock: of two requests racing, exactly one matches.
            taken = await conn.execute(
                update(uploads)
                .where(
                    uploads.c.id == upload_id,
                    uploads.c.expires_at > at,
                    or_(uploads.c.lock_owner.is_(None), uploads.c.lock_until < at),
                )
                .values(lock_owner=owner, lock_until=lock_until, expires_at=expires_at)
            )
            if taken.rowcount != 1:
                return None
            row = (await conn.execute(select(uploads).where(uploads.c.id == upload_id))).one()
            upload = upload_from_row(row._mapping)
            renewed = await conn.execute(
                update(pending).where(pending.c.storage_key == upload.storage_key).values(lease_until=expires_at)
            )
            if renewed.rowcount != 1 and not upload.completed and upload.offset < upload.length:
                raise _Reclaimed  # by recovery: the transaction rolls back, the row stays as it was
        return upload

    async def renew_upload_lock(self, upload_id: str, owner: str, lock_until: datetime) -> bool:
        async with self._write_without_fsync() as conn:
            result = await conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id, uploads.c.lock_owner == owner)
                .values(lock_until=millis(lock_until))
            )
        return bool(result.rowcount)

    async def advance_upload(self, upload_id: str, owner: str, offset: int, state: str) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id, uploads.c.lock_owner == owner)
                .values(upload_offset=offset, state=state)
            )
        return bool(result.rowcount)

    async def release_upload(self, upload_id: str, owner: str, *, completed: bool = False) -> None:
        values: dict[str, Any] = {"lock_owner": None, "lock_until": None}
        if completed:
            values["completed"] = True
        async with self._write() as conn:
            await conn.execute(
                update(uploads).where(uploads.c.id == upload_id, uploads.c.lock_owner == owner).values(**values)
            )

    async def remove_upload(self, upload_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(delete(uploads).where(uploads.c.id == upload_id))

    async def uploads_page(self, after: str | None, limit: int) -> list[Upload]:
        query = select(uploads).order_by(uploads.c.id).limit(limit)
        if after is not None:
            query = query.where(uploads.c.id > after)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [upload_from_row(row._mapping) for row in rows]

    async def forget_expired_uploads(self, now: datetime, limit: int) -> int:
        intended = select(pending.c.storage_key).where(pending.c.storage_key == uploads.c.storage_key)
        async with self._read() as conn:
            ids = list(
                (
                    await conn.execute(
                        select(uploads.c.id)
                        .where(uploads.c.expires_at < millis(now), not_(intended.exists()))
                        .limit(limit)
                    )
                ).scalars()
            )
        if not ids:
            return 0
        async with self._write() as conn:
            # Still expired: a claim in between (impossible once expired, but cheap to be sure).
            result = await conn.execute(
                delete(uploads).where(uploads.c.id.in_(ids), uploads.c.expires_at < millis(now))
            )
        return int(result.rowcount)


__all__ = ["SqlMetadataRepository", "Utf8Bytes", "blobs", "pending", "schema", "upload_from_row", "uploads"]


def _insert_intent(op: PendingOp) -> Insert:
    return insert(pending).values(
        storage_key=op.storage_key,
        backend=op.backend,
        blob_id=op.blob_id,
        kind=op.kind.value,
        lease_until=millis(op.lease_until),
    )
