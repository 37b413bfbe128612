"""Throwaway PostgreSQL databases for integration tests.

Each test database is created on the local server (``127.0.0.1:5432``, user ``postgres``,
trust auth; override with ``DRIVE_TEST_POSTGRES_URL``) under a unique ``drive_test_<hex>``
name and dropped afterwards. Nothing relies on a database that already exists.

If the server is down: under CI (``CI`` set) the test run fails at once, never skips;
locally one attempt is made to start the Debian cluster with ``pg_ctlcluster``.

Use the fixtures (``postgres_url_factory`` session-wide, ``postgres_url`` per test) by
importing them into a conftest or test module, or listing this module in a root
``pytest_plugins``; or call ``create_database()`` / ``drop_database(url)`` directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.integration.servers.throwaway import ensure_reachable, throwaway_databases

SERVER_URL = os.environ.get("DRIVE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_NAME = re.compile(r"drive_test_[0-9a-f]{32}")
_START_WAIT = 20.0

T = TypeVar("T")


def _run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a private loop in a thread: works inside or outside a running loop."""

    async def main() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def _admin_kwargs() -> dict[str, Any]:
    url = make_url(SERVER_URL)
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password,
        "database": url.database or "postgres",
    }


def _database_url(name: str) -> str:
    url = make_url(SERVER_URL).set(drivername="postgresql", database=name)
    return url.render_as_string(hide_password=False)


async def _execute(sql: str, *, timeout: float = 10.0) -> None:
    conn = await asyncpg.connect(**_admin_kwargs(), timeout=timeout)
    try:
        await conn.execute(sql)  # asyncpg runs this outside a transaction, as CREATE/DROP DATABASE need
    finally:
        await conn.close()


def server_available(timeout: float = 3.0) -> bool:
    async def probe() -> bool:
        try:
            await _execute("SELECT 1", timeout=timeout)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True

    return _run(probe)


def _start_local_cluster() -> None:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").is_dir() else []
    for version in versions:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False,
            capture_output=True,
            timeout=60,
        )


_checked = False


def ensure_server() -> None:
    """Make sure the server answers; fail (never skip) if it does not."""
    global _checked
    if _checked:
        return
    ensure_reachable("PostgreSQL", SERVER_URL, server_available, _start_local_cluster, _START_WAIT, ".ci/run starts it")
    _checked = True


def create_database() -> str:
    """Create an empty database with a unique name; return its plain ``postgresql://`` URL."""
    ensure_server()
    name = f"drive_test_{uuid.uuid4().hex}"
    _run(lambda: _execute(f'CREATE DATABASE "{name}"'))
    return _database_url(name)


def drop_database(url: str) -> None:
    """Drop a database made by ``create_database`` (open connections are terminated). Missing is fine."""
    name = make_url(url).database or ""
    if not _NAME.fullmatch(name):  # only ever drop what this module created
        raise ValueError(f"not a test database: {name!r}")
    _run(lambda: _execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url_factory() -> Iterator[Callable[[], str]]:
    """A callable returning the URL of a fresh, empty database on each call; all dropped at session end."""
    ensure_server()
    yield from throwaway_databases(create_database, drop_database)


@pytest.fixture
def postgres_url(postgres_url_factory: Callable[[], str]) -> str:
    """The URL of a fresh, empty database for one test."""
    return postgres_url_factory()


__all__ = [
    "SERVER_URL",
    "create_database",
    "drop_database",
    "ensure_server",
    "postgres_url",
    "postgres_url_factory",
    "server_available",
]
