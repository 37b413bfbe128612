"""Resumable uploads (tus): ``drive_uploads``, one row per upload in progress.

A new table only; no existing row changes, so older releases run on beside it (they never
look at it). Times are unix milliseconds like ``drive_pending.lease_until``. ``state`` is
a backend's own bookkeeping (up to 64 KiB: MEDIUMTEXT on MariaDB/MySQL, whose TEXT holds
one byte less). The table is only created if missing: MariaDB/MySQL commit DDL at once,
so a run cut short is finished by the next start.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_IdText = (
    sa.Text().with_variant(sa.Text(collation="C"), "postgresql").with_variant(mysql.VARBINARY(1024), "mysql", "mariadb")
)
_State = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
_MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    if not sa.inspect(op.get_bind()).has_table("drive_uploads"):
        op.create_table(
            "drive_uploads",
            sa.Column("id", sa.String(64), nullable=False),
            sa.Column("blob_id", _IdText, nullable=False),
            sa.Column("backend", sa.String(32), nullable=False),
            sa.Column("storage_key", sa.String(32), nullable=False),
            sa.Column("length", sa.BigInteger(), nullable=False),
            sa.Column("upload_offset", sa.BigInteger(), nullable=False),
            sa.Column("state", _State, nullable=False),
            sa.Column("content_type", sa.String(255), nullable=True),
            sa.Column("created_at", sa.BigInteger(), nullable=False),
            sa.Column("expires_at", sa.BigInteger(), nullable=False),
            sa.Column("completed", sa.Boolean(), nullable=False),
            sa.Column("lock_owner", sa.String(64), nullable=True),
            sa.Column("lock_until", sa.BigInteger(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("storage_key"),
            **_MYSQL,
        )
    present = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("drive_uploads")}
    if "ix_drive_uploads_expires_at" not in present:
        op.create_index("ix_drive_uploads_expires_at", "drive_uploads", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_drive_uploads_expires_at", table_name="drive_uploads")
    op.drop_table("drive_uploads")
