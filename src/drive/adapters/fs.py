"""Filesystem BlobRepository: one file per storage key under ``FS_BASE_PATH``.

Layout: ``objects/<k[:2]>/<key>`` for a key's bytes, ``staging/<key>`` while a write of
more than one piece is in flight, or while a resumable upload's pieces arrive
(``PieceStaging``: each piece appended at the durable offset, the file cut there first,
fsynced before it counts). A longer write goes to staging, is fsynced, then renamed into
place and the directory fsynced; a body of one piece (up to WRITE_GATHER bytes) is written
and fsynced under its final name, and the directory fsynced. A file under ``objects/`` is
complete once ``write`` has returned; before that only its key's intent names it, and
readers only follow committed records. Blocking calls run in a worker thread, except
reads of small files: those are done inline (below).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import IO, TypeVar

import anyio
import anyio.to_thread

from drive.adapters import piece_length
from drive.adapters.whole_reads import joined
from drive.domain.errors import StorageUnavailable, StoredBytesMissing
from drive.domain.storage_keys import checked_key, is_shard, is_storage_key, shard

T = TypeVar("T")

READ_CHUNK = 2 * 1024 * 1024  # bytes per worker-thread hop when reading: what RetrieveBlob verifies per step
WRITE_GATHER = 1024 * 1024  # bytes gathered per worker-thread hop when writing
# Reads of up to this many bytes are done on the event loop: open, fstat, pread and close
# of a small local file take about 15 µs, a worker-thread hop about 100 µs of the loop's
# time in wake-ups and hand-offs (bench/compare.py). Bigger reads go through threads.
INLINE_READ_LIMIT = 64 * 1024
# ``open`` proves staging is writable with a file of this prefix, gone a moment later.
_PROBE = ".probe-"


class FilesystemBlobRepository:
    def __init__(self, base_path: str | os.PathLike[str], name: str = "fs") -> None:
        self.name = name
        self._root = Path(base_path).absolute()
        self._objects = self._root / "objects"
        self._staging = self._root / "staging"
        self._objects_dir = str(self._objects)  # reads build file names as text: pathlib costs more than the read

    def _object_file(self, key: str) -> str:
        key = checked_key(key)
        return f"{self._objects_dir}/{key[:2]}/{key}"

    def _object_path(self, key: str) -> Path:
        key = checked_key(key)
        return self._objects / shard(key) / key

    def _staging_path(self, key: str) -> Path:
        return self._staging / checked_key(key)

    async def open(self) -> None:
        def prepare() -> None:
            self._objects.mkdir(parents=True, exist_ok=True)
            self._staging.mkdir(parents=True, exist_ok=True)
            # Every shard directory up front, durably: a write then only names its file.
            for number in range(256):
                (self._objects / f"{number:02x}").mkdir(exist_ok=True)
            _fsync_dir(self._objects)
            # One name per opener: processes starting side by side must not unlink each other's probe.
            probe = self._staging / f"{_PROBE}{os.getpid()}-{id(self):x}"
            probe.write_bytes(b"")
            probe.unlink()

        try:
            await anyio.to_thread.run_sync(prepare)
        except OSError as exc:
            raise StorageUnavailable(f"FS_BASE_PATH is not a writable directory ({exc.strerror})") from None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        if not await anyio.to_thread.run_sync(self._objects.is_dir):
            raise StorageUnavailable("filesystem backend directory is missing")

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        staging = self._staging_path(key)
        final = self._object_path(key)
        handle: IO[bytes] | None = None
        writing: asyncio.Future[None] | None = None
        written = 0
        try:
            # Worker-thread hops cost more than small writes: chunks (as a body arrives, often
            # 64 KiB or less) are gathered to WRITE_GATHER bytes per hop. A body that fits is
            # written and fsynced under its final name in one hop (``_write_whole``); a longer
            # one is created in staging with its first piece and sealed (fsync, close, rename,
            # directory fsync) with its last.
            pieces = _gathered(chunks)
            first = await anext(pieces, b"")
            second = await anext(pieces, None)
            if second is None:
                await anyio.to_thread.run_sync(_write_whole, str(final), first)
                return len(first)
            handle = await anyio.to_thread.run_sync(_create, staging, first)
            written = len(first)
            del first
            piece: bytes | bytearray = second
            async for following in pieces:
                # Each piece is written in a worker while the next one is gathered from the body.
                if writing is not None:
                    await asyncio.shield(writing)
                writing = _started(_write_on, handle, piece, written)
                written += len(piece)
                piece = following
            if writing is not None:
                await asyncio.shield(writing)
                writing = None
            sealing, handle = handle, None
            await anyio.to_thread.run_sync(_write_and_publish, sealing, piece, staging, final)
            written += len(piece)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                if writing is not None:  # the worker lets go of the file first
                    await _settled(writing)
                await anyio.to_thread.run_sync(_discard, handle, staging)
            if isinstance(exc, OSError):
                raise StorageUnavailable(f"filesystem backend cannot write ({exc.strerror})") from None
            raise
        return written

    # -- PieceStaging ---------------------------------------------------------------------

    async def begin_pieces(self, key: str) -> str:
        try:
            await anyio.to_thread.run_sync(_create_empty, self._staging_path(key))
        except OSError as exc:
            raise StorageUnavailable(f"filesystem backend cannot write ({exc.strerror})") from None
        return piece_length.INITIAL

    async def append_piece(self, key: str, state: str, offset: int, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        piece_length.checked(state, offset)
        path = self._staging_path(key)
        try:
            handle = await anyio.to_thread.run_sync(_open_at, path, offset)
        except FileNotFoundError:
            raise StoredBytesMissing(f"no staged bytes for storage key {key}") from None
        except OSError as exc:
            raise StorageUnavailable(f"filesystem backend cannot write ({exc.strerror})") from None
        written = 0
        buffer = bytearray()
        try:
            # Hops to the worker thread cost more than small writes: pieces are gathered to
            # about READ_CHUNK first, so memory stays at one such buffer plus one chunk.
            # The caller's stream may raise anything (OSError too): it propagates unchanged.
            async for chunk in chunks:
                buffer += chunk
                written += len(chunk)
                if len(buffer) >= READ_CHUNK:
                    await _on_disk(_write_on, handle, bytes(buffer), offset + written - len(buffer))
                    buffer.clear()
            await _on_disk(_write_and_sync, handle, bytes(buffer))
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(handle.close)
        return written, piece_length.after(offset, written)

    async def read_pieces(self, key: str, state: str, length: int) -> AsyncIterator[bytes]:
        read = 0
        missing = f"no staged bytes for storage key {key}"
        async with aclosing(_streamed(str(self._staging_path(key)), 0, length, missing)) as chunks:
            async for chunk in chunks:
                read += len(chunk)
                yield chunk
        if read < length:
            raise StoredBytesMissing(f"staged bytes of storage key {key} are shorter than recorded")

    async def seal_pieces(self, key: str, state: str, length: int) -> None:
        piece_length.checked(state, length)
        try:
            await anyio.to_thread.run_sync(_seal_staged, self._staging_path(key), self._object_path(key), length)
        except FileNotFoundError:
            raise StoredBytesMissing(f"no staged bytes for storage key {key}") from None
        except OSError as exc:
            raise StorageUnavailable(f"filesystem backend cannot write ({exc.strerror})") from None

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._object_file(key)
        remaining = None if end is None else max(end - start, 0)
        if remaining == 0:
            if not await anyio.to_thread.run_sync(os.path.isfile, path):
                raise StoredBytesMissing(f"no bytes for storage key {key}")
            return
        small = _inline_read(path, start, remaining, key)
        if small is not None:
            if small:
                yield small
            return
        # aclosing: a reader that stops early closes the file now, not when the generator is collected.
        async with aclosing(_streamed(path, start, remaining, f"no bytes for storage key {key}")) as chunks:
            async for chunk in chunks:
                yield chunk

    async def read_whole(self, key: str, limit: int) -> bytes:
        path = self._object_file(key)
        small = _inline_read(path, 0, max(limit, 0), key)
        if small is not None:
            return small
        # Too large to read inline: streamed from here (``read`` would open and measure the file again).
        return await joined(_streamed(path, 0, max(limit, 0), f"no bytes for storage key {key}"))

    async def delete(self, key: str) -> None:
        paths = (self._object_path(key), self._staging_path(key))
        try:
            await anyio.to_thread.run_sync(_unlink_all, paths)
        except OSError as exc:
            raise StorageUnavailable(f"filesystem backend cannot delete ({exc.strerror})") from None

    async def list_keys(self) -> AsyncIterator[str]:
        for key in await _listed(self._scan):
            yield key

    def _scan(self) -> list[str]:
        found: set[str] = set()
        # Only names the service could have made, each where it would have put it: a
        # stranger's file is left alone (``list_strangers`` reports it), never a crash.
        for directory in [*self._shards(), self._staging]:
            with os.scandir(directory) as entries:
                found.update(e.name for e in entries if _ours(e, directory.name) and e.is_file())
        return sorted(found)

    async def list_strangers(self) -> AsyncIterator[str]:
        for name in await _listed(self._strangers):
            yield name

    def _strangers(self) -> list[str]:
        """Everything under objects/ and staging/ that ``_scan`` skips; a directory's name ends in ``/``."""
        found: list[str] = []
        with os.scandir(self._objects) as top:
            for entry in top:  # one pass: a shard made meanwhile is never taken for a stranger
                if _is_shard_dir(entry):
                    found += _strangers_in(self._objects / entry.name, f"objects/{entry.name}/")
                else:
                    found.append(_shown(entry, "objects/"))
        found += _strangers_in(self._staging, "staging/")
        return sorted(found)

    def _shards(self) -> list[Path]:
        with os.scandir(self._objects) as entries:
            return [self._objects / e.name for e in entries if _is_shard_dir(e)]


