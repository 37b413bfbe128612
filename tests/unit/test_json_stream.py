"""The streamed JSON GET body is byte for byte what encoding the whole blob at once gives."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest

from drive.domain.model import BlobRecord
from drive.entrypoints.http.schemas import BlobWithData, BlobWithDataStream, timestamp


def record(blob_id: str, data: bytes) -> BlobRecord:
    return BlobRecord(
        id=blob_id,
        size=len(data),
        sha256="0" * 64,
        created_at=datetime(2023, 1, 22, 21, 37, 55, tzinfo=UTC),
        backend="fs",
        storage_key="k" * 32,
    )


async def chunked(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    offset = 0
    for size in sizes:
        yield data[offset : offset + size]
        offset += size
    yield data[offset:]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("size", "chunks"),
    [
        (0, []),
        (1, []),
        (2, [1]),
        (10, [1, 1, 1, 2, 0, 4]),  # every leftover 0, 1 and 2, and an empty chunk
        (1000, [7, 300, 1, 2, 500]),
        (3 * 1024 + 2, [1024, 1024, 1024]),
    ],
)
async def test_streamed_body_equals_the_whole_encoding(size: int, chunks: list[int]) -> None:
    data = os.urandom(size)
    blob = record('odd "id"\\/é\u2028', data)
    stream = BlobWithDataStream(blob, chunked(data, chunks))
    body = b"".join([part async for part in stream])
    whole = BlobWithData(blob.id, base64.b64encode(data).decode(), str(size), timestamp(blob.created_at))
    assert body == msgspec.json.encode(whole)
    assert stream.length == len(body)
