"""Stream helpers shared by use-cases: hashing, counting and limiting chunks as they pass."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from drive.domain.errors import PayloadTooLarge


class Digesting:
    """Wraps a chunk stream; counts and SHA-256-hashes what passes, enforcing ``max_size``.

    ``on_progress`` is awaited now and then while bytes flow (lease renewal hangs on it).
    """

    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        max_size: int | None = None,
        on_progress: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._chunks = chunks
        self._max_size = max_size
        self._on_progress = on_progress
        self._hash = hashlib.sha256()
        self.size = 0
        self.finished = False

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self._max_size is not None and self.size > self._max_size:
                raise PayloadTooLarge(f"blob is larger than the limit of {self._max_size} bytes")
            self._hash.update(chunk)
            if self._on_progress is not None:
                await self._on_progress()
            yield chunk
        self.finished = True

    async def drain(self) -> None:
        """Consume the whole stream, keeping only the count and hash."""
        async for _ in self:
            pass


async def single_chunk(data: bytes) -> AsyncIterator[bytes]:
    """A stream of one in-memory body, for callers that already hold the bytes."""
    if data:
        yield data