def _is_shard_dir(entry: os.DirEntry[str]) -> bool:
    return is_shard(entry.name) and entry.is_dir()


def _ours(entry: os.DirEntry[str], directory: str) -> bool:
    """A name the service would have given an entry of ``directory`` (a shard, or staging)."""
    return is_storage_key(entry.name) and (directory == "staging" or entry.name[:2] == directory)


def _strangers_in(directory: Path, shown_as: str) -> list[str]:
    # A staged probe is ours too: another process's ``open`` may be between writing and unlinking it.
    probe = _PROBE if directory.name == "staging" else None
    with os.scandir(directory) as entries:
        return [
            _shown(e, shown_as)
            for e in entries
            if not (_ours(e, directory.name) and e.is_file()) and not (probe and e.name.startswith(probe))
        ]


def _shown(entry: os.DirEntry[str], parent: str) -> str:
    return f"{parent}{entry.name}/" if entry.is_dir(follow_symlinks=False) else f"{parent}{entry.name}"


def _create(path: Path, first: bytes | bytearray) -> IO[bytes]:
    handle = open(path, "xb")  # noqa: SIM115 - closed by _seal_and_publish or _discard
    try:
        handle.write(first)
    except BaseException:
        handle.close()
        raise
    return handle


async def _gathered(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes | bytearray]:
    """``chunks`` regrouped into pieces of at least WRITE_GATHER bytes (the last may be shorter)."""
    buffer = bytearray()
    async for chunk in chunks:
        if not buffer and len(chunk) >= WRITE_GATHER:
            yield chunk  # already large: no copy
            continue
        buffer += chunk
        if len(buffer) >= WRITE_GATHER:
            yield buffer
            buffer = bytearray()  # a new one: the piece handed on is never changed
    if buffer:
        yield buffer


