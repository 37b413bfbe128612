"""In-memory versions of both ports, for unit tests of the core."""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterable, AsyncIterator, Collection
from dataclasses import replace
from datetime import datetime

from drive.domain.errors import StorageUnavailable, StoredBytesMissing
from drive.domain.model import BlobRecord, CommitOutcome, PendingKind, PendingOp, Upload
from drive.domain.storage_keys import is_storage_key


class InMemoryBlobRepository:
    """``read_piece``: reads yield pieces of at most this many bytes (None: one piece), as real backends do."""

    def __init__(self, name: str = "memory", read_piece: int | None = None) -> None:
        self.name = name
        self.read_piece = read_piece
        self.objects: dict[str, bytes] = {}
        self.staged: dict[str, bytearray] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        buffer = self.staged.setdefault(key, bytearray())
        try:
            async for chunk in chunks:
                buffer.extend(chunk)
        except BaseException:
            self.staged.pop(key, None)
            raise
        self.objects[key] = bytes(self.staged.pop(key))
        return len(self.objects[key])

    async def begin_pieces(self, key: str) -> str:
        self.staged[key] = bytearray()
        return "0"

    async def append_piece(self, key: str, state: str, offset: int, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        buffer = self.staged.get(key)
        if buffer is None:
            raise StoredBytesMissing(f"no staged bytes for key {key}")
        del buffer[offset:]  # an interrupted append's leftovers
        written = 0
        async for chunk in chunks:
            buffer.extend(chunk)
            written += len(chunk)
        return written, str(int(state) + 1)  # a state that changes, as real backends' may

    async def read_pieces(self, key: str, state: str, length: int) -> AsyncIterator[bytes]:
        buffer = self.staged.get(key)
        if buffer is None or len(buffer) < length:
            raise StoredBytesMissing(f"no staged bytes for key {key}")
        step = self.read_piece or max(1, length)
        for at in range(0, length, step):
            yield bytes(buffer[at : min(length, at + step)])

    async def seal_pieces(self, key: str, state: str, length: int) -> None:
        if key not in self.staged and len(self.objects.get(key, b"")) == length and key in self.objects:
            return
        buffer = self.staged.pop(key, None)
        if buffer is None:
            raise StoredBytesMissing(f"no staged bytes for key {key}")
        self.objects[key] = bytes(buffer[:length])

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if key not in self.objects:
            raise StoredBytesMissing(f"no bytes for key {key}")
        data = self.objects[key][start:end]
        step = self.read_piece or max(1, len(data))
        for at in range(0, len(data), step):
            yield data[at : at + step]

    async def read_whole(self, key: str, limit: int) -> bytes:
        if key not in self.objects:
            raise StoredBytesMissing(f"no bytes for key {key}")
        return self.objects[key][:limit]

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)
        self.staged.pop(key, None)

    async def list_keys(self) -> AsyncIterator[str]:
        for key in sorted(set(self.objects) | set(self.staged)):
            if is_storage_key(key):
                yield key

    async def list_strangers(self) -> AsyncIterator[str]:
        for key in sorted(set(self.objects) | set(self.staged)):
            if not is_storage_key(key):
                yield key


