"""MetadataRepository on async SQLAlchemy: the same code for SQLite and PostgreSQL.

Tables: ``drive_blobs`` (committed records, id primary key in byte order) and
``drive_pending`` (intents of the commit protocol, keyed by storage key). A commit
removes the intent and inserts the record in one transaction, so a blob is visible
exactly when its intent is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    select,
    union,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from drive.adapters.sql_engine import create_engine, is_sqlite
from drive.adapters.sql_point_reads import point_reads_for
from drive.domain.errors import StorageUnavailable
from drive.domain.model import BlobRecord, CommitOutcome, PendingKind, PendingOp

SCHEMA_VERSION = 1

schema = MetaData()

# PostgreSQL's "C" collation orders text by bytes, as SQLite's default BINARY does.
_IdText = Text().with_variant(Text(collation="C"), "postgresql")

blobs = Table(
    "drive_blobs",
    schema,
    Column("id", _IdText, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),  # unix seconds, UTC
    Column("backend", String(32), nullable=False),
    Column("storage_key", String(32), nullable=False, unique=True),
)

pending = Table(
    "drive_pending",
    schema,
    Column("storage_key", String(32), primary_key=True),
    Column("backend", String(32), nullable=False),
    Column("blob_id", _IdText, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("lease_until", BigInteger, nullable=False, index=True),  # unix milliseconds
)

schema_version = Table("drive_schema", schema, Column("version", Integer, nullable=False))


class _NewerSchema(StorageUnavailable):
    """The store was migrated by a newer release; retrying will not help."""


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _record(row: object) -> BlobRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return BlobRecord(
        id=m["id"],
        size=m["size"],
        sha256=m["sha256"],
        created_at=datetime.fromtimestamp(m["created_at"], UTC),
        backend=m["backend"],
        storage_key=m["storage_key"],
    )


class SqlMetadataRepository:
    def __init__(self, url: str, *, setting: str = "DATABASE_URL") -> None:
        self._setting = setting
        self._engine: AsyncEngine = create_engine(url, setting)
        # SQLite has one writer at a time; queueing writers here beats busy-waiting on its lock.
        self._write_lock = asyncio.Lock() if is_sqlite(self._engine.url) else None
        # GET's lookup by id, on the driver directly (sql_point_reads.py); None: the engine.
        self._point_reads = point_reads_for(self._engine.url)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StorageUnavailable(f"metadata store failed ({type(exc).__name__})") from None
        except OSError as exc:
            raise StorageUnavailable(f"metadata store unreachable ({exc.strerror or type(exc).__name__})") from None

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            try:
                async with self._engine.begin() as conn:
                    yield conn
            except IntegrityError:
                raise
            except SQLAlchemyError as exc:
                raise StorageUnavailable(f"metadata store failed ({type(exc).__name__})") from None
            except OSError as exc:
                raise StorageUnavailable(f"metadata store unreachable ({exc.strerror or type(exc).__name__})") from None

    async def open(self) -> None:
        # Several processes may start on a fresh store at once; whoever loses the race to
        # create a table finds it there on the next attempt.
        for attempt in range(5):
            try:
                await self._migrate()
                return
            except _NewerSchema as exc:
                raise StorageUnavailable(f"{self._setting}: {exc.message}") from None
            except (IntegrityError, StorageUnavailable) as exc:
                if attempt == 4:
                    message = exc.message if isinstance(exc, StorageUnavailable) else "schema creation failed"
                    raise StorageUnavailable(f"{self._setting}: {message}") from None
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _migrate(self) -> None:
        async with self._write() as conn:
            await conn.run_sync(schema.create_all)
            versions = (await conn.execute(select(schema_version.c.version))).scalars().all()
            if not versions:
                await conn.execute(insert(schema_version).values(version=SCHEMA_VERSION))
            elif max(versions) > SCHEMA_VERSION:
                raise _NewerSchema(f"holds schema version {max(versions)}, newer than this release")

    async def close(self) -> None:
        try:
            if self._point_reads is not None:
                await self._point_reads.close()
        finally:
            await self._engine.dispose()

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
        async with self._write() as conn:
            await conn.execute(
                insert(pending).values(
                    storage_key=op.storage_key,
                    backend=op.backend,
                    blob_id=op.blob_id,
                    kind=op.kind.value,
                    lease_until=_millis(op.lease_until),
                )
            )

    async def renew(self, storage_key: str, lease_until: datetime) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                update(pending).where(pending.c.storage_key == storage_key).values(lease_until=_millis(lease_until))
            )
        return bool(result.rowcount)

    async def commit(self, record: BlobRecord) -> CommitOutcome:
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
            await conn.execute(
                insert(pending).values(
                    storage_key=record.storage_key,
                    backend=record.backend,
                    blob_id=record.id,
                    kind=PendingKind.DELETE.value,
                    lease_until=_millis(lease_until),
                )
            )
        return True

    async def finish(self, storage_key: str) -> None:
        async with self._write() as conn:
            await conn.execute(delete(pending).where(pending.c.storage_key == storage_key))

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
            await conn.execute(
                insert(pending).values(
                    storage_key=record.storage_key,
                    backend=record.backend,
                    blob_id=blob_id,
                    kind=PendingKind.DELETE.value,
                    lease_until=_millis(lease_until),
                )
            )
        return record

    async def page(self, prefix: str, after: str | None, limit: int) -> list[BlobRecord]:
        query = select(blobs).order_by(blobs.c.id).limit(limit)
        if prefix:
            # Range start uses the index; the exact prefix test is case- and wildcard-safe.
            query = query.where(blobs.c.id >= prefix, func.substr(blobs.c.id, 1, len(prefix)) == prefix)
        if after is not None:
            query = query.where(blobs.c.id > after)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]

    async def expired(self, now: datetime, limit: int) -> list[PendingOp]:
        query = select(pending).where(pending.c.lease_until < _millis(now)).order_by(pending.c.lease_until).limit(limit)
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
            for i in range(0, len(wanted), 500):
                batch = wanted[i : i + 500]
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


__all__ = ["SqlMetadataRepository", "blobs", "pending", "schema"]
