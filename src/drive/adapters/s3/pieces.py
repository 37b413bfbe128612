"""Resumable-upload pieces on S3: a multipart upload fed from readable piece objects.

S3 cannot read the parts of an unfinished multipart upload, and refuses parts under
5 MiB except the last, while tus pieces arrive in any size. So the staged bytes are cut
at fixed ``part_size`` boundaries into piece objects ``<object key>.piece.<i>`` (bytes
``[i * part_size, (i + 1) * part_size)``); the piece still filling holds fewer. A piece
object that fills up is copied server-side (UploadPartCopy) into the upload as part
``i + 1`` at once, so sealing only has to copy the short last piece and complete the
upload. The piece objects stay until then: they are what ``read_pieces`` re-reads.

An append never changes a byte before its ``offset``: rewriting the piece that holds
``offset`` keeps its first ``offset % part_size`` bytes. So after an append that landed
but was never recorded, everything the recorded state describes is intact, and the next
append at the recorded offset overwrites the same piece objects and part numbers. Only
``length`` and the part size decide which objects and parts count, which keeps the state
a constant ~150 bytes (an UploadId, the part size, the length) whatever the upload size.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterable
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

from drive.adapters.s3 import multipart
from drive.adapters.s3.client import PartBody, S3Client
from drive.adapters.s3.errors import S3Unavailable, Unsatisfiable
from drive.domain.errors import StorageUnavailable, StoredBytesMissing

PIECE = ".piece."
MAX_PARTS = 10_000  # S3's limit per multipart upload
READ_CHUNK = 1024 * 1024
DELETE_BATCH = 1000  # DeleteObjects' limit


def piece_key(object_key: str, index: int) -> str:
    return f"{object_key}{PIECE}{index}"


def is_piece_suffix(suffix: str) -> bool:
    """``suffix`` (what follows the storage key in an object's name) is one we give piece objects."""
    if not suffix.startswith(PIECE):
        return False
    index = suffix[len(PIECE) :]
    # Canonical decimals only: "01" or "+1" is someone else's object.
    return index.isascii() and index.isdigit() and str(int(index)) == index


def missing_pieces() -> StoredBytesMissing:
    return StoredBytesMissing("staged pieces of an upload are missing from the S3 bucket")


@dataclass(frozen=True)
class PieceState:
    upload_id: str
    part_size: int
    length: int

    def dump(self) -> str:
        return json.dumps({"v": 1, "u": self.upload_id, "p": self.part_size, "n": self.length}, separators=(",", ":"))

    @classmethod
    def load(cls, state: str) -> PieceState:
        try:
            data = json.loads(state)
            parsed = cls(upload_id=data["u"], part_size=data["p"], length=data["n"])
        except (ValueError, TypeError, KeyError):
            raise ValueError("not an S3 piece state") from None
        if (
            data.get("v") != 1
            or not isinstance(parsed.upload_id, str)
            or type(parsed.part_size) is not int
            or type(parsed.length) is not int
            or parsed.part_size < multipart.MIN_PART_SIZE
            or parsed.length < 0
        ):
            raise ValueError("not an S3 piece state")
        return parsed


async def begin(client: S3Client, object_key: str, part_size: int) -> str:
    created = await client.call("create_multipart_upload", Key=object_key)
    return PieceState(str(created["UploadId"]), part_size, 0).dump()


async def append(
    client: S3Client, object_key: str, state: str, offset: int, chunks: AsyncIterable[bytes]
) -> tuple[int, str]:
    """Add ``chunks`` at ``offset``: full pieces become parts at once, the rest a shorter piece object."""
    current = PieceState.load(state)
    if offset != current.length:
        raise ValueError(f"offset {offset} is not the state's length {current.length}")
    size = current.part_size
    index, held = divmod(offset, size)
    # At most one piece in memory: the bytes of piece ``index`` from its start.
    buffer: PartBody | None = None
    written = 0
    async for chunk in chunks:  # the caller's exceptions pass through untouched
        view = memoryview(chunk)
        while view:
            if buffer is None:
                buffer = PartBody()
                if held:  # the recorded start of this piece, rewritten along with the new bytes
                    await _read_into(client, piece_key(object_key, index), held, buffer)
                    held = 0
            taken = view[: size - buffer.tell()]
            buffer.write(taken)
            written += len(taken)
            view = view[len(taken) :]
            if buffer.tell() == size:
                await _ship(client, object_key, current, index, buffer)
                index, buffer = index + 1, None
    if buffer is not None:
        await client.send("put_object", buffer, Key=piece_key(object_key, index))
    return written, replace(current, length=offset + written).dump()


async def read(client: S3Client, object_key: str, state: str, length: int) -> AsyncGenerator[bytes, None]:
    """The first ``length`` staged bytes, piece object by piece object."""
    current = PieceState.load(state)
    if not 0 <= length <= current.length:
        raise ValueError(f"length {length} is outside the staged {current.length} bytes")
    for index, start in enumerate(range(0, length, current.part_size)):
        chunks = read_object(client, piece_key(object_key, index), min(current.part_size, length - start))
        async with aclosing(chunks):
            async for chunk in chunks:
                yield chunk


async def seal(client: S3Client, object_key: str, state: str, length: int) -> None:
    """Complete the upload (the last, short piece copied in as the last part), then drop the pieces.

    Completing first: a seal that dies before dropping the pieces is simply run again,
    and finds the object already there.
    """
    current = PieceState.load(state)
    if length != current.length:
        raise ValueError(f"length {length} is not the state's length {current.length}")
    if length == 0:  # no part to complete an upload with: an empty object, as ``write`` makes
        await client.send("put_object", PartBody(), Key=object_key)
        await multipart.abort(client, object_key, current.upload_id)
        await drop(client, object_key)
        return
    try:
        listed = await _list_parts(client, object_key, current.upload_id)
    except S3Unavailable as exc:
        if not exc.reason.startswith("NoSuchUpload"):
            raise
        await _check_sealed(client, object_key, length)  # completed by an earlier seal
        await drop(client, object_key)
        return
    size = current.part_size
    full, tail = divmod(length, size)
    parts: list[dict[str, Any]] = []
    for number in range(1, full + 1):
        etag, part_size = listed.get(number, ("", -1))
        if part_size != size:
            raise missing_pieces()
        parts.append({"PartNumber": number, "ETag": etag})
    if tail:
        copied = await _copy_part(client, object_key, current, full, tail)
        parts.append({"PartNumber": full + 1, "ETag": copied})
    try:
        # Completion of a large upload can take a while server-side; the read timeout
        # still bounds a silent peer.
        await client.call(
            "complete_multipart_upload",
            bounded=False,
            Key=object_key,
            UploadId=current.upload_id,
            MultipartUpload={"Parts": parts},
        )
    except S3Unavailable as exc:
        if not exc.reason.startswith("NoSuchUpload"):
            raise
        await _check_sealed(client, object_key, length)  # a concurrent seal completed it
    await drop(client, object_key)


async def drop(client: S3Client, object_key: str) -> None:
    """Delete every piece object of ``object_key`` (the multipart upload is the caller's)."""
    names: list[str] = []
    async with aclosing(client.pages("list_objects_v2", Prefix=f"{object_key}{PIECE}")) as pages:
        async for page in pages:
            for item in page.get("Contents", ()):
                name = str(item.get("Key", ""))
                if is_piece_suffix(name[len(object_key) :]):
                    names.append(name)
    for start in range(0, len(names), DELETE_BATCH):
        batch = [{"Key": name} for name in names[start : start + DELETE_BATCH]]
        answer = await client.call("delete_objects", Delete={"Objects": batch, "Quiet": True})
        if answer.get("Errors"):
            code = answer["Errors"][0].get("Code", "unknown")
            raise StorageUnavailable(f"S3 delete_objects could not delete staged pieces: {code}")


async def _ship(client: S3Client, object_key: str, state: PieceState, index: int, piece: PartBody) -> None:
    """Store a full piece, then copy it into the upload as part ``index + 1`` (replacing any leftover)."""
    if index + 1 > MAX_PARTS:
        raise ValueError(f"an upload of more than {MAX_PARTS} parts of {state.part_size} bytes")
    await client.send("put_object", piece, Key=piece_key(object_key, index))
    await _copy_part(client, object_key, state, index, state.part_size)


async def _copy_part(client: S3Client, object_key: str, state: PieceState, index: int, size: int) -> str:
    """Copy the first ``size`` bytes of piece ``index`` into the upload as part ``index + 1``; its ETag."""
    try:
        copied = await client.call(
            "upload_part_copy",
            bounded=False,  # a server-side copy; the read timeout bounds silence
            Key=object_key,
            UploadId=state.upload_id,
            PartNumber=index + 1,
            CopySource={"Bucket": client.bucket, "Key": piece_key(object_key, index)},
            CopySourceRange=f"bytes=0-{size - 1}",
        )
    except S3Unavailable as exc:
        if exc.reason.startswith(("NoSuchKey", "InvalidRange", "404", "NoSuchUpload")):
            raise missing_pieces() from None
        raise
    return str(copied["CopyPartResult"]["ETag"])


async def _read_into(client: S3Client, key: str, count: int, buffer: PartBody) -> None:
    """Append the first ``count`` bytes of object ``key`` to ``buffer``."""
    chunks = read_object(client, key, count)
    async with aclosing(chunks):
        async for chunk in chunks:
            buffer.write(chunk)


async def read_object(client: S3Client, key: str, count: int) -> AsyncGenerator[bytes, None]:
    """The first ``count`` (> 0) bytes of object ``key``; ``StoredBytesMissing`` if it has fewer."""
    try:
        response = await client.call("get_object", Key=key, Range=f"bytes=0-{count - 1}")
    except (StoredBytesMissing, Unsatisfiable):
        raise missing_pieces() from None
    body = response["Body"]
    got = 0
    try:
        while got < count and (chunk := await client.read_body(body, min(READ_CHUNK, count - got))):
            got += len(chunk)
            yield chunk
    finally:
        body.close()
    if got < count:
        raise missing_pieces()


async def _list_parts(client: S3Client, object_key: str, upload_id: str) -> dict[int, tuple[str, int]]:
    """Part number -> (ETag, size) of every part the upload holds."""
    found: dict[int, tuple[str, int]] = {}
    async with aclosing(client.pages("list_parts", Key=object_key, UploadId=upload_id)) as pages:
        async for page in pages:
            for part in page.get("Parts", ()):
                found[int(part["PartNumber"])] = (str(part["ETag"]), int(part["Size"]))
    return found


async def _check_sealed(client: S3Client, object_key: str, length: int) -> None:
    """The upload is gone: fine if the object it completed is there with ``length`` bytes."""
    try:
        head = await client.call("head_object", Key=object_key)
    except S3Unavailable as exc:
        if exc.reason.startswith(("404", "NotFound", "NoSuchKey")):
            raise missing_pieces() from None
        raise
    if int(head.get("ContentLength", -1)) != length:
        raise missing_pieces()
