"""Resumable uploads (tus): one blob's bytes arriving in pieces, over many requests and processes.

An upload is a long-lived STORE intent (docs/PROTOCOL.md): ``create`` records the upload
and its intent (lease running to the upload's expiry) in one transaction before the
backend stages a byte; each ``append`` claims the upload's lock in the metadata store (one
request at a time, across processes), appends at the durable offset, and records the new
offset; the last byte seals the staged bytes and commits the blob exactly as ``StoreBlob``
does. An upload nobody touches for the expiry period is an expired intent: recovery removes
its bytes, and then its row.

The whole-blob SHA-256 (and chunk digests) grow piece by piece. The hash state lives in
this process, keyed by upload and offset; a piece arriving at another process (or after a
restart) rebuilds it first by reading the staged bytes back (``read_pieces``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from drive.application.commit_protocol import CommitProtocol
from drive.application.streams import ChunkDigests
from drive.domain.errors import (
    BlobConflict,
    InvalidRequest,
    PayloadTooLarge,
    PieceChecksumMismatch,
    StorageUnavailable,
    UploadConflict,
    UploadNotFound,
)
from drive.domain.ids import validate_id
from drive.domain.media_types import DEFAULT_CONTENT_TYPE, validate_media_type
from drive.domain.model import CHUNK_SIZE, BlobRecord, Upload, whole_seconds
from drive.domain.ports import PieceStaging, UploadRepository
from drive.domain.storage_keys import new_storage_key

# Hash states kept per process (each about 32 bytes per MiB of its upload, plus ~200 bytes).
HASH_CACHE_SIZE = 1024
PAGE = 500


class BlobHash:
    """The SHA-256 of a blob's bytes so far, whole and per ``CHUNK_SIZE`` chunk; copyable."""

    def __init__(self) -> None:
        self.whole = hashlib.sha256()
        self.chunks = ChunkDigests(CHUNK_SIZE)
        self.size = 0

    def update(self, data: bytes) -> None:
        self.whole.update(data)
        self.chunks.update(data)
        self.size += len(data)

    def copy(self) -> BlobHash:
        twin = BlobHash()
        twin.whole = self.whole.copy()
        twin.chunks = self.chunks.copy()
        twin.size = self.size
        return twin


@dataclass(frozen=True, slots=True)
class UploadPage:
    items: list[Upload]
    next_after: str | None


class _Piece:
    """One request's bytes on their way to the backend: limited, hashed, checked, and keeping the lock.

    The piece's own digest is checked against ``Upload-Checksum`` before the stream ends,
    so a mismatch fails the append and nothing counts.
    """

    def __init__(
        self,
        uploads: Uploads,
        upload: Upload,
        owner: str,
        chunks: AsyncIterable[bytes],
        limit: int,
        checksum: bytes | None,
        blob_hash: BlobHash,
    ) -> None:
        self._uploads = uploads
        self._upload = upload
        self._owner = owner
        self._chunks = chunks
        self._limit = limit
        self._checksum = checksum
        self.blob_hash = blob_hash
        self.size = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        piece_hash = hashlib.sha256() if self._checksum is not None else None
        protocol = self._uploads.protocol
        renew_at = protocol.clock() + protocol.lease / 3
        async for chunk in self._chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self._limit:
                raise PayloadTooLarge("the body goes past the upload's length")
            if piece_hash is not None:
                piece_hash.update(chunk)
            self.blob_hash.update(chunk)
            now = protocol.clock()
            if now >= renew_at:
                renew_at = now + protocol.lease / 3
                await self._uploads.keep_lock(self._upload, self._owner)
            yield chunk
        if piece_hash is not None and piece_hash.digest() != self._checksum:
            raise PieceChecksumMismatch("the piece does not match its Upload-Checksum; nothing was appended")


