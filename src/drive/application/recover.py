"""Recover: finish every interrupted store or delete, and remove orphaned bytes.

Safe while other processes serve: it only touches pending ops whose lease has ended
(their owner is gone or too slow, and a slow owner's commit then fails), and bytes
that neither a record nor a pending op refers to. A key's intent is always written
before its first byte, so bytes seen in a listing that have neither are truly orphaned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from drive.domain.backends import Backends
from drive.domain.errors import StorageUnavailable
from drive.domain.model import utc_now
from drive.domain.ports import MetadataRepository

log = logging.getLogger(__name__)

BATCH = 500


@dataclass(slots=True)
class RecoveryReport:
    interrupted_removed: int = 0
    interrupted_found: list[tuple[str, str]] = field(default_factory=list)  # (backend, key), lease ended
    orphans_removed: int = 0
    orphans_found: list[tuple[str, str]] = field(default_factory=list)  # (backend, key)
    unreachable_backends: list[str] = field(default_factory=list)


class Recover:
    def __init__(
        self, metadata: MetadataRepository, backends: Backends, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._metadata = metadata
        self._backends = backends
        self._clock = clock

    async def __call__(self, *, sweep_orphans: bool = True, repair: bool = True) -> RecoveryReport:
        """Finish interrupted operations and sweep orphans; ``repair=False`` only reports."""
        report = RecoveryReport()
        if repair:
            await self._finish_expired(report)
        else:
            expired = await self._metadata.expired(self._clock(), BATCH)
            report.interrupted_found = [(op.backend, op.storage_key) for op in expired]
        if sweep_orphans:
            for name in self._backends.names():
                try:
                    await self._sweep(name, report, repair)
                except StorageUnavailable:
                    log.warning("recovery skipped backend %s: unreachable", name)
                    report.unreachable_backends.append(name)
        return report

    async def _finish_expired(self, report: RecoveryReport) -> None:
        skipped: set[str] = set()
        while True:
            ops = [op for op in await self._metadata.expired(self._clock(), BATCH) if op.storage_key not in skipped]
            if not ops:
                return
            for op in ops:
                try:
                    backend = self._backends.get(op.backend)
                except StorageUnavailable:
                    skipped.add(op.storage_key)  # not configured: the intent waits for a later run
                    if op.backend not in report.unreachable_backends:
                        report.unreachable_backends.append(op.backend)
                    continue
                # End the intent before touching the bytes: a slow owner's commit needs the same
                # row, so exactly one of the two wins. Deleting first let a commit slip in between
                # and be acknowledged over bytes already gone.
                await self._metadata.finish(op.storage_key)
                if await self._metadata.known_keys(op.backend, [op.storage_key]):
                    continue  # the owner committed just before: the bytes are a blob's now
                try:
                    await backend.delete(op.storage_key)
                except StorageUnavailable:
                    # Neither intent nor record refers to them now: the sweep removes them later.
                    if op.backend not in report.unreachable_backends:
                        report.unreachable_backends.append(op.backend)
                    continue
                report.interrupted_removed += 1
                log.info("recovery removed bytes of interrupted %s of %r", op.kind.value, op.blob_id)

    async def _sweep(self, name: str, report: RecoveryReport, repair: bool) -> None:
        backend = self._backends.get(name)
        batch: list[str] = []
        async for key in backend.list_keys():
            batch.append(key)
            if len(batch) >= BATCH:
                await self._sweep_batch(name, batch, report, repair)
                batch = []
        if batch:
            await self._sweep_batch(name, batch, report, repair)

    async def _sweep_batch(self, name: str, keys: list[str], report: RecoveryReport, repair: bool) -> None:
        known = await self._metadata.known_keys(name, keys)
        backend = self._backends.get(name)
        for key in keys:
            if key in known:
                continue
            report.orphans_found.append((name, key))
            if repair:
                await backend.delete(key)
                report.orphans_removed += 1
                log.info("recovery removed orphaned bytes %s on backend %s", key, name)
