"""Revisions of the metadata chain (drive_blobs, drive_pending, drive_schema)."""