def _write_and_publish(handle: IO[bytes], last: bytes | bytearray, staging: Path, final: Path) -> None:
    handle.write(last)
    _seal_and_publish(handle, staging, final)


def _seal_and_publish(handle: IO[bytes], staging: Path, final: Path) -> None:
    try:
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()
    _publish(str(staging), str(final))


def _publish(staging: str, final: str) -> None:
    """Rename a sealed file into its shard, durably (the shard's directory entry fsynced)."""
    shard_dir = os.path.dirname(final)
    try:
        os.replace(staging, final)
    except FileNotFoundError:
        if not os.path.exists(staging):
            raise
        _remake_shard(shard_dir)
        os.replace(staging, final)
    _fsync_dir(shard_dir)


def _remake_shard(shard_dir: str) -> None:
    """A shard removed behind our back (``open`` makes them all), made again, durably."""
    os.makedirs(shard_dir, exist_ok=True)
    _fsync_dir(os.path.dirname(shard_dir))


async def _on_disk(call: Callable[..., object], *args: object) -> None:
    """A write in a worker thread; the disk failing is the backend being unavailable."""
    try:
        await anyio.to_thread.run_sync(call, *args)
    except OSError as exc:
        raise StorageUnavailable(f"filesystem backend cannot write ({exc.strerror})") from None


