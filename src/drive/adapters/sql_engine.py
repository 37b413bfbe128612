"""Async SQLAlchemy engines for SQLite, PostgreSQL and MariaDB/MySQL, and the plumbing the SQL adapters share.

``SqlDatabase`` owns one engine for an adapter: opening it (with retries, then the schema
upgrade), the connections and transactions the queries run in (queued behind one lock per
process on SQLite), and turning driver failures into ``StorageUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import asyncmy.errors
import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState

from drive.domain.errors import ConfigurationError, StorageUnavailable

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    # asyncmy: faster than aiomysql here (point selects and insert-commits) and maintained.
    "mysql": "mysql+asyncmy",
    "mysql+asyncmy": "mysql+asyncmy",
    "mariadb": "mariadb+asyncmy",
    "mariadb+asyncmy": "mariadb+asyncmy",
}
_MYSQL = frozenset({"mysql", "mariadb"})

# Every Drive table on MariaDB/MySQL: InnoDB for transactions; utf8mb4 with a binary
# collation, so text compares exactly as on the other databases.
MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}
# MariaDB/MySQL session settings. A lock wait ends in an error (503) well before a
# client gives up; strict mode refuses what would otherwise be truncated silently; and
# tables are InnoDB or nothing (no silent fallback to an engine without transactions).
MYSQL_LOCK_WAIT_SECONDS = 10
_MYSQL_SQL_MODE = "STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO"


def async_url(url: str, setting: str = "DATABASE_URL") -> URL:
    """``sqlite:///x.db`` / ``postgresql://...`` / ``mysql://...`` as written by operators, with an async driver."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigurationError(f"{setting} is not a valid database URL") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigurationError(f"{setting} must be a sqlite://, postgresql://, mysql:// or mariadb:// URL")
    parsed = parsed.set(drivername=driver)
    if is_mysql(parsed) and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})  # all of Unicode, not MySQL's 3-byte utf8
    return parsed


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def is_mysql(url: URL) -> bool:
    """MariaDB or MySQL (SQLAlchemy names the dialect after the server it finds)."""
    return url.get_backend_name() in _MYSQL


def create_engine(url: str, setting: str = "DATABASE_URL") -> AsyncEngine:
    """An engine tuned for the service: WAL + full sync + busy timeout on SQLite, timeouts on servers."""
    parsed = async_url(url, setting)
    options: dict[str, Any] = {}
    if is_sqlite(parsed):
        database = parsed.database
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": 30}
    else:
        # A server can restart under us; a ping per checkout turns stale connections
        # into fresh ones instead of one failed request each. SQLite needs none.
        options["pool_pre_ping"] = True
        options["pool_size"] = 10
        options["max_overflow"] = 10
        options["pool_timeout"] = 10
        if is_mysql(parsed):
            # The server drops idle connections after wait_timeout; recycle well before.
            options["pool_recycle"] = 3600
            # The pool's rollback on return is done by _rollback_on_return (see there).
            options["pool_reset_on_return"] = None
            options["connect_args"] = {
                "connect_timeout": 10,
                "read_timeout": 30,  # like asyncpg's command_timeout: no query hangs forever
                "init_command": (
                    f"SET SESSION innodb_lock_wait_timeout = {MYSQL_LOCK_WAIT_SECONDS}, "
                    f"SESSION sql_mode = '{_MYSQL_SQL_MODE}'"
                ),
            }
        else:
            options["connect_args"] = {"timeout": 10, "command_timeout": 30}
    engine = create_async_engine(parsed, **options)
    if is_sqlite(parsed):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    if is_mysql(parsed):
        event.listen(engine.sync_engine, "reset", _rollback_on_return(engine.dialect))
    return engine


def _rollback_on_return(dialect: Dialect) -> Callable[[Any, Any, PoolResetState], None]:
    """The pool's rollback of a connection coming back, where a server gone away is no error.

    When MariaDB stops under load, a transaction's own rollback can fail on the dead
    connection without SQLAlchemy invalidating it; the pool then rolls back once more and
    logs that failure at ERROR. A lost connection needs no rollback (the server ended the
    transaction): it stays pooled until the pre-ping on its next checkout replaces it.
    Any other failure is raised as before (the pool logs it and discards the connection).
    """

    def reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
        if state.transaction_was_reset or not state.asyncio_safe:
            return
        try:
            dbapi_connection.rollback()
        except asyncmy.errors.MySQLError as exc:
            if not dialect.is_disconnect(exc, dbapi_connection, None):  # type: ignore[arg-type]
                raise

    return reset


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# Everything the driver stack may raise for a database failure. SQLAlchemy wraps most of
# it, but errors while connecting (refused, timeout, unknown database) can surface raw.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    OSError,  # includes ConnectionError and TimeoutError
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncmy.errors.MySQLError,
)

