"""Alembic schema migrations: the previous releases' databases upgrade, fresh ones reach head, replicas take turns.

``fixtures/schema_v1_*.sql`` are the schema (and a few rows) exactly as the release before
Alembic created them, dumped from that release's code: four blobs stored on the db
backend in the same database, and one interrupted upload. That release never ran on
MariaDB/MySQL, so those tests cover SQLite and PostgreSQL; the rest run on all three.

``fixtures/schema_r0002_*.sql`` are a database at metadata revision 0002 (chunk digests), the
release before content types, on all three: five blobs stored through that release's
StoreBlob on the db backend (one with 64-byte chunk digests), and one interrupted upload.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from dependency_injector import providers
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url

from drive.adapters.db import DatabaseBlobRepository, blob_schema
from drive.adapters.sql_engine import create_engine
from drive.adapters.sql_metadata import SqlMetadataRepository, schema
from drive.adapters.sql_schema import SchemaMigrations
from drive.adapters.sql_schema.chains import mysql_lock_name
from drive.application.retrieve_blob import RetrieveBlob
from drive.container import Container
from drive.domain.backends import Backends
from drive.domain.errors import BlobConflict, StorageUnavailable
from drive.domain.model import CHUNK_SIZE, BlobRecord, PendingKind, PendingOp, utc_now, whole_seconds
from drive.settings import Settings
from tests.integration.cli_helpers import Drive, cli_env
from tests.integration.live import AUTH, LiveServer, base_env
from tests.integration.servers.postgres import SERVER_URL

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures"

# What the fixtures hold (see the module docstring).
V1_BLOBS = {
    "hello.txt": b"hello, world\n",
    "nested/path/bytes.bin": bytes(range(256)),
    "empty": b"",
    "caf\u00e9 \u2603": "unicode id \u2603".encode(),
}
V1_INTERRUPTED = ("00000000000000000000000000000009", "interrupted")
R0002_BLOBS = {
    "hello.txt": b"hello, world\n",
    "page.html": b"<!doctype html><title>x</title><script>document.title='ran'</script>",
    "nested/path/bytes.bin": bytes(range(256)),
    "empty": b"",
    "caf\u00e9 \u2603": "unicode id \u2603".encode(),
}
R0002_CREATED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # the fixed clock they were stored with
R0002_CHUNKED = "nested/path/bytes.bin"  # stored with 64-byte chunks: four digests
VERSION_TABLES = {"drive_alembic_metadata", "drive_alembic_blobs"}
HEADS = {"metadata": "0004", "blobs": "0001"}  # metadata 0002: chunk digests, 0003: content type, 0004: uploads


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["sqlite", "postgresql"])
def v1_kind(request: pytest.FixtureRequest) -> str:
    """The databases the release before Alembic ran on."""
    return str(request.param)


def fresh_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str = "store") -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    factory: Callable[[], str] = request.getfixturevalue(
        "mariadb_url_factory" if kind == "mariadb" else "postgres_url_factory"
    )
    return factory()


@pytest.fixture
def url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database."""
    return fresh_url(kind, tmp_path, request)


