from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta

import anyio
import pytest

from drive.adapters.memory import InMemoryBlobRepository, InMemoryMetadataRepository
from drive.application.service import DriveService
from drive.application.streams import single_chunk
from drive.domain.errors import (
    BlobConflict,
    BlobNotFound,
    ChecksumMismatch,
    CorruptBlob,
    InvalidId,
    PayloadTooLarge,
    StorageUnavailable,
)
from drive.domain.model import BlobRecord, CommitOutcome
from tests.unit.wiring import CommitsThenLosesTheAnswer, container_over

pytestmark = pytest.mark.anyio


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_store_then_retrieve(service: DriveService, blobs: InMemoryBlobRepository) -> None:
    outcome = await service.store("k5", chunks(b"Hello ", b"World"))
    assert outcome.created
    record = outcome.record
    assert record.size == 11
    assert record.sha256 == hashlib.sha256(b"Hello World").hexdigest()
    assert record.created_at.microsecond == 0
    assert record.backend == "memory"
    assert await service.retrieve.read_all(await service.retrieve.stat("k5")) == b"Hello World"
    assert list(blobs.objects) == [record.storage_key]


async def test_same_bytes_replays_with_original_record(service: DriveService, blobs: InMemoryBlobRepository) -> None:
    first = await service.store("k", single_chunk(b"abc"))
    again = await service.store("k", chunks(b"a", b"bc"))
    assert not again.created
    assert again.record == first.record
    assert len(blobs.objects) == 1


async def test_different_bytes_conflict_and_leave_blob_untouched(
    service: DriveService, blobs: InMemoryBlobRepository
) -> None:
    await service.store("k", single_chunk(b"abc"))
    with pytest.raises(BlobConflict):
        await service.store("k", single_chunk(b"abd"))
    assert await service.retrieve.read_all(await service.retrieve.stat("k")) == b"abc"
    assert len(blobs.objects) == 1


async def test_empty_blob(service: DriveService) -> None:
    outcome = await service.store("empty", single_chunk(b""))
    assert outcome.record.size == 0
    assert await service.retrieve.read_all(outcome.record) == b""


async def test_unknown_and_invalid_ids(service: DriveService) -> None:
    with pytest.raises(BlobNotFound):
        await service.retrieve.stat("nope")
    with pytest.raises(InvalidId):
        await service.store("", single_chunk(b"x"))
    with pytest.raises(InvalidId):
        await service.retrieve.stat("a\nb")


async def test_many_concurrent_writers_of_one_id_have_one_winner(
    service: DriveService, blobs: InMemoryBlobRepository, metadata: InMemoryMetadataRepository
) -> None:
    results: list[str] = []

    async def writer(n: int) -> None:
        try:
            outcome = await service.store("race", chunks(b"payload-", str(n).encode()))
            results.append("created" if outcome.created else "replayed")
        except BlobConflict:
            results.append("conflict")

    async with anyio.create_task_group() as tasks:
        for n in range(48):
            tasks.start_soon(writer, n)
    assert results.count("created") == 1
    assert results.count("conflict") == 47
    assert len(blobs.objects) == 1 and not blobs.staged
    assert not metadata.pending


async def test_size_limit_is_enforced_while_streaming(
    service: DriveService, blobs: InMemoryBlobRepository, metadata: InMemoryMetadataRepository
) -> None:
    seen: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for n in range(1000):
            seen.append(n)
            yield b"x" * 100

    with pytest.raises(PayloadTooLarge):
        await service.store("big", endless(), max_size=250)
    assert len(seen) == 3  # stopped at the first chunk over the limit
    assert not blobs.objects and not blobs.staged and not metadata.pending
    with pytest.raises(BlobNotFound):
        await service.retrieve.stat("big")


