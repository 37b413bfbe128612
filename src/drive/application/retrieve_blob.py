"""RetrieveBlob: committed metadata, and its bytes verified before they are handed on.

Blobs with chunk digests (docs/PROTOCOL.md, "Chunk digests") are read a chunk at a time,
and no byte of a chunk leaves here before that chunk's SHA-256 matched: a whole read or any
range. Blobs stored before digests existed are checked against the whole blob's SHA-256,
holding back the last bytes until it matched (a range of such a blob reads all of it).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from drive.application.streams import ChunkDigests, Offload, at_once, chunk_sha256s, in_chunks
from drive.domain.backends import Backends
from drive.domain.errors import BlobNotFound, CorruptBlob
from drive.domain.ids import validate_id
from drive.domain.model import CHUNK_SIZE, BlobRecord
from drive.domain.ports import MetadataRepository

log = logging.getLogger(__name__)

VERIFY_SPAN = 2 * 1024 * 1024  # bytes of whole chunks read back and hashed per step of a stream


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a full read of one blob's stored bytes found (``RetrieveBlob.scan``)."""

    size: int  # bytes stored
    intact: bool
    damaged_chunks: tuple[int, ...] = ()  # indexes; empty for blobs without chunk digests
    # For an intact blob stored without chunk digests, when asked for: the digests its bytes
    # have (``CHUNK_SIZE`` chunks), for ``MetadataRepository.add_chunk_digests``.
    chunk_digests: bytes | None = None


