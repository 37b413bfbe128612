"""Versioned schemas (Alembic) of Drive's SQL stores, applied at start-up and by ``drive db``.

Two independent chains, because the db backend may live in another database
(``BLOB_DATABASE_URL``) than the metadata:

* ``metadata``: ``drive_blobs``, ``drive_pending``, ``drive_schema``; its revision is kept
  in ``drive_alembic_metadata``. Revisions live in ``metadata_versions/``.
* ``blobs``: the db backend's ``drive_blob_objects`` and ``drive_blob_chunks``; revision in
  ``drive_alembic_blobs``. Revisions live in ``blobs_versions/``.

To add a revision (the file is named ``r<rev>_<slug>.py``, a valid module name)::

    python -c "from alembic import command; from drive.adapters.sql_schema import METADATA, alembic_config; \\
        command.revision(alembic_config(METADATA), 'add content type', rev_id='0002')"
"""

from drive.adapters.sql_schema.chains import BLOBS, METADATA, Chain, alembic_config, current_revision, upgrade
from drive.adapters.sql_schema.migrations import SchemaMigrations

__all__ = ["BLOBS", "METADATA", "Chain", "SchemaMigrations", "alembic_config", "current_revision", "upgrade"]
