"""PostgreSQL's hot-path connections (adapters/postgres_connections.py), on a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from drive.adapters.postgres_connections import PostgresConnections

pytestmark = pytest.mark.anyio


class Opened:
    """The connect callable, remembering every connection it made."""

    def __init__(self, url: str) -> None:
        self._dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        self.made: list[Any] = []

    async def __call__(self) -> Any:
        conn = await asyncpg.connect(self._dsn)
        self.made.append(conn)
        return conn


@pytest.fixture
async def opened(postgres_url: str) -> AsyncIterator[Opened]:
    made = Opened(postgres_url)
    yield made
    for conn in made.made:
        conn.terminate()


async def backend_pid(connections: PostgresConnections) -> int:
    async with connections.connection() as conn:
        pid: int = await conn.fetchval("SELECT pg_backend_pid()")
        return pid


async def test_a_connection_is_reused_after_a_clean_use(opened: Opened) -> None:
    connections = PostgresConnections(opened, 4)
    assert await backend_pid(connections) == await backend_pid(connections)
    assert len(opened.made) == 1
    await connections.close()
    assert opened.made[0].is_closed()


async def test_an_error_the_server_answered_leaves_the_connection_in_use(opened: Opened) -> None:
    connections = PostgresConnections(opened, 4)
    with pytest.raises(asyncpg.PostgresError):
        async with connections.connection() as conn:
            await conn.execute("SELECT * FROM no_such_table")
    assert await backend_pid(connections) and len(opened.made) == 1
    await connections.close()


async def test_a_cancelled_query_ends_its_connection(opened: Opened) -> None:
    connections = PostgresConnections(opened, 4)
    first = await backend_pid(connections)

    async def slow() -> None:
        async with connections.connection() as conn:
            await conn.execute("SELECT pg_sleep(5)")

    task = asyncio.ensure_future(slow())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert opened.made[0].is_closed()  # its protocol may be mid-exchange: never handed out again
    assert await backend_pid(connections) != first and len(opened.made) == 2
    await connections.close()


async def test_a_connection_left_in_a_transaction_is_not_reused(opened: Opened) -> None:
    connections = PostgresConnections(opened, 4)
    async with connections.connection() as conn:
        await conn.execute("BEGIN")
    assert opened.made[0].is_closed()
    await backend_pid(connections)
    assert len(opened.made) == 2
    await connections.close()


async def test_no_more_than_size_connections_are_open(opened: Opened) -> None:
    connections = PostgresConnections(opened, 2)
    busy = 0
    most = 0

    async def use() -> None:
        nonlocal busy, most
        async with connections.connection() as conn:
            busy += 1
            most = max(most, busy)
            await conn.execute("SELECT pg_sleep(0.05)")
            busy -= 1

    await asyncio.gather(*(use() for _ in range(6)))
    assert most == 2 and len(opened.made) == 2
    await connections.close()


async def test_expired_connections_end_idle_at_once_and_busy_when_given_back(opened: Opened) -> None:
    connections = PostgresConnections(opened, 4)
    await backend_pid(connections)
    idle = opened.made[0]
    async with connections.connection() as busy:
        assert busy is idle
        connections.expire()
        assert not busy.is_closed()  # its query may still run
        await busy.execute("SELECT 1")
    assert busy.is_closed()
    await backend_pid(connections)
    assert len(opened.made) == 2
    await connections.close()


async def test_a_failed_connect_gives_its_place_back(opened: Opened) -> None:
    failures = 0

    async def refused() -> Any:
        nonlocal failures
        failures += 1
        raise OSError("refused")

    connections = PostgresConnections(refused, 1)
    for _ in range(3):  # with its one place never given back, the second try would wait forever
        with pytest.raises(OSError):
            await asyncio.wait_for(backend_pid(connections), 5)
    assert failures == 3