# Errors that mean "this transaction lost a deadlock" (InnoDB 1213, PostgreSQL 40P01 and
# 40001): it was rolled back whole, so running it again is safe.
_DEADLOCK_CODES = frozenset({1213, "40P01", "40001"})


def is_deadlock(exc: BaseException) -> bool:
    """Whether ``exc`` (raw or wrapped by SQLAlchemy) reports a lost deadlock."""
    original = getattr(exc, "orig", exc)
    code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if code is None and getattr(original, "args", None):
        code = original.args[0]
    return code in _DEADLOCK_CODES


_OPEN_ATTEMPTS = 5

log = logging.getLogger(__name__)


class NewerSchema(StorageUnavailable):
    """The store was migrated by a newer release; retrying will not help."""


class Deadlock(StorageUnavailable):
    """The transaction was chosen as a deadlock victim and rolled back; it may be run again."""


class SqlDatabase:
    """One adapter's engine, opened lazily, with its connections and error translation.

    ``label`` names the store in messages ("metadata store"), ``setting`` the variable its
    URL came from. Messages carry only the exception type: driver messages may hold SQL,
    host or URL.
    """

    def __init__(self, url: str, setting: str, *, label: str) -> None:
        self.setting = setting
        self.label = label
        self._url = url
        # Validate now (ConfigurationError naming the setting); connect only in open().
        parsed = async_url(url, setting)
        self.sqlite = is_sqlite(parsed)
        self.mysql = is_mysql(parsed)
        self._engine: AsyncEngine | None = None
        # SQLite has one writer at a time; queueing writers here beats busy-waiting on its lock.
        self._write_lock = asyncio.Lock() if self.sqlite else None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise StorageUnavailable(f"{self.label} is not open")
        return self._engine

    async def open(self, prepare: Callable[[AsyncEngine], Awaitable[None]] | None = None) -> None:
        """Create the engine, then run ``prepare`` (the schema upgrade) on it, retrying transient failures."""
        if self._engine is None:
            try:
                self._engine = create_engine(self._url, self.setting)
            except OSError as exc:  # e.g. the SQLite file's directory cannot be made
                raise StorageUnavailable(f"{self.setting}: database cannot be opened ({type(exc).__name__})") from None
        if prepare is None:
            return
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                async with self._locked_for_write():
                    await prepare(self._engine)
                return
            except NewerSchema as exc:
                raise StorageUnavailable(f"{self.setting}: {exc.message}") from None
            except StorageUnavailable as exc:
                message = exc.message
            except BACKEND_ERRORS as exc:
                message = f"{self.label} cannot start ({type(exc).__name__})"
            if attempt == _OPEN_ATTEMPTS - 1:
                raise StorageUnavailable(f"{self.setting}: {message}") from None
            log.warning("%s: %s; retrying", self.setting, message)
            await anyio.sleep(0.2 * (attempt + 1))

    async def close(self) -> None:
        if self._engine is not None:
            # dispose() keeps the engine usable, so open() after close() works again.
            with contextlib.suppress(*BACKEND_ERRORS):
                await self._engine.dispose()

    @contextlib.asynccontextmanager
    async def read(self, action: str = "read") -> AsyncIterator[AsyncConnection]:
        """A connection outside any explicit transaction."""
        engine = self.engine
        try:
            async with engine.connect() as conn:
                yield conn
        except BACKEND_ERRORS as exc:
            raise self._unavailable(action, exc) from None

    @contextlib.asynccontextmanager
    async def write(self, action: str = "write") -> AsyncIterator[AsyncConnection]:
        """A transaction, committed when the block ends.

        ``IntegrityError`` passes through unchanged: it is an answer (the row exists), not
        an outage, and the callers decide what it means.
        """
        engine = self.engine
        async with self._locked_for_write():
            try:
                async with engine.begin() as conn:
                    yield conn
            except IntegrityError:
                raise
            except BACKEND_ERRORS as exc:
                if is_deadlock(exc):
                    raise Deadlock(f"{self.label} cannot {action} (deadlock)") from None
                raise self._unavailable(action, exc) from None

    def _locked_for_write(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self._write_lock or contextlib.nullcontext()

    def _unavailable(self, action: str, exc: BaseException) -> StorageUnavailable:
        return StorageUnavailable(f"{self.label} cannot {action} ({type(exc).__name__})")
