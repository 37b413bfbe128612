from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.backends import backend
from tests.integration.live import LiveServer, base_env
from tests.integration.servers.ftp import ftp_server, ftps_server
from tests.integration.servers.mariadb import mariadb_url, mariadb_url_factory
from tests.integration.servers.postgres import postgres_url, postgres_url_factory
from tests.integration.servers.s3 import moto_server

__all__ = [
    "backend",
    "ftp_server",
    "ftps_server",
    "mariadb_url",
    "mariadb_url_factory",
    "moto_server",
    "postgres_url",
    "postgres_url_factory",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", params=["sqlite", "postgres", "mariadb"])
def metadata_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('meta') / 'metadata.db'}"
    factory: Callable[[], str] = request.getfixturevalue(f"{request.param}_url_factory")
    return factory()


@pytest.fixture(scope="module")
def fs_server(tmp_path_factory: pytest.TempPathFactory, metadata_url: str) -> Iterator[LiveServer]:
    """The embedded default backend (fs) with SQLite, PostgreSQL or MariaDB metadata, over real HTTP."""
    root: Path = tmp_path_factory.mktemp("drive")
    server = LiveServer(base_env(root, DATABASE_URL=metadata_url)).start()
    server.root = root  # type: ignore[attr-defined]
    yield server
    server.stop()
