"""One contract, every backend, through the ports: the same assertions on each."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import delete, insert

from drive.adapters.db import blob_objects
from drive.application.commit_protocol import all_records
from drive.application.service import DriveService
from drive.application.streams import single_chunk
from drive.domain.errors import BlobConflict, BlobNotFound, PayloadTooLarge, StoredBytesMissing
from drive.domain.ports import BlobRepository
from tests.integration.backends import BackendUnderTest
from tests.integration.servers.ftp import FtpServer
from tests.integration.servers.s3 import MotoServer, s3_client

pytestmark = pytest.mark.anyio

ODD_IDS = ["../../x", "/abs", "..", ".", "a/b/c", "a%2Fb", "sp ace?#", "مرحبا", "x" * 1024]


@pytest.fixture
async def service(backend: BackendUnderTest) -> AsyncIterator[DriveService]:
    drive = backend.container().service()
    await drive.open()
    try:
        yield drive
    finally:
        await drive.close()


async def chunked(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_store_retrieve_replay_conflict(service: DriveService, backend: BackendUnderTest) -> None:
    data = os.urandom(1000)
    first = await service.store("port-basic", single_chunk(data))
    assert first.created and first.record.backend == backend.storage
    again = await service.store("port-basic", chunked(data, 7))
    assert not again.created and again.record == first.record
    with pytest.raises(BlobConflict):
        await service.store("port-basic", single_chunk(data + b"!"))
    assert await service.retrieve.read_all(await service.retrieve.stat("port-basic")) == data


@pytest.mark.parametrize("size", [0, 1, 8 * 1024 * 1024 + 3])
async def test_sizes_round_trip(service: DriveService, size: int) -> None:
    data = os.urandom(size)
    record = (await service.store(f"port-size-{size}", chunked(data))).record
    assert record.size == size and record.sha256 == hashlib.sha256(data).hexdigest()
    assert await service.retrieve.read_all(record) == data


async def test_odd_ids_never_share_storage(service: DriveService) -> None:
    for blob_id in ODD_IDS:
        await service.store(blob_id, single_chunk(blob_id.encode()))
    for blob_id in ODD_IDS:
        assert await service.retrieve.read_all(await service.retrieve.stat(blob_id)) == blob_id.encode()


async def test_ranged_reads(service: DriveService) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    record = (await service.store("port-range", chunked(data))).record
    for start, end in [(0, 1), (5, 5), (1024 * 1024 - 3, 2 * 1024 * 1024 + 9), (len(data) - 10, len(data))]:
        got = b"".join([c async for c in service.retrieve.stream_range(record, start, end)])
        assert got == data[start:end], (start, end)


async def test_whole_reads_are_the_stream_joined(service: DriveService) -> None:
    data = os.urandom(5000)
    record = (await service.store("port-whole", chunked(data, 1000))).record
    for repository in (service.backends.default, _innermost(service.backends.default)):
        for limit in (0, 1, 4999, 5000, 5001, 1 << 20):
            assert await repository.read_whole(record.storage_key, limit) == data[:limit], (repository, limit)
        with pytest.raises(StoredBytesMissing):
            await repository.read_whole("0" * 32, 10)


async def test_concurrent_writers_of_one_id(service: DriveService) -> None:
    results: list[str] = []

    async def write(n: int) -> None:
        try:
            outcome = await service.store("port-race", single_chunk(f"writer {n}".encode() * 1000))
            results.append("created" if outcome.created else "same")
        except BlobConflict:
            results.append("conflict")

    async with anyio.create_task_group() as tasks:
        for n in range(16):
            tasks.start_soon(write, n)
    assert sorted(results) == ["conflict"] * 15 + ["created"]


async def test_content_type_is_kept_by_every_metadata_store(service: DriveService) -> None:
    kind = 'text/plain; charset="utf-8"; x="a \\" b"'  # a quoted-pair in a quoted string
    stored = (await service.store("port-typed", single_chunk(b"typed"), content_type=kind)).record
    assert stored.content_type == kind
    assert (await service.retrieve.stat("port-typed")).content_type == kind  # the point read
    assert not (await service.store("port-typed", single_chunk(b"typed"), content_type=kind)).created
    with pytest.raises(BlobConflict):
        await service.store("port-typed", single_chunk(b"typed"), content_type="text/plain")
    await service.store("port-untyped", single_chunk(b"plain"))
    listed = {r.id: r.content_type for r in (await service.list("port-", 100, None)).items}
    assert listed["port-typed"] == kind and listed["port-untyped"] == "application/octet-stream"
    removed = await service.delete("port-typed")
    assert removed.content_type == kind


async def test_too_large_stores_nothing(service: DriveService) -> None:
    with pytest.raises(PayloadTooLarge):
        await service.store("port-too-big", chunked(os.urandom(3 * 1024 * 1024)), max_size=2 * 1024 * 1024)
    with pytest.raises(BlobNotFound):
        await service.retrieve.stat("port-too-big")


async def test_delete_and_store_again(service: DriveService) -> None:
    await service.store("port-del", single_chunk(b"one"))
    await service.delete("port-del")
    with pytest.raises(BlobNotFound):
        await service.retrieve.stat("port-del")
    assert (await service.store("port-del", single_chunk(b"two"))).created


STRANGE = "Z" * 32  # 32 characters, as a key has, but not one


class Strangers:
    """Things another hand put in a backend's own place, planted straight into its store."""

    def __init__(self, backend: BackendUnderTest, service: DriveService) -> None:
        self.backend = backend
        self.service = service
        self.wrong_shard = "cd" + uuid.uuid4().hex[2:]  # a key, but not in its own shard

    def _root(self) -> Path:
        if self.backend.param == "fs":
            return Path(self.backend.env["FS_BASE_PATH"])
        assert isinstance(self.backend.server, FtpServer)
        return self.backend.server.root / self.backend.env["FTP_BASE_DIR"].lstrip("/")

    async def plant(self) -> set[str]:
        """Plant them; return the names ``list_strangers`` must report."""
        if self.backend.param in ("fs", "ftp", "ftps"):
            objects = self._root() / "objects"
            (objects / "ab").mkdir(exist_ok=True)
            names = ["objects/ab/" + STRANGE, "objects/stray.txt", f"objects/ab/{self.wrong_shard}", "staging/notakey"]
            for name in names:
                (self._root() / name).write_bytes(b"not drive's")
            if self.backend.param != "fs":
                return set(names)
            (objects / "zz").mkdir()
            (objects / "zz" / "inside").write_bytes(b"not drive's")
            return {*names, "objects/zz/"}
        if self.backend.param.startswith("s3"):
            assert isinstance(self.backend.server, MotoServer)
            client: Any = s3_client(self.backend.server)
            names = ["ab/" + STRANGE, "notes.txt", f"ab/{self.wrong_shard}"]
            for name in names:
                client.put_object(Bucket=self.backend.env["S3_BUCKET"], Key=name, Body=b"not drive's")
            return set(names)
        # db: a row the service could not have written (straight through the adapter's connection).
        async with _innermost(self.service.backends.default)._connect("plant", write=True) as conn:
            row = {"size": 0, "chunk_size": 1, "published": True, "created_at": 0}
            await conn.execute(insert(blob_objects).values(storage_key=STRANGE, **row))
        return {"drive_blob_objects/" + STRANGE}

    async def remove(self) -> None:
        if self.backend.param in ("fs", "ftp", "ftps"):
            for name in ["objects/ab/" + STRANGE, "objects/stray.txt", f"objects/ab/{self.wrong_shard}"]:
                (self._root() / name).unlink()
            (self._root() / "staging" / "notakey").unlink()
            if self.backend.param == "fs":
                (self._root() / "objects" / "zz" / "inside").unlink()
                (self._root() / "objects" / "zz").rmdir()
        elif self.backend.param.startswith("s3"):
            assert isinstance(self.backend.server, MotoServer)
            client: Any = s3_client(self.backend.server)
            for name in ["ab/" + STRANGE, "notes.txt", f"ab/{self.wrong_shard}"]:
                client.delete_object(Bucket=self.backend.env["S3_BUCKET"], Key=name)
        else:
            async with _innermost(self.service.backends.default)._connect("unplant", write=True) as conn:
                await conn.execute(delete(blob_objects).where(blob_objects.c.storage_key == STRANGE))


