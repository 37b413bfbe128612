from __future__ import annotations

import pytest

from drive.adapters.memory import InMemoryBlobRepository, InMemoryMetadataRepository
from drive.application.service import DriveService
from drive.domain.backends import Backends
from tests.unit.wiring import container_over


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def metadata() -> InMemoryMetadataRepository:
    return InMemoryMetadataRepository()


@pytest.fixture
def blobs() -> InMemoryBlobRepository:
    return InMemoryBlobRepository("memory")


@pytest.fixture
def service(metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository) -> DriveService:
    return container_over(metadata, Backends({"memory": blobs}, default="memory")).service()