class InMemoryMetadataRepository:
    def __init__(self) -> None:
        self.records: dict[str, BlobRecord] = {}
        self.pending: dict[str, PendingOp] = {}
        self.uploads: dict[str, Upload] = {}
        self.available = True

    def _check(self) -> None:
        if not self.available:
            raise StorageUnavailable("metadata store is unavailable")

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        self._check()

    async def get(self, blob_id: str) -> BlobRecord | None:
        self._check()
        return self.records.get(blob_id)

    async def begin(self, op: PendingOp) -> None:
        self._check()
        self.pending[op.storage_key] = op

    async def begin_store(self, op: PendingOp) -> BlobRecord | None:
        self._check()
        existing = self.records.get(op.blob_id)
        if existing is None:
            self.pending[op.storage_key] = op
        return existing

    async def renew(self, storage_key: str, lease_until: datetime) -> bool:
        self._check()
        op = self.pending.get(storage_key)
        if op is None:
            return False
        self.pending[storage_key] = PendingOp(op.storage_key, op.backend, op.blob_id, op.kind, lease_until)
        return True

    async def commit(self, record: BlobRecord) -> CommitOutcome:
        self._check()
        if record.storage_key not in self.pending:
            raise StorageUnavailable("upload lease was lost; retry the upload")
        existing = self.records.get(record.id)
        if existing is not None:
            return CommitOutcome(existing, created=False)
        del self.pending[record.storage_key]
        self.records[record.id] = record
        return CommitOutcome(record, created=True)

    async def relocate(self, record: BlobRecord, backend: str, storage_key: str, lease_until: datetime) -> bool:
        self._check()
        if self.records.get(record.id) != record:
            return False
        if storage_key not in self.pending:
            raise StorageUnavailable("copy lease was lost; retry")
        del self.pending[storage_key]
        self.records[record.id] = replace(record, backend=backend, storage_key=storage_key)
        self.pending[record.storage_key] = PendingOp.deleting(record, lease_until)
        return True

    async def add_chunk_digests(self, record: BlobRecord) -> bool:
        self._check()
        current = self.records.get(record.id)
        if current is None or current.storage_key != record.storage_key or current.chunk_size is not None:
            return False
        self.records[record.id] = replace(current, chunk_size=record.chunk_size, chunk_digests=record.chunk_digests)
        return True

    async def finish(self, storage_key: str, *, durable: bool = False) -> None:
        self._check()
        self.pending.pop(storage_key, None)

    async def finish_all(self, storage_keys: Collection[str], *, durable: bool = False) -> None:
        self._check()
        for key in storage_keys:
            self.pending.pop(key, None)

    async def remove(self, blob_id: str, lease_until: datetime) -> BlobRecord | None:
        self._check()
        record = self.records.pop(blob_id, None)
        if record is not None:
            self.pending[record.storage_key] = PendingOp.deleting(record, lease_until)
        return record

    async def page(self, prefix: str, after: str | None, limit: int) -> list[BlobRecord]:
        self._check()
        ids = sorted(self.records, key=lambda i: i.encode())
        start = 0 if after is None else bisect.bisect_right([i.encode() for i in ids], after.encode())
        return [self.records[i] for i in ids[start:] if i.startswith(prefix)][:limit]

    async def expired(self, now: datetime, limit: int, backends: Collection[str] | None = None) -> list[PendingOp]:
        self._check()
        ops = [op for op in self.pending.values() if op.lease_until < now]
        if backends is not None:
            ops = [op for op in ops if op.backend in backends]
        return sorted(ops, key=lambda op: op.lease_until)[:limit]

    async def known_keys(self, backend: str, keys: Collection[str]) -> set[str]:
        self._check()
        referenced = {r.storage_key for r in self.records.values() if r.backend == backend}
        referenced |= {op.storage_key for op in self.pending.values() if op.backend == backend}
        return referenced & set(keys)

    # -- UploadRepository ---------------------------------------------------------------

    async def create_upload(self, upload: Upload) -> None:
        self._check()
        self.pending[upload.storage_key] = PendingOp(
            upload.storage_key, upload.backend, upload.blob_id, PendingKind.STORE, upload.expires_at
        )
        self.uploads[upload.id] = upload

    async def get_upload(self, upload_id: str) -> Upload | None:
        self._check()
        return self.uploads.get(upload_id)

    async def claim_upload(
        self, upload_id: str, owner: str, now: datetime, lock_until: datetime, expires_at: datetime
    ) -> Upload | None:
        self._check()
        upload = self.uploads.get(upload_id)
        if upload is None or upload.expired(now):
            return None
        if upload.lock_owner is not None and upload.lock_until is not None and upload.lock_until >= now:
            return None
        op = self.pending.get(upload.storage_key)
        if op is not None:
            self.pending[op.storage_key] = replace(op, lease_until=expires_at)
        elif not upload.completed and upload.offset < upload.length:
            return None  # reclaimed by recovery (a whole upload's intent may be gone by its commit)
        claimed = replace(upload, lock_owner=owner, lock_until=lock_until, expires_at=expires_at)
        self.uploads[upload_id] = claimed
        return claimed

    def _held(self, upload_id: str, owner: str) -> Upload | None:
        upload = self.uploads.get(upload_id)
        return upload if upload is not None and upload.lock_owner == owner else None

    async def renew_upload_lock(self, upload_id: str, owner: str, lock_until: datetime) -> bool:
        self._check()
        upload = self._held(upload_id, owner)
        if upload is None:
            return False
        self.uploads[upload_id] = replace(upload, lock_until=lock_until)
        return True

    async def advance_upload(self, upload_id: str, owner: str, offset: int, state: str) -> bool:
        self._check()
        upload = self._held(upload_id, owner)
        if upload is None:
            return False
        self.uploads[upload_id] = replace(upload, offset=offset, state=state)
        return True

    async def release_upload(self, upload_id: str, owner: str, *, completed: bool = False) -> None:
        self._check()
        upload = self._held(upload_id, owner)
        if upload is not None:
            self.uploads[upload_id] = replace(
                upload, lock_owner=None, lock_until=None, completed=upload.completed or completed
            )

    async def remove_upload(self, upload_id: str) -> None:
        self._check()
        self.uploads.pop(upload_id, None)

    async def uploads_page(self, after: str | None, limit: int) -> list[Upload]:
        self._check()
        return [self.uploads[i] for i in sorted(self.uploads) if after is None or i > after][:limit]

    async def forget_expired_uploads(self, now: datetime, limit: int) -> int:
        self._check()
        gone = [u.id for u in self.uploads.values() if u.expires_at < now and u.storage_key not in self.pending][:limit]
        for upload_id in gone:
            del self.uploads[upload_id]
        return len(gone)
