"""Chunk digests: computed while storing, checked for every range, used by fsck and migrate."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import TypeVar

import pytest

from drive.adapters.concurrency import in_worker
from drive.adapters.memory import InMemoryBlobRepository, InMemoryMetadataRepository
from drive.application.retrieve_blob import RetrieveBlob
from drive.application.service import DriveService
from drive.application.streams import (
    HASH_PIECE,
    ChunkDigests,
    Digesting,
    at_once,
    chunk_sha256s,
    in_chunks,
    single_chunk,
)
from drive.domain.backends import Backends
from drive.domain.errors import CorruptBlob, PayloadTooLarge
from drive.domain.model import CHUNK_SIZE, BlobRecord, utc_now
from tests.unit.wiring import container_over

T = TypeVar("T")

pytestmark = pytest.mark.anyio

MiB = CHUNK_SIZE
DATA = os.urandom(3 * MiB + 12345)  # three whole chunks and a partial one


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


def chunk_hashes(data: bytes, size: int) -> list[bytes]:
    return [hashlib.sha256(data[at : at + size]).digest() for at in range(0, len(data), size)]


@pytest.fixture
def blobs() -> InMemoryBlobRepository:
    # Reads arrive in pieces that do not line up with chunks, as from a real backend.
    return InMemoryBlobRepository("memory", read_piece=300_001)


@pytest.fixture
def two() -> tuple[InMemoryBlobRepository, InMemoryBlobRepository, DriveService]:
    old, new = InMemoryBlobRepository("old", read_piece=65_536), InMemoryBlobRepository("new")
    service = container_over(InMemoryMetadataRepository(), Backends({"old": old, "new": new}, default="old")).service()
    return old, new, service


def damage(blobs: InMemoryBlobRepository, record: BlobRecord, offset: int) -> None:
    stored = bytearray(blobs.objects[record.storage_key])
    stored[offset] ^= 0xFF
    blobs.objects[record.storage_key] = bytes(stored)  # same length: only a checksum can tell


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


# -- computing them ----------------------------------------------------------------------


@pytest.mark.parametrize("piece", [1, 7, 4096, MiB - 1, MiB, MiB + 1, 5 * MiB])
async def test_chunk_digests_do_not_depend_on_how_the_stream_is_cut(piece: int) -> None:
    digests = ChunkDigests(MiB)
    async for part in pieces(DATA[: 2 * MiB + 5] if piece == 1 else DATA, piece):
        digests.update(part)
    data = DATA[: 2 * MiB + 5] if piece == 1 else DATA
    assert digests.digests() == chunk_hashes(data, MiB)
    assert digests.packed() == b"".join(chunk_hashes(data, MiB))


async def test_a_blob_of_one_chunk_or_none_stores_no_digests() -> None:
    for data in (b"", b"x", DATA[:MiB]):
        digest = Digesting(single_chunk(data))
        await digest.drain()
        assert (digest.chunk_size, digest.chunk_digests) == (MiB, b"")
    assert Digesting(single_chunk(b""), chunk_size=None).chunk_digests is None


async def test_in_chunks_recuts_any_stream() -> None:
    cut = [chunk async for chunk in in_chunks(pieces(DATA, 333_333), MiB)]
    assert [len(c) for c in cut] == [MiB, MiB, MiB, 12345]
    assert b"".join(cut) == DATA


async def test_store_records_the_digests(service: DriveService, blobs: InMemoryBlobRepository) -> None:
    record = (await service.store("big", pieces(DATA, 100_000))).record
    assert record.chunked and record.chunk_size == MiB and record.chunk_count == 4
    assert record.chunk_digests == b"".join(chunk_hashes(DATA, MiB))
    assert [record.chunk_digest(i) for i in range(4)] == chunk_hashes(DATA, MiB)
    small = (await service.store("small", single_chunk(b"tiny"))).record
    assert small.chunk_digests == b"" and small.chunk_digest(0) == hashlib.sha256(b"tiny").digest()


# -- range alignment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "window"),
    [
        (0, 1, (0, 0, MiB)),
        (0, MiB, (0, 0, MiB)),
        (MiB - 1, MiB + 1, (0, 0, 2 * MiB)),
        (MiB, MiB + 1, (1, MiB, 2 * MiB)),
        (3 * MiB, 3 * MiB + 12345, (3, 3 * MiB, 3 * MiB + 12345)),
        (3 * MiB + 10, 3 * MiB + 11, (3, 3 * MiB, 3 * MiB + 12345)),
        (0, len(DATA), (0, 0, len(DATA))),
    ],
)
def test_a_range_reads_the_chunks_that_cover_it(start: int, end: int, window: tuple[int, int, int]) -> None:
    record = BlobRecord("x", len(DATA), "0" * 64, utc_now(), "memory", "k" * 32, MiB, b"\0" * 32 * 4)
    assert record.chunk_window(start, end) == window


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 6), (0, MiB), (MiB - 3, MiB + 3), (5, 3 * MiB + 100), (3 * MiB + 12344, 3 * MiB + 12345), (0, len(DATA))],
)
async def test_ranges_are_served_exactly(service: DriveService, start: int, end: int) -> None:
    record = (await service.store("big", pieces(DATA, 70_000))).record
    assert await collect(service.retrieve.stream_range(record, start, end)) == DATA[start:end]


@pytest.mark.parametrize("size", [0, 1, 64 * 1024 - 1, 64 * 1024, MiB, 2 * MiB + 1])
async def test_work_offloaded_or_not_gives_the_same_result(size: int) -> None:
    data = os.urandom(size)
    hashed = partial(chunk_sha256s, chunk_size=MiB)
    assert await in_worker(hashed, data) == await at_once(hashed, data) == chunk_hashes(data, MiB)


@pytest.mark.parametrize("piece", [1000, 65_536, HASH_PIECE - 1, HASH_PIECE, 3 * HASH_PIECE + 1])
async def test_a_body_hashed_a_piece_behind_in_a_worker_is_hashed_exactly(piece: int) -> None:
    data = DATA if piece > 1000 else DATA[: HASH_PIECE + 5]
    for offload in (at_once, in_worker):
        digest = Digesting(pieces(data, piece), len(data), offload=offload)
        handed_on = [chunk async for chunk in digest]
        assert b"".join(handed_on) == data and digest.finished and digest.size == len(data)
        assert all(len(chunk) >= HASH_PIECE for chunk in handed_on[:-1])  # gathered, for fewer hops
        assert digest.sha256 == hashlib.sha256(data).hexdigest()
        assert digest.chunk_digests == b"".join(chunk_hashes(data, MiB))


async def test_the_blob_hash_and_the_chunk_hashes_are_offloaded_apart() -> None:
    # Two calls per piece, so that two workers can run them side by side.
    calls: list[int] = []

    def counted(work: Callable[[bytes | bytearray], T], data: bytes | bytearray) -> Awaitable[T]:
        calls.append(len(data))
        return in_worker(work, data)

    data = DATA[: 3 * HASH_PIECE + 7]
    digest = Digesting(pieces(data, 65_536), offload=counted)
    await digest.drain()
    assert calls == [HASH_PIECE, HASH_PIECE] * 3 + [7, 7]
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.chunk_digests == b"".join(chunk_hashes(data, MiB))


async def test_a_body_over_its_limit_is_refused_as_it_arrives() -> None:
    digest = Digesting(pieces(DATA, 65_536), MiB + 1, offload=in_worker)
    with pytest.raises(PayloadTooLarge):
        async for _ in digest:
            pass
    assert digest.size <= MiB + 65_536 and not digest.finished


async def test_reads_are_the_same_whether_hashing_is_offloaded_or_not(service: DriveService) -> None:
    record = (await service.store("big", pieces(DATA, 70_000))).record
    for offload in (at_once, in_worker):
        retrieve = RetrieveBlob(service.metadata, service.backends, offload)
        assert await collect(retrieve.stream(record)) == DATA
        assert await collect(retrieve.stream_range(record, MiB - 1, 2 * MiB + 1)) == DATA[MiB - 1 : 2 * MiB + 1]


# -- damage ------------------------------------------------------------------------------


async def test_damage_in_the_first_chunk_of_a_range_is_raised_before_any_byte(
    service: DriveService, blobs: InMemoryBlobRepository, caplog: pytest.LogCaptureFixture
) -> None:
    record = (await service.store("big", single_chunk(DATA))).record
    damage(blobs, record, 3)
    with caplog.at_level(logging.ERROR), pytest.raises(CorruptBlob):
        await anext(service.retrieve.stream_range(record, 0, 6))
    assert "CORRUPT BLOB: id='big'" in caplog.text and "chunk 0 " in caplog.text
    with pytest.raises(CorruptBlob):  # the whole read refuses before its first byte too
        await anext(service.retrieve.stream(record))


async def test_damage_in_a_later_chunk_cuts_the_range_after_the_good_ones(
    service: DriveService, blobs: InMemoryBlobRepository
) -> None:
    record = (await service.store("big", single_chunk(DATA))).record
    damage(blobs, record, 2 * MiB + 77)
    received = bytearray()
    with pytest.raises(CorruptBlob):
        async for chunk in service.retrieve.stream_range(record, MiB - 10, 3 * MiB):
            received += chunk
    assert bytes(received) == DATA[MiB - 10 : 2 * MiB]  # the good chunks, then the error, nothing bad


async def test_a_range_in_good_chunks_of_a_damaged_blob_is_served(
    service: DriveService, blobs: InMemoryBlobRepository
) -> None:
    record = (await service.store("big", single_chunk(DATA))).record
    damage(blobs, record, 2 * MiB + 77)
    assert await collect(service.retrieve.stream_range(record, 10, 2 * MiB)) == DATA[10 : 2 * MiB]
    assert await collect(service.retrieve.stream_range(record, 3 * MiB, len(DATA))) == DATA[3 * MiB :]


async def test_truncated_bytes_fail_the_range(service: DriveService, blobs: InMemoryBlobRepository) -> None:
    record = (await service.store("big", single_chunk(DATA))).record
    blobs.objects[record.storage_key] = DATA[: 2 * MiB]  # cut at a chunk boundary
    assert await collect(service.retrieve.stream_range(record, 0, 100)) == DATA[:100]
    with pytest.raises(CorruptBlob):
        await anext(service.retrieve.stream_range(record, 2 * MiB + 1, 2 * MiB + 2))
    blobs.objects[record.storage_key] = DATA[:-1]
    with pytest.raises(CorruptBlob):
        await anext(service.retrieve.stream_range(record, len(DATA) - 2, len(DATA)))


async def test_bad_digests_in_the_record_fail_safe(service: DriveService) -> None:
    record = (await service.store("big", single_chunk(DATA))).record
    for wrong in (replace(record, chunk_digests=b"\0" * 32 * 4), replace(record, chunk_digests=b"\0" * 7)):
        with pytest.raises(CorruptBlob):
            await anext(service.retrieve.stream_range(wrong, 0, 1))


# -- blobs stored before digests ---------------------------------------------------------


async def legacy(service: DriveService, metadata: InMemoryMetadataRepository, data: bytes) -> BlobRecord:
    stored = (await service.store("old", single_chunk(data))).record
    record = replace(stored, chunk_size=None, chunk_digests=None)
    metadata.records["old"] = record
    return record


async def test_a_range_of_a_blob_without_digests_is_checked_against_the_whole_hash(
    service: DriveService, metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository
) -> None:
    record = await legacy(service, metadata, DATA)
    assert not record.chunked
    assert await collect(service.retrieve.stream_range(record, 5, MiB + 5)) == DATA[5 : MiB + 5]
    damage(blobs, record, len(DATA) - 1)  # far from the range: still found, before the range ends
    received = bytearray()
    with pytest.raises(CorruptBlob):
        async for chunk in service.retrieve.stream_range(record, 0, 6):
            received += chunk
    assert not received
    with pytest.raises(CorruptBlob):
        async for chunk in service.retrieve.stream_range(record, 0, MiB):
            received += chunk
    assert len(received) < MiB  # never the whole range


# -- fsck and migrate --------------------------------------------------------------------


async def test_fsck_names_the_damaged_chunks(service: DriveService, blobs: InMemoryBlobRepository) -> None:
    record = (await service.store("big", single_chunk(DATA))).record
    await service.store("fine", single_chunk(DATA[:MiB]))
    damage(blobs, record, MiB + 1)
    damage(blobs, record, 3 * MiB + 1)
    report = await service.check()
    assert [r.id for r in report.corrupt] == ["big"]
    assert report.damaged_chunks == {"big": (1, 3)}
    assert report.bytes_verified == len(DATA) + MiB

    blobs.objects[record.storage_key] = DATA[: 2 * MiB]  # chunks 2 and 3 gone
    assert (await service.check()).damaged_chunks == {"big": (2, 3)}


async def test_fsck_still_checks_blobs_without_digests(
    service: DriveService, metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository
) -> None:
    record = await legacy(service, metadata, DATA)
    assert (await service.check()).problems == 0
    damage(blobs, record, 10)
    report = await service.check()
    assert [r.id for r in report.corrupt] == ["old"] and report.damaged_chunks == {}


async def test_migrate_keeps_the_digests_and_refuses_damaged_chunks(
    two: tuple[InMemoryBlobRepository, InMemoryBlobRepository, DriveService],
) -> None:
    old, _new, service = two
    moved = (await service.store("moved", single_chunk(DATA))).record
    bad = (await service.store("bad", single_chunk(DATA))).record
    damage(old, bad, 2 * MiB)
    report = await service.migrate("new")
    assert report.moved == 1 and report.corrupt == ["bad"]
    after = await service.retrieve.stat("moved")
    assert after.backend == "new" and after.storage_key != moved.storage_key
    assert (after.chunk_size, after.chunk_digests) == (moved.chunk_size, moved.chunk_digests)
    assert await collect(service.retrieve.stream_range(after, MiB, MiB + 9)) == DATA[MiB : MiB + 9]


async def test_an_empty_blob_reads_empty_and_its_missing_bytes_are_found(
    service: DriveService, blobs: InMemoryBlobRepository
) -> None:
    record = (await service.store("empty", single_chunk(b""))).record
    assert record.chunked and record.chunk_count == 0
    assert await service.retrieve.read_all(record) == b""
    del blobs.objects[record.storage_key]
    with pytest.raises(CorruptBlob):
        await service.retrieve.read_all(record)


async def test_fsck_repair_adds_digests_to_intact_blobs_stored_before_them(
    service: DriveService, metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository
) -> None:
    stored = (await service.store("old", single_chunk(DATA))).record
    metadata.records["old"] = replace(stored, chunk_size=None, chunk_digests=None)
    damaged = (await service.store("damaged", single_chunk(DATA))).record
    metadata.records["damaged"] = replace(damaged, chunk_size=None, chunk_digests=None)
    damage(blobs, damaged, 5)

    report = await service.check()
    assert (report.without_digests, report.digests_added) == (1, 0)
    assert not metadata.records["old"].chunked  # checking changed nothing

    repaired = await service.check(repair=True)
    assert (repaired.without_digests, repaired.digests_added) == (1, 1)
    assert metadata.records["old"] == stored  # the digests the store would have recorded
    assert "damaged" not in metadata.records  # forgotten, never given digests
    assert (await service.check()).without_digests == 0


async def test_digests_are_added_only_to_the_record_they_were_computed_for(
    metadata: InMemoryMetadataRepository, service: DriveService
) -> None:
    stored = (await service.store("b", single_chunk(DATA))).record
    legacy_record = replace(stored, chunk_size=None, chunk_digests=None)
    metadata.records["b"] = legacy_record
    assert not await metadata.add_chunk_digests(replace(stored, storage_key="f" * 32))  # moved meanwhile
    assert await metadata.add_chunk_digests(stored)
    assert not await metadata.add_chunk_digests(replace(stored, chunk_digests=b"\0" * 128))  # has some already
    assert metadata.records["b"] == stored


def test_a_one_chunk_record_has_one_digest() -> None:
    record = BlobRecord("x", 5, hashlib.sha256(b"hello").hexdigest(), utc_now(), "memory", "k" * 32, MiB, b"")
    assert record.chunk_count == 1
    assert record.chunk_digest(0) == hashlib.sha256(b"hello").digest()
    assert record.chunk_digest(1) == b""  # bytes past the end never match


async def test_fsck_finds_bytes_appended_to_a_blob(service: DriveService, blobs: InMemoryBlobRepository) -> None:
    record = (await service.store("grown", single_chunk(DATA[:MiB]))).record
    blobs.objects[record.storage_key] = DATA[:MiB] * 2  # one more chunk, a copy of the first
    report = await service.check()
    assert [r.id for r in report.corrupt] == ["grown"] and report.damaged_chunks == {"grown": (1,)}


async def test_damage_is_named_by_its_chunk_within_a_verified_span(
    service: DriveService, blobs: InMemoryBlobRepository, caplog: pytest.LogCaptureFixture
) -> None:
    # Chunks are hashed two at a time: the second of a pair is still the one named.
    record = (await service.store("big", single_chunk(DATA))).record
    damage(blobs, record, MiB + 5)
    with caplog.at_level(logging.ERROR), pytest.raises(CorruptBlob):
        await collect(service.retrieve.stream(record))
    assert f"chunk 1 (bytes {MiB}-{2 * MiB - 1})" in caplog.text


async def test_bytes_past_the_recorded_size_are_not_read_out(
    service: DriveService, blobs: InMemoryBlobRepository
) -> None:
    record = (await service.store("big", single_chunk(DATA))).record
    blobs.objects[record.storage_key] += b"appended"
    assert await collect(service.retrieve.stream(record)) == DATA
    assert await collect(service.retrieve.stream_range(record, 3 * MiB, len(DATA))) == DATA[3 * MiB :]
