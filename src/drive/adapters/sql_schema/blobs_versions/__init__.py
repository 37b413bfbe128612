"""Revisions of the db backend's chain (drive_blob_objects, drive_blob_chunks)."""
