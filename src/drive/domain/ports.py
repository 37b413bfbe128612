"""The two ports the core depends on. Adapters implement them; use-cases call them.

Both are async and stream-shaped: bytes flow as async iterables of ``bytes`` chunks,
so a multi-GiB blob never has to sit whole in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Collection
from datetime import datetime
from typing import Protocol, runtime_checkable

from drive.domain.model import BlobRecord, CommitOutcome, PendingOp, Upload


@runtime_checkable
class BlobRepository(Protocol):
    """Bytes, stored under service-made keys (32 lowercase hex characters).

    Every failure of the backend itself (unreachable, timeout, refused) is raised as
    ``StorageUnavailable``; a missing key on read as ``StoredBytesMissing``. Library
    exceptions never escape an adapter.
    """

    name: str

    async def open(self) -> None:
        """Connect and check the backend is usable; raise ``StorageUnavailable`` if not."""

    async def close(self) -> None:
        """Release connections. Safe to call more than once."""

    async def ping(self) -> None:
        """Cheap reachability check for readiness probes."""

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store every chunk under ``key`` and return the byte count.

        All or nothing: the bytes become visible under ``key`` only once complete and
        durable. If ``chunks`` raises (too large, bad digest, client gone) the same
        exception propagates unchanged and whatever was staged is removed on a best
        effort basis (recovery removes anything left).
        """
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield the bytes of ``key`` from ``start`` up to ``end`` (exclusive; None = to the end)."""
        ...

    async def read_whole(self, key: str, limit: int) -> bytes:
        """The bytes of ``key`` up to ``limit`` of them, in one piece: ``read(key, 0, limit)`` joined.

        For small reads, where a stream's machinery costs more than the bytes; the caller
        bounds ``limit``. Raises as ``read`` does.
        """

    async def delete(self, key: str) -> None:
        """Remove every byte stored for ``key``, staged or published. Missing is fine."""

    def list_keys(self) -> AsyncIterator[str]:
        """Yield each key that has any bytes stored, staged or published, once."""
        ...

    def list_strangers(self) -> AsyncIterator[str]:
        """Yield the name of everything under the backend's own root that is not a storage key's bytes.

        Names are relative to that root (``objects/ab/notakey.txt``). Strangers are someone
        else's: reported by fsck, never touched. Never raises for odd names.
        """
        ...


@runtime_checkable
class PieceStaging(Protocol):
    """Bytes of a resumable upload (tus) arriving in pieces, durable between requests.

    Implemented by each byte backend beside ``BlobRepository`` (same class, same
    storage key space). ``state`` is the backend's own bookkeeping for one upload
    (an S3 multipart UploadId and its parts, a count of FTP parts, ...): an opaque
    string, at most 64 KiB, that the metadata store keeps with the upload and hands
    back on every call, so any process sharing the stores can continue the upload.

    The durable length of an upload is what the metadata store records after
    ``append_piece`` returns. A process may die after the bytes landed but before
    that record: the next ``append_piece`` at the recorded ``offset`` must then
    replace, not follow, whatever an interrupted append left beyond ``offset``.
    ``delete(key)`` of the same backend removes staged pieces too, and ``list_keys``
    lists a key that has only staged pieces, so recovery and the orphan sweep treat
    an abandoned upload like any interrupted store. Errors as for ``BlobRepository``.
    """

    async def begin_pieces(self, key: str) -> str:
        """Prepare ``key`` to receive pieces; return the initial state."""
        ...

    async def append_piece(self, key: str, state: str, offset: int, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        """Append ``chunks`` at ``offset`` (the durable length so far); durable on return.

        Returns the number of bytes appended and the new state. If ``chunks`` raises or
        the append fails, the exception propagates and ``state`` at ``offset`` stays valid.
        """
        ...

    def read_pieces(self, key: str, state: str, length: int) -> AsyncIterator[bytes]:
        """Yield the first ``length`` staged bytes (to rebuild a digest in another process)."""
        ...

    async def seal_pieces(self, key: str, state: str, length: int) -> None:
        """Publish the ``length`` staged bytes under ``key``: afterwards ``read(key)`` yields them,
        exactly as after ``write(key, ...)``. Idempotent: sealing a sealed key again is fine."""


@runtime_checkable
class MetadataRepository(Protocol):
    """Committed blob records and pending operations, in one durable store."""

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None:
        """Release connections. Safe to call more than once."""

    async def ping(self) -> None:
        """Cheap reachability check for readiness probes."""

    async def get(self, blob_id: str) -> BlobRecord | None:
        """The committed record of ``blob_id``, or None."""
        ...

    async def begin(self, op: PendingOp) -> None:
        """Durably record a pending operation before any byte is written for it."""

    async def begin_store(self, op: PendingOp) -> BlobRecord | None:
        """``begin(op)`` for a STORE op, unless ``op.blob_id`` is committed already: then
        nothing is recorded and that record is returned. The check and the intent in one call
        (on SQLite, one statement of the group commit; a store skips a separate lookup)."""
        ...

    async def renew(self, storage_key: str, lease_until: datetime) -> bool:
        """Extend a pending operation's lease; False if it is gone (reclaimed by recovery)."""
        ...

    async def commit(self, record: BlobRecord) -> CommitOutcome:
        """In one transaction: end the STORE op of ``record.storage_key`` and insert ``record``.

        If the id is already committed, nothing changes and the existing record is
        returned with ``created=False`` (the caller removes its bytes, then calls
        ``finish``). If the pending op is gone (its lease expired and recovery took it)
        ``StorageUnavailable`` is raised and nothing is committed.
        """
        ...

    async def relocate(self, record: BlobRecord, backend: str, storage_key: str, lease_until: datetime) -> bool:
        """In one transaction: point ``record.id`` at bytes copied to ``backend``/``storage_key``.

        The STORE op of the new key ends and a DELETE op for the old key begins. Returns
        False (changing nothing) if the record no longer matches ``record`` (deleted or
        replaced meanwhile). Raises ``StorageUnavailable`` if the new key's op is gone.
        """
        ...

    async def add_chunk_digests(self, record: BlobRecord) -> bool:
        """Give a blob stored before chunk digests the ones in ``record`` (computed from its verified bytes).

        Changes the committed record only while it has ``record``'s id and storage key and
        still no digests; returns False (changing nothing) otherwise.
        """
        ...

    async def finish(self, storage_key: str, *, durable: bool = False) -> None:
        """Forget a pending operation whose bytes are gone or committed.

        ``durable``: the end is on disk before this returns. Recovery needs that before it
        removes bytes whose owner may still be alive: an end lost in a crash of the database
        server would give that owner its intent back, and let it commit over bytes gone.
        """

    async def finish_all(self, storage_keys: Collection[str], *, durable: bool = False) -> None:
        """``finish`` for many keys in one transaction (recovery's batches: one flush, not one each)."""

    async def remove(self, blob_id: str, lease_until: datetime) -> BlobRecord | None:
        """In one transaction: delete the record of ``blob_id`` and begin a DELETE op for its bytes."""
        ...

    async def page(self, prefix: str, after: str | None, limit: int) -> list[BlobRecord]:
        """Records whose id starts with ``prefix``, ids > ``after``, ascending byte order."""
        ...

    async def expired(self, now: datetime, limit: int, backends: Collection[str] | None = None) -> list[PendingOp]:
        """Pending operations whose lease ended before ``now``, oldest first; of ``backends`` only, if given."""
        ...

    async def known_keys(self, backend: str, keys: Collection[str]) -> set[str]:
        """The subset of ``keys`` that a record or a pending op of ``backend`` refers to."""
        ...


