"""S3 storage backend (aiobotocore).

``repository`` holds the BlobRepository and its key layout; ``multipart`` how one object
is written; ``client`` the aiobotocore client, its timeouts and the upload stall
watchdog; ``errors`` the translation of library failures into the domain's errors.
"""

from drive.adapters.s3.repository import S3BlobRepository

__all__ = ["S3BlobRepository"]
