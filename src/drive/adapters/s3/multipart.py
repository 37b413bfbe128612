"""Writing one object: a plain PUT up to one part, a multipart upload beyond.

A PUT or CompleteMultipartUpload is atomic, so an object under a key is always
complete; while a large write is in flight its bytes sit in a multipart upload, which
is aborted if the write fails (recovery finds any left behind through ``list_keys``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from contextlib import suppress
from typing import Any

import anyio

from drive.adapters.s3.client import PartBody, S3Client
from drive.adapters.s3.errors import S3Unavailable
from drive.domain.errors import StorageUnavailable

MIN_PART_SIZE = 5 * 1024 * 1024  # S3 refuses smaller non-final parts at completion time
DEFAULT_PART_SIZE = 8 * 1024 * 1024


async def upload(client: S3Client, object_key: str, chunks: AsyncIterable[bytes], part_size: int) -> int:
    """Store every chunk under ``object_key``; return the byte count."""
    upload_id: str | None = None
    parts: list[dict[str, Any]] = []
    buffer = PartBody()
    written = 0

    async def ship(part: PartBody) -> None:
        nonlocal upload_id
        if upload_id is None:
            created = await client.call("create_multipart_upload", Key=object_key)
            upload_id = str(created["UploadId"])
        number = len(parts) + 1
        done = await client.send("upload_part", part, Key=object_key, UploadId=upload_id, PartNumber=number)
        parts.append({"ETag": done["ETag"], "PartNumber": number})

    try:
        async for chunk in chunks:
            view = memoryview(chunk)
            while view:
                # A full buffer is shipped only once more bytes arrive, so the last part
                # is never empty and a body of at most one part is a plain PUT.
                if buffer.tell() == part_size:
                    await ship(buffer)
                    buffer = PartBody()
                piece = view[: part_size - buffer.tell()]
                buffer.write(piece)
                written += len(piece)
                view = view[len(piece) :]
        if upload_id is None:
            await client.send("put_object", buffer, Key=object_key)
        else:
            await ship(buffer)
            # Completion of a huge upload can take a while server-side; the read
            # timeout still bounds a silent peer.
            await client.call(
                "complete_multipart_upload",
                bounded=False,
                Key=object_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
    except BaseException:
        if upload_id is not None:
            with anyio.CancelScope(shield=True):
                await abort_quietly(client, object_key, upload_id)
        # A failed single PUT or completion may still have landed; recovery removes it.
        raise
    return written


async def abort(client: S3Client, object_key: str, upload_id: str) -> None:
    try:
        await client.call("abort_multipart_upload", Key=object_key, UploadId=upload_id)
    except S3Unavailable as exc:
        if exc.reason.startswith("NoSuchUpload"):
            return  # already aborted or completed: nothing staged remains
        raise


async def abort_quietly(client: S3Client, object_key: str, upload_id: str) -> None:
    """Best effort, and never longer than one timeout; recovery finds leftovers via ``list_keys``."""
    with suppress(StorageUnavailable), anyio.move_on_after(client.timeout):
        await abort(client, object_key, upload_id)
