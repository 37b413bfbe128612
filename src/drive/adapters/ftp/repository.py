"""FTP / explicit-FTPS BlobRepository: one file per storage key under ``FTP_BASE_DIR``.

Layout mirrors the filesystem backend: ``objects/<k[:2]>/<key>`` for published bytes,
``staging/<key>`` while an upload is in flight. An upload is a STOR into staging followed
by RNFR/RNTO, so a file under ``objects/`` is always complete. Resumable uploads keep their
pieces in ``staging/<key>.pieces/`` (see ``pieces``), which belongs to the key like its
staged file: ``delete`` removes it and ``list_keys`` reports it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import aclosing
from pathlib import PurePosixPath

import aioftp
import anyio

from drive.adapters.ftp import steps
from drive.adapters.ftp.errors import missing, refused_with, translated
from drive.adapters.ftp.pieces import SUFFIX, PieceState, missing_pieces
from drive.adapters.ftp.pool import FtpPool
from drive.adapters.whole_reads import joined
from drive.domain.storage_keys import checked_key, is_shard, is_storage_key, shard
from drive.settings import FtpSettings

READ_CHUNK = 256 * 1024


class FtpBlobRepository:
    def __init__(self, settings: FtpSettings, name: str = "ftp") -> None:
        self.name = name
        self._settings = settings
        self._timeout = settings.timeout
        self._pool = FtpPool(settings)
        base = PurePosixPath(settings.base_dir or "/")
        self._objects = base / "objects"
        self._staging = base / "staging"

    def __repr__(self) -> str:  # never the password
        s = self._settings
        return f"FtpBlobRepository(host={s.host!r}, port={s.port}, user={s.user!r}, tls={s.tls})"

    def _object_path(self, key: str) -> PurePosixPath:
        return self._objects / shard(key) / key

    def _staging_path(self, key: str) -> PurePosixPath:
        return self._staging / checked_key(key)

    def _pieces_path(self, key: str) -> PurePosixPath:
        return self._staging / f"{checked_key(key)}{SUFFIX}"

    # --- lifecycle

    async def open(self) -> None:
        self._pool.reopen()
        client = await self._pool.connect()
        try:
            await steps.prepare(
                client, objects=self._objects, staging=self._staging, within=self._timeout, tls=self._settings.tls
            )
        except BaseException:
            client.close()
            raise
        self._pool.checkin(client)

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        with translated("check the connection (NOOP)", self._timeout), anyio.fail_after(self._timeout):
            async with self._pool.lease(bounded=False) as lease:
                await self._pool.start(lease, steps.noop)

    # --- the port

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        staging = self._staging_path(key)
        final = self._object_path(key)
        async with self._pool.lease() as lease:
            with translated("start an upload", self._timeout), anyio.fail_after(self._timeout):
                stream = await self._pool.start(lease, lambda client: steps.open_data(client, f"STOR {staging}"))
            client = lease.client
            written = 0
            # Where the control connection stands, for the cleanup if anything fails.
            transfer_open, control_in_sync = True, True
            try:
                async for chunk in chunks:  # the caller's exceptions pass through untouched
                    if chunk:
                        with translated("upload", self._timeout):
                            await stream.write(chunk)  # bounded by socket_timeout
                        written += len(chunk)
                control_in_sync = False
                with translated("finish an upload", self._timeout), anyio.fail_after(self._timeout):
                    await stream.finish()  # closes the data connection, waits for 226
                    transfer_open = False
                    await steps.publish(client, staging, final)
            except BaseException:
                stream.close()
                await steps.remove_after_failure(
                    client,
                    (staging, final),
                    transfer_open=transfer_open,
                    control_in_sync=control_in_sync,
                    connect=self._pool.connect,
                    within=self._timeout,
                )
                raise
        return written

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._object_path(key)
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad range {start}-{end}")
        if end is not None and end == start:
            # Nothing to transfer, but a missing file must still be reported.
            with translated("look up a file", self._timeout), anyio.fail_after(self._timeout):
                async with self._pool.lease() as lease:
                    size = await self._pool.start(lease, lambda client: steps.size(client, path))
            if size is None:
                raise missing()
            return
        async with self._pool.lease() as lease:
            with translated("start a download", self._timeout), anyio.fail_after(self._timeout):
                try:
                    retr = f"RETR {path}"
                    stream = await self._pool.start(lease, lambda client: steps.open_data(client, retr, start))
                except aioftp.StatusCodeError as exc:
                    if refused_with(exc, "550"):
                        raise missing() from None
                    if not (start and refused_with(exc, "5xx")):
                        raise
                    # Some servers refuse a REST past the end (pyftpdlib: 554) where others
                    # send nothing; answer like a file would: no bytes, unless it is missing.
                    size = await steps.size(lease.client, path)
                    if size is None:
                        raise missing() from None
                    if start < size:
                        raise
                    return
            client = lease.client
            remaining = None if end is None else end - start
            try:
                at_eof = False
                while remaining is None or remaining > 0:
                    want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                    with translated("download", self._timeout):
                        chunk = await stream.read(want)  # bounded by socket_timeout
                    if not chunk:
                        at_eof = True
                        break
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk
                if at_eof:
                    # A 4xx/5xx here means the server stopped early: the bytes are incomplete.
                    with translated("finish a download", self._timeout), anyio.fail_after(self._timeout):
                        await stream.finish()
                else:
                    await steps.resync_after_cut(client, stream, within=self._timeout)
            finally:
                stream.close()

    async def read_whole(self, key: str, limit: int) -> bytes:
        return await joined(self.read(key, 0, limit))

    async def delete(self, key: str) -> None:
        published, staged, pieces = self._object_path(key), self._staging_path(key), self._pieces_path(key)
        with translated("delete a file", self._timeout), anyio.fail_after(self._timeout):
            async with self._pool.lease() as lease:
                await self._pool.start(lease, lambda client: steps.delete_if_present(client, published))
                await steps.delete_if_present(lease.client, staged)
        # Apart: a directory of many pieces gets its own time limit.
        with translated("delete staged pieces", self._timeout), anyio.fail_after(self._timeout):
            async with self._pool.lease() as lease:
                await steps.remove_dir(lease.client, pieces)

    async def list_keys(self) -> AsyncIterator[str]:
        found = {key for directory, name in await self._listing() if (key := _key_of(directory, name)) is not None}
        for key in sorted(found):
            yield key

    async def list_strangers(self) -> AsyncIterator[str]:
        strangers = [
            f"{directory}/{name}"
            for directory, name in await self._listing()
            if _key_of(directory, name) is None and not (directory == "staging" and name.startswith(steps.PROBE))
        ]
        for name in sorted(strangers):
            yield name

    # --- PieceStaging (resumable uploads; see ``pieces``)

    async def begin_pieces(self, key: str) -> str:
        directory = self._pieces_path(key)
        with translated("prepare an upload", self._timeout), anyio.fail_after(self._timeout):
            async with self._pool.lease() as lease:
                await self._pool.start(lease, lambda client: steps.make_dir(client, directory))
        return PieceState(0).dump()

    async def append_piece(self, key: str, state: str, offset: int, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        current = PieceState.load(state)
        if offset != current.length:
            raise ValueError(f"offset {offset} is not the state's length {current.length}")
        directory = self._pieces_path(key)
        segment = current.starts[-1]
        async with self._pool.lease() as lease:
            with translated("look up an upload's pieces", self._timeout), anyio.fail_after(self._timeout):
                size = await self._pool.start(lease, lambda client: steps.size(client, directory / str(segment)))
            recorded = offset - segment
            after = current
            if (size is None and recorded) or (size is not None and size < recorded):
                raise missing_pieces()
            if recorded == 0:
                command = "STOR"  # replaces whatever an unrecorded append left
            elif size == recorded:
                command = "APPE"
            else:  # bytes beyond the recorded offset, which FTP cannot cut off: a new segment
                after, segment, command = current.started_at(offset), offset, "STOR"
            target = directory / str(segment)
            client = lease.client
            stream: steps.DataStream | None = None
            written = 0
            try:
                async for chunk in chunks:  # the caller's exceptions pass through untouched
                    if not chunk:
                        continue
                    if stream is None:  # only now: an append of nothing changes nothing
                        with translated("start an upload", self._timeout), anyio.fail_after(self._timeout):
                            stream = await steps.open_data(client, f"{command} {target}")
                    with translated("upload", self._timeout):
                        await stream.write(chunk)  # bounded by socket_timeout
                    written += len(chunk)
                if stream is not None:
                    with translated("finish an upload", self._timeout), anyio.fail_after(self._timeout):
                        await stream.finish()  # closes the data connection, waits for 226
            except BaseException:
                if stream is not None:
                    await steps.abandon_upload(client, stream, self._timeout)
                raise  # and the lease drops the connection
        if not written:
            return 0, state
        return written, PieceState(offset + written, after.starts).dump()

    async def read_pieces(self, key: str, state: str, length: int) -> AsyncIterator[bytes]:
        current = PieceState.load(state)
        if not 0 <= length <= current.length:
            raise ValueError(f"length {length} is outside the staged {current.length} bytes")
        directory = self._pieces_path(key)
        async with self._pool.lease() as lease:
            with translated("check the connection (NOOP)", self._timeout), anyio.fail_after(self._timeout):
                await self._pool.start(lease, steps.noop)
            for start, end in current.segments(length):
                chunks = steps.retrieve(lease.client, directory / str(start), end - start, self._timeout)
                async with aclosing(chunks):
                    async for chunk in chunks:
                        yield chunk

    async def seal_pieces(self, key: str, state: str, length: int) -> None:
        current = PieceState.load(state)
        if length != current.length:
            raise ValueError(f"length {length} is not the state's length {current.length}")
        directory, final = self._pieces_path(key), self._object_path(key)
        segments = current.segments(length)
        async with self._pool.lease() as lease:
            with translated("publish an upload", self._timeout), anyio.fail_after(self._timeout):
                sealed = await self._pool.start(lease, lambda client: steps.size(client, final))
                if sealed != length and len(segments) <= 1:
                    first = directory / "0"
                    if await steps.size(lease.client, first) == length:
                        await steps.publish(lease.client, first, final)  # the usual case: a rename
                        sealed = length
        if sealed != length:
            # Segments, or bytes beyond the end: stream the recorded bytes into one file.
            await self.write(key, self._joined(directory, segments))
        with translated("delete staged pieces", self._timeout), anyio.fail_after(self._timeout):
            async with self._pool.lease() as lease:
                await steps.remove_dir(lease.client, directory)

    async def _joined(self, directory: PurePosixPath, segments: list[tuple[int, int]]) -> AsyncIterator[bytes]:
        """The recorded bytes of every segment, read on a connection of their own (``write`` holds one)."""
        client = await self._pool.connect()
        try:
            for start, end in segments:
                chunks = steps.retrieve(client, directory / str(start), end - start, self._timeout)
                async with aclosing(chunks):
                    async for chunk in chunks:
                        yield chunk
        finally:
            client.close()

    async def _listing(self) -> list[tuple[str, str]]:
        """(directory, name) of every entry: directory is ``objects``, ``objects/<shard>`` or ``staging``.

        A shard directory itself is not listed, only its entries. Collected before the caller
        sees any, so no connection is held while it works; each network step is bounded by
        socket_timeout rather than the whole listing.
        """
        found: list[tuple[str, str]] = []
        with translated("list files", self._timeout):
            async with self._pool.lease() as lease:
                top = await self._pool.start(lease, lambda client: steps.names(client, self._objects))
                client = lease.client
                found += [("objects", name) for name in top if not is_shard(name)]
                for shard_name in filter(is_shard, top):
                    names = await steps.names(client, self._objects / shard_name)
                    found += [(f"objects/{shard_name}", name) for name in names]
                found += [("staging", name) for name in await steps.names(client, self._staging)]
        return found


def _key_of(directory: str, name: str) -> str | None:
    """The key an entry of ``directory`` belongs to, if the service named it: a key in its shard,
    or in staging a key or its pieces directory."""
    if directory == "staging" and name.endswith(SUFFIX):
        name = name[: -len(SUFFIX)]
        return name if is_storage_key(name) else None
    return name if is_storage_key(name) and directory in ("staging", f"objects/{name[:2]}") else None
