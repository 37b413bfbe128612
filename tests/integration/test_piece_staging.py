"""PieceStaging, one contract for every backend that keeps resumable-upload pieces.

Each backend is built through the container from the same settings a server gets
(``tests/integration/backends.py``), so adding a backend is one more entry in
``STAGING_PARAMS`` (and, for the check that nothing is left behind, one more entry in
``LEFTOVERS``). Sizes are chosen around S3's parts: 5 MiB is S3's smallest non-final
part, ``PART`` the part size the S3 backend cuts pieces at.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Protocol, cast

import pytest

from drive.adapters.s3.multipart import DEFAULT_PART_SIZE
from drive.domain.errors import StoredBytesMissing
from drive.domain.ports import BlobRepository, PieceStaging
from drive.domain.storage_keys import is_shard
from tests.integration.backends import BackendUnderTest, make_backend
from tests.integration.servers.ftp import FtpServer
from tests.integration.servers.s3 import MotoServer, s3_client

pytestmark = pytest.mark.anyio

STAGING_PARAMS = ["fs", "db-sqlite", "s3-path", "ftp", "ftps"]
MIB = 1024 * 1024
PART = DEFAULT_PART_SIZE
STATE_LIMIT = 64 * 1024


class StagingRepository(BlobRepository, PieceStaging, Protocol):
    """A byte backend that also keeps pieces (the same class implements both ports)."""


def _s3_leftovers(backend: BackendUnderTest) -> set[str]:
    assert isinstance(backend.server, MotoServer)
    client, bucket = s3_client(backend.server), backend.env["S3_BUCKET"]
    objects = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return {item["Key"] for item in objects} | {f"upload of {item['Key']}" for item in uploads}


def _ftp_leftovers(backend: BackendUnderTest) -> set[str]:
    """Every file, and every directory but the layout's own (objects, its shards, staging)."""
    assert isinstance(backend.server, FtpServer)
    root = backend.server.root / backend.env["FTP_BASE_DIR"].lstrip("/")
    found = set()
    for path in root.rglob("*"):
        name = path.relative_to(root).as_posix()
        layout = name in ("objects", "staging") or (path.parent.name == "objects" and is_shard(path.name))
        if not (path.is_dir() and layout):
            found.add(name)
    return found


def _fs_leftovers(backend: BackendUnderTest) -> set[str]:
    """Every file under the directory, and every directory but the layout's own."""
    root = Path(backend.env["FS_BASE_PATH"])
    found = set()
    for path in root.rglob("*"):
        name = path.relative_to(root).as_posix()
        layout = name in ("objects", "staging") or (path.parent.name == "objects" and is_shard(path.name))
        if not (path.is_dir() and layout):
            found.add(name)
    return found


def _db_leftovers(backend: BackendUnderTest) -> set[str]:
    """Each object row, and chunk rows of no object (SQLite: read with the standard library, not the adapter).

    A blob is one object row and its chunk rows; rows of a removed object must be gone with it.
    """
    url = backend.env["BLOB_DATABASE_URL"]
    assert url.startswith("sqlite:///"), url
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
        objects = {key for (key,) in db.execute("SELECT storage_key FROM drive_blob_objects")}
        chunks = set(db.execute("SELECT storage_key, seq FROM drive_blob_chunks"))
    return {f"object {key}" for key in objects} | {f"chunk {key}/{seq}" for key, seq in chunks if key not in objects}


# What each kind of backend holds in its own terms: nothing may be left after ``delete``.
LEFTOVERS: dict[str, Callable[[BackendUnderTest], set[str]]] = {
    "fs": _fs_leftovers,
    "db": _db_leftovers,
    "s3": _s3_leftovers,
    "ftp": _ftp_leftovers,
}


class Staged:
    def __init__(self, backend: BackendUnderTest) -> None:
        self.backend = backend
        self.repo = self.build()

    def build(self) -> StagingRepository:
        repo = self.backend.repository()
        assert isinstance(repo, PieceStaging)
        return cast(StagingRepository, repo)

    async def reopen(self) -> None:
        """Another process: a new adapter on the same stores, knowing only what the caller recorded."""
        await self.repo.close()
        self.repo = self.build()
        await self.repo.open()

    def leftovers(self) -> set[str]:
        return LEFTOVERS[self.backend.storage](self.backend)

    def assert_only_published(self) -> None:
        """After a seal nothing staged remains: one entry, the blob's bytes (as after ``write``)."""
        assert len(self.leftovers()) == 1, self.leftovers()