@runtime_checkable
class UploadRepository(Protocol):
    """Resumable uploads in progress, kept by the metadata store beside records and intents.

    Implemented by the same classes as ``MetadataRepository`` (same database), so an
    upload's row and its STORE intent change together where that matters.
    """

    async def create_upload(self, upload: Upload) -> None:
        """In one durable transaction: record ``upload`` and begin the STORE intent of its
        storage key, its lease running to ``upload.expires_at``."""

    async def get_upload(self, upload_id: str) -> Upload | None:
        """The upload, expired or not, or None."""
        ...

    async def claim_upload(
        self, upload_id: str, owner: str, now: datetime, lock_until: datetime, expires_at: datetime
    ) -> Upload | None:
        """Take the upload's lock for ``owner`` (one conditional update), or None at once.

        Taken only while the upload has not expired at ``now`` and its lock is free or its
        holder's lock ended before ``now``; the upload's expiry and its intent's lease move to
        ``expires_at`` in the same transaction. None also when the intent of an upload still
        missing bytes is gone (recovery reclaimed it): nothing changes then. (A whole
        upload's intent may be gone because its blob was committed.)
        """
        ...

    async def renew_upload_lock(self, upload_id: str, owner: str, lock_until: datetime) -> bool:
        """Extend ``owner``'s lock; False if ``owner`` no longer holds it."""
        ...

    async def advance_upload(self, upload_id: str, owner: str, offset: int, state: str) -> bool:
        """Durably record the new staged length and backend state, if ``owner`` holds the lock."""
        ...

    async def release_upload(self, upload_id: str, owner: str, *, completed: bool = False) -> None:
        """Give the lock back (if ``owner`` holds it); ``completed`` marks the blob committed."""

    async def remove_upload(self, upload_id: str) -> None:
        """Forget the upload (its bytes and intent are the caller's to discard). Missing is fine."""

    async def uploads_page(self, after: str | None, limit: int) -> list[Upload]:
        """Uploads (expired ones too) with ids > ``after``, in id order."""
        ...

    async def forget_expired_uploads(self, now: datetime, limit: int) -> int:
        """Remove rows of uploads expired before ``now`` whose storage key has no intent left
        (committed, or their bytes already reclaimed); return how many."""
        ...
