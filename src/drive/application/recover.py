"""Recover: finish every interrupted store or delete, and remove orphaned bytes.

Safe while other processes serve: it only touches pending ops whose lease has ended
(their owner is gone or too slow, and a slow owner's commit then fails), and bytes
that neither a record nor a pending op refers to. A key's intent is always written
before its first byte, so bytes seen in a listing that have neither are truly orphaned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from drive.application.commit_protocol import CommitProtocol
from drive.domain.errors import StorageUnavailable
from drive.domain.model import PendingOp
from drive.domain.ports import UploadRepository

log = logging.getLogger(__name__)

BATCH = 500  # expired intents finished per metadata query


@dataclass(slots=True)
class RecoveryReport:
    interrupted_removed: int = 0
    interrupted_found: list[tuple[str, str]] = field(default_factory=list)  # (backend, key), lease ended
    orphans_removed: int = 0
    uploads_forgotten: int = 0  # rows of expired resumable uploads, once their bytes were gone
    orphans_found: list[tuple[str, str]] = field(default_factory=list)  # (backend, key)
    unreachable_backends: list[str] = field(default_factory=list)


class Recover:
    """``uploads``: the store of resumable uploads, whose expired rows go once their intents are finished."""

    def __init__(self, protocol: CommitProtocol, uploads: UploadRepository | None = None) -> None:
        self._protocol = protocol
        self._uploads = uploads
        self._metadata = protocol.metadata
        self._backends = protocol.backends
        self._clock = protocol.clock

    async def __call__(self, *, sweep_orphans: bool = True, repair: bool = True) -> RecoveryReport:
        """Finish interrupted operations and sweep orphans; ``repair=False`` only reports."""
        report = RecoveryReport()
        if repair:
            await self._finish_expired(report)
            await self._forget_expired_uploads(report)
        else:
            expired = await self._metadata.expired(self._clock(), BATCH)
            report.interrupted_found = [(op.backend, op.storage_key) for op in expired]
        if sweep_orphans:
            for name in self._backends.names():
                if name in report.unreachable_backends:
                    continue  # found not answering above: its sweep waits for a later run
                try:
                    await self._sweep(name, report, repair)
                except StorageUnavailable:
                    log.warning("recovery skipped backend %s: unreachable", name)
                    report.unreachable_backends.append(name)
        return report

    async def _finish_expired(self, report: RecoveryReport) -> None:
        # Only the configured backends' intents are asked for: the others' (a backend taken out of
        # the settings) wait for a run that has it, and however many there are, none of them
        # stands in a batch in front of the intents that can be ended now.
        configured = self._backends.names()
        while ops := await self._metadata.expired(self._clock(), BATCH, configured):
            await self._end_and_remove(ops, report)
        for op in await self._metadata.expired(self._clock(), BATCH):
            if op.backend not in configured and op.backend not in report.unreachable_backends:
                report.unreachable_backends.append(op.backend)  # its intents are kept

    async def _end_and_remove(self, ops: list[PendingOp], report: RecoveryReport) -> None:
        # End the intents before touching the bytes: a slow owner's commit needs the same row,
        # so exactly one of the two wins. Deleting first let a commit slip in between and be
        # acknowledged over bytes already gone. Durably: an end lost in a database crash would
        # hand the row back to that owner after the bytes were gone. One transaction for the
        # batch: one flush, where one per intent made a backlog of thousands take minutes.
        await self._metadata.finish_all([op.storage_key for op in ops], durable=True)
        committed: set[tuple[str, str]] = set()
        for backend in {op.backend for op in ops}:
            keys = [op.storage_key for op in ops if op.backend == backend]
            # Owners that committed just before: those bytes are blobs' now.
            committed.update((backend, key) for key in await self._metadata.known_keys(backend, keys))
        for op in ops:
            if (op.backend, op.storage_key) in committed:
                continue
            if op.backend in report.unreachable_backends:
                # Not answering in this pass (each call would wait out its timeout). With the intent
                # ended, the bytes are orphans, which the sweep removes once the backend is back.
                continue
            try:
                await self._backends.get(op.backend).delete(op.storage_key)
            except StorageUnavailable:
                # Neither intent nor record refers to them now: the sweep removes them later.
                report.unreachable_backends.append(op.backend)
                continue
            report.interrupted_removed += 1
            log.info("recovery removed bytes of interrupted %s of %r", op.kind.value, op.blob_id)

    async def _forget_expired_uploads(self, report: RecoveryReport) -> None:
        # An expired upload's intent is finished above (its bytes removed); its row goes after,
        # so a crash in between leaves a row that says "expired", never bytes nothing names.
        if self._uploads is None:
            return
        while forgotten := await self._uploads.forget_expired_uploads(self._clock(), BATCH):
            report.uploads_forgotten += forgotten
            if forgotten < BATCH:
                return

    async def _sweep(self, name: str, report: RecoveryReport, repair: bool) -> None:
        async for key in self._protocol.orphans(name):
            report.orphans_found.append((name, key))
            if repair:
                await self._backends.get(name).delete(key)
                report.orphans_removed += 1
                log.info("recovery removed orphaned bytes %s on backend %s", key, name)