def _innermost(repository: BlobRepository) -> Any:
    while hasattr(repository, "inner"):
        repository = repository.inner
    return repository


async def test_strangers_are_reported_and_left_alone(service: DriveService, backend: BackendUnderTest) -> None:
    data = os.urandom(70_000)
    record = (await service.store("port-beside-strangers", chunked(data))).record
    strangers = Strangers(backend, service)
    expected = await strangers.plant()
    repository = service.backends.default
    try:
        assert {name async for name in repository.list_strangers()} == expected
        keys = {key async for key in repository.list_keys()}
        assert record.storage_key in keys and strangers.wrong_shard not in keys and STRANGE not in keys

        recovered = await service.recover()  # what the server runs in the background: no exception
        assert recovered.orphans_found == [] and recovered.unreachable_backends == []
        found = await service.check()
        assert sorted(found.strangers) == sorted((repository.name, name) for name in expected)
        assert found.orphans == found.missing == found.corrupt == [] and found.unrepaired == len(expected)
        repaired = await service.check(repair=True)
        assert repaired.unrepaired == len(expected) and repaired.records_removed == []
        assert {name async for name in repository.list_strangers()} == expected  # all still there
        assert await service.retrieve.read_all(await service.retrieve.stat("port-beside-strangers")) == data
    finally:
        await strangers.remove()
    assert [name async for name in repository.list_strangers()] == []


async def test_zz_backend_holds_exactly_the_committed_bytes(service: DriveService) -> None:
    """Runs last in the module: after everything above, no orphan and no pending op."""
    report = await service.recover(repair=False)
    assert report.orphans_found == []
    backend = service.backends.default
    keys = {key async for key in backend.list_keys()}
    assert keys == {record.storage_key async for record in all_records(service.metadata)}
