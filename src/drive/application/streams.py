"""Stream helpers shared by use-cases: hashing, counting and limiting chunks as they pass."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Generator
from typing import Generic, Protocol, TypeVar

from drive.domain.errors import PayloadTooLarge
from drive.domain.model import CHUNK_SIZE, pack_chunk_digests

T = TypeVar("T")
Data = bytes | bytearray

# Stored bodies are hashed a piece of at least this size at a time (see ``Digesting``).
HASH_PIECE = 1024 * 1024


class Offload(Protocol):
    """Runs ``work(data)`` away from the event loop (hashing, say); supplied by the composition root.

    What it returns is already at work (in a worker thread), so the caller goes on (hands on the
    chunk before, receives the next piece) and awaits the result later. ``at_once`` is the plain
    default, for tests and the CLI: the work is done before it returns.
    """

    def __call__(self, work: Callable[[Data], T], data: Data, /) -> Awaitable[T]: ...


def at_once(work: Callable[[Data], T], data: Data) -> Awaitable[T]:
    return _Done(work(data))


class _Done(Generic[T]):
    """An awaitable that already holds its value (left unawaited, it warns of nothing, unlike a coroutine)."""

    def __init__(self, value: T) -> None:
        self._value = value

    def __await__(self) -> Generator[None, None, T]:
        return self._value
        yield  # unreachable: makes this a generator, as __await__ must return an iterator


def chunk_sha256s(data: Data, chunk_size: int) -> list[bytes]:
    """The SHA-256 of each ``chunk_size`` slice of ``data`` (the last may be shorter)."""
    with memoryview(data) as view:
        return [hashlib.sha256(view[at : at + chunk_size]).digest() for at in range(0, len(view), chunk_size)]


class ChunkDigests:
    """The SHA-256 of each ``chunk_size`` piece of a stream that arrives in pieces of any size."""

    def __init__(self, chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.chunk_size = chunk_size
        self._done: list[bytes] = []
        self._hash = hashlib.sha256()
        self._filled = 0

    def update(self, data: Data) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self.chunk_size - self._filled)
            self._hash.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.chunk_size:
                self._done.append(self._hash.digest())
                self._hash = hashlib.sha256()
                self._filled = 0

    def copy(self) -> ChunkDigests:
        """An independent twin: feeding it leaves this one as it is."""
        twin = ChunkDigests(self.chunk_size)
        twin._done = list(self._done)
        twin._hash = self._hash.copy()
        twin._filled = self._filled
        return twin

    def digests(self) -> list[bytes]:
        """One digest per chunk so far; the last one may cover a partial chunk."""
        return [*self._done, self._hash.digest()] if self._filled else list(self._done)

    def packed(self) -> bytes:
        """The record form (``BlobRecord.chunk_digests``)."""
        return pack_chunk_digests(self.digests())


async def in_chunks(pieces: AsyncIterable[bytes], chunk_size: int) -> AsyncIterator[bytes]:
    """Re-cut a stream into ``chunk_size`` chunks (the last may be shorter), for checking each whole.

    Pieces that already are one whole chunk pass through without a copy.
    """
    buffer = bytearray()
    async for piece in pieces:
        if not buffer and len(piece) == chunk_size:
            yield piece
            continue
        buffer += piece
        while len(buffer) >= chunk_size:
            with memoryview(buffer) as view:
                chunk = bytes(view[:chunk_size])  # one copy (a bytearray slice would make two)
            del buffer[:chunk_size]
            yield chunk
    if buffer:
        yield bytes(buffer)


class Digesting:
    """Wraps a chunk stream; counts and SHA-256-hashes what passes, enforcing ``max_size``.

    Also digests each ``chunk_size`` chunk (None: not needed), for ``BlobRecord.chunk_digests``.
    ``on_progress`` is awaited now and then while bytes flow (lease renewal hangs on it).
    Chunks are gathered into pieces of ``HASH_PIECE`` bytes, each hashed through ``offload``
    while the next one arrives, the whole blob's hash and the chunks' as two separate calls (in
    two workers they run side by side); pieces are handed on as they are (the last may be shorter).
    """

    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        max_size: int | None = None,
        on_progress: Callable[[], Awaitable[None]] | None = None,
        chunk_size: int | None = CHUNK_SIZE,
        offload: Offload = at_once,
    ) -> None:
        self._chunks = chunks
        self._offload = offload
        self._max_size = max_size
        self._on_progress = on_progress
        self._hash = hashlib.sha256()
        self.chunks = None if chunk_size is None else ChunkDigests(chunk_size)
        self.size = 0
        self.finished = False

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    @property
    def chunk_size(self) -> int | None:
        return None if self.chunks is None else self.chunks.chunk_size

    @property
    def chunk_digests(self) -> bytes | None:
        return None if self.chunks is None else self.chunks.packed()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        gathered: list[bytes] = []
        length = 0  # of the gathered chunks
        # The last piece's hashes, under way: the whole blob's and its chunks' run side by side.
        hashing: list[Awaitable[None]] = []
        async for chunk in self._chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self._max_size is not None and self.size > self._max_size:
                raise PayloadTooLarge(f"blob is larger than the limit of {self._max_size} bytes")
            if self._on_progress is not None:
                await self._on_progress()
            gathered.append(chunk)
            length += len(chunk)
            if length < HASH_PIECE:
                continue
            piece = b"".join(gathered)  # one copy; none for a chunk that is large alone
            gathered, length = [], 0
            await _all(hashing)  # the hashes take their pieces in order
            hashing = self._absorb(piece)
            yield piece
        await _all(hashing)
        if gathered:
            piece = b"".join(gathered)
            await _all(self._absorb(piece))
            yield piece
        self.finished = True

    def _absorb(self, piece: Data) -> list[Awaitable[None]]:
        """Start hashing ``piece``: the whole blob's hash and the chunks' each through ``offload``."""
        started = [self._offload(self._hash.update, piece)]
        if self.chunks is not None:
            started.append(self._offload(self.chunks.update, piece))
        return started

    async def drain(self) -> None:
        """Consume the whole stream, keeping only the count and hash."""
        async for _ in self:
            pass


async def _all(work: list[Awaitable[None]]) -> None:
    for under_way in work:
        await under_way


async def single_chunk(data: bytes) -> AsyncIterator[bytes]:
    """A stream of one in-memory body, for callers that already hold the bytes."""
    if data:
        yield data
