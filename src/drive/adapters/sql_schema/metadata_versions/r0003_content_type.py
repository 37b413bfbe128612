"""Content type on drive_blobs: the media type each blob was stored with (API v1.1, "Content type").

``content_type`` is NOT NULL with a server default of ``application/octet-stream``: rows from
before this revision get it (what the service served for every blob until now), and so do
rows inserted by a replica of the previous release still running during a rolling upgrade.
A constant default rewrites no rows on PostgreSQL (11+), MariaDB (10.3+) or SQLite. At most
255 bytes, checked by the service (drive.domain.media_types) before any insert.

The ``drive_schema`` guard stays 1: a release before Alembic writing here stores blobs with
the default, which is what it served them as.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_DEFAULT = "application/octet-stream"


def upgrade() -> None:
    # Only if missing: MariaDB/MySQL commit DDL at once, so a run cut short after the column
    # was added is finished by the next start rather than failing on a duplicate.
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("drive_blobs")}
    if "content_type" not in present:
        op.add_column(
            "drive_blobs",
            sa.Column("content_type", sa.String(255), nullable=False, server_default=_DEFAULT),
        )


def downgrade() -> None:
    with op.batch_alter_table("drive_blobs") as batch:
        batch.drop_column("content_type")
