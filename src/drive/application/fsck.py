"""CheckStore: find (and optionally repair) what crashes and outside hands can leave behind.

The kinds of problem:

* interrupted: pending operations whose lease has ended (a store, delete or move whose
  process died). Repair: ``Recover`` removes their bytes and ends them.
* orphans: bytes on a backend that no record or pending operation refers to.
  Repair: ``Recover`` removes them.
* missing: a committed record whose bytes are not on its backend.
* corrupt: a committed record whose bytes no longer match its size and SHA-256 (for blobs
  with chunk digests, each chunk is checked and the damaged ones are named).
* strangers: anything in a backend's own place whose name the service could not have
  made (``list_strangers``). Never repaired: they are someone else's; an operator looks.

Not a problem, but counted: blobs stored before chunk digests existed (their ranges cost a
whole read). Repair adds the digests, computed from their bytes once those have been
verified against the whole SHA-256.

Missing and corrupt blobs can never be served again, so repair *forgets* them: the record
is removed through ``DeleteBlob`` (which also deletes any corrupt bytes), the id answers
"not found" and may be stored again. Nothing is guessed back; restore from a backup
before repairing if one exists.

Checking only reads; it is safe while servers run. Findings are double-checked against
the current record, so a blob stored, replaced or deleted during the check is not
reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from drive.application.commit_protocol import CommitProtocol
from drive.application.manage_blobs import DeleteBlob
from drive.application.recover import Recover
from drive.application.retrieve_blob import RetrieveBlob
from drive.domain.errors import BlobNotFound, CorruptBlob, StorageUnavailable, StoredBytesMissing
from drive.domain.model import CHUNK_SIZE, BlobRecord, PendingOp, Upload
from drive.domain.ports import UploadRepository

log = logging.getLogger(__name__)

MAX_INTERRUPTED = 10_000  # ``expired`` has no cursor; more than this is reported as this many

BytesCallback = Callable[[int], None]


@dataclass(slots=True)
class CheckReport:
    blobs_checked: int = 0
    bytes_verified: int = 0
    interrupted: list[PendingOp] = field(default_factory=list)
    orphans: list[tuple[str, str]] = field(default_factory=list)  # (backend, storage key)
    missing: list[BlobRecord] = field(default_factory=list)
    corrupt: list[BlobRecord] = field(default_factory=list)
    damaged_chunks: dict[str, tuple[int, ...]] = field(default_factory=dict)  # corrupt id -> chunk indexes
    without_digests: int = 0  # intact blobs stored before chunk digests
    digests_added: int = 0  # of those, given digests by repair
    strangers: list[tuple[str, str]] = field(default_factory=list)  # (backend, name under its root)
    unreachable_backends: list[str] = field(default_factory=list)
    uploads_in_progress: list[Upload] = field(default_factory=list)  # not a problem: resumable uploads under way
    repaired: bool = False
    interrupted_removed: int = 0
    orphans_removed: int = 0
    records_removed: list[str] = field(default_factory=list)  # ids forgotten by repair

    @property
    def problems(self) -> int:
        found = len(self.interrupted) + len(self.orphans) + len(self.missing) + len(self.corrupt)
        return found + len(self.strangers)

    @property
    def unrepaired(self) -> int:
        """Problems found and still there (all of them, unless ``repaired``)."""
        if not self.repaired:
            return self.problems
        forgotten = set(self.records_removed)
        return (
            max(0, len(self.interrupted) - self.interrupted_removed)
            + max(0, len(self.orphans) - self.orphans_removed)
            + sum(1 for r in [*self.missing, *self.corrupt] if r.id not in forgotten)
            + len(self.strangers)  # never removed
        )

    @property
    def complete(self) -> bool:
        """False when a backend could not be checked."""
        return not self.unreachable_backends


class CheckStore:
    """Reads through ``retrieve``; repairs with ``recover`` and ``delete``, as every other caller would."""

    def __init__(
        self,
        protocol: CommitProtocol,
        retrieve: RetrieveBlob,
        recover: Recover,
        delete: DeleteBlob,
        uploads: UploadRepository | None = None,
    ) -> None:
        self._protocol = protocol
        self._uploads = uploads
        self._metadata = protocol.metadata
        self._backends = protocol.backends
        self._retrieve = retrieve
        self._recover = recover
        self._delete = delete

    async def size(self) -> tuple[int, int]:
        """Blobs and bytes a full check reads: for sizing a progress bar."""
        blobs = total = 0
        async for record in self._protocol.records():
            blobs += 1
            total += record.size
        return blobs, total

    async def __call__(
        self, *, repair: bool = False, verify: bool = True, on_bytes: BytesCallback | None = None
    ) -> CheckReport:
        """Check everything; ``verify=False`` skips reading bytes (no checksum check)."""
        report = CheckReport()
        report.interrupted = await self._metadata.expired(self._protocol.clock(), MAX_INTERRUPTED)
        report.uploads_in_progress = await self._in_progress()
        listed: dict[str, set[str]] = {}
        for name in self._backends.names():
            try:
                listed[name] = await self._orphans(name, report)
            except StorageUnavailable:
                log.warning("check skipped backend %s: unreachable", name)
                _unreachable(report, name)
        async for record in self._protocol.records():
            await self._check(record, listed, report, verify, on_bytes, backfill=repair)
        if repair:
            await self._repair(report)
        return report

    async def _in_progress(self) -> list[Upload]:
        """Resumable uploads still taking bytes (their intents are not interrupted until they expire)."""
        if self._uploads is None:
            return []
        now = self._protocol.clock()
        found: list[Upload] = []
        after: str | None = None
        while len(found) < MAX_INTERRUPTED:
            page = await self._uploads.uploads_page(after, 500)
            found += [u for u in page if not u.completed and not u.expired(now)]
            if len(page) < 500:
                break
            after = page[-1].id
        return found[:MAX_INTERRUPTED]

    async def _orphans(self, name: str, report: CheckReport) -> set[str]:
        """Every key on backend ``name``; those nothing refers to go to ``report.orphans``, strangers to theirs."""
        listed: set[str] = set()
        report.orphans += [(name, key) async for key in self._protocol.orphans(name, listed)]
        report.strangers += [(name, stranger) async for stranger in self._backends.get(name).list_strangers()]
        return listed

    async def _check(
        self,
        record: BlobRecord,
        listed: dict[str, set[str]],
        report: CheckReport,
        verify: bool,
        on_bytes: BytesCallback | None,
        *,
        backfill: bool,
    ) -> None:
        keys = listed.get(record.backend)
        if keys is None:  # unreachable, or no longer configured
            _unreachable(report, record.backend)
            return
        report.blobs_checked += 1
        try:
            if record.storage_key not in keys:
                # Not listed: missing, unless it was stored after the listing (one byte tells).
                async for _ in self._backends.get(record.backend).read(record.storage_key, 0, 1):
                    pass
            if verify:

                def counted(n: int) -> None:
                    report.bytes_verified += n
                    if on_bytes is not None:
                        on_bytes(n)

                scanned = await self._retrieve.scan(record, counted, backfill=backfill)
                if not scanned.intact and await self._unchanged(record):
                    report.corrupt.append(record)
                    if scanned.damaged_chunks:
                        report.damaged_chunks[record.id] = scanned.damaged_chunks
                if scanned.intact and not record.chunked:
                    report.without_digests += 1
                    if scanned.chunk_digests is not None and await self._metadata.add_chunk_digests(
                        replace(record, chunk_size=CHUNK_SIZE, chunk_digests=scanned.chunk_digests)
                    ):
                        report.digests_added += 1
        except StoredBytesMissing:
            if await self._unchanged(record):
                report.missing.append(record)
        except CorruptBlob:
            if await self._unchanged(record):
                report.corrupt.append(record)

    async def _unchanged(self, record: BlobRecord) -> bool:
        return await self._metadata.get(record.id) == record

    async def _repair(self, report: CheckReport) -> None:
        report.repaired = True
        recovered = await self._recover()
        report.interrupted_removed = recovered.interrupted_removed
        report.orphans_removed = recovered.orphans_removed
        for name in recovered.unreachable_backends:
            _unreachable(report, name)
        for record in [*report.missing, *report.corrupt]:
            if not await self._unchanged(record):
                continue  # replaced or deleted since the check: not ours to forget
            try:
                await self._delete(record.id)
            except BlobNotFound:
                continue
            report.records_removed.append(record.id)
            log.warning("fsck forgot blob %r: its bytes were missing or corrupt", record.id)


def _unreachable(report: CheckReport, name: str) -> None:
    if name not in report.unreachable_backends:
        report.unreachable_backends.append(name)
