"""StoreBlob: the commit protocol for one upload.

1. Intent: a STORE pending op is made durable under a fresh storage key.
2. Stage: the bytes stream to the default backend, hashed and counted on the way.
3. Verify: size and SHA-256 (and the client's digest, if it sent one).
4. Commit: in one metadata transaction the pending op ends and the record appears.

A failure anywhere before 4 leaves no visible blob; what it leaves on the backend is
removed here on a best-effort basis and, failing that, by recovery once the lease ends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable
from datetime import datetime, timedelta

from drive.application.streams import Digesting
from drive.domain.backends import Backends
from drive.domain.errors import BlobConflict, ChecksumMismatch, StorageUnavailable
from drive.domain.ids import validate_id
from drive.domain.model import BlobRecord, CommitOutcome, PendingKind, PendingOp, utc_now, whole_seconds
from drive.domain.ports import MetadataRepository
from drive.domain.storage_keys import new_storage_key

log = logging.getLogger(__name__)


class StoreBlob:
    def __init__(
        self,
        metadata: MetadataRepository,
        backends: Backends,
        lease: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._metadata = metadata
        self._backends = backends
        self._lease = lease
        self._clock = clock

    async def __call__(
        self,
        blob_id: str,
        chunks: AsyncIterable[bytes],
        *,
        max_size: int | None = None,
        expected_sha256: str | None = None,
    ) -> CommitOutcome:
        """Store ``chunks`` as ``blob_id``; ``created`` is False for a replay of the same bytes."""
        validate_id(blob_id)
        existing = await self._metadata.get(blob_id)
        if existing is not None:
            # Already committed: hash the body without storing it, then replay or refuse.
            digest = Digesting(chunks, max_size)
            await digest.drain()
            _check_expected(digest, expected_sha256)
            return _replay(existing, digest)

        backend = self._backends.default
        key = new_storage_key()
        renewal = LeaseRenewal(self._metadata, key, self._lease, self._clock)
        await self._metadata.begin(
            PendingOp(key, backend.name, blob_id, PendingKind.STORE, self._clock() + self._lease)
        )
        digest = Digesting(chunks, max_size, on_progress=renewal.maybe_renew)
        try:
            written = await backend.write(key, digest)
            if not digest.finished or written != digest.size:
                raise StorageUnavailable(f"backend {backend.name} stored {written} of {digest.size} bytes")
            _check_expected(digest, expected_sha256)
            record = BlobRecord(
                id=blob_id,
                size=digest.size,
                sha256=digest.sha256,
                created_at=whole_seconds(self._clock()),
                backend=backend.name,
                storage_key=key,
            )
            outcome = await self._metadata.commit(record)
        except Exception:
            await self._discard(backend.name, key)
            raise
        if outcome.created:
            return outcome
        # Lost a race for the id: our bytes are surplus either way.
        await self._discard(backend.name, key)
        return _replay(outcome.record, digest)

    async def _discard(self, backend_name: str, key: str) -> None:
        """Best effort: remove staged bytes, then the intent. Recovery covers what fails here."""
        try:
            await self._backends.get(backend_name).delete(key)
            await self._metadata.finish(key)
        except Exception:
            log.warning("cleanup of storage key %s deferred to recovery", key, exc_info=True)


def _check_expected(digest: Digesting, expected_sha256: str | None) -> None:
    if expected_sha256 is not None and expected_sha256 != digest.sha256:
        raise ChecksumMismatch("the body does not match the digest sent with it")


def _replay(existing: BlobRecord, digest: Digesting) -> CommitOutcome:
    if existing.sha256 != digest.sha256 or existing.size != digest.size:
        raise BlobConflict("the id holds different bytes already")
    return CommitOutcome(existing, created=False)


class LeaseRenewal:
    """Keeps a long upload's pending op alive so recovery never reclaims it mid-flight."""

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
