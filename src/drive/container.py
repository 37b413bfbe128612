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
from drive.adapters.sql_metadata import SqlMetadataRepository
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

    s3 = settings.s3
    if s3 is None:
        raise ConfigurationError("S3_BUCKET is required when the s3 backend is enabled")
    return S3BlobRepository(
        bucket=s3.bucket,
        region=s3.region,
        endpoint=s3.endpoint,
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        session_token=s3.session_token,
        force_path_style=s3.force_path_style,
        prefix=s3.prefix,
        timeout=s3.timeout,
    )


def _ftp_backend(settings: Settings) -> BlobRepository:
    from drive.adapters.ftp import FtpBlobRepository

    ftp = settings.ftp
    if ftp is None:
        raise ConfigurationError("FTP_HOST is required when the ftp backend is enabled")
    return FtpBlobRepository(
        host=ftp.host,
        port=ftp.port,
        user=ftp.user,
        password=ftp.password,
        tls=ftp.tls,
        base_dir=ftp.base_dir,
        timeout=ftp.timeout,
        ca_file=ftp.ca_file,
        verify=ftp.verify,
        pool_size=ftp.pool_size,
    )


def _configured(settings: Settings, build: Callable[[str], BlobRepository]) -> Backends:
    """Every backend the settings enable, metered; ``STORAGE`` names the one new blobs go to."""
    return Backends({name: MeteredBlobRepository(build(name)) for name in settings.backends}, default=settings.storage)


class Container(containers.DeclarativeContainer):
    settings = providers.Singleton(Settings.from_env)

    metadata = providers.Singleton(SqlMetadataRepository, url=settings.provided.database_url)

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
