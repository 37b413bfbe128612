"""The resumable-upload use-case (application/uploads.py) against the in-memory fakes, and the fs pieces."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drive.adapters.fs import FilesystemBlobRepository
from drive.adapters.memory import InMemoryBlobRepository, InMemoryMetadataRepository
from drive.application.commit_protocol import CommitProtocol
from drive.application.recover import Recover
from drive.application.streams import ChunkDigests, single_chunk
from drive.application.uploads import Uploads
from drive.domain.backends import Backends
from drive.domain.errors import (
    BlobConflict,
    InvalidId,
    PayloadTooLarge,
    PieceChecksumMismatch,
    StorageUnavailable,
    UploadConflict,
    UploadNotFound,
)
from drive.domain.model import CHUNK_SIZE
from drive.domain.storage_keys import new_storage_key
from tests.unit.wiring import CommitsThenLosesTheAnswer

pytestmark = pytest.mark.anyio

EXPIRY = timedelta(hours=1)
MAX = 1 << 30


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def protocol(metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository, clock: Clock) -> CommitProtocol:
    return CommitProtocol(metadata, Backends({"memory": blobs}, default="memory"), timedelta(seconds=60), clock)


@pytest.fixture
def uploads(protocol: CommitProtocol, metadata: InMemoryMetadataRepository) -> Uploads:
    return Uploads(protocol, metadata, EXPIRY)


async def pieces(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def failing(data: bytes) -> AsyncIterator[bytes]:
    yield data
    raise ConnectionResetError("client gone")


async def test_pieces_commit_the_blob_exactly_as_put(
    uploads: Uploads, metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository
) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 123)
    upload = await uploads.create("blob/1", len(data), max_size=MAX, content_type="image/png")
    assert upload.content_type == "image/png"
    assert upload.storage_key in metadata.pending  # the intent, before any byte
    cut = [0, 1000, CHUNK_SIZE + 5, len(data)]
    for start, end in itertools.pairwise(cut):
        upload = await uploads.append(upload.id, start, pieces(data[start:end], 4096))
    assert upload.completed and upload.offset == len(data)
    record = metadata.records["blob/1"]
    digests = ChunkDigests(CHUNK_SIZE)
    digests.update(data)
    assert (record.size, record.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (record.chunk_size, record.chunk_digests) == (CHUNK_SIZE, digests.packed())
    assert blobs.objects[record.storage_key] == data
    assert not metadata.pending
    assert uploads.rebuilt_bytes == 0  # one process saw every piece
    status = await uploads.status(upload.id)
    assert status.completed and status.offset == len(data)


async def test_another_process_rebuilds_the_hash_from_the_staged_bytes(
    uploads: Uploads, protocol: CommitProtocol, metadata: InMemoryMetadataRepository
) -> None:
    data = os.urandom(5000)
    upload = await uploads.create("blob/2", len(data), max_size=MAX)
    await uploads.append(upload.id, 0, single_chunk(data[:3000]))
    other = Uploads(protocol, metadata, EXPIRY)  # a second server process
    await other.append(upload.id, 3000, single_chunk(data[3000:]))
    assert other.rebuilt_bytes == 3000
    assert metadata.records["blob/2"].sha256 == hashlib.sha256(data).hexdigest()


async def test_offset_mismatch_checksum_and_length(uploads: Uploads) -> None:
    upload = await uploads.create("blob/3", 10, max_size=MAX)
    await uploads.append(upload.id, 0, single_chunk(b"01234"))
    with pytest.raises(UploadConflict):
        await uploads.append(upload.id, 3, single_chunk(b"34567"))
    with pytest.raises(PieceChecksumMismatch):
        await uploads.append(upload.id, 5, single_chunk(b"56789"), checksum=hashlib.sha256(b"x").digest())
    assert (await uploads.status(upload.id)).offset == 5
    with pytest.raises(PayloadTooLarge):
        await uploads.append(upload.id, 5, single_chunk(b"56789X"))
    with pytest.raises(ConnectionResetError):
        await uploads.append(upload.id, 5, failing(b"567"))
    assert (await uploads.status(upload.id)).offset == 5  # nothing of a failed piece counts
    done = await uploads.append(upload.id, 5, single_chunk(b"56789"), checksum=hashlib.sha256(b"56789").digest())
    assert done.completed


async def test_create_refuses_bad_ids_and_sizes(uploads: Uploads) -> None:
    with pytest.raises(InvalidId):
        await uploads.create("bad\x00id", 1, max_size=MAX)
    with pytest.raises(PayloadTooLarge):
        await uploads.create("big", 11, max_size=10)


async def test_a_second_request_gets_409_while_one_appends(uploads: Uploads, clock: Clock) -> None:
    upload = await uploads.create("blob/4", 10, max_size=MAX)
    seen: list[BaseException] = []

    async def meanwhile() -> AsyncIterator[bytes]:
        yield b"01"
        try:
            await uploads.append(upload.id, 0, single_chunk(b"x"))
        except UploadConflict as exc:
            seen.append(exc)
        yield b"23"

    await uploads.append(upload.id, 0, meanwhile())
    assert len(seen) == 1
    assert (await uploads.status(upload.id)).offset == 4
    # A holder that died: its lock lapses with the lease, and the next request proceeds.
    owner_dead = await uploads._claim(upload.id)  # a holder that then crashed
    assert owner_dead
    with pytest.raises(UploadConflict):
        await uploads.append(upload.id, 4, single_chunk(b"45"))
    clock.now += timedelta(seconds=61)
    assert (await uploads.append(upload.id, 4, single_chunk(b"45"))).offset == 6


async def test_expiry_then_recovery_removes_bytes_and_row(
    uploads: Uploads,
    protocol: CommitProtocol,
    metadata: InMemoryMetadataRepository,
    blobs: InMemoryBlobRepository,
    clock: Clock,
) -> None:
    upload = await uploads.create("blob/5", 10, max_size=MAX)
    await uploads.append(upload.id, 0, single_chunk(b"0123"))
    clock.now += EXPIRY - timedelta(seconds=1)
    await uploads.append(upload.id, 4, single_chunk(b"45"))  # a PATCH restarts the count
    clock.now += EXPIRY - timedelta(seconds=1)
    assert (await uploads.status(upload.id)).offset == 6
    clock.now += timedelta(seconds=2)
    with pytest.raises(UploadNotFound):
        await uploads.status(upload.id)
    with pytest.raises(UploadNotFound):
        await uploads.append(upload.id, 6, single_chunk(b"6789"))
    report = await Recover(protocol, metadata)()
    assert report.interrupted_removed == 1 and report.uploads_forgotten == 1
    assert upload.storage_key not in blobs.staged and not metadata.uploads and not metadata.pending


async def test_conflicting_and_same_bytes_at_commit(
    uploads: Uploads, protocol: CommitProtocol, metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository
) -> None:
    from drive.application.store_blob import StoreBlob

    store = StoreBlob(protocol)
    taken = await uploads.create("taken", 3, max_size=MAX)
    same = await uploads.create("same", 3, max_size=MAX)
    await store("taken", single_chunk(b"xyz"))
    await store("same", single_chunk(b"abc"))
    with pytest.raises(BlobConflict):
        await uploads.append(taken.id, 0, single_chunk(b"abc"))
    assert taken.id not in metadata.uploads and taken.storage_key not in blobs.objects
    assert (await uploads.append(same.id, 0, single_chunk(b"abc"))).completed
    assert same.storage_key not in blobs.objects  # surplus: the committed blob keeps its own bytes
    assert not metadata.pending


async def test_a_commit_cut_short_is_finished_by_head(uploads: Uploads, metadata: InMemoryMetadataRepository) -> None:
    upload = await uploads.create("blob/6", 4, max_size=MAX)
    # As if the process died after recording the last piece, before sealing and committing.
    await uploads.append(upload.id, 0, single_chunk(b"01"))
    owner = "dead"
    claimed = await metadata.claim_upload(
        upload.id, owner, uploads.protocol.clock(), uploads.protocol.clock(), uploads.protocol.clock() + EXPIRY
    )
    assert claimed is not None
    staging = uploads.protocol.backends.get("memory")
    _written, state = await staging.append_piece(claimed.storage_key, claimed.state, 2, single_chunk(b"23"))  # type: ignore[attr-defined]
    await metadata.advance_upload(upload.id, owner, 4, state)
    await metadata.release_upload(upload.id, owner)
    other = Uploads(uploads.protocol, metadata, EXPIRY)
    status = await other.status(upload.id)
    assert status.completed and status.offset == 4
    assert metadata.records["blob/6"].sha256 == hashlib.sha256(b"0123").hexdigest()


async def test_terminate(uploads: Uploads, metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository) -> None:
    upload = await uploads.create("blob/7", 10, max_size=MAX)
    await uploads.append(upload.id, 0, single_chunk(b"0123"))
    await uploads.terminate(upload.id)
    assert not metadata.uploads and not metadata.pending and upload.storage_key not in blobs.staged
    with pytest.raises(UploadNotFound):
        await uploads.terminate(upload.id)


async def test_empty_upload_commits_at_creation(uploads: Uploads, metadata: InMemoryMetadataRepository) -> None:
    upload = await uploads.create("empty", 0, max_size=MAX)
    assert upload.completed
    assert metadata.records["empty"].sha256 == hashlib.sha256(b"").hexdigest()


async def test_an_empty_upload_whose_commit_answer_is_lost_keeps_its_committed_bytes(
    clock: Clock, blobs: InMemoryBlobRepository
) -> None:
    metadata = CommitsThenLosesTheAnswer()
    protocol = CommitProtocol(metadata, Backends({"memory": blobs}, default="memory"), timedelta(seconds=60), clock)
    with pytest.raises(StorageUnavailable):
        await Uploads(protocol, metadata, EXPIRY).create("empty", 0, max_size=MAX)
    record = metadata.records["empty"]  # committed after all: its (empty) bytes stay
    assert blobs.objects[record.storage_key] == b"" and not metadata.pending and not metadata.uploads


async def test_fs_pieces_replace_leftovers_and_seal_idempotently(tmp_path: Path) -> None:
    fs = FilesystemBlobRepository(tmp_path)
    await fs.open()
    key = new_storage_key()
    state = await fs.begin_pieces(key)
    assert key in [k async for k in fs.list_keys()]  # a key with only staged pieces is listed
    _, state = await fs.append_piece(key, state, 0, single_chunk(b"hello "))
    with pytest.raises(ConnectionResetError):
        await fs.append_piece(key, state, 6, failing(b"LEFTOVER"))  # an interrupted append
    written, state = await fs.append_piece(key, state, 6, pieces(b"world", 2))
    assert written == 5
    assert b"".join([c async for c in fs.read_pieces(key, state, 11)]) == b"hello world"
    await fs.seal_pieces(key, state, 11)
    await fs.seal_pieces(key, state, 11)  # again after a crash: fine
    assert b"".join([c async for c in fs.read(key)]) == b"hello world"
    await fs.delete(key)
    assert [k async for k in fs.list_keys()] == []


async def test_a_failed_creation_with_upload_leaves_nothing(
    uploads: Uploads, metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository
) -> None:
    with pytest.raises(PieceChecksumMismatch):
        await uploads.create(
            "blob/8", 10, max_size=MAX, body=single_chunk(b"0123"), checksum=hashlib.sha256(b"x").digest()
        )
    assert not metadata.uploads and not metadata.pending and not blobs.staged
    created = await uploads.create("blob/8", 10, max_size=MAX, body=single_chunk(b"0123"))
    assert created.offset == 4 and not created.completed
    with pytest.raises(PayloadTooLarge):  # announced past the length: refused before reading
        await uploads.append(created.id, 4, failing(b""), declared=7)
