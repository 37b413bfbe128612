"""MigrateBlobs: move blobs between configured backends, several at a time, each move crash-safe.

One move, for a blob whose record points at ``source``/``old_key``:

1. Intent: a STORE pending op for a fresh ``new_key`` on the target (so recovery can undo the copy).
2. Copy: stream ``old_key`` from the source into ``new_key`` on the target, hashing on the way.
3. Verify: the bytes copied, and the bytes read back from the target, match the record's size
   and SHA-256 (and, copied, its chunk digests). A mismatch discards the copy and reports the
   blob; its record stays as it was.
4. Switch: ``relocate`` points the record at the copy (keeping its digests: they describe the
   bytes, not where they are) and records a DELETE intent for the old key, in one metadata
   transaction (refused if the record changed meanwhile: copy discarded).
5. Delete the old bytes and end that intent.

A crash between any two steps leaves the record pointing at complete, verified bytes, plus
an intent that recovery finishes once its lease ends. Re-running moves what is still on a
source backend, so an interrupted migration resumes where it stopped.

Moves run through a ``FanOut`` the composition root supplies (drive.container passes a bounded
anyio fan-out), so this module needs no async runtime of its own.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection
from dataclasses import dataclass, field

from drive.application.commit_protocol import CommitProtocol, LeaseRenewal
from drive.application.fan_out import FanOut, sequentially
from drive.application.streams import Digesting
from drive.domain.errors import CorruptBlob, InvalidRequest, StorageUnavailable, StoredBytesMissing
from drive.domain.model import BlobRecord
from drive.domain.ports import BlobRepository

log = logging.getLogger(__name__)


class MoveOutcome(enum.StrEnum):
    MOVED = "moved"
    SKIPPED = "skipped"  # deleted or replaced while being copied: nothing left to move
    CORRUPT = "corrupt"  # source bytes do not match the record's checksum
    MISSING = "missing"  # source bytes are gone


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """What a migration would move right now: for sizing a progress bar."""

    blobs: int
    bytes: int


@dataclass(slots=True)
class MigrationReport:
    target: str
    sources: list[str]
    moved: int = 0
    bytes_moved: int = 0
    skipped: int = 0
    corrupt: list[str] = field(default_factory=list)  # blob ids
    missing: list[str] = field(default_factory=list)  # blob ids

    @property
    def complete(self) -> bool:
        """True when nothing that was on a source backend was left behind."""
        return not self.corrupt and not self.missing


BytesCallback = Callable[[int], None]
BlobCallback = Callable[[BlobRecord, MoveOutcome], None]


class MigrateBlobs:
    def __init__(self, protocol: CommitProtocol, fan_out: FanOut = sequentially) -> None:
        self._protocol = protocol
        self._metadata = protocol.metadata
        self._backends = protocol.backends
        self._fan_out = fan_out

    def sources_for(self, target: str, sources: Collection[str] | None = None) -> list[str]:
        """The source backends: ``sources`` checked, or every configured backend but ``target``."""
        names = self._backends.names()
        if target not in names:
            raise InvalidRequest(f"backend {target!r} is not configured")
        chosen = [n for n in names if n != target] if sources is None else list(dict.fromkeys(sources))
        for name in chosen:
            if name not in names:
                raise InvalidRequest(f"backend {name!r} is not configured")
            if name == target:
                raise InvalidRequest("a backend cannot be migrated to itself")
        return chosen

    async def plan(self, target: str, sources: Collection[str] | None = None, prefix: str = "") -> MigrationPlan:
        chosen = set(self.sources_for(target, sources))
        blobs = size = 0
        async for record in self._records(chosen, prefix):
            blobs += 1
            size += record.size
        return MigrationPlan(blobs, size)

    async def __call__(
        self,
        target: str,
        sources: Collection[str] | None = None,
        *,
        prefix: str = "",
        concurrency: int = 4,
        on_bytes: BytesCallback | None = None,
        on_blob: BlobCallback | None = None,
    ) -> MigrationReport:
        """Move every blob whose id starts with ``prefix`` from ``sources`` to ``target``.

        Corrupt or missing source blobs are reported and left alone. Any other failure
        (a backend or the metadata store unavailable) stops the migration and is raised
        once the moves in flight have ended; running it again resumes.
        """
        if concurrency < 1:
            raise InvalidRequest("concurrency must be at least 1")
        chosen = self.sources_for(target, sources)
        report = MigrationReport(target=target, sources=chosen)
        destination = self._backends.get(target)

        async def move(record: BlobRecord) -> None:
            outcome = await self._move(record, destination, on_bytes)
            _count(report, record, outcome)
            if on_blob is not None:
                on_blob(record, outcome)

        await self._fan_out(self._records(set(chosen), prefix), move, concurrency)
        return report

    async def _records(self, sources: set[str], prefix: str) -> AsyncIterator[BlobRecord]:
        async for record in self._protocol.records(prefix):
            if record.backend in sources:
                yield record

    async def _move(self, record: BlobRecord, target: BlobRepository, on_bytes: BytesCallback | None) -> MoveOutcome:
        source = self._backends.get(record.backend)
        key = await self._protocol.intend_store(target.name, record.id)
        try:
            outcome = await self._copy(record, source, target, key, self._protocol.renewal(key), on_bytes)
        except Exception:
            await self._protocol.discard(target.name, key)
            raise
        try:
            if outcome is MoveOutcome.MOVED and not await self._metadata.relocate(
                record, target.name, key, self._protocol.lease_end()
            ):
                outcome = MoveOutcome.SKIPPED
        except Exception:
            await self._protocol.discard_unless_committed(target.name, key)
            raise
        if outcome is not MoveOutcome.MOVED:
            await self._protocol.discard(target.name, key)
            return outcome
        # The old bytes, under the DELETE intent ``relocate`` wrote.
        await self._protocol.discard(record.backend, record.storage_key)
        log.info("moved %r from %s to %s (%d bytes)", record.id, source.name, target.name, record.size)
        return outcome

    async def _copy(
        self,
        record: BlobRecord,
        source: BlobRepository,
        target: BlobRepository,
        key: str,
        renewal: LeaseRenewal,
        on_bytes: BytesCallback | None,
    ) -> MoveOutcome:
        """Copy and verify; CORRUPT/MISSING/SKIPPED when the source cannot give the recorded bytes."""
        # Chunk digests as the record's were made, so a damaged chunk can be named.
        digest = Digesting(
            _counted(source.read(record.storage_key), on_bytes),
            on_progress=renewal.maybe_renew,
            chunk_size=record.chunk_size if record.chunked else None,
        )
        try:
            written = await target.write(key, digest)
        except CorruptBlob as exc:
            # Raised while reading the source (the target only raises StorageUnavailable).
            return await self._unless_changed(
                record, MoveOutcome.MISSING if isinstance(exc, StoredBytesMissing) else MoveOutcome.CORRUPT
            )
        if not digest.finished or written != digest.size:
            raise StorageUnavailable(f"backend {target.name} stored {written} of {digest.size} bytes")
        damaged = _damaged_chunks(record, digest)
        if digest.size != record.size or digest.sha256 != record.sha256 or damaged:
            where = f" (damaged chunks {', '.join(map(str, damaged[:20]))})" if damaged else ""
            log.error("migration found corrupt source bytes of %r on %s%s", record.id, source.name, where)
            return await self._unless_changed(record, MoveOutcome.CORRUPT)
        # Read the copy back: a target that mangles bytes must never become the only copy.
        check = hashlib.sha256()
        size = 0
        async for chunk in target.read(key):
            check.update(chunk)
            size += len(chunk)
            await renewal.maybe_renew()  # a long read-back must not let recovery reclaim the copy
        if size != record.size or check.hexdigest() != record.sha256:
            raise StorageUnavailable(f"backend {target.name} returned different bytes than it was given")
        return MoveOutcome.MOVED

    async def _unless_changed(self, record: BlobRecord, outcome: MoveOutcome) -> MoveOutcome:
        """A source read can fail because the blob was deleted or replaced meanwhile: not a problem."""
        return outcome if await self._metadata.get(record.id) == record else MoveOutcome.SKIPPED


def _damaged_chunks(record: BlobRecord, digest: Digesting) -> list[int]:
    """Indexes of the copied chunks whose SHA-256 differs from the record's chunk digests."""
    if digest.chunks is None:
        return []
    found = digest.chunks.digests()
    count = max(len(found), record.chunk_count)
    return [i for i in range(count) if (found[i] if i < len(found) else b"") != record.chunk_digest(i)]


async def _counted(chunks: AsyncIterable[bytes], on_bytes: BytesCallback | None) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if on_bytes is not None:
            on_bytes(len(chunk))
        yield chunk


def _count(report: MigrationReport, record: BlobRecord, outcome: MoveOutcome) -> None:
    if outcome is MoveOutcome.MOVED:
        report.moved += 1
        report.bytes_moved += record.size
    elif outcome is MoveOutcome.SKIPPED:
        report.skipped += 1
    elif outcome is MoveOutcome.CORRUPT:
        report.corrupt.append(record.id)
    else:
        report.missing.append(record.id)
