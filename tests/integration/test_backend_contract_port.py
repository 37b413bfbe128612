"""One contract, every backend, through the ports: the same assertions on each."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import anyio
import pytest

from drive.application.commit_protocol import all_records
from drive.application.service import DriveService
from drive.application.streams import single_chunk
from drive.domain.errors import BlobConflict, BlobNotFound, PayloadTooLarge
from tests.integration.backends import BackendUnderTest

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


async def test_zz_backend_holds_exactly_the_committed_bytes(service: DriveService) -> None:
    """Runs last in the module: after everything above, no orphan and no pending op."""
    report = await service.recover(repair=False)
    assert report.orphans_found == []
    backend = service.backends.default
    keys = {key async for key in backend.list_keys()}
    assert keys == {record.storage_key async for record in all_records(service.metadata)}
