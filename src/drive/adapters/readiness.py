"""Readiness: is every store answering? Pings on the asyncio loop, each within a time limit.

Built by the container; ``/readyz`` only reports what it answers.
"""

from __future__ import annotations

import asyncio
import logging

from drive.domain.backends import Backends
from drive.domain.errors import StorageUnavailable
from drive.domain.ports import BlobRepository, MetadataRepository

log = logging.getLogger("drive")

# Each readiness check gets this long; a hung backend makes /readyz say so, not hang.
READINESS_TIMEOUT_SECONDS = 3.0


class Readiness:
    """``ok``, ``unavailable`` or ``timeout`` for the metadata store and each backend, checked at once.

    The answer always comes within ``seconds``: ``asyncio.wait`` does not wait for stuck
    checks to unwind (a ping blocked in a worker thread cannot be cancelled). A check still
    stuck from an earlier probe is waited on again rather than started twice, so frequent
    probes of a hung backend do not pile up threads.
    """

    def __init__(self, metadata: MetadataRepository, backends: Backends, seconds: float) -> None:
        self._ports: dict[str, MetadataRepository | BlobRepository] = {"metadata": metadata}
        self._ports.update((backend.name, backend) for backend in backends)
        self._seconds = seconds
        self._running: dict[str, asyncio.Task[str]] = {}

    async def __call__(self) -> dict[str, str]:
        for name, port in self._ports.items():
            task = self._running.get(name)
            if task is None or task.done():
                self._running[name] = asyncio.ensure_future(_check(name, port))
        tasks = {name: self._running[name] for name in self._ports}
        await asyncio.wait(tasks.values(), timeout=self._seconds)
        checks: dict[str, str] = {}
        for name, task in tasks.items():
            if not task.done():
                task.cancel()
            checks[name] = task.result() if task.done() and not task.cancelled() else "timeout"
        return checks


async def _check(name: str, port: MetadataRepository | BlobRepository) -> str:
    try:
        await port.ping()
    except StorageUnavailable:
        return "unavailable"
    except Exception:
        log.warning("readiness check of %s failed", name, exc_info=True)
        return "unavailable"
    return "ok"
