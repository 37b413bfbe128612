"""The production container, with its stores swapped for in-memory fakes through ``override``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from dependency_injector import providers

from drive.adapters.memory import InMemoryMetadataRepository
from drive.container import Container
from drive.domain.backends import Backends
from drive.domain.errors import StorageUnavailable
from drive.domain.model import BlobRecord, CommitOutcome
from drive.settings import Settings

TOKEN = "unit-test-token-0123456789"


def container_over(
    metadata: InMemoryMetadataRepository,
    backends: Backends,
    *,
    lease: timedelta | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Container:
    container = Container()
    container.settings.override(providers.Object(Settings.from_env({"AUTH_BEARER_TOKEN": TOKEN})))
    container.metadata.override(providers.Object(metadata))
    container.backends.override(providers.Object(backends))
    if lease is not None:
        container.lease.override(providers.Object(lease))
    if clock is not None:
        container.clock.override(providers.Object(clock))
    return container


class CommitsThenLosesTheAnswer(InMemoryMetadataRepository):
    """A database that commits, then drops the connection before saying so."""

    async def commit(self, record: BlobRecord) -> CommitOutcome:
        await super().commit(record)
        raise StorageUnavailable("metadata store unreachable (connection lost)")
