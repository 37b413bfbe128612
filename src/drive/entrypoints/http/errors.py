"""The contract's error body for every failure, whoever raised it."""

from __future__ import annotations

import logging

import msgspec
from litestar import Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from drive.domain.errors import ConfigurationError, CorruptBlob, DriveError
from drive.entrypoints.http.types import AnyRequest

log = logging.getLogger("drive.http")

STATUS_BY_CODE = {
    "invalid_request": 400,
    "invalid_id": 400,
    "invalid_base64": 400,
    "checksum_mismatch": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "conflict": 409,
    "payload_too_large": 413,
    "headers_too_large": 431,
    "range_not_satisfiable": 416,
    "storage_unavailable": 503,
    "internal": 500,
}

# For framework errors, which carry only a status: the first code listed for it.
_CODE_BY_STATUS = {status: code for code, status in reversed(STATUS_BY_CODE.items())}

_MESSAGES = {
    "invalid_request": "the request is malformed",
    "unauthorized": "a valid bearer token is required",
    "forbidden": "the token does not allow this operation",
    "not_found": "no such resource",
    "method_not_allowed": "method not allowed on this resource",
    "payload_too_large": "the body is larger than the configured limit",
    "storage_unavailable": "storage is unavailable; retry later",
    "internal": "internal error",
}
# Stored bytes that fail their checksum, or are missing: refused, never served as good.
_CORRUPT = "the blob's stored bytes failed verification and were not served; retry later"


class ErrorDetail(msgspec.Struct):
    code: str  # one of the contract's codes (plus ``method_not_allowed``)
    message: str  # for people; never a path, a query, SQL or a credential


class ErrorBody(msgspec.Struct):
    """Every 4xx and 5xx answer: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response[bytes]:
    all_headers = dict(headers or {})
    if status == 401:
        all_headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        all_headers.setdefault("Retry-After", "1")
    return Response(
        content=msgspec.json.encode(ErrorBody(ErrorDetail(code, message))),
        status_code=status,
        media_type="application/json",
        headers=all_headers,
    )


def _drive_error(request: AnyRequest, exc: DriveError) -> Response[bytes]:
    if isinstance(exc, ConfigurationError):
        log.error("configuration error: %s", exc.message)
        return error_response(500, "internal", _MESSAGES["internal"])
    # A class may name its own status for its code (tus answers a piece's checksum with 460).
    status: int = getattr(exc, "status", None) or STATUS_BY_CODE.get(exc.code, 500)
    headers = getattr(exc, "headers", None)
    if status < 500:
        return error_response(status, exc.code, exc.message, headers)
    # Adapters' messages name storage keys, hosts, directories and drivers' errors: they are for
    # operators. The log line carries the request id (the client has it in X-Request-Id).
    log.warning("%s %s -> %d %s: %s", request.method, request.url.path, status, exc.code, exc.message)
    code = exc.code if exc.code in STATUS_BY_CODE else "internal"
    message = _CORRUPT if isinstance(exc, CorruptBlob) else _MESSAGES.get(code, _MESSAGES["internal"])
    return error_response(status, code, message, headers)


def _http_error(_request: AnyRequest, exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    code = _CODE_BY_STATUS.get(status, "internal" if status >= 500 else "invalid_request")
    # Framework messages are safe but terse; validation details name the field at fault.
    message = _MESSAGES.get(code, "request failed")
    if isinstance(exc, ValidationException):
        message = _validation_message(exc) or message
    elif status == 400 and exc.detail and exc.detail != "Bad Request":
        message = str(exc.detail)
    headers = dict(exc.headers or {})
    if status == 405:
        headers = {k: v for k, v in headers.items() if k.lower() == "allow"}
    return error_response(status, code, message, headers)


def _validation_message(exc: ValidationException) -> str | None:
    """Which query parameter failed and why (Litestar's detail repeats the whole URL)."""
    problems = exc.extra if isinstance(exc.extra, list) else []
    parts = [
        f"{problem.get('key')}: {problem.get('message')}"
        for problem in problems
        if isinstance(problem, dict) and problem.get("key") and problem.get("message")
    ]
    return "; ".join(parts)[:500] or None


def _unexpected(request: AnyRequest, exc: Exception) -> Response[bytes]:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", _MESSAGES["internal"])


exception_handlers: ExceptionHandlersMap = {
    DriveError: _drive_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
