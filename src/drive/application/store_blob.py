"""StoreBlob: the commit protocol for one upload.

1. Intent: a STORE pending op is made durable under a fresh storage key.
2. Stage: the bytes stream to the default backend, hashed (whole, and per chunk for
   verified ranges) and counted on the way.
3. Verify: size and SHA-256 (and the client's digest, if it sent one).
4. Commit: in one metadata transaction the pending op ends and the record appears.

A failure anywhere before 4 leaves no visible blob; what it leaves on the backend is
removed here on a best-effort basis and, failing that, by recovery once the lease ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from drive.application.commit_protocol import CommitProtocol
from drive.application.streams import Digesting, Offload, at_once
from drive.domain.errors import BlobConflict, ChecksumMismatch, StorageUnavailable
from drive.domain.ids import validate_id
from drive.domain.media_types import DEFAULT_CONTENT_TYPE, validate_media_type
from drive.domain.model import BlobRecord, CommitOutcome, whole_seconds


class StoreBlob:
    def __init__(self, protocol: CommitProtocol, offload: Offload = at_once) -> None:
        self._protocol = protocol
        self._metadata = protocol.metadata
        self._offload = offload  # hashes the body a piece at a time while the next arrives

    async def __call__(
        self,
        blob_id: str,
        chunks: AsyncIterable[bytes],
        *,
        max_size: int | None = None,
        expected_sha256: str | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> CommitOutcome:
        """Store ``chunks`` as ``blob_id``; ``created`` is False for a replay of the same bytes and content type."""
        validate_id(blob_id)
        validate_media_type(content_type)
        backend = self._protocol.backends.default
        key, existing = await self._protocol.intend_store_unless_committed(backend.name, blob_id)
        if existing is not None:
            # Already committed: hash the body without storing it, then replay or refuse.
            digest = Digesting(chunks, max_size, chunk_size=None, offload=self._offload)
            await digest.drain()
            _check_expected(digest, expected_sha256)
            return _replay(existing, digest, content_type)

        renew = self._protocol.renewal(key).maybe_renew
        digest = Digesting(chunks, max_size, on_progress=renew, offload=self._offload)
        try:
            written = await backend.write(key, digest)
            if not digest.finished or written != digest.size:
                raise StorageUnavailable(f"backend {backend.name} stored {written} of {digest.size} bytes")
            _check_expected(digest, expected_sha256)
            record = BlobRecord(
                id=blob_id,
                size=digest.size,
                sha256=digest.sha256,
                created_at=whole_seconds(self._protocol.clock()),
                backend=backend.name,
                storage_key=key,
                chunk_size=digest.chunk_size,
                chunk_digests=digest.chunk_digests,
                content_type=content_type,
            )
        except Exception:
            await self._protocol.discard(backend.name, key)
            raise
        try:
            outcome = await self._metadata.commit(record)
        except Exception:
            await self._protocol.discard_unless_committed(backend.name, key)
            raise
        if outcome.created:
            return outcome
        # Lost a race for the id: our bytes are surplus either way.
        await self._protocol.discard(backend.name, key)
        return _replay(outcome.record, digest, content_type)


def _check_expected(digest: Digesting, expected_sha256: str | None) -> None:
    if expected_sha256 is not None and expected_sha256 != digest.sha256:
        raise ChecksumMismatch("the body does not match the digest sent with it")


def _replay(existing: BlobRecord, digest: Digesting, content_type: str) -> CommitOutcome:
    if existing.sha256 != digest.sha256 or existing.size != digest.size:
        raise BlobConflict("the id holds different bytes already")
    if existing.content_type != content_type:
        # Part of the blob as much as its bytes: a retry repeats both.
        raise BlobConflict("the id holds these bytes with another content type")
    return CommitOutcome(existing, created=False)
