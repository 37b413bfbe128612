"""The driver-level point read behind ``SqlMetadataRepository.get`` (sql_point_reads.py).

It must see every commit made before it, by this repository or another process's, never
a stale or deleted record, and fail as ``StorageUnavailable`` like the engine path.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drive.adapters.sql_engine import async_url
from drive.adapters.sql_metadata import SqlMetadataRepository
from drive.adapters.sql_point_reads import PostgresPointReads, SqlitePointReads, point_reads_for
from drive.domain.errors import StorageUnavailable
from drive.domain.model import BlobRecord, PendingKind, PendingOp
from drive.domain.storage_keys import new_storage_key

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path, postgres_url_factory: Callable[[], str]) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    return postgres_url_factory()


async def opened(url: str) -> SqlMetadataRepository:
    repo = SqlMetadataRepository(url)
    await repo.open()
    return repo


@pytest.fixture
async def pair(url: str) -> AsyncIterator[tuple[SqlMetadataRepository, SqlMetadataRepository]]:
    """Two repositories on one store, as two server processes would have."""
    a, b = await opened(url), await opened(url)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def store(repo: SqlMetadataRepository, blob_id: str) -> BlobRecord:
    key = new_storage_key()
    lease = datetime.now(UTC) + timedelta(seconds=60)
    await repo.begin(PendingOp(key, "fs", blob_id, PendingKind.STORE, lease))
    record = BlobRecord(blob_id, 1024, "a" * 64, datetime(2026, 11, 26, 5, 0, 0, tzinfo=UTC), "fs", key)
    outcome = await repo.commit(record)
    assert outcome.created
    return record


def test_fast_reader_chosen_for_file_sqlite_and_postgresql(url: str) -> None:
    reader = point_reads_for(async_url(url))
    assert isinstance(reader, SqlitePointReads if url.startswith("sqlite") else PostgresPointReads)
    assert point_reads_for(async_url("sqlite:///:memory:")) is None
    assert point_reads_for(async_url("mysql://root@127.0.0.1/test")) is None


async def test_reads_see_other_writers_commits_and_deletes_at_once(
    pair: tuple[SqlMetadataRepository, SqlMetadataRepository],
) -> None:
    a, b = pair
    assert await b.get("x/1") is None
    record = await store(a, "x/1")
    assert await b.get("x/1") == record  # committed by the other process: seen by the very next read
    assert await a.get("x/1") == record
    assert await a.remove("x/1", datetime.now(UTC) + timedelta(seconds=60)) == record
    assert await b.get("x/1") is None  # never a stale record after a delete
    again = await store(a, "x/1")
    assert again.storage_key != record.storage_key
    assert await b.get("x/1") == again


async def test_ids_are_exact_keys(pair: tuple[SqlMetadataRepository, SqlMetadataRepository]) -> None:
    a, _ = pair
    record = await store(a, "dir/Name with ünïcode 'quotes' %_")
    assert await a.get("dir/Name with ünïcode 'quotes' %_") == record
    assert await a.get("dir/name with ünïcode 'quotes' %_") is None
    assert await a.get("dir/Name with ünïcode 'quotes' __") is None


async def test_sqlite_busy_inline_read_is_retried_in_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = await opened(f"sqlite:///{tmp_path / 'metadata.db'}")
    try:
        record = await store(repo, "busy")
        reader = repo._point_reads
        assert isinstance(reader, SqlitePointReads)
        fetch = reader._fetch
        threads: list[tuple[bool, int]] = []

        def busy_inline(blob_id: str, inline: bool) -> tuple[object, ...] | None:
            # As SQLite answers a reader while a crashed writer's WAL index is recovered:
            # the inline read, with no busy timeout, must give up at once, not block the loop.
            threads.append((inline, threading.get_ident()))
            if inline:
                exc = sqlite3.OperationalError("database is locked")
                exc.sqlite_errorcode = sqlite3.SQLITE_BUSY_RECOVERY
                raise exc
            return fetch(blob_id, inline)

        monkeypatch.setattr(reader, "_fetch", busy_inline)
        assert await repo.get("busy") == record
        assert [inline for inline, _ in threads] == [True, False]
        assert threads[0][1] == threading.get_ident() != threads[1][1]
    finally:
        await repo.close()


async def test_sqlite_missing_database_is_unavailable_and_not_created(tmp_path: Path) -> None:
    reader = SqlitePointReads(str(tmp_path / "gone.db"))
    with pytest.raises(StorageUnavailable):
        await reader.get("x")
    assert not (tmp_path / "gone.db").exists()
    await reader.close()


async def test_sqlite_missing_table_is_unavailable(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    reader = SqlitePointReads(str(tmp_path / "empty.db"))
    with pytest.raises(StorageUnavailable, match="metadata store failed"):
        await reader.get("x")
    await reader.close()


async def test_postgresql_unreachable_is_unavailable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    repo = SqlMetadataRepository(f"postgresql://postgres@127.0.0.1:{port}/none")
    try:
        with pytest.raises(StorageUnavailable):
            await repo.get("x")
    finally:
        await repo.close()


async def test_postgresql_read_survives_dropped_connections(postgres_url: str) -> None:
    import asyncpg

    repo = await opened(postgres_url)
    try:
        record = await store(repo, "dropped")
        assert await repo.get("dropped") == record
        # The server ends every other session (as a restart would): the next read reconnects.
        admin = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert await repo.get("dropped") == record
    finally:
        await repo.close()


async def test_reads_work_again_after_close_as_the_engine_does(url: str) -> None:
    repo = await opened(url)
    try:
        record = await store(repo, "reopened")
        assert await repo.get("reopened") == record
        await repo.close()
        assert await repo.get("reopened") == record  # fresh connections, like a disposed engine's
    finally:
        await repo.close()
