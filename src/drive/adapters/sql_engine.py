"""Async SQLAlchemy engines from the seed's plain URLs, for SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from drive.domain.errors import ConfigurationError

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def async_url(url: str, setting: str = "DATABASE_URL") -> URL:
    """``sqlite:///x.db`` / ``postgresql://...`` as written by operators, with an async driver."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigurationError(f"{setting} is not a valid database URL") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigurationError(f"{setting} must be a sqlite:// or postgresql:// URL")
    return parsed.set(drivername=driver)


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def create_engine(url: str, setting: str = "DATABASE_URL") -> AsyncEngine:
    """An engine tuned for the service: WAL + full sync + busy timeout on SQLite."""
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
        options["connect_args"] = {"timeout": 10, "command_timeout": 30}
    engine = create_async_engine(parsed, **options)
    if is_sqlite(parsed):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
