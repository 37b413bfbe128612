"""Point reads of one committed record by id, without SQLAlchemy: the hot path of every GET.

Through SQLAlchemy's async layer a lookup by primary key cost about 0.5 ms of event-loop
time (statement construction and caching, result set-up, a pooled connection checkout,
aiosqlite's worker-thread hop and its wake-ups); the query itself takes about 10 µs.

- SQLite: a plain ``sqlite3`` connection per thread, queried inline on the event loop's
  thread (about 12 µs, against 110 µs for the cheapest thread hop, measured). In WAL mode
  readers never wait for the writer, so the inline read does not block; for the rare case
  that it would (a checkpoint restart, recovery of a crashed writer's WAL index) the
  inline connection has no busy timeout and the read is retried in a worker thread that
  waits as the engine's connections do.
- PostgreSQL: asyncpg connections of its own, kept in a free list instead of asyncpg's pool
  (postgres_connections.py: the pool cost three times the query); asyncpg prepares the
  statement once per connection and reuses it. A store's intent and commit share them
  (postgres_store_writes.py).

Each read is its own transaction on a connection that sees every commit made before it
started, in this process or any other, so a record is never stale.

On SQLite the inline connection also keeps the records it read (``_Reader``), valid only
while ``PRAGMA data_version`` is unchanged: SQLite changes that number on this connection when
any other connection, of this process or another, commits to the database. Each read asks for
it first (about 2 µs, against 5 µs for the ``SELECT`` and 3 µs for making the record); a
different number empties the cache before the lookup. A record is thus served from the cache
only when no commit of any writer has happened since it was read from the table: the same
answer the ``SELECT`` would give. A read that says when it was asked for (domain/freshness.py)
skips the question if the last one began after that: requests that arrived together share it.
PostgreSQL has no such cheap number, so its reads go to the server every time.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio.to_thread
from sqlalchemy.engine import URL

from drive.adapters.postgres_connections import PostgresConnections
from drive.adapters.record_rows import RECORD_COLUMNS, record_from_row
from drive.domain.errors import StorageUnavailable
from drive.domain.freshness import read_asked_at
from drive.domain.model import BlobRecord

T = TypeVar("T")

_SQLITE_GET = f"SELECT {RECORD_COLUMNS} FROM drive_blobs WHERE id = ?"  # noqa: S608 - constant text
_POSTGRES_GET = f"SELECT {RECORD_COLUMNS} FROM drive_blobs WHERE id = $1"  # noqa: S608 - constant text
# As the engine's SQLite connections (sql_engine.py) and asyncpg connect arguments.
_SQLITE_BUSY_SECONDS = 30.0
_POSTGRES_CONNECT_SECONDS = 10.0
_POSTGRES_COMMAND_SECONDS = 30.0
_POSTGRES_POOL_SIZE = 10
# The inline cache: records kept, and the largest chunk-digest list worth keeping (32 bytes
# a MiB of blob: a record of a blob over 32 MiB is read from the table each time).
CACHED_RECORDS = 4096
_CACHED_DIGESTS_MAX = 1024


class PointReads(Protocol):
    async def get(self, blob_id: str) -> BlobRecord | None: ...

    async def close(self) -> None: ...


def point_reads_for(url: URL) -> PointReads | None:
    """The fast reader for this metadata URL, or None where only the engine will do."""
    if url.get_backend_name() == "sqlite":
        database = url.database
        # An in-memory database exists only inside the engine's own connection.
        if not database or database == ":memory:" or database.startswith("file:") or url.query:
            return None
        return SqlitePointReads(database)
    if url.get_backend_name() == "postgresql":
        return PostgresPointReads(url)
    return None


def _failed(exc: BaseException) -> StorageUnavailable:
    return StorageUnavailable(f"metadata store failed ({type(exc).__name__})")


def _unreachable(exc: OSError) -> StorageUnavailable:
    return StorageUnavailable(f"metadata store unreachable ({exc.strerror or type(exc).__name__})")


class _Reader:
    """A thread's connection; the event loop thread's also keeps the records it read (see above)."""

    __slots__ = ("conn", "looked_at", "records", "version")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.version: object = None  # data_version when ``records`` were read
        self.looked_at = -math.inf  # perf_counter() as the last look at data_version began
        self.records: dict[str, BlobRecord] = {}

    def fetch(self, blob_id: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(_SQLITE_GET, (blob_id,)).fetchone()
        return row

    def cached(self, blob_id: str) -> BlobRecord | None:
        asked_at = read_asked_at.get()
        if asked_at is None or asked_at > self.looked_at:
            # The last look began before this read was asked for: look again (domain/freshness.py).
            began = time.perf_counter()
            version = self.conn.execute(_DATA_VERSION).fetchone()[0]
            if version != self.version:  # a commit since: whatever is kept may be stale
                self.records.clear()
                self.version = version
            self.looked_at = began  # only a look that succeeded counts (a busy one raised above)
        record = self.records.get(blob_id)
        if record is not None:
            return record
        row = self.fetch(blob_id)
        if row is None:
            return None
        record = record_from_row(row)
        if record.chunk_digests is None or len(record.chunk_digests) <= _CACHED_DIGESTS_MAX:
            if len(self.records) >= CACHED_RECORDS:
                del self.records[next(iter(self.records))]  # the first kept goes first
            self.records[blob_id] = record
        return record


_DATA_VERSION = "PRAGMA data_version"


class SqlitePointReads:
    def __init__(self, path: str) -> None:
        # mode=rw: never create an empty database where the real one is missing.
        self._uri = Path(path).absolute().as_uri() + "?mode=rw"
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Bumped by close(): a thread's connection from before is closed, so it opens
        # another (as the engine's pool does after dispose()).
        self._generation = 0

    def _reader(self, *, inline: bool) -> _Reader:
        held: tuple[int, _Reader] | None = getattr(self._local, "held", None)
        if held is not None and held[0] == self._generation:
            return held[1]
        conn = sqlite3.connect(
            self._uri,
            uri=True,
            isolation_level=None,  # autocommit: each read sees the latest commit
            check_same_thread=False,  # closed from whichever thread calls close()
            timeout=0 if inline else _SQLITE_BUSY_SECONDS,
        )
        reader = _Reader(conn)
        with self._lock:
            self._opened.append(conn)
            self._local.held = (self._generation, reader)
        return reader

    def _inline(self, blob_id: str) -> BlobRecord | None:
        return self._reader(inline=True).cached(blob_id)

    def _fetch(self, blob_id: str) -> tuple[Any, ...] | None:
        return self._reader(inline=False).fetch(blob_id)

    async def get(self, blob_id: str) -> BlobRecord | None:
        try:
            try:
                return self._inline(blob_id)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):  # any extended code
                    raise
                row = await anyio.to_thread.run_sync(self._fetch, blob_id)
        except sqlite3.Error as exc:
            raise _failed(exc) from None
        except OSError as exc:
            raise _unreachable(exc) from None
        return None if row is None else record_from_row(row)

    async def close(self) -> None:
        with self._lock:
            self._generation += 1
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()


def _always() -> bool:
    return True


class PostgresPointReads:
    def __init__(self, url: URL) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        # Also a store's writes' connections (postgres_store_writes.py).
        self.connections = PostgresConnections(self._connect, _POSTGRES_POOL_SIZE)

    async def _connect(self) -> Any:
        import asyncpg

        return await asyncpg.connect(
            self._dsn,
            timeout=_POSTGRES_CONNECT_SECONDS,
            command_timeout=_POSTGRES_COMMAND_SECONDS,
            # For the intents written here: their commits skip the WAL flush (a commit turns it
            # back on for itself). Reads are unaffected.
            server_settings={"synchronous_commit": "off"},
        )

    async def get(self, blob_id: str) -> BlobRecord | None:
        row = await self.on_connection(lambda conn: conn.fetchrow(_POSTGRES_GET, blob_id))
        return None if row is None else record_from_row(row)

    async def on_connection(self, work: Callable[[Any], Awaitable[T]], repeatable: Callable[[], bool] = _always) -> T:
        """``work(conn)`` on one of the connections, its failures as ``StorageUnavailable``.

        A connection the server dropped (a restart, an idle timeout) turns into a fresh one and
        the work is tried once more, if ``repeatable()`` (a read always is; postgres_store_writes.py
        says when a write is). The list's other connections are likely gone too: all are expired
        before the retry.
        """
        import asyncpg

        lost = (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, asyncpg.InternalClientError)
        for attempt in (1, 2):
            try:
                async with self.connections.connection() as conn:
                    return await work(conn)
            except (*lost, ConnectionError) as exc:
                if attempt == 2 or not repeatable():
                    raise _failed(exc) from None
                self.connections.expire()
            except (asyncpg.PostgresError, TimeoutError) as exc:
                raise _failed(exc) from None
            except OSError as exc:
                raise _unreachable(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self.connections.close()
