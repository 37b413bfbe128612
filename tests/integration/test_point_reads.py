"""The driver-level point read behind ``SqlMetadataRepository.get`` (sql_point_reads.py).

It must see every commit made before it, by this repository or another process's, never
a stale or deleted record, and fail as ``StorageUnavailable`` like the engine path.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drive.adapters import sql_point_reads as point_reads
from drive.adapters.sql_engine import async_url
from drive.adapters.sql_metadata import SqlMetadataRepository
from drive.adapters.sql_point_reads import PostgresPointReads, SqlitePointReads, point_reads_for
from drive.domain.errors import StorageUnavailable
from drive.domain.freshness import read_asked_at
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

        def busy_inline(blob_id: str) -> BlobRecord | None:
            # As SQLite answers a reader while a crashed writer's WAL index is recovered:
            # the inline read, with no busy timeout, must give up at once, not block the loop.
            threads.append((True, threading.get_ident()))
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorcode = sqlite3.SQLITE_BUSY_RECOVERY
            raise exc

        def waiting_fetch(blob_id: str) -> tuple[object, ...] | None:
            threads.append((False, threading.get_ident()))
            return fetch(blob_id)

        monkeypatch.setattr(reader, "_inline", busy_inline)
        monkeypatch.setattr(reader, "_fetch", waiting_fetch)
        assert await repo.get("busy") == record
        assert [inline for inline, _ in threads] == [True, False]
        assert threads[0][1] == threading.get_ident() != threads[1][1]
    finally:
        await repo.close()


async def _stored_and_traced(repo: SqlMetadataRepository, blob_id: str) -> tuple[BlobRecord, list[str]]:
    """A blob stored, and the SQL the event loop thread's SQLite connection runs from then on."""
    record = await store(repo, blob_id)
    reader = repo._point_reads
    assert isinstance(reader, SqlitePointReads)
    seen: list[str] = []
    reader._reader(inline=True).conn.set_trace_callback(seen.append)
    return record, seen


async def test_sqlite_repeated_read_is_served_without_a_select(tmp_path: Path) -> None:
    repo = await opened(f"sqlite:///{tmp_path / 'metadata.db'}")
    try:
        record, seen = await _stored_and_traced(repo, "kept")
        assert await repo.get("kept") == record
        assert await repo.get("kept") == record
        assert [s.split()[0] for s in seen] == ["PRAGMA", "SELECT", "PRAGMA"]
    finally:
        await repo.close()


_OTHER_PROCESS = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute(sys.argv[2], sys.argv[3:])
"""


def _in_another_process(database: Path, sql: str, *args: str) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", _OTHER_PROCESS, str(database), sql, *args], check=True, timeout=60)


async def test_sqlite_kept_record_gives_way_to_another_process_commit(tmp_path: Path) -> None:
    database = tmp_path / "metadata.db"
    repo = await opened(f"sqlite:///{database}")
    try:
        record = await store(repo, "moved")
        assert await repo.get("moved") == record  # now kept
        # Another server process moves the blob (a new storage key), then deletes it.
        _in_another_process(database, "UPDATE drive_blobs SET storage_key = ? WHERE id = ?", "k2", "moved")
        got = await repo.get("moved")
        assert got is not None
        assert got.storage_key == "k2"
        _in_another_process(database, "DELETE FROM drive_blobs WHERE id = ?", "moved")
        assert await repo.get("moved") is None
    finally:
        await repo.close()


async def test_sqlite_reads_asked_before_the_last_look_share_it_later_ones_look_again(tmp_path: Path) -> None:
    database = tmp_path / "metadata.db"
    repo = await opened(f"sqlite:///{database}")
    try:
        record, seen = await _stored_and_traced(repo, "shared")
        arrived = time.perf_counter()  # requests that arrived together, before anything was looked up
        token = read_asked_at.set(arrived)
        try:
            assert await repo.get("shared") == record  # the first looks at data_version
            _in_another_process(database, "DELETE FROM drive_blobs WHERE id = ?", "shared")
            # Asked for before that look began: the delete completed after it was asked for, so the
            # read may answer as before it (the kept record), without looking again.
            assert await repo.get("shared") == record
            assert [s.split()[0] for s in seen] == ["PRAGMA", "SELECT"]
            read_asked_at.set(time.perf_counter())  # a request that arrived after the delete completed
            assert await repo.get("shared") is None
            assert [s.split()[0] for s in seen] == ["PRAGMA", "SELECT", "PRAGMA", "SELECT"]
        finally:
            read_asked_at.reset(token)
        assert await repo.get("shared") is None  # unset: asked for as it runs
    finally:
        await repo.close()


async def test_sqlite_kept_records_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(point_reads, "CACHED_RECORDS", 2)
    repo = await opened(f"sqlite:///{tmp_path / 'metadata.db'}")
    try:
        records = [await store(repo, f"b/{i}") for i in range(3)]
        reader = repo._point_reads
        assert isinstance(reader, SqlitePointReads)
        for record in records:
            assert await repo.get(record.id) == record
        assert list(reader._reader(inline=True).records) == ["b/1", "b/2"]  # the first read went first
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
