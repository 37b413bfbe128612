"""The composition root: the one place that knows concrete adapters.

Entrypoints (HTTP, command line) and tests build a ``Container``; tests swap adapters
by overriding its providers (``container.metadata.override(...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from dependency_injector import containers, providers

from drive.adapters.fs import FilesystemBlobRepository
from drive.adapters.layers.metrics import MeteredBlobRepository
from drive.adapters.metadata_store import sql_metadata_repository
from drive.adapters.sql_schema import SchemaMigrations
from drive.application.service import DriveService
from drive.domain.backends import Backends
from drive.domain.errors import ConfigurationError
from drive.domain.ports import BlobRepository
from drive.settings import Settings


def _db_backend(settings: Settings) -> BlobRepository:
    from drive.adapters.db import DatabaseBlobRepository

    if settings.blob_database_url:
        return DatabaseBlobRepository(settings.blob_database_url, setting="BLOB_DATABASE_URL")
    return DatabaseBlobRepository(settings.database_url, setting="DATABASE_URL")


def _s3_backend(settings: Settings) -> BlobRepository:
    from drive.adapters.s3 import S3BlobRepository

    if settings.s3 is None:
        raise ConfigurationError("S3_BUCKET is required when the s3 backend is enabled")
    return S3BlobRepository(settings.s3)


def _ftp_backend(settings: Settings) -> BlobRepository:
    from drive.adapters.ftp import FtpBlobRepository

    if settings.ftp is None:
        raise ConfigurationError("FTP_HOST is required when the ftp backend is enabled")
    return FtpBlobRepository(settings.ftp)


def _configured(settings: Settings, build: Callable[[str], BlobRepository]) -> Backends:
    """Every backend the settings enable, metered; ``STORAGE`` names the one new blobs go to."""
    return Backends({name: MeteredBlobRepository(build(name)) for name in settings.backends}, default=settings.storage)


class Container(containers.DeclarativeContainer):
    settings = providers.Singleton(Settings.from_env)

    metadata = providers.Singleton(sql_metadata_repository, url=settings.provided.database_url)

    # The SQL stores' schema revisions, for `drive db`; the stores also upgrade themselves on open.
    schema = providers.Singleton(
        SchemaMigrations,
        database_url=settings.provided.database_url,
        blob_database_url=settings.provided.blob_database_url,
        backends=settings.provided.backends,
    )

    blob_repositories: providers.Aggregate[BlobRepository] = providers.Aggregate(
        fs=providers.Singleton(FilesystemBlobRepository, base_path=settings.provided.fs_base_path),
        db=providers.Singleton(_db_backend, settings),
        s3=providers.Singleton(_s3_backend, settings),
        ftp=providers.Singleton(_ftp_backend, settings),
    )

    backends = providers.Singleton(_configured, settings, blob_repositories.provider)

    lease = providers.Callable(lambda s: timedelta(seconds=s.upload_lease_seconds), settings)

    service = providers.Singleton(DriveService, metadata=metadata, backends=backends, lease=lease)