class Uploads:
    """The use-cases of resumable uploads; ``expiry``: how long an untouched upload lives."""

    def __init__(self, protocol: CommitProtocol, uploads: UploadRepository, expiry: timedelta) -> None:
        self.protocol = protocol
        self._metadata = protocol.metadata
        self._uploads = uploads
        self.expiry = expiry
        self._hashes: OrderedDict[str, tuple[int, BlobHash]] = OrderedDict()
        self.rebuilt_bytes = 0  # bytes read back to rebuild hash states (for the bench and tests)

    def _staging(self, backend: str) -> PieceStaging:
        repository = self.protocol.backends.get(backend)
        if not isinstance(repository, PieceStaging):
            raise StorageUnavailable(f"backend {backend} does not keep resumable uploads")
        return repository

    # -- create ---------------------------------------------------------------------------

    async def create(
        self,
        blob_id: str,
        length: int,
        *,
        max_size: int,
        content_type: str | None = None,
        body: AsyncIterable[bytes] | None = None,
        checksum: bytes | None = None,
    ) -> Upload:
        """A new upload of ``length`` bytes for ``blob_id``; ``body``: its first piece (creation-with-upload)."""
        validate_id(blob_id)
        if length < 0:
            raise InvalidRequest("Upload-Length must not be negative")
        if length > max_size:
            raise PayloadTooLarge(f"blob is larger than the limit of {max_size} bytes")
        if content_type is not None:
            validate_media_type(content_type)  # the rule every stored blob's type follows
        backend = self.protocol.backends.default_name
        staging = self._staging(backend)
        now = self.protocol.clock()
        owner = secrets.token_hex(16)
        upload = Upload(
            # 192 random bits: unguessable. Hex, so an id never begins with "-" (which a command
            # line would take for an option: `drive uploads rm <id>`).
            id=secrets.token_hex(24),
            blob_id=blob_id,
            backend=backend,
            storage_key=new_storage_key(),
            length=length,
            offset=0,
            state="",
            content_type=content_type,
            created_at=now,
            expires_at=now + self.expiry,
            lock_owner=owner,
            lock_until=now + self.protocol.lease,
        )
        # Intent (and row) first, locked by us: no byte is staged before something names it.
        await self._uploads.create_upload(upload)
        try:
            state = await staging.begin_pieces(upload.storage_key)
            if not await self._uploads.advance_upload(upload.id, owner, 0, state):
                raise StorageUnavailable("the new upload's lock was lost")
        except Exception:
            await self._abandon(upload)
            raise
        upload = replace(upload, state=state)
        self._remember(upload.id, 0, BlobHash())
        completed = False
        try:
            if body is not None:
                upload, completed = await self._append_claimed(upload, owner, 0, body, checksum)
            elif length == 0:
                await self._finalize(upload, BlobHash())
                completed = True
        except Exception:
            # The client never learns this upload's URL: a failed creation leaves nothing behind.
            # (Cancelled, it leaves an upload nobody resumes: recovery takes it once it expires.)
            await self._abandon(upload)
            raise
        await self._uploads.release_upload(upload.id, owner, completed=completed)
        return replace(upload, completed=completed, lock_owner=None, lock_until=None)

    async def _abandon(self, upload: Upload) -> None:
        """Forget an upload and its bytes, unless they are its blob's now (completed, or a commit
        that landed just before a crash or a late error, before the upload was marked)."""
        await self._uploads.remove_upload(upload.id)
        self._hashes.pop(upload.id, None)
        if upload.completed:
            return
        # Not a lookup of the id, then a discard: a commit still under way on the database
        # could land between the two. This ends the intent first, whose row such a commit holds.
        await self.protocol.discard_unless_committed(upload.backend, upload.storage_key)

    # -- append ---------------------------------------------------------------------------

    async def append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        *,
        checksum: bytes | None = None,
        declared: int | None = None,
    ) -> Upload:
        """Append one piece at ``offset``; the last piece commits the blob. Returns the upload after it.

        ``declared``: the body's announced size, refused at once if it goes past the upload's length.
        """
        upload, owner = await self._claim(upload_id)
        completed = upload.completed
        try:
            if offset != upload.offset:
                raise UploadConflict(f"Upload-Offset is {offset} but the upload has {upload.offset} bytes")
            if declared is not None and declared > upload.length - upload.offset:
                raise PayloadTooLarge("the body goes past the upload's length")
            if upload.completed:
                await _drain_empty(chunks)
                return upload
            upload, completed = await self._append_claimed(upload, owner, offset, chunks, checksum)
            return upload
        finally:
            await self._uploads.release_upload(upload_id, owner, completed=completed)

    async def _append_claimed(
        self, upload: Upload, owner: str, offset: int, chunks: AsyncIterable[bytes], checksum: bytes | None
    ) -> tuple[Upload, bool]:
        if upload.offset == upload.length:
            # Every byte arrived but the commit was cut short: finish it (nothing more may come).
            await _drain_empty(chunks)
            await self._finalize(upload, None)
            return replace(upload, completed=True), True
        staging = self._staging(upload.backend)
        blob_hash = await self._hash_at(upload, staging)
        piece = _Piece(self, upload, owner, chunks, upload.length - offset, checksum, blob_hash.copy())
        written, state = await staging.append_piece(upload.storage_key, upload.state, offset, piece)
        if written != piece.size:
            raise StorageUnavailable(f"backend {upload.backend} staged {written} of {piece.size} bytes")
        if not await self._uploads.advance_upload(upload.id, owner, offset + written, state):
            raise StorageUnavailable("the upload's lock was lost while appending; retry from HEAD")
        upload = replace(upload, offset=offset + written, state=state)
        self._remember(upload.id, upload.offset, piece.blob_hash)
        if upload.offset < upload.length:
            return upload, False
        await self._finalize(upload, piece.blob_hash)
        return replace(upload, completed=True), True

    async def _claim(self, upload_id: str) -> tuple[Upload, str]:
        now = self.protocol.clock()
        owner = secrets.token_hex(16)
        claimed = await self._uploads.claim_upload(upload_id, owner, now, now + self.protocol.lease, now + self.expiry)
        if claimed is not None:
            return claimed, owner
        current = await self._uploads.get_upload(upload_id)
        if current is None or current.expired(now):
            raise UploadNotFound("no such upload (it may have expired)")
        if current.lock_owner is not None and current.lock_until is not None and current.lock_until >= now:
            raise UploadConflict("another request is appending to this upload; retry from HEAD")
        raise UploadNotFound("no such upload (it expired and was reclaimed)")

    async def keep_lock(self, upload: Upload, owner: str) -> None:
        if not await self._uploads.renew_upload_lock(upload.id, owner, self.protocol.clock() + self.protocol.lease):
            raise StorageUnavailable("the upload's lock was lost while appending; retry from HEAD")

    # -- the whole blob's hash -------------------------------------------------------------

    def _remember(self, upload_id: str, offset: int, blob_hash: BlobHash) -> None:
        self._hashes[upload_id] = (offset, blob_hash)
        self._hashes.move_to_end(upload_id)
        while len(self._hashes) > HASH_CACHE_SIZE:
            self._hashes.popitem(last=False)

    async def _hash_at(self, upload: Upload, staging: PieceStaging) -> BlobHash:
        """The hash of the first ``upload.offset`` bytes: remembered here, or read back from the backend."""
        cached = self._hashes.get(upload.id)
        if cached is not None and cached[0] == upload.offset:
            return cached[1]
        blob_hash = BlobHash()
        async for chunk in staging.read_pieces(upload.storage_key, upload.state, upload.offset):
            blob_hash.update(chunk)
        if blob_hash.size != upload.offset:
            raise StorageUnavailable(f"backend {upload.backend} holds {blob_hash.size} of {upload.offset} staged bytes")
        self.rebuilt_bytes += blob_hash.size
        self._remember(upload.id, upload.offset, blob_hash)
        return blob_hash

    # -- commit -------------------------------------------------------------------------------

    async def _finalize(self, upload: Upload, blob_hash: BlobHash | None) -> None:
        """Seal the staged bytes and commit the blob as ``StoreBlob`` does (same record, same outcomes)."""
        staging = self._staging(upload.backend)
        await staging.seal_pieces(upload.storage_key, upload.state, upload.length)
        existing = await self._metadata.get(upload.blob_id)
        if existing is not None and existing.storage_key == upload.storage_key:
            self._hashes.pop(upload.id, None)
            return  # committed by an earlier attempt cut short before the upload was marked
        if blob_hash is None or blob_hash.size != upload.length:
            blob_hash = BlobHash()
            async for chunk in self.protocol.backends.get(upload.backend).read(upload.storage_key, 0, upload.length):
                blob_hash.update(chunk)
            self.rebuilt_bytes += blob_hash.size
        if blob_hash.size != upload.length:
            raise StorageUnavailable(f"backend {upload.backend} sealed {blob_hash.size} of {upload.length} bytes")
        record = BlobRecord(
            id=upload.blob_id,
            size=upload.length,
            sha256=blob_hash.whole.hexdigest(),
            created_at=whole_seconds(self.protocol.clock()),
            backend=upload.backend,
            storage_key=upload.storage_key,
            chunk_size=blob_hash.chunks.chunk_size,
            chunk_digests=blob_hash.chunks.packed(),
            content_type=upload.content_type or DEFAULT_CONTENT_TYPE,
        )
        outcome = await self._metadata.commit(record)
        self._hashes.pop(upload.id, None)
        if outcome.created:
            return
        # The id was committed meanwhile: our bytes are surplus either way.
        same = (outcome.record.sha256, outcome.record.size, outcome.record.content_type) == (
            record.sha256,
            record.size,
            record.content_type,
        )
        if not same:
            await self._uploads.remove_upload(upload.id)
        await self.protocol.discard(upload.backend, upload.storage_key)
        if not same:
            raise BlobConflict("the id holds different bytes already")

    # -- status, terminate, list ------------------------------------------------------------

    async def get(self, upload_id: str) -> Upload | None:
        """The upload's row as stored (expired or not), for inspection."""
        return await self._uploads.get_upload(upload_id)

    async def status(self, upload_id: str) -> Upload:
        """The upload as it stands; one whose commit was cut short is finished first (so the offset is true)."""
        now = self.protocol.clock()
        upload = await self._uploads.get_upload(upload_id)
        if upload is None or upload.expired(now):
            raise UploadNotFound("no such upload (it may have expired)")
        if upload.offset == upload.length and not upload.completed and not _locked(upload, now):
            return await self.append(upload_id, upload.offset, _nothing())
        return upload

    async def terminate(self, upload_id: str) -> None:
        """End an upload: its staged bytes go (a committed blob stays)."""
        upload, _owner = await self._claim(upload_id)
        await self._abandon(upload)

    async def remove(self, upload_id: str) -> None:
        """``terminate`` for operators: also when a request is appending (its lock is ignored)."""
        upload = await self._uploads.get_upload(upload_id)
        if upload is None:
            raise UploadNotFound("no such upload")
        await self._abandon(upload)

    async def page(self, after: str | None = None, limit: int = PAGE) -> UploadPage:
        items = await self._uploads.uploads_page(after, limit)
        return UploadPage(items, items[-1].id if len(items) == limit else None)

    async def all(self) -> AsyncIterator[Upload]:
        after: str | None = None
        while True:
            page = await self.page(after)
            for upload in page.items:
                yield upload
            if page.next_after is None:
                return
            after = page.next_after

    async def forget_expired(self, limit: int = PAGE) -> int:
        """Rows of expired uploads whose intent recovery has finished (or whose blob was committed)."""
        return await self._uploads.forget_expired_uploads(self.protocol.clock(), limit)


def _locked(upload: Upload, now: datetime) -> bool:
    return upload.lock_owner is not None and upload.lock_until is not None and upload.lock_until >= now


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def _drain_empty(chunks: AsyncIterable[bytes]) -> None:
    """A request that appends nothing may still carry no bytes; any byte is past the upload's length."""
    async for chunk in chunks:
        if chunk:
            raise PayloadTooLarge("the body goes past the upload's length")