@pytest.fixture(params=STAGING_PARAMS)
async def staged(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Staged]:
    staged = Staged(make_backend(request, request.param, tmp_path))
    await staged.repo.open()
    try:
        yield staged
    finally:
        await staged.repo.close()


class Boom(Exception):
    """The client went away mid-request."""


def data_of(size: int, seed: int) -> bytes:
    # Not periodic, so bytes at the wrong offset cannot pass for the right ones.
    return random.Random(seed).randbytes(size)


async def chunked(data: bytes, size: int = MIB) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def failing_after(data: bytes, size: int = MIB) -> AsyncIterator[bytes]:
    async for chunk in chunked(data, size):
        yield chunk
    raise Boom


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def keys(repo: StagingRepository) -> list[str]:
    return [key async for key in repo.list_keys()]


async def strangers(repo: StagingRepository) -> list[str]:
    return [name async for name in repo.list_strangers()]


def new_key(n: int) -> str:
    return f"{n:032x}"


class Upload:
    """One upload as its caller sees it: the recorded state and the bytes it stands for."""

    def __init__(self, repo: StagingRepository, key: str, state: str) -> None:
        self.repo, self.key, self.state, self.data = repo, key, state, b""

    async def append(self, data: bytes, chunk: int = MIB) -> None:
        count, state = await self.repo.append_piece(self.key, self.state, len(self.data), chunked(data, chunk))
        assert count == len(data)
        assert len(state.encode()) <= STATE_LIMIT
        self.state, self.data = state, self.data + data

    async def check_prefixes(self, *lengths: int) -> None:
        for length in lengths:
            got = await collect(self.repo.read_pieces(self.key, self.state, length))
            assert got == self.data[:length], length

    async def seal_and_check(self) -> None:
        await self.repo.seal_pieces(self.key, self.state, len(self.data))
        assert await collect(self.repo.read(self.key)) == self.data


async def begin(repo: StagingRepository, key: str) -> Upload:
    return Upload(repo, key, await repo.begin_pieces(key))


def many_sizes() -> Iterator[tuple[str, int]]:
    """Appends of every awkward size, crossing part boundaries every way (running total in comments)."""
    yield "nothing", 0
    yield "one byte", 1
    yield "tiny", 1000
    yield "exactly 5 MiB", 5 * MIB  # 5 MiB + 1001
    yield "unaligned", 3 * MIB + 7  # past the first part
    yield "more than a part", PART + 1  # past the second
    total = 5 * MIB + 1001 + 3 * MIB + 7 + PART + 1
    yield "up to near a part's end", 3 * PART - 300 * 1024 - total
    for _ in range(12):  # 12 x 32 KiB: past the third part in tiny steps
        yield "tiny step", 32 * 1024


async def test_appends_of_every_size_read_back_and_seal(staged: Staged) -> None:
    repo, key = staged.repo, new_key(1)
    upload = await begin(repo, key)
    for n, (what, size) in enumerate(many_sizes()):
        before = len(upload.data)
        await upload.append(data_of(size, seed=n), chunk=256 * 1024 if n % 2 else 3 * MIB)
        assert len(upload.data) == before + size, what
    assert len(upload.data) > 3 * PART
    await upload.check_prefixes(0, 1, 1001, PART - 1, PART, PART + 1, 2 * PART + 12345, len(upload.data))
    assert key in await keys(repo)  # only staged pieces so far
    assert await strangers(repo) == []

    await upload.seal_and_check()
    staged.assert_only_published()
    await upload.seal_and_check()  # sealing a sealed key is fine
    staged.assert_only_published()
    assert await keys(repo) == [key]
    assert await strangers(repo) == []
    await repo.delete(key)
    assert await keys(repo) == []
    assert staged.leftovers() == set()


async def test_failed_append_leaves_the_recorded_state_valid(staged: Staged) -> None:
    repo = staged.repo
    upload = await begin(repo, new_key(2))
    await upload.append(data_of(3 * MIB, seed=1))
    # The client goes away after sending more than fills a part.
    with pytest.raises(Boom):
        await repo.append_piece(upload.key, upload.state, len(upload.data), failing_after(data_of(6 * MIB, seed=2)))
    with pytest.raises(Boom):  # and once before sending anything
        await repo.append_piece(upload.key, upload.state, len(upload.data), failing_after(b""))
    await upload.append(data_of(MIB + 3, seed=3))  # only these bytes count
    await upload.check_prefixes(len(upload.data), 3 * MIB + 1)
    await upload.append(data_of(PART, seed=4))
    await upload.check_prefixes(len(upload.data))
    await upload.seal_and_check()
    assert await strangers(repo) == []