@pytest.fixture
def v1_url(v1_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database of a kind the previous release supported."""
    return fresh_url(v1_kind, tmp_path, request)


async def load_v1(url: str) -> None:
    """Fill an empty database with the previous release's schema and rows."""
    name = "sqlite" if make_url(url).get_backend_name() == "sqlite" else "postgres"
    await load_dump(url, FIXTURES / f"schema_v1_{name}.sql")


async def rows(url: str, sql: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()


async def read_all(repo: DatabaseBlobRepository, key: str) -> bytes:
    return b"".join([chunk async for chunk in repo.read(key)])


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def load_r0002(url: str) -> None:
    """Fill an empty database with the dump of a revision 0002 database, rows and all."""
    parsed = make_url(url)
    kind = parsed.get_backend_name()
    if kind in ("sqlite", "postgresql"):
        name = "sqlite" if kind == "sqlite" else "postgres"
        await load_dump(url, FIXTURES / f"schema_r0002_{name}.sql")
        return
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            # mariadb-dump --compact: one statement per ';' at a line's end; blobs and ids in hex.
            for statement in (FIXTURES / "schema_r0002_mariadb.sql").read_text().split(";\n"):
                lines = [line for line in statement.splitlines() if not line.startswith("--")]
                if "".join(lines).strip():
                    await conn.exec_driver_sql("\n".join(lines))
    finally:
        await engine.dispose()


async def load_dump(url: str, dump: Path) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with sqlite3.connect(parsed.database or "") as conn:
            conn.executescript(dump.read_text())
        return
    server = make_url(SERVER_URL)
    conn = await asyncpg.connect(
        host=server.host, port=server.port, user=server.username, password=server.password, database=parsed.database
    )
    try:
        await conn.execute(dump.read_text())
    finally:
        await conn.close()


# -- the release before content types (metadata revision 0002) -----------------------


async def test_r0002_database_upgrades_with_every_blob_readable(kind: str, url: str, tmp_path: Path) -> None:
    await load_r0002(url)
    assert await SchemaMigrations(url, backends=["db"]).current() == {"metadata": "0002", "blobs": "0001"}
    env = base_env(tmp_path, DATABASE_URL=url, STORAGE="db")
    del env["FS_BASE_PATH"]
    container = Container()
    container.settings.override(providers.Object(Settings.from_env(env)))
    service = container.service()
    await service.open()  # upgrades the metadata store to head, as a server's start does
    try:
        for blob_id, data in R0002_BLOBS.items():
            record = await service.retrieve.stat(blob_id)
            assert (record.size, record.sha256, record.backend, record.created_at) == (
                len(data),
                hashlib.sha256(data).hexdigest(),
                "db",
                R0002_CREATED_AT,
            ), blob_id
            # Served as every blob was until now.
            assert record.content_type == "application/octet-stream", blob_id
            assert await service.retrieve.read_all(record) == data
            # Chunk digests come through untouched: ranges are still verified chunk by chunk.
            assert record.chunked
            assert record.chunk_size == (64 if blob_id == R0002_CHUNKED else CHUNK_SIZE)
            assert len(record.chunk_digests or b"") == (4 * 32 if blob_id == R0002_CHUNKED else 0)
            if data:
                ranged = [chunk async for chunk in service.retrieve.stream_range(record, 1, len(data))]
                assert b"".join(ranged) == data[1:]
        listed = await service.list("", 10, None)
        assert [(r.id, r.content_type) for r in listed.items] == [
            (blob_id, "application/octet-stream") for blob_id in sorted(R0002_BLOBS, key=str.encode)
        ]
        intents = await service.metadata.expired(utc_now() + timedelta(days=365 * 10), 10)
        assert [(op.storage_key, op.blob_id) for op in intents] == [V1_INTERRUPTED]

        # A replay of an old blob is one with the default type; another type is a conflict.
        assert not (await service.store("hello.txt", one(R0002_BLOBS["hello.txt"]))).created
        with pytest.raises(BlobConflict):
            await service.store("hello.txt", one(R0002_BLOBS["hello.txt"]), content_type="text/plain")
        # New blobs keep the type they are stored with.
        stored = await service.store("after", one(b"<p>new</p>"), content_type="text/html; charset=utf-8")
        assert stored.created
        assert (await service.retrieve.stat("after")).content_type == "text/html; charset=utf-8"
    finally:
        await service.close()

    assert await rows(url, "SELECT version_num FROM drive_alembic_metadata") == [("0004",)]
    assert await rows(url, "SELECT version FROM drive_schema") == [(1,)]
    assert await SchemaMigrations(url, backends=["db"]).current() == HEADS

    # A server on the upgraded store answers the old HTML as the bytes it always was, sandboxed.
    server = LiveServer(env).start()
    try:
        with server.client(headers={**AUTH, "Accept": "application/octet-stream"}) as http:
            page = http.get("/v1/blobs/page.html")
            assert page.status_code == 200 and page.content == R0002_BLOBS["page.html"]
            assert page.headers["content-type"] == "application/octet-stream"
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["content-security-policy"] == "sandbox"
    finally:
        server.stop()


async def test_r0002_database_reaches_the_same_schema_as_a_fresh_one(
    kind: str, url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    await SchemaMigrations(url, backends=["db"]).upgrade()
    upgraded = fresh_url(kind, tmp_path, request, name="r0002")
    await load_r0002(upgraded)
    await SchemaMigrations(upgraded, backends=["db"]).upgrade()
    shapes = []
    for target in (url, upgraded):
        engine = create_engine(target)
        try:
            async with engine.connect() as conn:
                shapes.append(await conn.run_sync(_shape))
                assert await conn.run_sync(_model_differences) == []
        finally:
            await engine.dispose()
    assert shapes[0] == shapes[1]


# -- the previous release's database --------------------------------------------------


async def test_v1_database_upgrades_with_every_blob_readable(v1_url: str) -> None:
    url = v1_url
    await load_v1(url)
    assert await SchemaMigrations(url, backends=["db"]).current() == {"metadata": "0001", "blobs": "0001"}
    metadata = SqlMetadataRepository(url)
    blobs = DatabaseBlobRepository(url)
    await metadata.open()
    await blobs.open()
    try:
        retrieve = RetrieveBlob(metadata, Backends({"db": blobs}, default="db"))
        for blob_id, data in V1_BLOBS.items():
            record = await metadata.get(blob_id)
            assert record is not None, blob_id
            assert (record.size, record.sha256, record.backend) == (len(data), hashlib.sha256(data).hexdigest(), "db")
            assert record.content_type == "application/octet-stream"  # what every blob was served as
            assert await read_all(blobs, record.storage_key) == data
            # Stored before chunk digests: read, and ranges verified, against the whole hash.
            assert (record.chunk_size, record.chunk_digests) == (None, None) and not record.chunked
            assert await retrieve.read_all(record) == data
            if data:
                ranged = [chunk async for chunk in retrieve.stream_range(record, 1, len(data))]
                assert b"".join(ranged) == data[1:]
            # What drive fsck --repair does for them: digests from the verified bytes.
            scanned = await retrieve.scan(record, backfill=True)
            assert scanned.intact and scanned.chunk_digests == b""  # at most one chunk each
            assert await metadata.add_chunk_digests(replace(record, chunk_size=CHUNK_SIZE, chunk_digests=b""))
            assert await metadata.get(blob_id) == replace(record, chunk_size=CHUNK_SIZE, chunk_digests=b"")
        intents = await metadata.expired(utc_now() + timedelta(days=365 * 10), 10)
        assert [(op.storage_key, op.blob_id) for op in intents] == [V1_INTERRUPTED]
        assert [r.id for r in await metadata.page("", None, 10)] == sorted(V1_BLOBS)

        # Writes work on the upgraded schema too.
        key = "0123456789abcdef0123456789abcdef"
        assert await blobs.write(key, one(b"after the upgrade")) == 17
        assert await read_all(blobs, key) == b"after the upgrade"
        digests = bytes(range(64))
        await metadata.begin(PendingOp(key, "db", "new", PendingKind.STORE, utc_now() + timedelta(minutes=1)))
        new = BlobRecord("new", 17, "0" * 64, whole_seconds(utc_now()), "db", key, 9, digests)
        assert (await metadata.commit(new)).created
        assert await metadata.get("new") == new  # the new columns round-trip
    finally:
        await metadata.close()
        await blobs.close()

    # Stamped, not re-created: one row per chain, and the old guard is still there for old releases.
    assert await rows(url, "SELECT version_num FROM drive_alembic_metadata") == [("0004",)]
    assert await rows(url, "SELECT version_num FROM drive_alembic_blobs") == [("0001",)]
    assert await rows(url, "SELECT version FROM drive_schema") == [(1,)]
    assert await SchemaMigrations(url, backends=["db"]).current() == HEADS


def _shape(connection: Connection) -> dict[str, Any]:
    """Tables, columns, keys and indexes as the database reports them (Alembic's tables left out)."""
    inspector = inspect(connection)
    shape: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - VERSION_TABLES):
        shape[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("collation")) for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), i["unique"]) for i in inspector.get_indexes(table)),
        }
    return shape


