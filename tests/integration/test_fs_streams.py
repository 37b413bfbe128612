"""The filesystem adapter's streams: the next chunk is read, or the last piece written, while the
caller works on another; stopping early or failing leaves no file open and nothing staged. A
small body is written straight under its final name, never over another file."""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest

from drive.adapters.fs import READ_CHUNK, WRITEBACK_EVERY, FilesystemBlobRepository
from drive.application.streams import single_chunk
from drive.domain.errors import StorageUnavailable
from drive.domain.storage_keys import new_storage_key

pytestmark = pytest.mark.anyio


def open_files(path: Path) -> list[str]:
    """This process's descriptors open on ``path``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                found.append(fd)
        except OSError:  # closed since listed (the listing's own descriptor, for one)
            pass
    return found


Stored = tuple[FilesystemBlobRepository, str, bytes]


@pytest.fixture
async def stored(tmp_path: Path) -> Stored:
    fs = FilesystemBlobRepository(tmp_path)
    await fs.open()
    key = new_storage_key()
    data = os.urandom(3 * READ_CHUNK + 5)
    await fs.write(key, single_chunk(data))
    return fs, key, data


async def test_the_whole_stream_and_ranges_match(stored: Stored) -> None:
    fs, key, data = stored
    assert b"".join([c async for c in fs.read(key)]) == data
    for start, end in [(1, READ_CHUNK + 1), (READ_CHUNK, 3 * READ_CHUNK), (5, None), (len(data) - 1, None)]:
        assert b"".join([c async for c in fs.read(key, start, end)]) == data[start:end], (start, end)
    assert open_files(Path(fs._object_file(key))) == []


async def test_a_reader_that_stops_early_leaves_no_file_open(stored: Stored) -> None:
    fs, key, data = stored
    path = Path(fs._object_file(key))
    async with aclosing(fs.read(key)) as reader:
        assert await anext(reader) == data[:READ_CHUNK]  # the next chunk is being read meanwhile
        assert len(open_files(path)) == 1
    assert open_files(path) == []


async def test_a_cancelled_reader_leaves_no_file_open(stored: Stored) -> None:
    fs, key, data = stored
    path = Path(fs._object_file(key))
    got = []
    with anyio.CancelScope() as scope:
        async with aclosing(fs.read(key)) as reader:
            async for chunk in reader:
                got.append(chunk)
                if len(got) == 2:
                    scope.cancel()
                await anyio.sleep(0.01)
    assert scope.cancelled_caught and b"".join(got) == data[: 2 * READ_CHUNK]
    assert open_files(path) == []


class BrokeOff(Exception):
    pass


async def body(size: int, *, fail_after: int | None = None) -> AsyncIterator[bytes]:
    """A request body arriving 64 KiB at a time; it breaks off after ``fail_after`` bytes."""
    sent = 0
    while sent < size:
        if fail_after is not None and sent >= fail_after:
            raise BrokeOff("the client went away")
        piece = os.urandom(min(64 * 1024, size - sent))
        sent += len(piece)
        yield piece
        await anyio.sleep(0)


async def test_a_body_written_while_it_arrives_is_stored_whole(tmp_path: Path) -> None:
    fs = FilesystemBlobRepository(tmp_path)
    await fs.open()
    key = new_storage_key()
    sent = bytearray()

    async def kept() -> AsyncIterator[bytes]:
        async for piece in body(5 * READ_CHUNK + 3):
            sent.extend(piece)
            yield piece

    assert await fs.write(key, kept()) == len(sent)
    assert b"".join([c async for c in fs.read(key)]) == sent
    assert open_files(Path(fs._object_file(key))) == []


async def test_a_large_body_is_handed_to_the_disk_while_it_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Writeback of each whole stretch starts as it is written, not at the final fsync.
    advised: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        advised.append((offset, length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    fs = FilesystemBlobRepository(tmp_path)
    await fs.open()
    key = new_storage_key()
    size = 2 * WRITEBACK_EVERY + WRITEBACK_EVERY // 2 + 3  # two whole stretches and part of a third
    assert await fs.write(key, body(size)) == size
    assert advised == [
        (0, WRITEBACK_EVERY, os.POSIX_FADV_DONTNEED),
        (WRITEBACK_EVERY, WRITEBACK_EVERY, os.POSIX_FADV_DONTNEED),
    ]
    assert sum([len(c) async for c in fs.read(key)]) == size


async def test_an_upload_piece_is_handed_to_the_disk_while_it_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    advised: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, offset, length, advice: advised.append((offset, length)))
    fs = FilesystemBlobRepository(tmp_path)
    await fs.open()
    key = new_storage_key()
    state = await fs.begin_pieces(key)
    first = 3 * READ_CHUNK
    _, state = await fs.append_piece(key, state, 0, body(first))
    assert advised == []
    # The second piece completes the first stretch, counted from the staged file's start.
    _, state = await fs.append_piece(key, state, first, body(WRITEBACK_EVERY))
    assert advised == [(0, WRITEBACK_EVERY)]


async def test_a_body_that_breaks_off_leaves_nothing_staged_or_open(tmp_path: Path) -> None:
    fs = FilesystemBlobRepository(tmp_path)
    await fs.open()
    key = new_storage_key()
    with pytest.raises(BrokeOff):  # the body's own error, unchanged
        await fs.write(key, body(8 * READ_CHUNK, fail_after=3 * READ_CHUNK))
    staging = fs._staging_path(key)
    assert not staging.exists() and open_files(staging) == []
    assert [k async for k in fs.list_keys()] == []


async def test_a_cancelled_write_leaves_nothing_staged_or_open(tmp_path: Path) -> None:
    fs = FilesystemBlobRepository(tmp_path)
    await fs.open()
    key = new_storage_key()
    with anyio.move_on_after(0.05) as scope:
        await fs.write(key, body(1 << 40))  # endless for this test
    staging = fs._staging_path(key)
    assert scope.cancelled_caught and not staging.exists() and open_files(staging) == []


async def test_a_small_body_is_written_under_its_final_name_and_never_over_another(tmp_path: Path) -> None:
    fs = FilesystemBlobRepository(tmp_path)
    await fs.open()
    key = new_storage_key()
    assert await fs.write(key, single_chunk(b"small")) == 5
    final = Path(fs._object_file(key))
    assert final.read_bytes() == b"small"
    assert list((tmp_path / "staging").iterdir()) == []
    with pytest.raises(StorageUnavailable):  # keys are fresh: an existing file is never replaced
        await fs.write(key, single_chunk(b"other"))
    assert final.read_bytes() == b"small"


async def test_a_small_write_makes_its_removed_shard_again(tmp_path: Path) -> None:
    fs = FilesystemBlobRepository(tmp_path)
    await fs.open()
    key = new_storage_key()
    Path(fs._object_file(key)).parent.rmdir()
    await fs.write(key, single_chunk(b"small"))
    assert await fs.read_whole(key, 100) == b"small"


async def test_a_small_write_that_fails_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = FilesystemBlobRepository(tmp_path)
    await fs.open()
    key = new_storage_key()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageUnavailable, match="No space left"):
        await fs.write(key, single_chunk(b"small"))
    monkeypatch.undo()
    assert not Path(fs._object_file(key)).exists()
    assert [k async for k in fs.list_keys()] == []
