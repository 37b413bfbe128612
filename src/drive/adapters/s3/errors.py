"""S3 library failures as the domain's errors.

Messages name the cause and the setting most likely wrong, never credentials, the
endpoint URL or a storage key: they may reach clients.
"""

from __future__ import annotations

from typing import Any, NoReturn

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from drive.domain.errors import StorageUnavailable, StoredBytesMissing

# Everything the HTTP stack can raise for a failed exchange. TimeoutError also covers
# asyncio's and our own ``fail_after`` deadlines; OSError covers raw socket failures.
TRANSPORT_ERRORS = (BotoCoreError, aiohttp.ClientError, TimeoutError, OSError)
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class S3Unavailable(StorageUnavailable):
    """``StorageUnavailable`` that also keeps the cause and the setting most likely wrong.

    ``hint`` names settings, or is ``"network"`` when the endpoint could not be talked to.
    """

    def __init__(self, operation: str, bucket: str, reason: str, hint: str) -> None:
        super().__init__(f"S3 {operation} on bucket {bucket!r} failed: {reason}")
        self.reason = reason
        self.hint = hint


class Unsatisfiable(Exception):
    """A ranged GET that starts past the end of the object."""


def error_code(exc: ClientError) -> str:
    error: dict[str, Any] = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "unknown"))


def raise_for_client_error(operation: str, bucket: str, exc: ClientError) -> NoReturn:
    """What S3 refusing ``operation`` means: bytes missing, a range past the end, or unavailable."""
    code = error_code(exc)
    if operation == "get_object" and code in _MISSING_KEY_CODES:
        raise StoredBytesMissing("the stored bytes are missing from the S3 bucket") from None
    if operation == "get_object" and code == "InvalidRange":
        raise Unsatisfiable("range starts past the end") from None
    raise_unavailable(operation, bucket, exc)


def raise_unavailable(operation: str, bucket: str, exc: BaseException) -> NoReturn:
    """Raise ``StorageUnavailable`` for ``exc``; the message names causes, never URLs or keys."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        reason = f"{code} (HTTP {status})" if status else code
        if code in {"NoSuchBucket", "404", "NotFound"}:
            hint = "S3_BUCKET"
        elif code in {"PermanentRedirect", "301", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}:
            hint = "S3_REGION"
        elif code in {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            hint = "S3_ACCESS_KEY and S3_SECRET_KEY"
        else:
            hint = "the S3 service"
    elif isinstance(exc, TimeoutError | ConnectTimeoutError | ReadTimeoutError):
        reason, hint = "timed out", "network"
    elif isinstance(exc, NoCredentialsError | PartialCredentialsError):
        reason, hint = type(exc).__name__, "S3_ACCESS_KEY and S3_SECRET_KEY"
    elif isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError | aiohttp.ClientError | OSError):
        reason, hint = f"connection failed ({type(exc).__name__})", "network"
    else:  # e.g. a setting botocore itself refuses
        reason, hint = type(exc).__name__, "the S3 settings"
    raise S3Unavailable(operation, bucket, reason, hint) from None


def suspect(hint: str, *, endpoint: str | None, force_path_style: bool) -> str:
    """The settings to check, given what kind of failure opening the client met."""
    if hint != "network":
        return hint
    if endpoint is None:
        return "S3_REGION and the network path to AWS"
    # With virtual-host addressing the endpoint host gets the bucket as a subdomain,
    # which many self-hosted S3 servers and local names do not resolve.
    return "S3_ENDPOINT" if force_path_style else "S3_ENDPOINT and S3_FORCE_PATH_STYLE"
