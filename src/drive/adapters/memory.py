"""In-memory versions of both ports, for unit tests of the core."""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterable, AsyncIterator, Collection
from dataclasses import replace
from datetime import datetime

from drive.domain.errors import StorageUnavailable, StoredBytesMissing
from drive.domain.model import BlobRecord, CommitOutcome, PendingOp
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

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if key not in self.objects:
            raise StoredBytesMissing(f"no bytes for key {key}")
        data = self.objects[key][start:end]
        step = self.read_piece or max(1, len(data))
        for at in range(0, len(data), step):
            yield data[at : at + step]

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

    async def finish(self, storage_key: str) -> None:
        self._check()
        self.pending.pop(storage_key, None)

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

    async def expired(self, now: datetime, limit: int) -> list[PendingOp]:
        self._check()
        return [op for op in self.pending.values() if op.lease_until < now][:limit]

    async def known_keys(self, backend: str, keys: Collection[str]) -> set[str]:
        self._check()
        referenced = {r.storage_key for r in self.records.values() if r.backend == backend}
        referenced |= {op.storage_key for op in self.pending.values() if op.backend == backend}
        return referenced & set(keys)
