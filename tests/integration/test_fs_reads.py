"""The filesystem adapter's streamed reads: each next chunk is read while the last one is used."""

from __future__ import annotations

import os
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest

from drive.adapters.fs import READ_CHUNK, FilesystemBlobRepository
from drive.application.streams import single_chunk
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
