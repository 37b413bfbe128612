"""Domain errors. Each carries the contract's error code; entrypoints map codes to statuses."""

from __future__ import annotations


class DriveError(Exception):
    """Base of every error the core raises on purpose."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(DriveError):
    code = "invalid_request"


class InvalidId(DriveError):
    code = "invalid_id"


class InvalidBase64(DriveError):
    code = "invalid_base64"


class ChecksumMismatch(DriveError):
    code = "checksum_mismatch"


class BlobNotFound(DriveError):
    code = "not_found"


class UploadNotFound(BlobNotFound):
    """No resumable upload has that id, or it expired."""


class PieceChecksumMismatch(ChecksumMismatch):
    """A resumable upload's piece does not match its ``Upload-Checksum``: nothing was appended."""

    status = 460  # tus 1.0.0's checksum extension


class UploadConflict(DriveError):
    """The request does not fit the upload's state: another offset, or another request appending now."""

    code = "conflict"


class BlobConflict(DriveError):
    code = "conflict"


class PayloadTooLarge(DriveError):
    code = "payload_too_large"


class RangeNotSatisfiable(DriveError):
    code = "range_not_satisfiable"


class RequestTimeout(DriveError):
    """The client stopped sending its request body; the request is abandoned, nothing stored."""

    code = "request_timeout"
    # The rest of the body may still arrive: the connection cannot carry another request.
    headers = {"Connection": "close"}


class StorageUnavailable(DriveError):
    """A backend or the metadata store failed or cannot be reached; retrying is safe."""

    code = "storage_unavailable"


class CorruptBlob(StorageUnavailable):
    """Stored bytes no longer match their recorded SHA-256: never served as good."""


class ConfigurationError(DriveError):
    """A setting is missing or wrong; the message names the setting, never its value."""

    code = "configuration"


class StoredBytesMissing(CorruptBlob):
    """Committed metadata points at bytes the backend no longer has."""