class RetrieveBlob:
    def __init__(self, metadata: MetadataRepository, backends: Backends, offload: Offload = at_once) -> None:
        self._metadata = metadata
        self._backends = backends
        self._offload = offload  # hashes each chunk a stream reads back

    async def stat(self, blob_id: str) -> BlobRecord:
        validate_id(blob_id)
        record = await self._metadata.get(blob_id)
        if record is None:
            raise BlobNotFound("no blob has that id")
        return record

    def stream(self, record: BlobRecord) -> AsyncIterator[bytes]:
        """The whole blob, verified; raises ``CorruptBlob`` (logged) on damage.

        With chunk digests a chunk is only yielded once it matched, so damage in the first
        chunk is raised before any byte. Without, the last chunk is held back until the
        whole hash matched. Streaming callers abort the response on the error, so a client
        never receives a corrupt body as complete.
        """
        if record.chunked:
            return self._verified_chunks(record, 0, record.size)
        return self._verified(record)

    def stream_range(self, record: BlobRecord, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)``, verified as ``stream`` verifies; raises ``CorruptBlob`` (logged).

        With chunk digests only the chunks covering the range are read, and damage elsewhere
        in the blob does not matter. Without, the whole blob is read and hashed, and the
        range's last bytes are held back until the hash matched.
        """
        if record.chunked:
            return self._verified_chunks(record, start, end)
        return self._legacy_range(record, start, end)

    async def read_all(self, record: BlobRecord) -> bytes:
        """The whole blob in memory, verified (callers bound ``record.size``)."""
        if record.chunk_count > 1 or record.size > CHUNK_SIZE:
            return b"".join([chunk async for chunk in self.stream(record)])
        # One chunk, whose digest is the blob's SHA-256: the common small read, in one piece and
        # checked once, without the stream's machinery. As there, bytes past the recorded size of
        # a chunked blob are not ours to send, and a blob from before digests must match exactly:
        # one byte more than recorded is read to see any.
        with _backend_damage_logged(record):
            data = await self._backends.get(record.backend).read_whole(record.storage_key, record.size + 1)
        stored = len(data)
        if stored > record.size:
            data = data[: record.size]
        digest = hashlib.sha256(data).hexdigest()
        if stored < record.size or (stored > record.size and not record.chunked) or digest != record.sha256:
            size = f"{stored}" if stored <= record.size else f"more than {record.size}"
            _log_corrupt(record, f"stored size={size} sha256={digest}")
            raise CorruptBlob("stored bytes do not match their checksum")
        return data

    async def scan(
        self, record: BlobRecord, on_bytes: Callable[[int], None] | None = None, *, backfill: bool = False
    ) -> ScanResult:
        """Read every stored byte and check it all, naming each damaged chunk (for fsck).

        ``backfill``: for a blob without chunk digests, also compute them (returned if intact).
        Raises ``StoredBytesMissing`` or ``StorageUnavailable`` as a read does; damage is
        logged as ``CORRUPT BLOB`` and returned, not raised.
        """
        whole = hashlib.sha256()
        size = 0
        damaged: list[int] = []
        chunk_size = record.chunk_size if record.chunked and record.chunk_size else None
        computed = ChunkDigests(CHUNK_SIZE) if backfill and chunk_size is None else None
        pieces = self._backends.get(record.backend).read(record.storage_key)
        async for piece in pieces if chunk_size is None else in_chunks(pieces, chunk_size):
            if chunk_size is None:
                whole.update(piece)
                if computed is not None:
                    computed.update(piece)
            elif hashlib.sha256(piece).digest() != record.chunk_digest(size // chunk_size):
                damaged.append(size // chunk_size)
            size += len(piece)
            if on_bytes is not None:
                on_bytes(len(piece))
        if chunk_size is not None:
            # Chunks missing at the end (damaged too), or bytes past the recorded size.
            damaged += range(-(-size // chunk_size), record.chunk_count)
            intact = size == record.size and not damaged
        else:
            intact = size == record.size and whole.hexdigest() == record.sha256
        if not intact:
            if chunk_size is not None:
                found = f"damaged chunks {_ranges(damaged)}" if damaged else "bytes past the recorded size"
            else:
                found = f"sha256={whole.hexdigest()}"
            _log_corrupt(record, f"stored size={size} {found}")
        backfilled = computed.packed() if computed is not None and intact else None
        return ScanResult(size, intact, tuple(damaged), backfilled)

    async def _verified_chunks(self, record: BlobRecord, start: int, end: int) -> AsyncIterator[bytes]:
        chunk_size = record.chunk_size or 1  # set: only called for chunked records
        index, window_start, window_end = record.chunk_window(start, end)
        at = window_start
        # To the end of the blob: read to the end of the stored bytes, as a whole read always
        # has (an empty blob's bytes are then still looked for, and must exist).
        stop = None if window_end >= record.size else window_end
        # Chunks are taken VERIFY_SPAN bytes at a time, each span's chunks hashed in one offloaded
        # call: per 1 MiB chunk, the hops and the stream's steps cost a GET a tenth of its CPU.
        # One verified span is held back: it is handed on while the next is hashed (the offload
        # may hash in a worker), and the last one only once the stored bytes proved complete.
        span = chunk_size * max(1, VERIFY_SPAN // chunk_size)
        hashed = partial(chunk_sha256s, chunk_size=chunk_size)
        ready = b""
        async for piece in in_chunks(self._read(record, window_start, stop), span):
            if at >= window_end:
                continue  # the backend gave more than asked for: none of it is ours to send
            if at + len(piece) > window_end:
                piece = piece[: window_end - at]
            digests = self._offload(hashed, piece)
            if ready:
                yield ready
            for n, digest in enumerate(await digests):
                if digest != record.chunk_digest(index + n):
                    first = at + n * chunk_size
                    last = min(at + len(piece), first + chunk_size) - 1
                    _log_corrupt(record, f"chunk {index + n} (bytes {first}-{last}) does not match its digest")
                    raise CorruptBlob("stored bytes do not match their checksum")
            ready = piece[max(0, start - at) : end - at]
            at += len(piece)
            index += -(-len(piece) // chunk_size)
        if at < window_end:
            _log_corrupt(record, f"stored bytes end at {at}, chunk {index} is missing")
            raise CorruptBlob("stored bytes do not match their checksum")
        if ready:
            yield ready

    async def _read(self, record: BlobRecord, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The backend's bytes; damage the backend itself reports is logged like any other."""
        with _backend_damage_logged(record):
            async for piece in self._backends.get(record.backend).read(record.storage_key, start, end):
                if piece:
                    yield piece

    async def _verified(self, record: BlobRecord) -> AsyncIterator[bytes]:
        digest = hashlib.sha256()
        size = 0
        held: bytes | None = None
        # Hold back one chunk so the last one is only released once the hash checks out.
        async for chunk in self._read(record):
            digest.update(chunk)
            size += len(chunk)
            if held is not None:
                yield held
            held = chunk
        if size != record.size or digest.hexdigest() != record.sha256:
            _log_corrupt(record, f"stored size={size} sha256={digest.hexdigest()}")
            raise CorruptBlob("stored bytes do not match their checksum")
        if held is not None:
            yield held

    async def _legacy_range(self, record: BlobRecord, start: int, end: int) -> AsyncIterator[bytes]:
        """A blob without chunk digests: all of it through ``_verified``, only the range sent.

        The range's last piece waits for the end of ``_verified`` (the whole hash matched),
        so damage is a 503 when the range fits in one read chunk, a cut response otherwise.
        """
        offset = 0
        held: bytes | None = None
        async for chunk in self._verified(record):
            lo, hi = max(0, start - offset), min(len(chunk), end - offset)
            offset += len(chunk)
            if lo < hi:
                if held is not None:
                    yield held
                held = chunk[lo:hi]
        if held is not None:
            yield held


def _ranges(indexes: list[int]) -> str:
    return ",".join(str(i) for i in indexes[:20]) + (",..." if len(indexes) > 20 else "")


@contextmanager
def _backend_damage_logged(record: BlobRecord) -> Iterator[None]:
    """Damage the backend itself saw, or bytes gone, logged like damage found here; then raised."""
    try:
        yield
    except CorruptBlob as exc:
        _log_corrupt(record, exc.message)
        raise


def _log_corrupt(record: BlobRecord, found: str) -> None:
    log.error(
        "CORRUPT BLOB: id=%r backend=%s key=%s: %s; expected size=%d sha256=%s",
        record.id,
        record.backend,
        record.storage_key,
        found,
        record.size,
        record.sha256,
    )
