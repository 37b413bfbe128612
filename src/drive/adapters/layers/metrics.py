"""Per-backend operation metrics, as a layer around any ``BlobRepository`` (after OpenDAL's).

``MeteredBlobRepository`` wraps an adapter and records, labelled by backend name and
operation, how long each call took and how it ended; the adapter never knows. Streams
(``read``, ``list_keys``, ``list_strangers``) are timed to completion, or to the moment the consumer stops.

Outcomes: ``ok``; ``error`` (the backend failed; also counted in the errors counter by
kind); ``aborted`` (the caller's side ended the call: the upload body failed or was too
large, the client went away, the task was cancelled) which is no fault of the backend.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType
from typing import Any

from drive import deferred_metrics
from drive.domain.errors import StorageUnavailable, StoredBytesMissing
from drive.domain.ports import BlobRepository, PieceStaging
from drive.telemetry import BACKEND_BYTES, BACKEND_DURATION, BACKEND_ERRORS


def staging_of(inner: object, name: str) -> PieceStaging:
    """``inner`` as a ``PieceStaging``, or ``StorageUnavailable`` for a backend without resumable uploads."""
    if not isinstance(inner, PieceStaging):
        raise StorageUnavailable(f"backend {name} does not keep resumable uploads")
    return inner


def _error_kind(exc: Exception) -> str:
    if isinstance(exc, StoredBytesMissing):
        return "missing"
    if isinstance(exc, StorageUnavailable):
        return "unavailable"
    return "unexpected"  # the port promises StorageUnavailable: anything else is a bug


class _Source:
    """The caller's chunk stream, counted; remembers whether it (not the backend) failed."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks
        self.size = 0
        self.failed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        iterator = aiter(self._chunks)
        while True:
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except BaseException:
                self.failed = True
                raise
            self.size += len(chunk)
            yield chunk


async def _aclose(stream: AsyncIterator[bytes] | AsyncIterator[str]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


class _Timed:
    """Times one backend call and records how it ended (a class: ``@contextmanager`` cost a
    generator and its frames per call, about a microsecond of every small read)."""

    __slots__ = ("_layer", "_operation", "_source", "_started")

    def __init__(self, layer: MeteredBlobRepository, operation: str, source: _Source | None) -> None:
        self._layer = layer
        self._operation = operation
        self._source = source
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            outcome = "ok"
        elif isinstance(exc, Exception) and (self._source is None or not self._source.failed):
            outcome = "error"
            deferred_metrics.inc(BACKEND_ERRORS.labels(self._layer.name, self._operation, _error_kind(exc)))
        else:  # the caller's side ended it: its body failed, it went away, it was cancelled
            outcome = "aborted"
        deferred_metrics.observe(self._layer._duration(self._operation, outcome), time.perf_counter() - self._started)


class MeteredBlobRepository:
    def __init__(self, inner: BlobRepository) -> None:
        self.inner = inner
        self.name = inner.name
        # labels() locks and builds a key per call: children cached per (operation, outcome).
        self._durations: dict[tuple[str, str], Any] = {}
        self._bytes = {direction: BACKEND_BYTES.labels(self.name, direction) for direction in ("read", "write")}

    def _duration(self, operation: str, outcome: str) -> Any:
        child = self._durations.get((operation, outcome))
        if child is None:
            child = self._durations[(operation, outcome)] = BACKEND_DURATION.labels(self.name, operation, outcome)
        return child

    def __repr__(self) -> str:
        return f"MeteredBlobRepository({self.inner!r})"

    def _timed(self, operation: str, source: _Source | None = None) -> _Timed:
        return _Timed(self, operation, source)

    async def open(self) -> None:
        with self._timed("open"):
            await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        with self._timed("ping"):
            await self.inner.ping()

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        source = _Source(chunks)
        try:
            with self._timed("write", source):
                return await self.inner.write(key, source)
        finally:
            deferred_metrics.inc(self._bytes["write"], source.size)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        stream = self.inner.read(key, start, end)
        size = 0
        try:
            with self._timed("read"):
                try:
                    async for chunk in stream:
                        size += len(chunk)
                        yield chunk
                finally:
                    await _aclose(stream)  # at once, even when our consumer stops early
        finally:
            deferred_metrics.inc(self._bytes["read"], size)

    async def read_whole(self, key: str, limit: int) -> bytes:
        with self._timed("read"):
            data = await self.inner.read_whole(key, limit)
        deferred_metrics.inc(self._bytes["read"], len(data))
        return data

    async def delete(self, key: str) -> None:
        with self._timed("delete"):
            await self.inner.delete(key)

    async def list_keys(self) -> AsyncIterator[str]:
        stream = self.inner.list_keys()
        with self._timed("list_keys"):
            try:
                async for key in stream:
                    yield key
            finally:
                await _aclose(stream)

    async def list_strangers(self) -> AsyncIterator[str]:
        stream = self.inner.list_strangers()
        with self._timed("list_strangers"):
            try:
                async for name in stream:
                    yield name
            finally:
                await _aclose(stream)

    # -- PieceStaging, forwarded (a backend without it answers StorageUnavailable) ---------

    async def begin_pieces(self, key: str) -> str:
        with self._timed("begin_pieces"):
            return await staging_of(self.inner, self.name).begin_pieces(key)

    async def append_piece(self, key: str, state: str, offset: int, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        source = _Source(chunks)
        try:
            with self._timed("append_piece", source):
                return await staging_of(self.inner, self.name).append_piece(key, state, offset, source)
        finally:
            deferred_metrics.inc(self._bytes["write"], source.size)

    async def read_pieces(self, key: str, state: str, length: int) -> AsyncIterator[bytes]:
        stream = staging_of(self.inner, self.name).read_pieces(key, state, length)
        size = 0
        try:
            with self._timed("read_pieces"):
                try:
                    async for chunk in stream:
                        size += len(chunk)
                        yield chunk
                finally:
                    await _aclose(stream)
        finally:
            deferred_metrics.inc(self._bytes["read"], size)

    async def seal_pieces(self, key: str, state: str, length: int) -> None:
        with self._timed("seal_pieces"):
            await staging_of(self.inner, self.name).seal_pieces(key, state, length)
