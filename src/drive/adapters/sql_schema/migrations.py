"""``SchemaMigrations``: the schema of every SQL store in use, for ``drive db upgrade`` and ``drive db current``."""

from __future__ import annotations

import functools
from collections.abc import Collection

from drive.adapters.sql_engine import SqlDatabase
from drive.adapters.sql_schema.chains import BLOBS, METADATA, Chain, current_revision, upgrade
from drive.domain.errors import StorageUnavailable


class SchemaMigrations:
    """The metadata store's chain, and the db backend's when it is in use (its own database or not).

    The servers apply the same upgrades when they open their stores; this runs them ahead
    of a deployment, or shows where each store stands.
    """

    def __init__(self, database_url: str, blob_database_url: str | None = None, backends: Collection[str] = ()) -> None:
        self._stores: dict[str, tuple[SqlDatabase, Chain]] = {
            "metadata": (SqlDatabase(database_url, "DATABASE_URL", label="metadata store"), METADATA)
        }
        if blob_database_url or "db" in backends:
            url, setting = (
                (blob_database_url, "BLOB_DATABASE_URL") if blob_database_url else (database_url, "DATABASE_URL")
            )
            self._stores["blobs"] = (SqlDatabase(url, setting, label="database backend"), BLOBS)

    def heads(self) -> dict[str, str]:
        """The newest revision this release knows, per store."""
        return {name: ",".join(chain.script().get_heads()) for name, (_, chain) in self._stores.items()}

    async def upgrade(self) -> None:
        """Bring every store to its head, under the same lock the servers take at start-up."""
        for database, chain in self._stores.values():
            try:
                await database.open(functools.partial(upgrade, chain=chain))
            finally:
                await database.close()

    async def current(self) -> dict[str, str | None]:
        """The revision each store is at; None for a store with no Drive tables yet."""
        found: dict[str, str | None] = {}
        for name, (database, chain) in self._stores.items():
            try:
                await database.open()
                async with database.read("read its schema revision") as conn:
                    found[name] = await conn.run_sync(current_revision, chain)
            except StorageUnavailable as exc:
                raise StorageUnavailable(f"{database.setting}: {exc.message}") from None
            finally:
                await database.close()
        return found
