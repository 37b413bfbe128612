"""``BlobRepository.read_whole`` for backends that have nothing cheaper than their own stream."""

from __future__ import annotations

from collections.abc import AsyncIterable


async def joined(chunks: AsyncIterable[bytes]) -> bytes:
    """Every chunk of the stream, in one piece."""
    return b"".join([chunk async for chunk in chunks])
