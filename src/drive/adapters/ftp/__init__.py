"""FTP / explicit-FTPS storage backend.

``repository`` holds the BlobRepository and its layout; ``steps`` the FTP exchanges it is
made of; ``pool`` and ``connection`` the logged-in clients (TLS included); ``errors`` the
translation of library failures into the domain's errors.
"""

from drive.adapters.ftp.repository import FtpBlobRepository

__all__ = ["FtpBlobRepository"]