def _create_empty(path: Path) -> None:
    with open(path, "xb") as handle:
        os.fsync(handle.fileno())
    _fsync_dir(path.parent)


def _open_at(path: Path, offset: int) -> IO[bytes]:
    """The staged file, cut at ``offset``: what an interrupted append left beyond it goes."""
    handle = open(path, "r+b")  # noqa: SIM115 - closed by append_piece
    try:
        handle.truncate(offset)
        handle.seek(offset)
    except BaseException:
        handle.close()
        raise
    return handle


def _write_and_sync(handle: IO[bytes], data: bytes) -> None:
    if data:
        handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())


def _seal_staged(staging: Path, final: Path, length: int) -> None:
    """Publish the staged upload; a second call after a crash (or a retry) finds it published."""
    try:
        handle = open(staging, "r+b")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        if final.is_file() and final.stat().st_size == length:
            return
        raise
    try:
        handle.truncate(length)
        os.fsync(handle.fileno())
    finally:
        handle.close()
    _publish(str(staging), str(final))


def _write_whole(final: str, data: bytes | bytearray) -> None:
    """A whole small body in one worker-thread hop, with as few Python steps as the syscalls need
    (each step re-takes the GIL from a busy event loop).

    Written straight under its final name, not staged and renamed: the rename is a second
    metadata change, and its directory fsync a second journal commit, for each small store. A
    file cut short by a crash is no risk there: readers only follow committed records, and a
    key is committed only after this returns; its intent, or else the orphan sweep, removes it.
    """
    shard_dir = os.path.dirname(final)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(final, flags, 0o666)
    except FileNotFoundError:
        _remake_shard(shard_dir)
        fd = os.open(final, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(final)
        raise
    os.close(fd)
    _fsync_dir(shard_dir)  # the new name, durably


def _discard(handle: IO[bytes] | None, staging: Path) -> None:
    if handle is not None:
        handle.close()
    staging.unlink(missing_ok=True)


async def _streamed(path: str, start: int, remaining: int | None, missing: str) -> AsyncGenerator[bytes, None]:
    """The file's bytes from ``start`` (``remaining`` of them, None: to its end), READ_CHUNK per
    worker-thread hop; ``StoredBytesMissing(missing)`` if there is no such file."""
    size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
    try:
        handle, chunk = await anyio.to_thread.run_sync(_open_and_read, path, start, size)
    except FileNotFoundError:
        raise StoredBytesMissing(missing) from None
    except OSError as exc:
        raise StorageUnavailable(f"filesystem backend cannot read ({exc.strerror})") from None
    # The next read is started before a chunk is handed on, so the consumer's work on it (hashing,
    # sending) overlaps the read. Until that read is done the worker holds the file.
    ahead: asyncio.Future[tuple[IO[bytes] | None, bytes]] | None = None
    try:
        # A short read means end of file: the worker closed the file in the same hop.
        while True:
            if remaining is not None:
                remaining -= len(chunk)
            if handle is not None and remaining != 0:
                size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                ahead = _started(_read_next, handle, size)
            if chunk:
                yield chunk
            if ahead is None:
                break
            handle, chunk = await asyncio.shield(ahead)
            ahead = None
    except OSError as exc:
        raise StorageUnavailable(f"filesystem backend cannot read ({exc.strerror})") from None
    finally:
        with anyio.CancelScope(shield=True):
            if ahead is not None:  # the consumer stopped early: the worker lets go of the file first
                settled = await _settled(ahead)
                if settled is not None:  # else the read failed, and the file is still ours to close
                    handle = settled[0]
            if handle is not None:
                await anyio.to_thread.run_sync(handle.close)


# A large body's pages go to the disk while it arrives, each time another this many bytes are
# written, rather than all at its fsync: that flush of up to the whole blob came after the last
# byte and, for 1 GiB here, took as long again as receiving it.
WRITEBACK_EVERY = 8 * 1024 * 1024


def _write_on(handle: IO[bytes], piece: bytes | bytearray, offset: int) -> None:
    """Write ``piece``, which starts at ``offset``, and start writeback of each stretch it completes.

    On Linux ``POSIX_FADV_DONTNEED`` starts writeback of the range's dirty pages without waiting
    for it and drops only pages already clean, so the blob mostly stays cached for reads; the
    fsync that seals the file is still what makes it durable.
    """
    handle.write(piece)
    done_from = offset // WRITEBACK_EVERY * WRITEBACK_EVERY
    done_to = (offset + len(piece)) // WRITEBACK_EVERY * WRITEBACK_EVERY
    if done_to > done_from and _START_WRITEBACK is not None:
        os.posix_fadvise(handle.fileno(), done_from, done_to - done_from, _START_WRITEBACK)


_START_WRITEBACK: int | None = getattr(os, "POSIX_FADV_DONTNEED", None)  # None where there is no fadvise


def _started(call: Callable[..., T], *args: object) -> asyncio.Future[T]:
    """``call`` under way in a worker thread from now on, to be awaited later (through
    ``asyncio.shield``, so that a cancelled waiter does not orphan it: see ``_settled``)."""
    return asyncio.ensure_future(anyio.to_thread.run_sync(call, *args))


async def _settled(work: asyncio.Future[T]) -> T | None:
    """For clean-up: wait for work under way to end; its result, or None if it failed."""
    try:
        return await asyncio.shield(work)
    except Exception:
        return None


def _inline_read(path: str, start: int, remaining: int | None, key: str) -> bytes | None:
    """``_read_small``, on the event loop (cheaper than a thread hop for so few bytes), with the port's errors."""
    try:
        return _read_small(path, start, remaining)
    except FileNotFoundError:
        raise StoredBytesMissing(f"no bytes for storage key {key}") from None
    except OSError as exc:
        raise StorageUnavailable(f"filesystem backend cannot read ({exc.strerror})") from None


def _read_small(path: str, start: int, remaining: int | None) -> bytes | None:
    """The wanted bytes if there are at most ``INLINE_READ_LIMIT`` of them, else None."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        available = max(os.fstat(fd).st_size - start, 0)
        wanted = available if remaining is None else min(remaining, available)
        if wanted > INLINE_READ_LIMIT:
            return None
        parts = []
        while wanted > 0:
            part = os.pread(fd, wanted, start)
            if not part:  # the file is shorter than fstat said: the hash check will tell
                break
            parts.append(part)
            start += len(part)
            wanted -= len(part)
        return b"".join(parts)
    finally:
        os.close(fd)


def _open_and_read(path: str, start: int, size: int) -> tuple[IO[bytes] | None, bytes]:
    handle = open(path, "rb")  # noqa: SIM115 - closed here at EOF, else by the reader
    try:
        if start:
            handle.seek(start)
        return _read_next(handle, size)
    except BaseException:
        handle.close()
        raise


def _read_next(handle: IO[bytes], size: int) -> tuple[IO[bytes] | None, bytes]:
    chunk = handle.read(size)
    if len(chunk) < size:
        handle.close()
        return None, chunk
    return handle, chunk


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_all(paths: tuple[Path, ...]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


async def _listed(scan: Callable[[], list[str]]) -> list[str]:
    """One directory walk in a worker thread; an OS error is the backend being unavailable."""
    try:
        return await anyio.to_thread.run_sync(scan)
    except OSError as exc:
        raise StorageUnavailable(f"filesystem backend cannot list ({exc.strerror})") from None
