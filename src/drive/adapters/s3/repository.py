"""S3 BlobRepository: one object per storage key in ``S3_BUCKET``.

Layout: ``<prefix><k[:2]>/<key>``. Bytes in flight sit in a multipart upload
(``multipart``), which ``delete`` aborts and ``list_keys`` reports. It is also the
``PieceStaging`` of resumable uploads (``pieces``), whose piece objects
``<prefix><k[:2]>/<key>.piece.<i>`` belong to the key: ``delete`` removes them,
``list_keys`` reports their key and ``list_strangers`` never does.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import aclosing
from typing import Any

from drive.adapters.s3 import multipart, pieces
from drive.adapters.s3.client import S3Client
from drive.adapters.s3.errors import Unsatisfiable
from drive.adapters.whole_reads import joined
from drive.domain.storage_keys import is_storage_key, shard
from drive.settings import S3Settings

READ_CHUNK = 1024 * 1024


class S3BlobRepository:
    def __init__(self, settings: S3Settings, name: str = "s3", *, part_size: int = multipart.DEFAULT_PART_SIZE) -> None:
        if part_size < multipart.MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {multipart.MIN_PART_SIZE} bytes")
        self.name = name
        self._settings = settings
        self._prefix = settings.prefix
        self._part_size = part_size
        self._client = S3Client(settings, name)

    def __repr__(self) -> str:  # never shows credentials
        return f"S3BlobRepository(name={self.name!r}, bucket={self._settings.bucket!r}, prefix={self._prefix!r})"

    def _object_key(self, key: str) -> str:
        return f"{self._prefix}{shard(key)}/{key}"

    def _key_of(self, object_key: str) -> str | None:
        """The storage key behind an object key (its bytes or a staged piece), or None for anything we did not write."""
        if not object_key.startswith(self._prefix):
            return None
        directory, _, name = object_key[len(self._prefix) :].partition("/")
        key, dot, _ = name.partition(".")
        if dot and not pieces.is_piece_suffix(name[len(key) :]):
            return None
        return key if is_storage_key(key) and directory == shard(key) else None

    # -- lifecycle

    async def open(self) -> None:
        await self._client.open()

    async def close(self) -> None:
        await self._client.close()

    async def ping(self) -> None:
        await self._client.call("head_bucket")

    # -- the port

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        return await multipart.upload(self._client, self._object_key(key), chunks, self._part_size)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        object_key = self._object_key(key)
        if start < 0:
            raise ValueError("start must not be negative")
        if end is not None and end <= start:
            return
        params: dict[str, Any] = {"Key": object_key}
        if start or end is not None:
            params["Range"] = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
        try:
            response = await self._client.call("get_object", **params)
        except Unsatisfiable:
            return  # the range starts past the end: nothing to yield, as for a file
        body = response["Body"]
        try:
            while chunk := await self._client.read_body(body, READ_CHUNK):
                yield chunk
        finally:
            body.close()

    async def read_whole(self, key: str, limit: int) -> bytes:
        return await joined(self.read(key, 0, limit))

    async def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        # Uploads first: an upload completing after this cannot resurrect the object.
        async with aclosing(self._client.pages("list_multipart_uploads", Prefix=object_key)) as pages:
            async for page in pages:
                for upload in page.get("Uploads", ()):
                    if upload.get("Key") == object_key:
                        await multipart.abort(self._client, object_key, upload["UploadId"])
        await pieces.drop(self._client, object_key)
        await self._client.call("delete_object", Key=object_key)

    async def list_keys(self) -> AsyncIterator[str]:
        # Uploads in flight are few; remember only those, and stream the (sorted, so
        # duplicate-free) object listing without keeping it.
        staged: set[str] = set()
        async with aclosing(self._client.pages("list_multipart_uploads", Prefix=self._prefix)) as pages:
            async for page in pages:
                for upload in page.get("Uploads", ()):
                    key = self._key_of(upload.get("Key", ""))
                    if key is not None:
                        staged.add(key)
        last: str | None = None
        async with aclosing(self._client.pages("list_objects_v2", Prefix=self._prefix)) as pages:
            async for page in pages:
                for item in page.get("Contents", ()):
                    key = self._key_of(item.get("Key", ""))
                    # A key's object and its pieces sort next to each other (keys have one length).
                    if key is not None and key != last:
                        staged.discard(key)
                        last = key
                        yield key
        for key in sorted(staged):
            yield key

    async def list_strangers(self) -> AsyncIterator[str]:
        # Objects only: an upload in flight is no stored bytes yet, and ours are aborted by recovery.
        # Piece objects are a key's staged bytes, not strangers.
        async with aclosing(self._client.pages("list_objects_v2", Prefix=self._prefix)) as pages:
            async for page in pages:
                for item in page.get("Contents", ()):
                    object_key = item.get("Key", "")
                    if self._key_of(object_key) is None:
                        yield object_key[len(self._prefix) :]

    # -- PieceStaging (resumable uploads; see ``pieces``)

    async def begin_pieces(self, key: str) -> str:
        return await pieces.begin(self._client, self._object_key(key), self._part_size)

    async def append_piece(self, key: str, state: str, offset: int, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        return await pieces.append(self._client, self._object_key(key), state, offset, chunks)

    def read_pieces(self, key: str, state: str, length: int) -> AsyncIterator[bytes]:
        return pieces.read(self._client, self._object_key(key), state, length)

    async def seal_pieces(self, key: str, state: str, length: int) -> None:
        await pieces.seal(self._client, self._object_key(key), state, length)
