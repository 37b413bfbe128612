"""The metadata schema as the release before Alembic created it ("schema version 1").

A database made by that release is stamped at this revision instead of running it.
Written out here, not taken from the live table definitions, so it never changes.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# PostgreSQL's "C" collation orders text by bytes, as SQLite's default BINARY does.
_IdText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
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
    )
    op.create_table(
        "drive_pending",
        sa.Column("storage_key", sa.String(32), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("blob_id", _IdText, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("storage_key"),
    )
    op.create_index("ix_drive_pending_lease_until", "drive_pending", ["lease_until"])
    # The pre-Alembic releases' guard: they refuse to start on a version above 1. A later
    # revision that such a release must not run against raises this number.
    schema = op.create_table("drive_schema", sa.Column("version", sa.Integer(), nullable=False))
    op.bulk_insert(schema, [{"version": 1}])


def downgrade() -> None:
    op.drop_table("drive_schema")
    op.drop_index("ix_drive_pending_lease_until", table_name="drive_pending")
    op.drop_table("drive_pending")
    op.drop_table("drive_blobs")
