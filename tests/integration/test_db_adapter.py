"""DatabaseBlobRepository against real SQLite files and throwaway PostgreSQL and MariaDB databases."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

import drive.adapters.db as db_module
from drive.adapters.db import DatabaseBlobRepository, blob_chunks, blob_objects, fitting_chunk_size
from drive.adapters.sql_engine import create_engine
from drive.domain.errors import PayloadTooLarge, StorageUnavailable, StoredBytesMissing
from drive.domain.ports import BlobRepository
from tests.integration.servers import mariadb, postgres

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/blobs.db"
    factory: Callable[[], str] = request.getfixturevalue(
        "mariadb_url_factory" if request.param == "mariadb" else "postgres_url_factory"
    )
    return factory()


@pytest.fixture
async def repo(db_url: str) -> AsyncIterator[DatabaseBlobRepository]:
    repository = DatabaseBlobRepository(db_url, chunk_size=MiB)
    await repository.open()
    yield repository
    await repository.close()


@pytest.fixture
async def engine(db_url: str, repo: DatabaseBlobRepository) -> AsyncIterator[AsyncEngine]:
    """A second engine on the same database, to look at (and tamper with) the rows."""
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


def new_key() -> str:
    return uuid.uuid4().hex


async def stream(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


async def read_all(repo: BlobRepository, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in repo.read(key, start, end)])


async def keys_of(repo: BlobRepository) -> list[str]:
    return [key async for key in repo.list_keys()]


async def row_counts(engine: AsyncEngine, key: str) -> tuple[int, int]:
    async with engine.connect() as conn:
        objects = (
            await conn.execute(select(func.count()).select_from(blob_objects).where(blob_objects.c.storage_key == key))
        ).scalar_one()
        chunks = (
            await conn.execute(select(func.count()).select_from(blob_chunks).where(blob_chunks.c.storage_key == key))
        ).scalar_one()
    return objects, chunks


async def test_implements_the_port(repo: DatabaseBlobRepository) -> None:
    assert isinstance(repo, BlobRepository)
    assert repo.name == "db"
    await repo.ping()


@pytest.mark.parametrize("size", [0, 1, 1000, MiB - 1, MiB, MiB + 1])
async def test_round_trip_small(repo: DatabaseBlobRepository, engine: AsyncEngine, size: int) -> None:
    data = os.urandom(size)
    key = new_key()
    assert await repo.write(key, stream(data, piece=333_333)) == size
    assert await read_all(repo, key) == data
    assert await row_counts(engine, key) == (1, -(-size // MiB))


async def test_round_trip_20_mib(repo: DatabaseBlobRepository, engine: AsyncEngine) -> None:
    data = os.urandom(20 * MiB + 12345)
    key = new_key()
    assert await repo.write(key, stream(data, piece=700_000)) == len(data)
    pieces = [chunk async for chunk in repo.read(key)]
    assert max(len(p) for p in pieces) <= MiB
    assert b"".join(pieces) == data
    assert await row_counts(engine, key) == (1, 21)


async def test_one_huge_piece_is_sliced_into_rows(repo: DatabaseBlobRepository, engine: AsyncEngine) -> None:
    data = os.urandom(3 * MiB + 5)

    async def one_piece() -> AsyncIterator[bytes]:
        yield data

    key = new_key()
    assert await repo.write(key, one_piece()) == len(data)
    assert await read_all(repo, key) == data
    assert await row_counts(engine, key) == (1, 4)


async def test_ranged_reads(db_url: str) -> None:
    repo = DatabaseBlobRepository(db_url, chunk_size=1000)
    await repo.open()
    try:
        data = os.urandom(10_500)
        key = new_key()
        await repo.write(key, stream(data, piece=777))
        cases = [
            (0, None),
            (0, 10_500),
            (999, 1001),  # across one boundary
            (1000, 2000),  # exactly one chunk
            (1500, 7321),  # across many
            (2500, None),  # open end
            (10_000, None),  # only the short last chunk
            (10_499, 10_500),
            (3100, 3200),  # within one chunk
            (0, 1),
            (0, 20_000),  # end past the size is clamped
        ]
        for start, end in cases:
            assert await read_all(repo, key, start, end) == data[start:end], (start, end)
        for start, end in [(500, 500), (10_500, None), (20_000, None), (7000, 6000)]:
            assert await read_all(repo, key, start, end) == b"", (start, end)
    finally:
        await repo.close()


async def test_ranged_read_fetches_only_overlapping_rows(db_url: str) -> None:
    repo = DatabaseBlobRepository(db_url, chunk_size=1000)
    await repo.open()
    engine = create_engine(db_url)
    try:
        data = os.urandom(10_000)
        key = new_key()
        await repo.write(key, stream(data))
        # Remove rows outside [2500, 7500): a ranged read must not need them.
        async with engine.begin() as conn:
            await conn.execute(
                delete(blob_chunks).where(
                    blob_chunks.c.storage_key == key, blob_chunks.c.seq.not_in([2, 3, 4, 5, 6, 7])
                )
            )
        assert await read_all(repo, key, 2500, 7500) == data[2500:7500]
        assert await read_all(repo, key, 2000, 8000) == data[2000:8000]
        with pytest.raises(StoredBytesMissing):
            await read_all(repo, key)
        with pytest.raises(StoredBytesMissing):
            await read_all(repo, key, 7000, 8001)
    finally:
        await engine.dispose()
        await repo.close()


async def test_delete_is_idempotent(repo: DatabaseBlobRepository, engine: AsyncEngine) -> None:
    key = new_key()
    await repo.write(key, stream(os.urandom(3 * MiB)))
    await repo.delete(key)
    assert await row_counts(engine, key) == (0, 0)
    await repo.delete(key)
    await repo.delete(new_key())
    with pytest.raises(StoredBytesMissing):
        await read_all(repo, key)


async def test_list_keys(db_url: str) -> None:
    repo = DatabaseBlobRepository(db_url, chunk_size=16)
    await repo.open()
    try:
        assert await keys_of(repo) == []
        keys = sorted(new_key() for _ in range(5))
        for key in keys:
            await repo.write(key, stream(key.encode()))
        assert await keys_of(repo) == keys
        await repo.delete(keys[2])
        assert await keys_of(repo) == keys[:2] + keys[3:]
    finally:
        await repo.close()


async def test_list_keys_pages(repo: DatabaseBlobRepository, engine: AsyncEngine) -> None:
    keys = sorted(new_key() for _ in range(2345))
    async with engine.begin() as conn:
        await conn.execute(
            insert(blob_objects),
            [dict(storage_key=k, size=0, chunk_size=MiB, published=True, created_at=0) for k in keys],
        )
    assert await keys_of(repo) == keys


async def test_missing_key(repo: DatabaseBlobRepository) -> None:
    with pytest.raises(StoredBytesMissing):
        await read_all(repo, new_key())
    with pytest.raises(StoredBytesMissing):
        await read_all(repo, new_key(), 5, 10)


async def test_bad_key_is_refused(repo: DatabaseBlobRepository) -> None:
    for bad in ["../etc/passwd", "A" * 32, "abc"]:
        with pytest.raises(ValueError):
            await repo.write(bad, stream(b"x"))
        with pytest.raises(ValueError):
            await read_all(repo, bad)
        with pytest.raises(ValueError):
            await repo.delete(bad)


async def test_staged_object_is_listed_but_not_readable(repo: DatabaseBlobRepository, engine: AsyncEngine) -> None:
    key = new_key()
    first_sent = anyio.Event()
    go_on = anyio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield os.urandom(MiB + 10)
        first_sent.set()
        await go_on.wait()
        yield b"tail"

    async with anyio.create_task_group() as tg:
        tg.start_soon(repo.write, key, slow())
        await first_sent.wait()
        await anyio.sleep(0.2)  # let the first row land
        assert await row_counts(engine, key) == (1, 1)
        assert await keys_of(repo) == [key]
        with pytest.raises(StoredBytesMissing):
            await read_all(repo, key)
        go_on.set()
    assert len(await read_all(repo, key)) == MiB + 14


async def test_unpublished_row_is_not_readable(repo: DatabaseBlobRepository, engine: AsyncEngine) -> None:
    key = new_key()
    async with engine.begin() as conn:
        await conn.execute(
            insert(blob_objects).values(storage_key=key, size=3, chunk_size=MiB, published=False, created_at=0)
        )
        await conn.execute(insert(blob_chunks).values(storage_key=key, seq=0, data=b"abc"))
    with pytest.raises(StoredBytesMissing):
        await read_all(repo, key)
    assert key in await keys_of(repo)
    await repo.delete(key)
    assert await row_counts(engine, key) == (0, 0)


async def test_iterator_error_propagates_unchanged_and_leaves_no_rows(
    repo: DatabaseBlobRepository, engine: AsyncEngine
) -> None:
    key = new_key()
    boom = PayloadTooLarge("blob exceeds the limit")

    async def too_large() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(700_000)
        raise boom

    with pytest.raises(PayloadTooLarge) as caught:
        await repo.write(key, too_large())
    assert caught.value is boom
    assert await row_counts(engine, key) == (0, 0)
    assert await keys_of(repo) == []

    class ClientGone(Exception):
        pass

    async def gone() -> AsyncIterator[bytes]:
        yield b"x"
        raise ClientGone

    with pytest.raises(ClientGone):
        await repo.write(key, gone())
    assert await row_counts(engine, key) == (0, 0)
    # The key is free again after a failed attempt.
    assert await repo.write(key, stream(b"fine")) == 4
    assert await read_all(repo, key) == b"fine"


async def test_cancelled_write_leaves_no_rows(repo: DatabaseBlobRepository, engine: AsyncEngine) -> None:
    key = new_key()
    started = anyio.Event()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield os.urandom(256 * 1024)
            started.set()
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(repo.write, key, endless())
        await started.wait()
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    assert await row_counts(engine, key) == (0, 0)


async def test_existing_key_is_not_overwritten_or_removed(repo: DatabaseBlobRepository) -> None:
    key = new_key()
    await repo.write(key, stream(b"original"))
    with pytest.raises(StorageUnavailable):
        await repo.write(key, stream(b"intruder"))
    assert await read_all(repo, key) == b"original"


async def test_delete_during_write_aborts_it(repo: DatabaseBlobRepository, engine: AsyncEngine) -> None:
    key = new_key()
    first_sent = anyio.Event()
    go_on = anyio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield os.urandom(MiB)
        first_sent.set()
        await go_on.wait()
        yield os.urandom(MiB)

    async def writer() -> None:
        with pytest.raises(StorageUnavailable):
            await repo.write(key, slow())

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        await first_sent.wait()
        await anyio.sleep(0.2)
        await repo.delete(key)
        go_on.set()
    assert await row_counts(engine, key) == (0, 0)


async def test_sixteen_concurrent_writers(db_url: str) -> None:
    repo = DatabaseBlobRepository(db_url, chunk_size=64 * 1024)
    await repo.open()
    try:
        blobs = {new_key(): os.urandom(200_000 + i * 10_000) for i in range(16)}
        results: dict[str, int] = {}

        async def put(key: str, data: bytes) -> None:
            results[key] = await repo.write(key, stream(data, piece=50_000))

        async with anyio.create_task_group() as tg:
            for key, data in blobs.items():
                tg.start_soon(put, key, data)
        assert results == {k: len(v) for k, v in blobs.items()}

        async def check(key: str, data: bytes) -> None:
            assert await read_all(repo, key) == data

        async with anyio.create_task_group() as tg:
            for key, data in blobs.items():
                tg.start_soon(check, key, data)
        assert await keys_of(repo) == sorted(blobs)
    finally:
        await repo.close()


async def test_sqlite_writers_from_two_repositories(tmp_path: os.PathLike[str]) -> None:
    """Two engines on one file (as with separate processes) rely on WAL and the busy timeout."""
    url = f"sqlite:///{tmp_path}/shared.db"
    one = DatabaseBlobRepository(url, chunk_size=32 * 1024)
    two = DatabaseBlobRepository(url, chunk_size=32 * 1024)
    await one.open()
    await two.open()
    try:
        blobs = {new_key(): os.urandom(150_000) for _ in range(8)}
        async with anyio.create_task_group() as tg:
            for i, (key, data) in enumerate(blobs.items()):
                tg.start_soon((one if i % 2 else two).write, key, stream(data, piece=20_000))
        for key, data in blobs.items():
            assert await read_all(one, key) == data
    finally:
        await one.close()
        await two.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_unreachable_server_fails_fast_without_secrets(scheme: str) -> None:
    url = f"{scheme}://drive:s3cr3t-pw@127.0.0.1:{closed_port()}/blobs"
    repo = DatabaseBlobRepository(url, setting="BLOB_DATABASE_URL")
    began = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        await repo.open()
    assert time.monotonic() - began < 5
    message = str(caught.value)
    assert "BLOB_DATABASE_URL" in message
    for secret in ("s3cr3t", "drive:", f"{scheme}://", "127.0.0.1"):
        assert secret not in message
        assert secret not in repr(caught.value)
    assert caught.value.__cause__ is None
    with pytest.raises(StorageUnavailable):
        await repo.ping()
    await repo.close()
    await repo.close()


async def test_sqlite_path_that_cannot_exist(tmp_path: os.PathLike[str]) -> None:
    blocker = f"{tmp_path}/file"
    with open(blocker, "w") as handle:
        handle.write("not a directory")
    repo = DatabaseBlobRepository(f"sqlite:///{blocker}/blobs.db", setting="BLOB_DATABASE_URL")
    with pytest.raises(StorageUnavailable, match="BLOB_DATABASE_URL"):
        await repo.open()
    with pytest.raises(StorageUnavailable):
        await repo.ping()
    await repo.close()


async def test_not_open_is_unavailable(db_url: str) -> None:
    repo = DatabaseBlobRepository(db_url)
    with pytest.raises(StorageUnavailable):
        await repo.ping()
    with pytest.raises(StorageUnavailable):
        await read_all(repo, new_key())
    await repo.close()


@pytest.mark.parametrize("server", [postgres, mariadb], ids=["postgresql", "mariadb"])
async def test_database_dropped_under_an_open_repository(server: Any) -> None:
    url = server.create_database()
    repo = DatabaseBlobRepository(url)
    await repo.open()
    key = new_key()
    await repo.write(key, stream(b"soon gone"))
    server.drop_database(url)
    try:
        with pytest.raises(StorageUnavailable) as caught:
            await repo.ping()
        assert "drive_test_" not in str(caught.value)
        with pytest.raises(StorageUnavailable):
            await read_all(repo, key)
        with pytest.raises(StorageUnavailable):
            await repo.write(new_key(), stream(b"x"))
        with pytest.raises(StorageUnavailable):
            await repo.delete(key)
        with pytest.raises(StorageUnavailable):
            await keys_of(repo)
    finally:
        await repo.close()


# -- MariaDB/MySQL: one chunk row must fit the server's max_allowed_packet --------------


def test_chunk_size_fits_max_allowed_packet() -> None:
    assert fitting_chunk_size(MiB, 16 * MiB) == MiB  # MariaDB's default: 1 MiB rows as elsewhere
    assert fitting_chunk_size(MiB, 64 * MiB) == MiB
    assert fitting_chunk_size(MiB, 2 * MiB) == 512 * 1024  # escaped, a row may take twice its size
    assert fitting_chunk_size(MiB, 1 * MiB) == 256 * 1024
    assert fitting_chunk_size(1000, 1 * MiB) == 1000
    with pytest.raises(StorageUnavailable, match="max_allowed_packet"):
        fitting_chunk_size(MiB, 128 * 1024)


async def test_mariadb_small_packet_limit_gives_smaller_rows(mariadb_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_module, "_CLIENT_MAX_PACKET", 300 * 1024)  # as if the server allowed only this
    repo = DatabaseBlobRepository(mariadb_url, chunk_size=MiB)
    await repo.open()
    engine = create_engine(mariadb_url)
    try:
        assert repo.chunk_size == 64 * 1024
        data = os.urandom(MiB + 1)
        key = new_key()
        assert await repo.write(key, stream(data)) == len(data)
        assert await read_all(repo, key) == data
        assert await row_counts(engine, key) == (1, 17)
    finally:
        await engine.dispose()
        await repo.close()


async def test_mariadb_packet_limit_too_small_refuses_to_start(
    mariadb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "_CLIENT_MAX_PACKET", 100 * 1024)
    repo = DatabaseBlobRepository(mariadb_url, setting="BLOB_DATABASE_URL")
    with pytest.raises(StorageUnavailable, match=r"^BLOB_DATABASE_URL: the server's max_allowed_packet"):
        await repo.open()
    await repo.close()
