"""Database BlobRepository on async SQLAlchemy: the same code for SQLite, PostgreSQL and MariaDB/MySQL.

Tables (separate from the metadata tables, so both may share one database or not):

* ``drive_blob_objects``: one row per storage key with its size, the chunk size it was
  written with and a ``published`` flag. Only published objects are readable.
* ``drive_blob_chunks``: the bytes, as ``(storage_key, seq)`` rows of ``chunk_size``
  bytes each (the last one shorter), so no blob is ever one giant value in memory or
  on the wire, and a ranged read fetches only the rows it overlaps.

A write stages the object row, commits each chunk in its own short transaction (no
transaction or SQLite write lock is held while waiting on the client), then flips
``published``. A resumable upload (``PieceStaging``) stages the object row the same way and
appends pieces as chunk rows, rewriting the last partial row and dropping any row past the
durable offset; sealing flips ``published``. A chunk is only inserted while its staged object row exists (locked
``FOR SHARE`` on PostgreSQL, ``LOCK IN SHARE MODE`` on MariaDB/MySQL), so a concurrent
``delete`` can never leave orphan chunks.

On MariaDB/MySQL one statement must fit the server's ``max_allowed_packet``: a chunk row
goes over the wire escaped (up to twice its size), so ``open`` lowers the chunk size of new
writes to fit, or refuses to start if even a small one would not.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator

import anyio
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    exists,
    false,
    insert,
    literal,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.mysql import LONGBLOB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from drive.adapters import piece_length
from drive.adapters.sql_engine import MYSQL_TABLE_OPTIONS, SqlDatabase
from drive.adapters.sql_schema import BLOBS, upgrade
from drive.adapters.whole_reads import joined
from drive.domain.errors import CorruptBlob, StorageUnavailable, StoredBytesMissing
from drive.domain.storage_keys import checked_key, is_storage_key

DEFAULT_CHUNK_SIZE = 1024 * 1024
# A read fetches at most this many bytes (and _READ_MAX_ROWS rows) per query.
_READ_BATCH_BYTES = 4 * 1024 * 1024
_READ_MAX_ROWS = 64
_LIST_PAGE = 1000
# Cleanup after a failed write is best effort (recovery removes leftovers), so it may
# not hold up the caller for long, even while shielded from cancellation.
_CLEANUP_TIMEOUT = 15.0
# MariaDB/MySQL: room for the statement around an escaped chunk, the smallest chunk worth
# running with, and the driver's own packet limit (asyncmy's default).
_PACKET_OVERHEAD = 64 * 1024
MIN_MYSQL_CHUNK_SIZE = 64 * 1024
_CLIENT_MAX_PACKET = 16 * 1024 * 1024

log = logging.getLogger(__name__)


def fitting_chunk_size(chunk_size: int, max_allowed_packet: int) -> int:
    """The largest chunk size up to ``chunk_size`` whose insert fits in ``max_allowed_packet``.

    Raises ``StorageUnavailable`` when not even ``MIN_MYSQL_CHUNK_SIZE`` fits.
    """
    room = (min(max_allowed_packet, _CLIENT_MAX_PACKET) - _PACKET_OVERHEAD) // 2  # escaping may double bytes
    if chunk_size <= room:
        return chunk_size
    fitted = 1 << (room.bit_length() - 1) if room > 0 else 0  # a power of two, as the default
    if fitted < MIN_MYSQL_CHUNK_SIZE:
        raise StorageUnavailable(
            f"the server's max_allowed_packet ({max_allowed_packet} bytes) is too small for the db backend; "
            f"set it to at least {2 * MIN_MYSQL_CHUNK_SIZE + _PACKET_OVERHEAD} (16M recommended)"
        )
    return fitted


# The tables as the queries see them; sql_schema's revisions create and change them.
blob_schema = MetaData()

blob_objects = Table(
    "drive_blob_objects",
    blob_schema,
    Column("storage_key", String(32), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("chunk_size", Integer, nullable=False),  # per object, so the setting may change later
    Column("published", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),  # unix seconds, UTC
    **MYSQL_TABLE_OPTIONS,
)

blob_chunks = Table(
    "drive_blob_chunks",
    blob_schema,
    Column("storage_key", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    # BYTEA on PostgreSQL, BLOB on SQLite; LONGBLOB on MariaDB/MySQL, whose BLOB holds 64 KiB.
    Column("data", LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb"), nullable=False),
    PrimaryKeyConstraint("storage_key", "seq"),
    **MYSQL_TABLE_OPTIONS,
)


async def _rows(chunks: AsyncIterable[bytes], size: int, head: bytes = b"") -> AsyncIterator[bytes]:
    """``head`` and then ``chunks``, re-sliced into rows of ``size`` bytes (the last may be shorter).

    Memory stays about one row plus one piece.
    """
    buffer = bytearray(head)
    async for piece in chunks:
        buffer += piece
        while len(buffer) >= size:
            with memoryview(buffer) as view:
                row = bytes(view[:size])
            del buffer[:size]
            yield row
    if buffer:
        yield bytes(buffer)


class DatabaseBlobRepository:
    def __init__(
        self,
        url: str,
        *,
        setting: str = "DATABASE_URL",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        name: str = "db",
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.name = name
        self.chunk_size = chunk_size
        self._db = SqlDatabase(url, setting, label="database backend")

    # -- plumbing ---------------------------------------------------------------------

    def _connect(self, action: str, *, write: bool = False) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A connection (in a transaction when ``write``); backend failures become StorageUnavailable."""
        return self._db.write(action) if write else self._db.read(action)

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        # Migrated under a database-wide lock: replicas starting together take turns.
        await self._db.open(functools.partial(upgrade, chain=BLOBS))
        if self._db.mysql:
            await self._fit_chunk_size()

    async def _fit_chunk_size(self) -> None:
        async with self._connect("read its settings") as conn:
            packet = int((await conn.execute(text("SELECT @@max_allowed_packet"))).scalar_one())
        try:
            fitted = fitting_chunk_size(self.chunk_size, packet)
        except StorageUnavailable as exc:
            raise StorageUnavailable(f"{self._db.setting}: {exc.message}") from None
        if fitted != self.chunk_size:
            # Safe: each object row records the chunk size it was written with.
            log.warning(
                "%s: max_allowed_packet is %d bytes; the db backend writes %d-byte chunks instead of %d",
                self._db.setting,
                packet,
                fitted,
                self.chunk_size,
            )
            self.chunk_size = fitted

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        async with self._connect("be reached") as conn:
            # Its table, not just the server: a MariaDB connection outlives a dropped database.
            await conn.execute(select(blob_objects.c.storage_key).limit(1))

    # -- write ------------------------------------------------------------------------

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        key = checked_key(key)
        await self._stage(key)
        size = self.chunk_size
        written = 0
        seq = 0
        try:
            async for row in _rows(chunks, size):
                await self._put_chunk(key, seq, row)
                written += len(row)
                seq += 1
            await self._publish(key, written)
        except BaseException:
            with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True), contextlib.suppress(StorageUnavailable):
                await self.delete(key)
            raise
        return written

    async def _stage(self, key: str) -> None:
        async with self._connect("write", write=True) as conn:
            try:
                await conn.execute(
                    insert(blob_objects).values(
                        storage_key=key,
                        size=0,
                        chunk_size=self.chunk_size,
                        published=False,
                        created_at=int(time.time()),
                    )
                )
            except IntegrityError:
                # Not ours to clean up: someone else's bytes live under this key.
                raise StorageUnavailable(f"storage key {key} is already in use") from None

    async def _put_chunk(self, key: str, seq: int, data: bytes) -> None:
        # One statement: insert only while the staged object row exists. FOR SHARE makes a
        # concurrent delete wait for this insert (or this insert see the delete) on
        # PostgreSQL and MariaDB/MySQL; SQLite serialises writers anyway and ignores it.
        staged = (
            select(blob_objects.c.storage_key)
            .where(blob_objects.c.storage_key == key, blob_objects.c.published == false())
            .with_for_update(read=True)
        )
        row = select(
            literal(key, String(32)),
            literal(seq, BigInteger),
            literal(data, LargeBinary),
        ).where(exists(staged))
        async with self._connect("write", write=True) as conn:
            result = await conn.execute(insert(blob_chunks).from_select(["storage_key", "seq", "data"], row))
            if result.rowcount != 1:
                raise StorageUnavailable(f"write to storage key {key} was aborted: its staged bytes were removed")

    async def _publish(self, key: str, size: int) -> None:
        async with self._connect("write", write=True) as conn:
            result = await conn.execute(
                update(blob_objects)
                .where(blob_objects.c.storage_key == key, blob_objects.c.published == false())
                .values(published=True, size=size)
            )
            if result.rowcount != 1:
                raise StorageUnavailable(f"write to storage key {key} was aborted: its staged bytes were removed")

    # -- PieceStaging -------------------------------------------------------------------

    async def begin_pieces(self, key: str) -> str:
        await self._stage(checked_key(key))
        return piece_length.INITIAL

    async def append_piece(self, key: str, state: str, offset: int, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        piece_length.checked(state, offset)
        key = checked_key(key)
        size = await self._staged_chunk_size(key)
        seq, keep = divmod(offset, size)
        # The durable bytes of the last, partial row are the head of the first row written
        # now; rows past it can only be an interrupted append's leftovers.
        head = await self._cut_after(key, seq, keep)
        total = 0
        async for row in _rows(chunks, size, head):
            await self._replace_chunk(key, seq, row)
            total += len(row)
            seq += 1
        written = total - len(head)
        return written, piece_length.after(offset, written)

    async def _staged_chunk_size(self, key: str) -> int:
        async with self._connect("read") as conn:
            size = (
                await conn.execute(
                    select(blob_objects.c.chunk_size).where(
                        blob_objects.c.storage_key == key, blob_objects.c.published == false()
                    )
                )
            ).scalar_one_or_none()
        if size is None:
            raise StoredBytesMissing(f"no staged bytes for storage key {key}")
        return int(size)

    async def _cut_after(self, key: str, seq: int, keep: int) -> bytes:
        """Drop rows after ``seq``; return the first ``keep`` bytes of row ``seq`` (kept until rewritten)."""
        async with self._connect("write", write=True) as conn:
            first_gone = seq + 1 if keep else seq
            await conn.execute(
                delete(blob_chunks).where(blob_chunks.c.storage_key == key, blob_chunks.c.seq >= first_gone)
            )
            if not keep:
                return b""
            data = (
                await conn.execute(
                    select(blob_chunks.c.data).where(blob_chunks.c.storage_key == key, blob_chunks.c.seq == seq)
                )
            ).scalar_one_or_none()
        if data is None or len(data) < keep:
            raise StoredBytesMissing(f"staged bytes of storage key {key} are shorter than recorded")
        return bytes(data[:keep])

    async def _replace_chunk(self, key: str, seq: int, data: bytes) -> None:
        """Row ``seq`` becomes ``data`` in one transaction: a crash keeps the old row or the new one."""
        staged = (
            select(blob_objects.c.storage_key)
            .where(blob_objects.c.storage_key == key, blob_objects.c.published == false())
            .with_for_update(read=True)
        )
        row = select(literal(key, String(32)), literal(seq, BigInteger), literal(data, LargeBinary)).where(
            exists(staged)
        )
        async with self._connect("write", write=True) as conn:
            await conn.execute(delete(blob_chunks).where(blob_chunks.c.storage_key == key, blob_chunks.c.seq == seq))
            result = await conn.execute(insert(blob_chunks).from_select(["storage_key", "seq", "data"], row))
            if result.rowcount != 1:
                raise StorageUnavailable(f"upload to storage key {key} was aborted: its staged bytes were removed")

    async def read_pieces(self, key: str, state: str, length: int) -> AsyncIterator[bytes]:
        key = checked_key(key)
        size = await self._staged_chunk_size(key)
        async for chunk in self._rows(key, size, 0, length, published=False):
            yield chunk

    async def seal_pieces(self, key: str, state: str, length: int) -> None:
        piece_length.checked(state, length)
        key = checked_key(key)
        async with self._connect("write", write=True) as conn:
            head = (
                await conn.execute(
                    select(blob_objects.c.size, blob_objects.c.chunk_size, blob_objects.c.published).where(
                        blob_objects.c.storage_key == key
                    )
                )
            ).first()
            if head is None:
                raise StoredBytesMissing(f"no staged bytes for storage key {key}")
            if head.published:
                if head.size != length:
                    raise CorruptBlob(f"storage key {key} was sealed with another length")
                return
            last = (length - 1) // head.chunk_size if length else -1
            await conn.execute(delete(blob_chunks).where(blob_chunks.c.storage_key == key, blob_chunks.c.seq > last))
            await conn.execute(
                update(blob_objects).where(blob_objects.c.storage_key == key).values(published=True, size=length)
            )

    # -- read -------------------------------------------------------------------------

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        key = checked_key(key)
        async with self._connect("read") as conn:
            head = (
                await conn.execute(
                    select(blob_objects.c.size, blob_objects.c.chunk_size).where(
                        blob_objects.c.storage_key == key, blob_objects.c.published == true()
                    )
                )
            ).first()
        if head is None:
            raise StoredBytesMissing(f"no bytes for storage key {key}")
        async for data in self._rows(key, head.chunk_size, start, head.size if end is None else end, size=head.size):
            yield data

    async def _rows(
        self, key: str, chunk: int, start: int, stop: int, *, size: int | None = None, published: bool = True
    ) -> AsyncIterator[bytes]:
        """Bytes ``[start, stop)`` of ``key`` from its ``chunk``-byte rows (``size``: the object's, if published)."""
        if size is not None:
            stop = min(stop, size)
        limit = stop if size is None else size
        start = max(start, 0)
        if start >= stop:
            return
        seq = start // chunk
        last = (stop - 1) // chunk
        batch = max(1, min(_READ_MAX_ROWS, _READ_BATCH_BYTES // chunk))
        while seq <= last:
            upto = min(last, seq + batch - 1)
            # A fresh connection per batch: none is held while the consumer is slow.
            async with self._connect("read") as conn:
                rows = (
                    await conn.execute(
                        select(blob_chunks.c.seq, blob_chunks.c.data)
                        .where(
                            blob_chunks.c.storage_key == key,
                            blob_chunks.c.seq >= seq,
                            blob_chunks.c.seq <= upto,
                        )
                        .order_by(blob_chunks.c.seq)
                    )
                ).all()
            if len(rows) != upto - seq + 1:
                raise StoredBytesMissing(f"bytes of storage key {key} are incomplete or were deleted while reading")
            for row in rows:
                offset = row.seq * chunk
                data: bytes = row.data
                wanted = min(chunk, limit - offset)
                if len(data) != wanted and (published or len(data) < wanted):
                    raise CorruptBlob(f"stored bytes of storage key {key} have the wrong length")
                lo = max(start - offset, 0)
                hi = min(stop - offset, len(data))
                yield data if lo == 0 and hi == len(data) else data[lo:hi]
            seq = upto + 1

    # -- delete / list ----------------------------------------------------------------

    async def read_whole(self, key: str, limit: int) -> bytes:
        return await joined(self.read(key, 0, limit))

    async def delete(self, key: str) -> None:
        key = checked_key(key)
        async with self._connect("delete", write=True) as conn:
            # Object row first: on PostgreSQL it waits for any in-flight chunk insert
            # holding it FOR SHARE, so the chunk delete that follows sees those chunks.
            await conn.execute(delete(blob_objects).where(blob_objects.c.storage_key == key))
            await conn.execute(delete(blob_chunks).where(blob_chunks.c.storage_key == key))

    async def list_keys(self) -> AsyncIterator[str]:
        async for key in self._object_keys():
            if is_storage_key(key):
                yield key

    async def list_strangers(self) -> AsyncIterator[str]:
        """Object rows whose key the service could not have made (only another hand writes those).

        Chunk rows without an object row are not looked for: a delete removes both together.
        """
        async for key in self._object_keys():
            if not is_storage_key(key):
                yield f"drive_blob_objects/{key}"

    async def _object_keys(self) -> AsyncIterator[str]:
        after: str | None = None
        while True:
            query = select(blob_objects.c.storage_key).order_by(blob_objects.c.storage_key).limit(_LIST_PAGE)
            if after is not None:
                query = query.where(blob_objects.c.storage_key > after)
            async with self._connect("list") as conn:
                keys: list[str] = list((await conn.execute(query)).scalars())
            for key in keys:
                yield key
            if len(keys) < _LIST_PAGE:
                return
            after = keys[-1]


__all__ = ["DatabaseBlobRepository", "blob_chunks", "blob_objects", "blob_schema", "fitting_chunk_size"]
