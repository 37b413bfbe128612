"""The two migration chains and how one is brought to its head: locked, stamped if pre-Alembic."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from drive.adapters.sql_engine import NewerSchema, is_mysql, is_sqlite
from drive.domain.errors import StorageUnavailable

_HERE = Path(__file__).resolve().parent

# One key for every Drive schema change on a PostgreSQL server: replicas starting together
# take turns, and whoever comes second finds the schema at head and does nothing.
_PG_LOCK_KEY = 0x64726976655F5343  # "drive_SC"


# The same on a MariaDB/MySQL server: a named lock, held by the connection that takes it.
def mysql_lock_name(database: str | None) -> str:
    """GET_LOCK names are server-wide: one per database, so stores sharing a server never wait on each other.

    Hashed to stay within MySQL's 64-character limit whatever the database's name.
    """
    return "drive_schema:" + hashlib.sha256((database or "").encode()).hexdigest()[:32]


# Below the driver's 30 s read timeout; open() retries a wait that runs out.
SCHEMA_LOCK_WAIT_SECONDS = 20

# The revision a database made by the release before Alembic ("schema version 1") is at.
_V1 = "0001"


@dataclass(frozen=True)
class Chain:
    name: str
    version_table: str
    versions: str  # directory of revision files, next to this module
    legacy: Callable[[Connection], str | None]  # revision of a pre-Alembic database, if it is one

    def script(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(alembic_config(self))


def _metadata_v1(connection: Connection) -> str | None:
    if not inspect(connection).has_table("drive_schema"):
        return None
    versions = connection.execute(text("SELECT version FROM drive_schema")).scalars().all()
    newest = max(versions, default=1)
    if newest > 1:
        raise NewerSchema(f"holds schema version {newest}, newer than this release")
    return _V1


def _blobs_v1(connection: Connection) -> str | None:
    return _V1 if inspect(connection).has_table("drive_blob_objects") else None


METADATA = Chain("metadata", "drive_alembic_metadata", "metadata_versions", _metadata_v1)
BLOBS = Chain("blobs", "drive_alembic_blobs", "blobs_versions", _blobs_v1)


def alembic_config(chain: Chain) -> Config:
    """Alembic's configuration for one chain, built in code: nothing to ship besides the package."""
    config = Config()
    config.set_main_option("path_separator", "os")  # our paths may hold spaces or commas
    config.set_main_option("script_location", str(_HERE))
    config.set_main_option("version_locations", str(_HERE / chain.versions))
    config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    config.attributes["version_table"] = chain.version_table
    return config


async def upgrade(engine: AsyncEngine, chain: Chain) -> None:
    """Bring ``chain`` to its head on ``engine``'s database; raise NewerSchema if it is past it."""
    async with _locked(engine) as conn:
        await conn.run_sync(_upgrade, chain)


@contextlib.asynccontextmanager
async def _locked(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction holding the database's schema lock until it commits."""
    if is_mysql(engine.url):
        async with _mysql_locked(engine) as conn:
            yield conn
    elif is_sqlite(engine.url):
        async with engine.connect() as conn:
            # The driver opens no transaction before DDL; take SQLite's write lock first, so
            # a second process waits here (busy timeout) and then finds the work done.
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
            await conn.commit()
    else:
        async with engine.begin() as conn:
            # Transaction-level: released by the commit (or rollback), even if we crash.
            await conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
            yield conn


@contextlib.asynccontextmanager
async def _mysql_locked(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """GET_LOCK around the upgrade: DDL commits at once on MariaDB/MySQL, so no transaction can hold a lock.

    The lock belongs to the connection: released by RELEASE_LOCK, or by the server when the
    connection drops (a crashed process never leaves it held).
    """
    async with engine.connect() as conn:
        got = (
            await conn.execute(
                text("SELECT GET_LOCK(:name, :wait)"),
                {"name": mysql_lock_name(engine.url.database), "wait": SCHEMA_LOCK_WAIT_SECONDS},
            )
        ).scalar()
        await conn.commit()  # the upgrade's reads start after the lock, on a fresh snapshot
        if got != 1:
            raise StorageUnavailable("another process is changing the schema; timed out waiting for it")
        try:
            async with conn.begin():
                yield conn
        finally:
            try:
                await conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": mysql_lock_name(engine.url.database)})
                await conn.commit()
            except Exception:
                # Cannot tell whether the lock is still held: drop the connection, which frees it.
                await conn.invalidate()
                raise


def _legacy(connection: Connection, chain: Chain) -> str | None:
    # No release before Alembic ran on MariaDB/MySQL, and there an interrupted 0001 leaves
    # tables behind that must not pass for an old release's.
    return None if is_mysql(connection.engine.url) else chain.legacy(connection)


def _heads(connection: Connection, chain: Chain) -> tuple[str, ...]:
    context = MigrationContext.configure(connection, opts={"version_table": chain.version_table})
    return tuple(context.get_current_heads())


def current_revision(connection: Connection, chain: Chain) -> str | None:
    """The revision the database is at (a pre-Alembic database counts as 0001); None if empty."""
    heads = _heads(connection, chain)
    return ",".join(heads) if heads else _legacy(connection, chain)


def _upgrade(connection: Connection, chain: Chain) -> None:
    script = chain.script()
    heads = _heads(connection, chain)
    if not heads:
        legacy = _legacy(connection, chain)
        if legacy is not None:
            context = MigrationContext.configure(connection, opts={"version_table": chain.version_table})
            context.stamp(script, legacy)
            heads = (legacy,)
    for revision in heads:
        try:
            known = script.get_revision(revision)
        except CommandError:
            known = None
        if known is None:
            raise NewerSchema(f"holds schema revision {revision}, newer than this release")
    if set(heads) == set(script.get_heads()):
        return
    config = alembic_config(chain)
    config.attributes["connection"] = connection  # env.py runs the revisions on it, in our transaction
    command.upgrade(config, "heads")
