"""The db backend's tables as the release before Alembic created them.

A database made by that release is stamped at this revision instead of running it.
Written out here, not taken from the live table definitions, so it never changes.

MariaDB/MySQL (supported since this revision): chunks are LONGBLOB (BLOB holds 64 KiB);
tables are InnoDB, utf8mb4 with a binary collation. Their DDL commits at once, so each
table is created only if missing: a run cut short is finished by the next start.

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


_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _missing(table: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(table)


def upgrade() -> None:
    if _missing("drive_blob_objects"):
        _create_objects()
    if _missing("drive_blob_chunks"):
        _create_chunks()


def _create_objects() -> None:
    op.create_table(
        "drive_blob_objects",
        sa.Column("storage_key", sa.String(32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("storage_key"),
        **_MYSQL,
    )


def _create_chunks() -> None:
    op.create_table(
        "drive_blob_chunks",
        sa.Column("storage_key", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=False),
        sa.PrimaryKeyConstraint("storage_key", "seq"),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("drive_blob_chunks")
    op.drop_table("drive_blob_objects")
