"""What MariaDB/MySQL does differently, checked on the real server.

* ``drive migrate`` from the db backend on MariaDB to fs and back keeps every byte.
* Ids are compared and ordered by their UTF-8 bytes (no case or accent folding), up to
  1024 bytes, in pages and prefix queries.
* A duplicate id is the race outcome (``created=False``), a lock wait past
  ``innodb_lock_wait_timeout`` and a lost deadlock are ``StorageUnavailable`` (503), and a
  commit that loses a deadlock is run again.

* Connections the server drops (killed here, as a restart would) are replaced unnoticed.

Not here: restarting MariaDB itself under load. The server is shared by everything on
the machine, so only this test database's connections are killed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import anyio
import asyncmy
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

import drive.adapters.sql_engine as sql_engine
from drive.adapters.sql_engine import Deadlock, SqlDatabase
from drive.adapters.sql_metadata import SqlMetadataRepository
from drive.domain.errors import StorageUnavailable
from drive.domain.model import BlobRecord, PendingKind, PendingOp, utc_now
from tests.integration.cli_helpers import Drive, cli_env, seed, sha256, snapshot
from tests.integration.servers.mariadb import admin_kwargs

MiB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _count(url: str, table: str) -> int:
    async def count() -> int:
        conn = await asyncmy.connect(**admin_kwargs(make_url(url).database))
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(f"SELECT COUNT(*) FROM {table}")
                row = await cursor.fetchone()
                return int(row[0])
        finally:
            conn.close()

    return anyio.run(count)


# -- drive migrate --------------------------------------------------------------------------


def test_migrate_db_on_mariadb_to_fs_and_back_keeps_every_byte(tmp_path: Path, mariadb_url: str) -> None:
    env = cli_env(tmp_path, DATABASE_URL=mariadb_url, DRIVE_BACKENDS="fs,db", STORAGE="db")
    drive = Drive(env, tmp_path)
    blobs = {f"m/{i:02d}": os.urandom(i * 97_000) for i in range(16)}  # 0 B to 1.4 MiB: across chunk rows
    blobs |= {
        "exactly one row": os.urandom(MiB),
        "ünï cödé/☃": bytes(range(256)) * 1000,  # every byte value, escaped on the wire
        "big": os.urandom(5 * MiB + 3),
        "x" * 1024: b"longest id",
    }
    seed(env, blobs)
    want = {blob_id: sha256(data) for blob_id, data in blobs.items()}
    start = snapshot(env)
    assert {r.backend for r in start.records.values()} == {"db"}
    assert start.hashes == want

    to_fs = drive("migrate", "--from", "db", "--to", "fs", "--json").ok().json()
    assert (to_fs["moved"], to_fs["bytes_moved"], to_fs["complete"]) == (
        len(blobs),
        sum(map(len, blobs.values())),
        True,
    )
    middle = snapshot(env)
    assert {r.backend for r in middle.records.values()} == {"fs"}
    assert middle.hashes == want
    assert _count(mariadb_url, "drive_blob_chunks") == _count(mariadb_url, "drive_blob_objects") == 0

    back = drive("migrate", "--from", "fs", "--to", "db", "--concurrency", "4", "--json").ok().json()
    assert (back["moved"], back["complete"]) == (len(blobs), True)
    end = snapshot(env)
    assert {r.backend for r in end.records.values()} == {"db"}
    assert end.hashes == want
    assert end.keys == {"fs": set(), "db": {r.storage_key for r in end.records.values()}}
    assert _count(mariadb_url, "drive_pending") == 0
    assert drive("get", "big").ok().stdout == blobs["big"]
    assert drive("fsck", "--json").ok().json()["problems"] == 0


# -- ids in byte order ------------------------------------------------------------------------


@pytest.fixture
async def metadata(mariadb_url: str) -> AsyncIterator[SqlMetadataRepository]:
    repository = SqlMetadataRepository(mariadb_url)
    await repository.open()
    yield repository
    await repository.close()


async def _commit(metadata: SqlMetadataRepository, blob_id: str) -> tuple[BlobRecord, bool]:
    key = uuid.uuid4().hex
    await metadata.begin(
        PendingOp(
            storage_key=key,
            backend="fs",
            blob_id=blob_id,
            kind=PendingKind.STORE,
            lease_until=utc_now() + timedelta(minutes=5),
        )
    )
    record = BlobRecord(id=blob_id, size=1, sha256="0" * 64, created_at=utc_now(), backend="fs", storage_key=key)
    outcome = await metadata.commit(record)
    return outcome.record, outcome.created


IDS = ["a", "A", "b", "café", "cafe", "CAFE", "café/x", "cafë", "☃", "𝄞", "z" * 1024, "é" * 512, "a%", "a_b", "a\\"]


@pytest.mark.anyio
async def test_ids_are_distinct_and_ordered_by_utf8_bytes(metadata: SqlMetadataRepository) -> None:
    for blob_id in IDS:
        assert (await _commit(metadata, blob_id))[1], blob_id  # none collides with another by case or accent
    by_bytes = sorted(IDS, key=lambda i: i.encode())
    assert [r.id for r in await metadata.page("", None, 100)] == by_bytes
    # Pages continue exactly after the cursor.
    first = await metadata.page("", None, 5)
    rest = await metadata.page("", first[-1].id, 100)
    assert [r.id for r in first + rest] == by_bytes
    for prefix in ["caf", "café", "CAF", "a", "a%", "a_", "é", "\U0001d11e", "zzz", "nothing"]:
        expected = [i for i in by_bytes if i.startswith(prefix)]
        assert [r.id for r in await metadata.page(prefix, None, 100)] == expected, prefix
    for blob_id in IDS:
        found = await metadata.get(blob_id)
        assert found is not None and found.id == blob_id
    assert await metadata.get("Café") is None


@pytest.mark.anyio
async def test_a_duplicate_id_is_the_race_outcome(metadata: SqlMetadataRepository) -> None:
    winner, created = await _commit(metadata, "raced")
    assert created
    existing, created_again = await _commit(metadata, "raced")
    assert not created_again
    assert existing.storage_key == winner.storage_key  # the first commit's record, not ours
    assert existing == await metadata.get("raced")


# -- lock waits and deadlocks -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_lock_wait_past_its_timeout_is_unavailable(mariadb_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_engine, "MYSQL_LOCK_WAIT_SECONDS", 1)
    metadata = SqlMetadataRepository(mariadb_url)
    await metadata.open()
    try:
        key = uuid.uuid4().hex
        op = PendingOp(key, "fs", "locked", PendingKind.STORE, utc_now() + timedelta(minutes=5))
        await metadata.begin(op)
        other = SqlDatabase(mariadb_url, "DATABASE_URL", label="other")
        await other.open()
        try:
            async with other.write() as holder:
                await holder.execute(text("SELECT * FROM drive_pending WHERE storage_key = :k FOR UPDATE"), {"k": key})
                with anyio.fail_after(8), pytest.raises(StorageUnavailable, match="metadata store cannot write"):
                    await metadata.renew(key, utc_now() + timedelta(minutes=10))
        finally:
            await other.close()
        assert await metadata.renew(key, utc_now() + timedelta(minutes=10))  # the lock is gone: works again
    finally:
        await metadata.close()


@pytest.mark.anyio
async def test_a_deadlock_victim_gets_deadlock_and_the_other_goes_on(mariadb_url: str) -> None:
    database = SqlDatabase(mariadb_url, "DATABASE_URL", label="test store")
    await database.open()
    try:
        async with database.write() as conn:
            await conn.execute(text("CREATE TABLE pair (n INT PRIMARY KEY, v INT) ENGINE=InnoDB"))
        async with database.write() as conn:
            await conn.execute(text("INSERT INTO pair VALUES (1, 0), (2, 0)"))
        both_locked = anyio.Event()
        holding: list[int] = []
        outcomes: dict[str, str] = {}

        async def cross(name: str, first: int, second: int) -> None:
            try:
                async with database.write() as conn:
                    await conn.execute(text("UPDATE pair SET v = v + 1 WHERE n = :n"), {"n": first})
                    holding.append(first)
                    if len(holding) == 2:
                        both_locked.set()
                    await both_locked.wait()
                    await conn.execute(text("UPDATE pair SET v = v + 1 WHERE n = :n"), {"n": second})
                outcomes[name] = "committed"
            except Deadlock:
                outcomes[name] = "deadlock"

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(cross, "one", 1, 2)
                tasks.start_soon(cross, "two", 2, 1)
        assert sorted(outcomes.values()) == ["committed", "deadlock"]
        assert issubclass(Deadlock, StorageUnavailable)  # answered 503 where not retried
    finally:
        await database.close()


@pytest.mark.anyio
async def test_a_commit_that_loses_a_deadlock_runs_again(
    metadata: SqlMetadataRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    real: Callable[[BlobRecord], object] = metadata._commit_once
    calls: list[str] = []

    async def loses_once(record: BlobRecord) -> object:
        calls.append(record.id)
        if len(calls) == 1:
            raise Deadlock("metadata store cannot write (deadlock)")
        return await real(record)  # type: ignore[misc]

    monkeypatch.setattr(metadata, "_commit_once", loses_once)
    record, created = await _commit(metadata, "retried")
    assert created and record.id == "retried" and calls == ["retried", "retried"]
    stored = await metadata.get("retried")
    assert stored is not None and stored.storage_key == record.storage_key


# -- connections the server drops (as a restart does, without restarting the shared server) --


async def _kill_connections_to(url: str, *, sparing: int | None = None) -> int:
    name = make_url(url).database
    conn = await asyncmy.connect(**admin_kwargs())
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT id FROM information_schema.processlist WHERE db = %s", (name,))
            ids = [row[0] for row in await cursor.fetchall() if row[0] != sparing]
            for connection_id in ids:
                await cursor.execute(f"KILL CONNECTION {int(connection_id)}")
            return len(ids)
    finally:
        conn.close()


@pytest.mark.anyio
async def test_connections_dropped_by_the_server_are_replaced(
    metadata: SqlMetadataRepository, mariadb_url: str
) -> None:
    await _commit(metadata, "before")
    assert await _kill_connections_to(mariadb_url) >= 1
    # The pool pings each connection it hands out: the dead ones are replaced, no call fails.
    found = await metadata.get("before")
    assert found is not None and found.id == "before"
    assert (await _commit(metadata, "after"))[1]
    assert [r.id for r in await metadata.page("", None, 10)] == ["after", "before"]


@pytest.mark.anyio
async def test_a_connection_dropped_mid_statement_is_unavailable_not_an_error(
    metadata: SqlMetadataRepository, mariadb_url: str
) -> None:
    key = uuid.uuid4().hex
    await metadata.begin(PendingOp(key, "fs", "in flight", PendingKind.STORE, utc_now() + timedelta(minutes=5)))
    holder = await asyncmy.connect(**admin_kwargs(make_url(mariadb_url).database))
    try:
        async with holder.cursor() as cursor:
            await cursor.execute("SELECT CONNECTION_ID()")
            holder_id = (await cursor.fetchone())[0]
            await cursor.execute("BEGIN")
            await cursor.execute("SELECT * FROM drive_pending WHERE storage_key = %s FOR UPDATE", (key,))
        outcome: list[BaseException | bool] = []

        async def renew() -> None:
            try:
                outcome.append(await metadata.renew(key, utc_now() + timedelta(minutes=10)))
            except Exception as exc:
                outcome.append(exc)

        with anyio.fail_after(8):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(renew)
                await anyio.sleep(1)  # the renew now waits on the row lock
                assert await _kill_connections_to(mariadb_url, sparing=holder_id) >= 1
        assert len(outcome) == 1 and isinstance(outcome[0], StorageUnavailable), outcome
    finally:
        holder.close()
    assert await metadata.renew(key, utc_now() + timedelta(minutes=10))  # and then it works again
