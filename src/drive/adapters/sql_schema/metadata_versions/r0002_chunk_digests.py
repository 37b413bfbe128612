"""Chunk digests on drive_blobs, so a byte range can be verified without reading the whole blob.

``chunk_size`` and ``chunk_digests`` (the SHA-256 of each chunk, packed 32 bytes each) are
nullable: rows from before this revision keep NULL and are read the old way, verified
against the whole blob's SHA-256. Adding nullable columns rewrites no rows, on every
database. The ``drive_schema`` guard stays 1: a row written without digests by an older
release is valid (NULL, read the old way), and a move only changes where bytes are, so
it keeps a row's digests.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# 32 bytes per chunk: past MariaDB's 64 KiB BLOB for blobs over 2 GiB, hence LONGBLOB there.
_Digests = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def upgrade() -> None:
    # Each column only if missing: MariaDB/MySQL commit DDL at once, so a run cut short
    # between the two is finished by the next start rather than failing on a duplicate.
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("drive_blobs")}
    if "chunk_size" not in present:
        op.add_column("drive_blobs", sa.Column("chunk_size", sa.Integer(), nullable=True))
    if "chunk_digests" not in present:
        op.add_column("drive_blobs", sa.Column("chunk_digests", _Digests, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("drive_blobs") as batch:
        batch.drop_column("chunk_digests")
        batch.drop_column("chunk_size")
