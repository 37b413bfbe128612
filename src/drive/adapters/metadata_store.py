"""Which MetadataRepository a database URL gets."""

from __future__ import annotations

from drive.adapters.sql_engine import async_url, is_sqlite
from drive.adapters.sql_metadata import SqlMetadataRepository
from drive.adapters.sqlite_metadata import SqliteMetadataRepository


def sql_metadata_repository(url: str, *, setting: str = "DATABASE_URL") -> SqlMetadataRepository:
    """SQLite files get group commit through one writer thread; PostgreSQL and MariaDB/MySQL the shared engine."""
    parsed = async_url(url, setting)
    if is_sqlite(parsed) and parsed.database not in (None, "", ":memory:"):
        return SqliteMetadataRepository(url, setting=setting)
    return SqlMetadataRepository(url, setting=setting)
