"""The metadata schema as the release before Alembic created it ("schema version 1").

A database made by that release is stamped at this revision instead of running it.
Written out here, not taken from the live table definitions, so it never changes.

MariaDB/MySQL (supported since this revision): ids are VARBINARY(1024), their UTF-8 bytes;
every table is InnoDB, utf8mb4 with a binary collation. Their DDL commits at once, so a
run cut short leaves some tables behind: each step is skipped when already done, and the
next start finishes the revision.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# PostgreSQL's "C" collation orders text by bytes, as SQLite's default BINARY does.
_IdText = (
    sa.Text().with_variant(sa.Text(collation="C"), "postgresql").with_variant(mysql.VARBINARY(1024), "mysql", "mariadb")
)
_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _missing(table: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(table)


def _index_missing(table: str, index: str) -> bool:
    return index not in {i["name"] for i in sa.inspect(op.get_bind()).get_indexes(table)}


def upgrade() -> None:
    if _missing("drive_blobs"):
        _create_blobs()
    if _missing("drive_pending"):
        _create_pending()
    if _index_missing("drive_pending", "ix_drive_pending_lease_until"):
        op.create_index("ix_drive_pending_lease_until", "drive_pending", ["lease_until"])
    if _missing("drive_schema"):
        op.create_table("drive_schema", sa.Column("version", sa.Integer(), nullable=False), **_MYSQL)
    # The pre-Alembic releases' guard: they refuse to start on a version above 1. A later
    # revision that such a release must not run against raises this number.
    if op.get_bind().execute(sa.text("SELECT COUNT(*) FROM drive_schema")).scalar_one() == 0:
        op.execute(sa.text("INSERT INTO drive_schema (version) VALUES (1)"))


def _create_blobs() -> None:
    op.create_table(
        "drive_blobs",
        sa.Column("id", _IdText, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("storage_key", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("storage_key"),
        **_MYSQL,
    )


def _create_pending() -> None:
    op.create_table(
        "drive_pending",
        sa.Column("storage_key", sa.String(32), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("blob_id", _IdText, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("storage_key"),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("drive_schema")
    op.drop_index("ix_drive_pending_lease_until", table_name="drive_pending")
    op.drop_table("drive_pending")
    op.drop_table("drive_blobs")
