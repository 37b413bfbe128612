"""Group commit for SQLite: one thread owns the write connection and batches concurrent writes.

SQLite allows one writer at a time and every durable commit costs an fsync. Writes that
arrive while a batch is being committed wait in a queue; the writer thread then runs all
of them in one transaction, each inside its own savepoint (one job's failure rolls back
only that job), and commits once: many requests, one fsync.

A batch whose jobs are all ``durable=False`` commits with ``synchronous=NORMAL``: its
changes are visible at once to every connection and become durable with the next full
commit (WAL frames are synced in file order). The commit protocol only asks that of
intents and lease renewals, whose loss in a crash leaves bytes the orphan sweep removes.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from drive.domain.errors import StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]

# Enough to empty the queue under any realistic load, small enough to keep one commit short.
MAX_BATCH = 256


@dataclass(slots=True)
class _Pending:
    job: Job
    durable: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any] = field(repr=False)


class SqliteWriter:
    """Runs write jobs (``fn(connection) -> result``) on one connection in a thread of its own."""

    def __init__(self, database: str, *, busy_timeout_ms: int = 30_000) -> None:
        self._database = database
        self._busy_timeout_ms = busy_timeout_ms
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    async def open(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="drive-sqlite-writer", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._started.wait)
        if self._start_error is not None:
            self._thread = None
            reason = type(self._start_error).__name__
            raise StorageUnavailable(f"metadata store cannot be opened for writing ({reason})")

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(thread.join)

    async def run(self, job: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``job`` in the next batch; its exception, if any, is raised here."""
        if self._thread is None:
            raise StorageUnavailable("metadata store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Pending(job, durable, loop, future))
        return await future

    # -- the writer thread -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._database, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to open(), which raises it as unavailable
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        synchronous = "FULL"
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                wanted = "FULL" if any(p.durable for p in batch) else "NORMAL"
                if wanted != synchronous:
                    conn.execute(f"PRAGMA synchronous={wanted}")
                    synchronous = wanted
                self._commit(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        results: list[tuple[_Pending, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for number, pending in enumerate(batch):
                    savepoint = f"job{number}"
                    conn.execute(f"SAVEPOINT {savepoint}")
                    try:
                        result = pending.job(conn)
                    except Exception as exc:
                        conn.execute(f"ROLLBACK TO {savepoint}")
                        conn.execute(f"RELEASE {savepoint}")
                        results.append((pending, None, _translated(exc)))
                    else:
                        conn.execute(f"RELEASE {savepoint}")
                        results.append((pending, result, None))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            # Nothing of this batch is committed: every job fails, and may be retried.
            log.warning("metadata batch of %d failed: %s", len(batch), type(exc).__name__)
            results = [(pending, None, _translated(exc)) for pending in batch]
        # One wake-up of each waiting loop per batch (each call_soon_threadsafe writes to the
        # loop's wake-up pipe), not one per job.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        for pending, result, error in results:
            by_loop.setdefault(pending.loop, []).append((pending.future, result, error))
        for loop, outcomes in by_loop.items():
            loop.call_soon_threadsafe(_settle_all, outcomes)


def _translated(exc: Exception) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        # SQLite's own codes are safe to name (no paths, no values); "full" tells operators what to free.
        reason = "disk full" if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL else type(exc).__name__
        return StorageUnavailable(f"metadata store failed ({reason})")
    return exc


def _settle_all(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():  # the waiter was cancelled; the job's outcome stands in the database
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