def _only(tables: set[str]) -> Callable[[str | None, str, object], bool]:
    return lambda name, kind, _: kind != "table" or name in tables


def _model_differences(connection: Connection) -> list[Any]:
    differences: list[Any] = []
    for metadata in (schema, blob_schema):
        # Each MetaData holds one chain's tables: compare those only.
        opts = {"compare_type": True, "include_name": _only(set(metadata.tables))}
        differences += compare_metadata(MigrationContext.configure(connection, opts=opts), metadata)
    return differences


async def test_fresh_database_reaches_head_with_the_v1_schema(
    v1_kind: str, v1_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    kind, url = v1_kind, v1_url
    migrations = SchemaMigrations(url, backends=["db"])
    assert await migrations.current() == {"metadata": None, "blobs": None}
    await migrations.upgrade()
    assert await migrations.current() == HEADS == migrations.heads()
    await migrations.upgrade()  # at head: nothing to do
    assert await rows(url, "SELECT version FROM drive_schema") == [(1,)]

    legacy = fresh_url(kind, tmp_path, request, name="legacy")
    await load_v1(legacy)
    await SchemaMigrations(legacy, backends=["db"]).upgrade()  # 0001 stamped, then 0002, 0003 and 0004 run
    shapes = []
    for target in (url, legacy):
        engine = create_engine(target)
        try:
            async with engine.connect() as conn:
                shapes.append(await conn.run_sync(_shape))
                # The tables the queries use are exactly what the revisions built.
                assert await conn.run_sync(_model_differences) == []
        finally:
            await engine.dispose()
    assert shapes[0] == shapes[1]
    assert set(shapes[0]) == {
        "drive_blobs",
        "drive_pending",
        "drive_schema",
        "drive_uploads",
        "drive_blob_objects",
        "drive_blob_chunks",
    }


async def test_blob_tables_may_live_in_their_own_database(
    kind: str, url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    blob_url = fresh_url(kind, tmp_path, request, name="blobs")
    migrations = SchemaMigrations(url, blob_url)
    await migrations.upgrade()
    assert await migrations.current() == HEADS
    assert await rows(url, "SELECT version_num FROM drive_alembic_metadata") == [("0004",)]
    assert await rows(blob_url, "SELECT version_num FROM drive_alembic_blobs") == [("0001",)]
    for found in (url, blob_url):
        engine = create_engine(found)
        try:
            async with engine.connect() as conn:
                tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await engine.dispose()
        if found == url:
            assert "drive_blob_objects" not in tables and "drive_blobs" in tables
        else:
            assert "drive_blobs" not in tables and "drive_blob_objects" in tables


# -- newer than this release ----------------------------------------------------------


async def test_a_store_past_this_release_refuses_to_start(url: str) -> None:
    await SchemaMigrations(url, backends=["db"]).upgrade()
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE drive_alembic_metadata SET version_num = '0099'"))
            await conn.execute(text("UPDATE drive_alembic_blobs SET version_num = '0042'"))
    finally:
        await engine.dispose()
    began = time.monotonic()
    with pytest.raises(StorageUnavailable) as metadata_refused:
        await SqlMetadataRepository(url).open()
    assert time.monotonic() - began < 2  # not retried: retrying cannot help
    assert str(metadata_refused.value) == "DATABASE_URL: holds schema revision 0099, newer than this release"
    with pytest.raises(StorageUnavailable, match="BLOB_DATABASE_URL: holds schema revision 0042, newer"):
        await DatabaseBlobRepository(url, setting="BLOB_DATABASE_URL").open()


async def test_a_pre_alembic_store_past_version_1_refuses_to_start(v1_url: str) -> None:
    url = v1_url
    await load_v1(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE drive_schema SET version = 2"))
    finally:
        await engine.dispose()
    with pytest.raises(StorageUnavailable, match="DATABASE_URL: holds schema version 2, newer than this release"):
        await SqlMetadataRepository(url).open()
    assert await rows(url, "SELECT version FROM drive_schema") == [(2,)]  # left as found, not stamped
    assert "drive_alembic_metadata" not in await _tables(url)


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


# -- drive db -------------------------------------------------------------------------


def test_drive_db_current_and_upgrade(kind: str, url: str, tmp_path: Path) -> None:
    drive = Drive(cli_env(tmp_path, DATABASE_URL=url, DRIVE_BACKENDS="fs,db"), tmp_path)
    before = drive("db", "current").ok()
    assert before.text.splitlines() == [
        "metadata  none   head is 0004: run drive db upgrade",
        "blobs     none   head is 0001: run drive db upgrade",
    ]
    assert drive("db", "upgrade").ok().text.splitlines() == ["metadata  0004   at head", "blobs     0001   at head"]
    assert drive("db", "current", "--json").ok().json() == {
        "metadata": {"revision": "0004", "head": "0004"},
        "blobs": {"revision": "0001", "head": "0001"},
    }
    # Without the db backend only the metadata store is reported.
    assert drive("db", "current", env={"DRIVE_BACKENDS": "fs"}).ok().text.splitlines() == ["metadata  0004   at head"]


def test_drive_db_on_a_v1_database_then_every_blob_is_served(v1_url: str, tmp_path: Path) -> None:
    url = v1_url
    anyio.run(load_v1, url)
    drive = Drive(cli_env(tmp_path, DATABASE_URL=url, STORAGE="db"), tmp_path)
    assert drive("db", "current").ok().text.splitlines() == [
        "metadata  0001   head is 0004: run drive db upgrade",
        "blobs     0001   at head",
    ]
    drive("db", "upgrade").ok()
    for blob_id, data in V1_BLOBS.items():
        assert drive("get", blob_id).ok().stdout == data


def test_drive_db_failures_are_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    drive = Drive(cli_env(tmp_path, DATABASE_URL=url), tmp_path)
    drive("db", "upgrade").ok()
    with sqlite3.connect(tmp_path / "meta.db") as conn:
        conn.execute("UPDATE drive_alembic_metadata SET version_num = '0099'")
    drive("db", "upgrade").fails(3, "DATABASE_URL", "holds schema revision 0099, newer than this release")
    drive("db", "upgrade", env={"DATABASE_URL": "oracle://x/y"}).fails(2, "DATABASE_URL")


# -- replicas starting together -------------------------------------------------------

# Each process imports everything first, then waits for the same moment to upgrade.
_TOGETHER = """
import sys, time
from drive.entrypoints.cli import main
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
sys.exit(main(["db", "upgrade", "-v"]))
"""


def test_replicas_starting_together_upgrade_once(kind: str, url: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path, DATABASE_URL=url, DRIVE_BACKENDS="fs,db", LOG_LEVEL="INFO")
    start_at = f"{time.time() + 8:.3f}"  # time for every interpreter to import drive
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _TOGETHER, start_at],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
        assert stdout.splitlines() == ["metadata  0004   at head", "blobs     0001   at head"]
    logs = "".join(stderr for _, stderr in outputs)
    # Alembic logs each revision it runs: each chain's 0001 ran in exactly one process,
    # and no process tripped over another's half-built schema (a failed try is retried).
    assert logs.count("Running upgrade  -> 0001") == 2, logs
    assert logs.count("Running upgrade 0001 -> 0002") == 1, logs
    assert logs.count("Running upgrade 0002 -> 0003") == 1, logs
    assert logs.count("Running upgrade 0003 -> 0004") == 1, logs
    assert "retrying" not in logs, logs
    assert anyio.run(rows, url, "SELECT version_num FROM drive_alembic_metadata") == [("0004",)]
    assert anyio.run(rows, url, "SELECT version_num FROM drive_alembic_blobs") == [("0001",)]
    assert anyio.run(rows, url, "SELECT version FROM drive_schema") == [(1,)]


# -- MariaDB/MySQL ----------------------------------------------------------------------


async def test_fresh_mariadb_reaches_head_with_its_own_types(mariadb_url: str) -> None:
    migrations = SchemaMigrations(mariadb_url, backends=["db"])
    assert await migrations.current() == {"metadata": None, "blobs": None}
    await migrations.upgrade()
    assert await migrations.current() == HEADS
    await migrations.upgrade()
    assert await rows(mariadb_url, "SELECT version FROM drive_schema") == [(1,)]
    engine = create_engine(mariadb_url)
    try:
        async with engine.connect() as conn:
            shape = await conn.run_sync(_shape)
            assert await conn.run_sync(_model_differences) == []
    finally:
        await engine.dispose()
    assert set(shape) == {
        "drive_blobs",
        "drive_pending",
        "drive_schema",
        "drive_uploads",
        "drive_blob_objects",
        "drive_blob_chunks",
    }
    columns = {(table, c[0]): c[1] for table, found in shape.items() for c in found["columns"]}
    # Ids are their UTF-8 bytes (byte order; 1024 bytes index within InnoDB's limit); chunks fit 1 MiB and more.
    assert columns["drive_blobs", "id"] == columns["drive_pending", "blob_id"] == "VARBINARY(1024)"
    assert columns["drive_blob_chunks", "data"] == "LONGBLOB"
    assert shape["drive_blobs"]["primary_key"] == ["id"]
    assert shape["drive_blobs"]["unique"] == [("storage_key",)]
    assert ("ix_drive_pending_lease_until", ("lease_until",), False) in shape["drive_pending"]["indexes"]
    tables = await rows(
        mariadb_url,
        "SELECT table_name, engine, table_collation FROM information_schema.tables WHERE table_schema = DATABASE()",
    )
    assert {(name, engine, collation) for name, engine, collation in tables if name in shape} == {
        (name, "InnoDB", "utf8mb4_bin") for name in shape
    }


async def test_mariadb_upgrade_cut_short_is_finished_by_the_next_start(mariadb_url: str) -> None:
    """DDL commits at once on MariaDB: a crash mid-revision leaves some tables, and no revision stamped."""
    await SchemaMigrations(mariadb_url, backends=["db"]).upgrade()
    engine = create_engine(mariadb_url)
    try:
        async with engine.begin() as conn:
            for statement in (
                "DROP TABLE drive_schema",
                "DROP INDEX ix_drive_pending_lease_until ON drive_pending",
                "DROP TABLE drive_blob_chunks",
                "DELETE FROM drive_alembic_metadata",
                "DELETE FROM drive_alembic_blobs",
            ):
                await conn.execute(text(statement))
    finally:
        await engine.dispose()
    migrations = SchemaMigrations(mariadb_url, backends=["db"])
    # Not taken for a release before Alembic: that one never ran on MariaDB.
    assert await migrations.current() == {"metadata": None, "blobs": None}
    await migrations.upgrade()
    assert await migrations.current() == HEADS
    assert await rows(mariadb_url, "SELECT version FROM drive_schema") == [(1,)]
    engine = create_engine(mariadb_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_model_differences) == []
    finally:
        await engine.dispose()
    blobs = DatabaseBlobRepository(mariadb_url)
    await blobs.open()
    try:
        key = "0123456789abcdef0123456789abcdef"
        assert await blobs.write(key, one(b"complete again")) == 14
        assert await read_all(blobs, key) == b"complete again"
    finally:
        await blobs.close()


async def test_mariadb_schema_lock_is_taken_and_released(mariadb_url: str) -> None:
    """GET_LOCK serialises upgrades across processes; a holder that stays blocks, then the lock is free again."""
    engine = create_engine(mariadb_url)
    lock = {"name": mysql_lock_name(engine.url.database)}
    try:
        async with engine.connect() as holder:
            assert (await holder.execute(text("SELECT GET_LOCK(:name, 0)"), lock)).scalar() == 1
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("drive.adapters.sql_schema.chains.SCHEMA_LOCK_WAIT_SECONDS", 1)
                patch.setattr("drive.adapters.sql_engine._OPEN_ATTEMPTS", 1)
                with pytest.raises(StorageUnavailable, match="another process is changing the schema"):
                    await SqlMetadataRepository(mariadb_url).open()
            assert "drive_alembic_metadata" not in await _tables(mariadb_url)  # waited, changed nothing
            await holder.execute(text("SELECT RELEASE_LOCK(:name)"), lock)
        metadata = SqlMetadataRepository(mariadb_url)
        await metadata.open()
        await metadata.close()
        async with engine.connect() as conn:
            # Released after the upgrade: anyone can take it at once.
            assert (await conn.execute(text("SELECT IS_FREE_LOCK(:name)"), lock)).scalar() == 1
    finally:
        await engine.dispose()
