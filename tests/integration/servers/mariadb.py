"""Throwaway MariaDB/MySQL databases for integration tests.

Each test database is created on the local server (``127.0.0.1:3306``, user ``root``,
empty password; override with ``DRIVE_TEST_MARIADB_URL``) under a unique
``drive_test_<hex>`` name and dropped afterwards. Nothing relies on a database that
already exists.

If the server is down: under CI (``CI`` set) the test run fails at once, never skips;
locally one attempt is made to start the Debian server.

Use the fixtures (``mariadb_url_factory`` session-wide, ``mariadb_url`` per test) by
importing them into a conftest or test module; or call ``create_database()`` /
``drop_database(url)`` directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import asyncmy
import asyncmy.errors
import pytest
from sqlalchemy.engine import make_url

from tests.integration.servers.throwaway import ensure_reachable, throwaway_databases

SERVER_URL = os.environ.get("DRIVE_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
_NAME = re.compile(r"drive_test_[0-9a-f]{32}")
_START_WAIT = 30.0

T = TypeVar("T")


def _run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a private loop in a thread: works inside or outside a running loop."""

    async def main() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def admin_kwargs(database: str | None = None) -> dict[str, Any]:
    """``asyncmy.connect`` arguments for the test server (and ``database``, if given)."""
    url = make_url(SERVER_URL)
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "root",
        "password": url.password or "",
        "database": database,
        "connect_timeout": 5,
    }


def _database_url(name: str) -> str:
    url = make_url(SERVER_URL).set(database=name)
    return url.render_as_string(hide_password=False)


async def _execute(sql: str) -> None:
    conn = await asyncmy.connect(**admin_kwargs())
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(sql)
    finally:
        conn.close()


def server_available() -> bool:
    async def probe() -> bool:
        try:
            await _execute("SELECT 1")
        except (OSError, asyncmy.errors.MySQLError):
            return False
        return True

    return _run(probe)


def _start_local_server() -> None:
    daemon = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    subprocess.run(
        ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", daemon],
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
    ensure_reachable("MariaDB", SERVER_URL, server_available, _start_local_server, _START_WAIT, ".ci/run starts it")
    _checked = True


def create_database() -> str:
    """Create an empty database with a unique name; return its plain ``mysql://`` URL."""
    ensure_server()
    name = f"drive_test_{uuid.uuid4().hex}"
    _run(lambda: _execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    return _database_url(name)


def drop_database(url: str) -> None:
    """Drop a database made by ``create_database``. Missing is fine."""
    name = make_url(url).database or ""
    if not _NAME.fullmatch(name):  # only ever drop what this module created
        raise ValueError(f"not a test database: {name!r}")
    _run(lambda: _execute(f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture(scope="session")
def mariadb_url_factory() -> Iterator[Callable[[], str]]:
    """A callable returning the URL of a fresh, empty database on each call; all dropped at session end."""
    ensure_server()
    yield from throwaway_databases(create_database, drop_database)


@pytest.fixture
def mariadb_url(mariadb_url_factory: Callable[[], str]) -> str:
    """The URL of a fresh, empty database for one test."""
    return mariadb_url_factory()


__all__ = [
    "SERVER_URL",
    "admin_kwargs",
    "create_database",
    "drop_database",
    "ensure_server",
    "mariadb_url",
    "mariadb_url_factory",
    "server_available",
]
