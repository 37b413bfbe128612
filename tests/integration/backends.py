"""Every backend under test, as the settings a server would be given for it.

The ``backend`` fixture (module-scoped, one parameter per backend) hands each test
module its own fresh store: a new directory, database, bucket or FTP base directory,
so checks such as "no orphaned bytes" are exact. Servers (PostgreSQL, MariaDB, moto, pyftpdlib)
are the session's, started on first use.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dependency_injector import providers

from drive.container import Container
from drive.domain.ports import BlobRepository
from drive.settings import Settings
from tests.integration.live import base_env
from tests.integration.servers.ftp import FtpServer
from tests.integration.servers.s3 import FAKE_KEY, FAKE_SECRET, REGION, MotoServer, s3_client

BACKEND_PARAMS = ["fs", "db-sqlite", "db-postgres", "db-mariadb", "s3-path", "s3-vhost", "ftp", "ftps"]


@dataclass
class BackendUnderTest:
    """One backend, configured as ``STORAGE`` of a server, and its outside server if any."""

    param: str
    storage: str
    root: Path
    env: dict[str, str]
    server: MotoServer | FtpServer | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def settings(self, **extra: str) -> Settings:
        return Settings.from_env({**self.env, **extra})

    def container(self, **extra: str) -> Container:
        container = Container()
        container.settings.override(providers.Object(self.settings(**extra)))
        return container

    def repository(self) -> BlobRepository:
        """An unopened adapter built through the container, as the server would build it."""
        return self.container().blob_repositories(self.storage)

    @property
    def outage(self) -> MotoServer | FtpServer:
        assert self.server is not None, f"{self.param} has no server to stop"
        return self.server

    def restart_server(self) -> None:
        if isinstance(self.server, FtpServer):
            self.server.restart()
        elif isinstance(self.server, MotoServer):
            self.server.start()


def _s3_env(server: MotoServer, *, path_style: bool) -> dict[str, str]:
    bucket = f"drive-{uuid.uuid4().hex[:20]}"
    s3_client(server).create_bucket(Bucket=bucket)
    return {
        "STORAGE": "s3",
        "S3_BUCKET": bucket,
        "S3_REGION": REGION,
        "S3_ENDPOINT": server.url if path_style else server.localhost_url,
        "S3_ACCESS_KEY": FAKE_KEY,
        "S3_SECRET_KEY": FAKE_SECRET,
        "S3_FORCE_PATH_STYLE": "true" if path_style else "false",
        "S3_TIMEOUT": "5",
    }


def _ftp_env(server: FtpServer) -> dict[str, str]:
    env = {
        "STORAGE": "ftp",
        "FTP_HOST": server.host,
        "FTP_PORT": str(server.port),
        "FTP_USER": server.user,
        "FTP_PASSWORD": server.password,
        "FTP_TLS": "true" if server.tls else "false",
        "FTP_BASE_DIR": f"/drive-{uuid.uuid4().hex[:12]}",
        "FTP_TIMEOUT": "5",
    }
    if server.ca_file:
        env["FTP_CA_FILE"] = str(server.ca_file)
    return env


def make_backend(request: pytest.FixtureRequest, param: str, root: Path) -> BackendUnderTest:
    env = base_env(root)
    server: MotoServer | FtpServer | None = None
    if param == "fs":
        env["STORAGE"] = "fs"
    elif param == "db-sqlite":
        env.update(STORAGE="db", BLOB_DATABASE_URL=f"sqlite:///{root / 'blobs.db'}")
    elif param == "db-postgres":
        make_url: Callable[[], str] = request.getfixturevalue("postgres_url_factory")
        env.update(STORAGE="db", DATABASE_URL=make_url(), BLOB_DATABASE_URL=make_url())
    elif param == "db-mariadb":  # metadata and blob tables in one database, as most deployments have it
        mariadb_url: str = request.getfixturevalue("mariadb_url_factory")()
        env.update(STORAGE="db", DATABASE_URL=mariadb_url, BLOB_DATABASE_URL=mariadb_url)
    elif param.startswith("s3"):
        moto: MotoServer = request.getfixturevalue("moto_server")
        env.update(_s3_env(moto, path_style=param == "s3-path"))
        server = moto
    elif param in ("ftp", "ftps"):
        ftp: FtpServer = request.getfixturevalue("ftps_server" if param == "ftps" else "ftp_server")
        env.update(_ftp_env(ftp))
        server = ftp
    else:
        raise ValueError(param)
    if param != "fs":
        env.pop("FS_BASE_PATH")  # only the backend under test is configured
    return BackendUnderTest(param, env["STORAGE"], root, env, server)


@contextlib.contextmanager
def virtual_hosts_resolve(param: str) -> Iterator[None]:
    """``<bucket>.localhost`` must reach loopback for virtual-host addressing (see servers/s3.py)."""
    if param != "s3-vhost":
        yield
        return
    from tests.integration.servers.s3 import resolve_localhost_subdomains

    with pytest.MonkeyPatch.context() as patch:
        resolve_localhost_subdomains(patch)
        yield


@pytest.fixture(scope="module", params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendUnderTest]:
    with virtual_hosts_resolve(request.param):
        yield make_backend(request, request.param, tmp_path_factory.mktemp(request.param))
