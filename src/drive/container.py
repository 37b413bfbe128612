"""The composition root: the one place that knows concrete adapters and builds the use-cases.

Entrypoints (HTTP, command line) build a ``Container`` and ask it for what they run:
``service`` (every use-case, bundled), ``readiness``, or a single use-case. Tests swap
any provider with ``override`` (``container.metadata.override(providers.Object(fake))``);
everything built from it afterwards uses the fake.

Wiring, outermost last: settings -> metadata store and backends (each metered) ->
``protocol`` (the ports with the lease and clock) -> use-cases -> ``service``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from dependency_injector import containers, providers

from drive.adapters.concurrency import bounded_fan_out, in_worker
from drive.adapters.fs import FilesystemBlobRepository
from drive.adapters.layers.metrics import MeteredBlobRepository
from drive.adapters.metadata_store import sql_metadata_repository
from drive.adapters.readiness import READINESS_TIMEOUT_SECONDS, Readiness
from drive.adapters.sql_schema import SchemaMigrations
from drive.application.commit_protocol import CommitProtocol
from drive.application.fsck import CheckStore
from drive.application.links import SignedLinks
from drive.application.manage_blobs import DeleteBlob, ListBlobs
from drive.application.migrate import MigrateBlobs
from drive.application.recover import Recover
from drive.application.retrieve_blob import RetrieveBlob
from drive.application.service import DriveService
from drive.application.store_blob import StoreBlob
from drive.application.uploads import Uploads
from drive.domain.backends import Backends
from drive.domain.errors import ConfigurationError
from drive.domain.links import Keyring
from drive.domain.model import utc_now
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


def _lease(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.upload_lease_seconds)


def _upload_expiry(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.upload_expiry_seconds)


class Container(containers.DeclarativeContainer):
    settings = providers.Singleton(Settings.from_env)
    clock = providers.Object(utc_now)
    lease = providers.Callable(_lease, settings)
    # How migrations run many moves at once (the application layer has no async runtime).
    fan_out = providers.Object(bounded_fan_out)
    # Hashing of large pieces runs in worker threads, overlapping the sending or receiving of others.
    offload = providers.Object(in_worker)

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

    protocol = providers.Singleton(CommitProtocol, metadata=metadata, backends=backends, lease=lease, clock=clock)

    store_blob = providers.Singleton(StoreBlob, protocol, offload)
    retrieve_blob = providers.Singleton(RetrieveBlob, metadata, backends, offload)
    delete_blob = providers.Singleton(DeleteBlob, protocol)
    list_blobs = providers.Singleton(ListBlobs, metadata)
    # Resumable uploads live in the metadata store: the same object serves both ports.
    upload_repository = providers.Callable(lambda metadata: metadata, metadata)
    uploads = providers.Singleton(Uploads, protocol, upload_repository, providers.Callable(_upload_expiry, settings))
    recover = providers.Singleton(Recover, protocol, upload_repository)
    migrate_blobs = providers.Singleton(MigrateBlobs, protocol, fan_out)
    check_store = providers.Singleton(CheckStore, protocol, retrieve_blob, recover, delete_blob, upload_repository)

    service = providers.Singleton(
        DriveService,
        metadata=metadata,
        backends=backends,
        store=store_blob,
        retrieve=retrieve_blob,
        delete=delete_blob,
        list_blobs=list_blobs,
        recover=recover,
        migrate=migrate_blobs,
        check=check_store,
        uploads=uploads,
    )

    # Signed links: stateless, from SIGNING_KEYS and the clock (tests override the clock to expire them).
    keyring = providers.Singleton(Keyring, settings.provided.signing_keys)
    signed_links = providers.Singleton(SignedLinks, keyring, clock)

    # /readyz: pings the metadata store and every backend, each within a time limit.
    readiness = providers.Singleton(Readiness, metadata, backends, seconds=READINESS_TIMEOUT_SECONDS)