async def test_checksum_mismatch_stores_nothing(
    service: DriveService, blobs: InMemoryBlobRepository, metadata: InMemoryMetadataRepository
) -> None:
    with pytest.raises(ChecksumMismatch):
        await service.store("c", single_chunk(b"abc"), expected_sha256=hashlib.sha256(b"abd").hexdigest())
    assert not blobs.objects and not metadata.records and not metadata.pending
    good = await service.store("c", single_chunk(b"abc"), expected_sha256=hashlib.sha256(b"abc").hexdigest())
    assert good.created


class FailingWrites(InMemoryBlobRepository):
    async def write(self, key: str, chunks: object) -> int:  # type: ignore[override]
        raise StorageUnavailable("backend down")


async def test_backend_failure_leaves_no_visible_blob(metadata: InMemoryMetadataRepository) -> None:
    from drive.domain.backends import Backends

    service = container_over(metadata, Backends({"memory": FailingWrites()}, default="memory")).service()
    with pytest.raises(StorageUnavailable):
        await service.store("k", single_chunk(b"abc"))
    assert not metadata.records and not metadata.pending


async def test_corrupt_bytes_are_never_served(service: DriveService, blobs: InMemoryBlobRepository) -> None:
    record = (await service.store("k", single_chunk(b"abc"))).record
    blobs.objects[record.storage_key] = b"abd"
    with pytest.raises(CorruptBlob):
        await service.retrieve.read_all(record)
    del blobs.objects[record.storage_key]
    with pytest.raises(CorruptBlob):
        await service.retrieve.read_all(record)


async def test_lost_lease_refuses_to_commit(metadata: InMemoryMetadataRepository) -> None:
    from drive.domain.backends import Backends

    class Slow(InMemoryBlobRepository):
        async def write(self, key: str, chunks: object) -> int:  # type: ignore[override]
            metadata.pending.clear()  # recovery reclaimed the upload meanwhile
            return await super().write(key, chunks)  # type: ignore[arg-type]

    repo = Slow()
    service = container_over(
        metadata, Backends({"memory": repo}, default="memory"), lease=timedelta(seconds=1)
    ).service()
    with pytest.raises(StorageUnavailable):
        await service.store("k", single_chunk(b"abc"))
    assert not metadata.records and not repo.objects


async def store_that_fails(metadata: InMemoryMetadataRepository) -> tuple[DriveService, InMemoryBlobRepository]:
    """``store("k", b"abc")`` over ``metadata``, which makes it raise ``StorageUnavailable``."""
    from drive.domain.backends import Backends

    blobs = InMemoryBlobRepository()
    service = container_over(metadata, Backends({"memory": blobs}, default="memory")).service()
    with pytest.raises(StorageUnavailable):
        await service.store("k", single_chunk(b"abc"))
    return service, blobs


async def test_a_commit_whose_answer_is_lost_keeps_the_bytes_it_committed() -> None:
    metadata = CommitsThenLosesTheAnswer()
    service, blobs = await store_that_fails(metadata)
    record = await service.retrieve.stat("k")  # committed after all: readable, bytes intact
    assert await service.retrieve.read_all(record) == b"abc"
    assert list(blobs.objects) == [record.storage_key] and not metadata.pending


class CommitFails(InMemoryMetadataRepository):
    async def commit(self, record: BlobRecord) -> CommitOutcome:
        raise StorageUnavailable("metadata store unreachable (connection lost)")


async def test_a_commit_that_failed_removes_its_bytes_and_intent() -> None:
    metadata = CommitFails()
    _, blobs = await store_that_fails(metadata)
    assert not metadata.records and not metadata.pending and not blobs.objects


async def test_a_commit_failed_while_the_database_is_down_leaves_bytes_to_recovery() -> None:
    class DownAfterCommitFails(CommitFails):
        async def commit(self, record: BlobRecord) -> CommitOutcome:
            self.available = False  # the check that follows cannot be made either
            return await super().commit(record)

    metadata = DownAfterCommitFails()
    _, blobs = await store_that_fails(metadata)
    # Not knowing whether the record was written, nothing is removed: the intent stays for
    # recovery, which ends it, then removes the bytes only if no record names them.
    assert len(blobs.objects) == 1 and list(metadata.pending) == list(blobs.objects)
