"""What a stored blob is, and the records the commit protocol keeps about it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

from drive.domain.media_types import DEFAULT_CONTENT_TYPE

CHUNK_SIZE = 1024 * 1024
"""Bytes per chunk digest for new blobs (each record keeps its own, so this may change).

1 MiB: the digests cost 32 bytes per MiB in the record (32 KiB for a 1 GiB blob), and a
small range reads at most two chunks (2 MiB) to verify. It matches the fs read size and
the db backend's row size, so aligned reads usually arrive as whole chunks.
"""
DIGEST_SIZE = 32  # SHA-256


def pack_chunk_digests(digests: list[bytes]) -> bytes:
    """Record form of a blob's chunk digests: none for a blob of one chunk (its SHA-256 says it)."""
    return b"" if len(digests) <= 1 else b"".join(digests)


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """Committed metadata of one blob.

    ``storage_key`` is the name the backend stores the bytes under. It is made up by
    the service for each upload (never derived from the id), so no id can reach
    outside a backend's root and two ids never share storage.

    ``chunk_size`` and ``chunk_digests`` let any byte range be verified on its own
    (docs/PROTOCOL.md, "Chunk digests"): the SHA-256 of each ``chunk_size`` piece of the
    bytes, packed 32 bytes each. A blob of at most one chunk stores none (``b""``): its
    one digest is ``sha256``. Both are None for blobs stored before digests existed.
    They describe the bytes, not where they are, so a move keeps them.

    ``content_type`` is the media type the blob was stored with (``media_types``); like the
    bytes it is part of the blob, so a replay must repeat it, and a move keeps it.
    """

    id: str
    size: int
    sha256: str  # lowercase hex
    created_at: datetime  # UTC, whole seconds
    backend: str
    storage_key: str
    chunk_size: int | None = None
    chunk_digests: bytes | None = None
    content_type: str = DEFAULT_CONTENT_TYPE

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'

    @property
    def chunked(self) -> bool:
        """True when ranges can be verified chunk by chunk (False for blobs from before digests)."""
        return self.chunk_size is not None and self.chunk_size > 0 and self.chunk_digests is not None

    @property
    def chunk_count(self) -> int:
        if not self.chunk_size:
            return 0
        return -(-self.size // self.chunk_size)

    def chunk_digest(self, index: int) -> bytes:
        """The recorded SHA-256 of chunk ``index`` (b"" if none is recorded: it then never matches)."""
        digests = self.chunk_digests or b""
        if not digests and self.chunk_count == 1:
            return bytes.fromhex(self.sha256) if index == 0 else b""
        return digests[index * DIGEST_SIZE : (index + 1) * DIGEST_SIZE]

    def chunk_span(self, index: int) -> tuple[int, int]:
        """Byte offsets ``[start, end)`` of chunk ``index``."""
        size = self.chunk_size or self.size or 1
        return index * size, min(self.size, (index + 1) * size)

    def chunk_window(self, start: int, end: int) -> tuple[int, int, int]:
        """The chunks covering bytes ``[start, end)``: first index, and the aligned ``[from, to)`` to read."""
        size = self.chunk_size or self.size or 1
        first = start // size
        last = max(first, -(-end // size))  # exclusive
        return first, first * size, min(self.size, last * size)


class PendingKind(enum.StrEnum):
    STORE = "store"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class PendingOp:
    """A durable intent: bytes under ``storage_key`` may exist without committed metadata.

    Written before a store begins writing bytes and when a delete removes metadata.
    While its lease runs, the owning process is at work; once it has expired, recovery
    finishes the operation: bytes that no committed record points to are removed.
    """

    storage_key: str
    backend: str
    blob_id: str
    kind: PendingKind
    lease_until: datetime

    @classmethod
    def deleting(cls, record: BlobRecord, lease_until: datetime) -> PendingOp:
        """The intent to remove ``record``'s bytes, written with the change that leaves them unreferenced."""
        return cls(record.storage_key, record.backend, record.id, PendingKind.DELETE, lease_until)

    @classmethod
    def uploading(cls, upload: Upload) -> PendingOp:
        """The STORE intent of a resumable upload's staged bytes, leased until the upload expires."""
        return cls(upload.storage_key, upload.backend, upload.blob_id, PendingKind.STORE, upload.expires_at)


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    """Result of trying to commit: the record now held for the id, and whether it is ours."""

    record: BlobRecord
    created: bool


@dataclass(frozen=True, slots=True)
class Upload:
    """A resumable upload (tus) in progress: bytes arriving in pieces for one blob.

    ``offset`` is the durable length staged so far under ``storage_key`` on ``backend``,
    whose ``PieceStaging`` keeps ``state`` (opaque to everyone else). A STORE intent for
    ``storage_key`` with its lease running to ``expires_at`` exists until the blob is
    committed, so recovery removes the bytes of an upload nobody finishes. ``completed``:
    the blob is committed; the row stays until it expires, so a client that lost the last
    answer still learns the upload is whole. ``lock_owner``/``lock_until``: the one request
    appending now (a lease, so a crashed holder's lock lapses).
    """

    id: str
    blob_id: str
    backend: str
    storage_key: str
    length: int
    offset: int
    state: str
    content_type: str | None
    created_at: datetime
    expires_at: datetime
    completed: bool = False
    lock_owner: str | None = None
    lock_until: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at <= now


def utc_now() -> datetime:
    return datetime.now(UTC)


def whole_seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)
