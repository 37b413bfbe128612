"""The commit protocol's shared steps (docs/PROTOCOL.md), in one place for every use-case.

``CommitProtocol`` holds the two ports and the lease policy (how long an intent lives, and
the clock that measures it). Storing, deleting, moving, recovering and checking all take
one, so an intent is written, renewed and discarded the same way everywhere, and the
orphan sweep and record paging have one definition.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from drive.domain.backends import Backends
from drive.domain.errors import StorageUnavailable
from drive.domain.model import BlobRecord, PendingKind, PendingOp, utc_now
from drive.domain.ports import MetadataRepository
from drive.domain.storage_keys import new_storage_key

log = logging.getLogger(__name__)

PAGE = 500  # records or listed keys fetched per metadata query


@dataclass(frozen=True, slots=True)
class CommitProtocol:
    metadata: MetadataRepository
    backends: Backends
    lease: timedelta = timedelta(seconds=60)
    clock: Callable[[], datetime] = field(default=utc_now)

    def lease_end(self) -> datetime:
        return self.clock() + self.lease

    async def intend_store(self, backend: str, blob_id: str) -> str:
        """Step 1 of every write: a durable STORE intent under a fresh key, before any byte is written."""
        op = self._store_op(backend, blob_id)
        await self.metadata.begin(op)
        return op.storage_key

    async def intend_store_unless_committed(self, backend: str, blob_id: str) -> tuple[str, BlobRecord | None]:
        """``intend_store``, unless ``blob_id`` is committed already: then no intent, and its record."""
        op = self._store_op(backend, blob_id)
        return op.storage_key, await self.metadata.begin_store(op)

    def _store_op(self, backend: str, blob_id: str) -> PendingOp:
        return PendingOp(new_storage_key(), backend, blob_id, PendingKind.STORE, self.lease_end())

    def renewal(self, key: str) -> LeaseRenewal:
        return LeaseRenewal(self.metadata, key, self.lease, self.clock)

    async def discard(self, backend: str, key: str) -> bool:
        """Best effort: remove the bytes under ``key``, then end its intent.

        False when that failed; the intent stays and recovery finishes it once its lease ends.
        """
        try:
            await self.backends.get(backend).delete(key)
            await self.metadata.finish(key)
        except Exception:
            log.warning("removal of storage key %s on %s deferred to recovery", key, backend, exc_info=True)
            return False
        return True

    async def discard_unless_committed(self, backend: str, key: str) -> bool:
        """``discard`` after a commit that failed, whose outcome may be unknown.

        A connection lost on the commit's way back leaves the record either written or not.
        The intent is ended first (a commit still under way holds its row until it is done),
        then the bytes go only if no record names the key. False when they were kept: committed
        after all, or the check failed (then recovery decides, once the lease ends).
        """
        try:
            await self.metadata.finish(key)
            if await self.metadata.known_keys(backend, [key]):
                log.warning("a commit reported as failed was made: storage key %s on %s is kept", key, backend)
                return False
            await self.backends.get(backend).delete(key)
        except Exception:
            log.warning("removal of storage key %s on %s deferred to recovery", key, backend, exc_info=True)
            return False
        return True

    async def orphans(self, backend: str, listed: set[str] | None = None) -> AsyncIterator[str]:
        """Keys on ``backend`` that neither a record nor an intent refers to.

        ``listed``, when given, collects every key the backend listed (the check for
        missing bytes needs them). A key's intent is written before its first byte, so a
        listed key with neither is truly orphaned. Raises ``StorageUnavailable``.
        """
        batch: list[str] = []
        async for key in self.backends.get(backend).list_keys():
            if listed is not None:
                listed.add(key)
            batch.append(key)
            if len(batch) >= PAGE:
                for orphan in await self._unknown(backend, batch):
                    yield orphan
                batch = []
        for orphan in await self._unknown(backend, batch):
            yield orphan

    async def _unknown(self, backend: str, keys: list[str]) -> list[str]:
        if not keys:
            return []
        known = await self.metadata.known_keys(backend, keys)
        return [key for key in keys if key not in known]

    def records(self, prefix: str = "") -> AsyncIterator[BlobRecord]:
        return all_records(self.metadata, prefix)


async def all_records(metadata: MetadataRepository, prefix: str = "", page: int = PAGE) -> AsyncIterator[BlobRecord]:
    """Every committed record under ``prefix``, in id order, a page at a time.

    Ids never change (not even when a blob moves), so paging by id is stable while
    other work goes on.
    """
    after: str | None = None
    while True:
        records = await metadata.page(prefix, after, page)
        for record in records:
            yield record
        if len(records) < page:
            return
        after = records[-1].id


class LeaseRenewal:
    """Keeps a long transfer's intent alive so recovery never reclaims it mid-flight."""

    def __init__(self, metadata: MetadataRepository, key: str, lease: timedelta, clock: Callable[[], datetime]) -> None:
        self._metadata = metadata
        self._key = key
        self._lease = lease
        self._clock = clock
        self._next = clock() + lease / 3

    async def maybe_renew(self) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._lease / 3
        if not await self._metadata.renew(self._key, now + self._lease):
            raise StorageUnavailable("upload lease was lost; retry the upload")