# (recorded first, appended but never recorded, appended again at the recorded offset)
LEFTOVER_CASES = {
    "leftover crosses a part, resent does not": (3 * MIB, 7 * MIB, MIB),
    "leftover short, resent crosses a part": (3 * MIB, MIB, 7 * MIB),
    "both from nothing, resent longer": (0, PART + 5, PART + 9),
    "resent shorter than the leftover at a part's start": (PART, 2 * MIB, 17),
}


@pytest.mark.parametrize("sizes", LEFTOVER_CASES.values(), ids=LEFTOVER_CASES.keys())
async def test_unrecorded_append_is_replaced_by_the_next(staged: Staged, sizes: tuple[int, int, int]) -> None:
    first, lost, resent = sizes
    upload = await begin(staged.repo, new_key(3))
    await upload.append(data_of(first, seed=1))
    # Lands, but the process dies before the metadata store records the new state.
    count, _ = await staged.repo.append_piece(upload.key, upload.state, first, chunked(data_of(lost, seed=2)))
    assert count == lost
    # Another process continues from the recorded state and offset.
    await staged.reopen()
    upload.repo = staged.repo
    await upload.append(data_of(resent, seed=3))
    await upload.check_prefixes(first, len(upload.data))
    await upload.append(data_of(MIB, seed=4))  # and the upload goes on from there
    await upload.check_prefixes(len(upload.data))
    await upload.seal_and_check()
    staged.assert_only_published()
    await upload.seal_and_check()
    assert await strangers(staged.repo) == []
    await staged.repo.delete(upload.key)
    assert staged.leftovers() == set()


async def test_twice_unrecorded_then_sealed(staged: Staged) -> None:
    upload = await begin(staged.repo, new_key(4))
    await upload.append(data_of(2 * MIB, seed=1))
    for seed in (2, 3):
        await staged.repo.append_piece(upload.key, upload.state, 2 * MIB, chunked(data_of(PART, seed=seed)))
    await upload.append(data_of(5, seed=4))  # the final piece
    await upload.seal_and_check()
    staged.assert_only_published()


async def test_empty_upload_seals_to_an_empty_blob(staged: Staged) -> None:
    repo = staged.repo
    upload = await begin(repo, new_key(5))
    await upload.check_prefixes(0)
    await upload.append(b"")
    await upload.seal_and_check()
    staged.assert_only_published()
    await upload.seal_and_check()
    assert await keys(repo) == [upload.key]
    await repo.delete(upload.key)
    assert await keys(repo) == []
    assert staged.leftovers() == set()


async def test_delete_before_seal_removes_every_piece(staged: Staged) -> None:
    repo = staged.repo
    upload = await begin(repo, new_key(6))
    other = await begin(repo, new_key(7))
    await upload.append(data_of(PART + MIB, seed=1))
    await repo.append_piece(upload.key, upload.state, len(upload.data), chunked(data_of(MIB, seed=2)))  # unrecorded
    await other.append(b"another upload")
    assert await keys(repo) == [upload.key, other.key]
    await repo.delete(upload.key)
    await repo.delete(upload.key)  # missing is fine
    assert await keys(repo) == [other.key]
    await repo.delete(other.key)
    assert staged.leftovers() == set()


async def test_bad_state_or_offset_is_refused(staged: Staged) -> None:
    upload = await begin(staged.repo, new_key(8))
    await upload.append(b"abc")
    with pytest.raises(ValueError):
        await staged.repo.append_piece(upload.key, upload.state, 2, chunked(b"d"))
    with pytest.raises(ValueError):
        await staged.repo.seal_pieces(upload.key, upload.state, 4)
    with pytest.raises(ValueError):
        await staged.repo.append_piece(upload.key, "{}", 3, chunked(b"d"))


async def test_pieces_deleted_meanwhile_are_missing_not_unavailable(staged: Staged) -> None:
    """Recovery removed an expired upload's bytes; its recorded state now names nothing."""
    repo = staged.repo
    upload = await begin(repo, new_key(9))
    await upload.append(b"some bytes")
    await repo.delete(upload.key)
    with pytest.raises(StoredBytesMissing):
        await collect(repo.read_pieces(upload.key, upload.state, len(upload.data)))
    with pytest.raises(StoredBytesMissing):
        await repo.append_piece(upload.key, upload.state, len(upload.data), chunked(b"more"))
    with pytest.raises(StoredBytesMissing):
        await repo.seal_pieces(upload.key, upload.state, len(upload.data))
    assert staged.leftovers() == set()
