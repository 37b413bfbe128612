"""The /v1/uploads routes: resumable uploads by the tus 1.0.0 protocol.

Extensions: creation, creation-with-upload, termination, expiration and checksum (sha256,
a mismatch answered ``460``). Every request but ``OPTIONS`` must say ``Tus-Resumable:
1.0.0`` (else ``412`` with ``Tus-Version``); every answer carries ``Tus-Resumable``.
The use-cases are ``drive.application.uploads.Uploads``; this module only speaks HTTP.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from email.utils import format_datetime
from typing import cast

from litestar import Response, Router, delete, head, patch, post, route
from litestar.datastructures import ResponseHeader
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Parameter,
    RequestBody,
    Schema,
)
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from drive.domain.errors import DriveError, InvalidId, InvalidRequest
from drive.domain.model import Upload
from drive.entrypoints.http.auth import TokenChecker, write_auth
from drive.entrypoints.http.bodies import body_stream, declared_length
from drive.entrypoints.http.direct import direct_calls
from drive.entrypoints.http.openapi import (
    BAD_REQUEST,
    BEARER,
    FORBIDDEN,
    TIMED_OUT,
    TOO_LARGE,
    UNAUTHORIZED,
    UNAVAILABLE,
    error,
    no_body,
)
from drive.entrypoints.http.types import AnyRequest, service_of, settings_of

TUS_VERSION = "1.0.0"
_TUS_VERSION = TUS_VERSION.encode()
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
UPLOAD_PATH = "/v1/uploads/{upload_id:str}"
_MAX_METADATA = 8 * 1024  # Upload-Metadata: an id (1024 bytes, 1368 in Base64) and a few more pairs
_MAX_NUMBER_DIGITS = 19  # Upload-Length and Upload-Offset fit a signed 64-bit integer


class TusVersionUnsupported(DriveError):
    code = "invalid_request"
    status = 412
    headers = {"Tus-Version": TUS_VERSION}


class NotOffsetStream(DriveError):
    code = "invalid_request"
    status = 415


def location(upload_id: str) -> str:
    return f"/v1/uploads/{upload_id}"


# -- the protocol's envelope ------------------------------------------------------------------


def tus_headers(app: ASGIApp) -> ASGIApp:
    """Middleware: ``Tus-Resumable`` on every answer of these routes, errors included."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"tus-resumable", TUS_VERSION.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, sending)

    return middleware


def tus_version(app: ASGIApp) -> ASGIApp:
    """Middleware: every request but ``OPTIONS`` names the protocol version we speak (else 412)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "OPTIONS":
            for name, value in scope["headers"]:
                if name == b"tus-resumable":
                    if value == _TUS_VERSION:
                        break
                    raise TusVersionUnsupported(f"Tus-Resumable must be {TUS_VERSION}")
            else:
                raise TusVersionUnsupported(f"Tus-Resumable must be {TUS_VERSION}")
        await app(scope, receive, send)

    return middleware


def _number(request: AnyRequest, name: str) -> int:
    value = request.headers.get(name)
    if value is None:
        raise InvalidRequest(f"{name} is required")
    if not (value.isascii() and value.isdigit()) or len(value) > _MAX_NUMBER_DIGITS:
        raise InvalidRequest(f"{name} must be a whole number")
    return int(value)


def parse_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (a value may be absent)."""
    if not header:
        return {}
    if len(header) > _MAX_METADATA:
        raise InvalidRequest("Upload-Metadata is too long")
    pairs: dict[str, str] = {}
    for item in header.split(","):
        parts = item.strip().split(" ")
        if not parts[0] or len(parts) > 2 or parts[0] in pairs:
            raise InvalidRequest("Upload-Metadata is malformed")
        try:
            raw = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
            pairs[parts[0]] = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            if parts[0] == "id":
                raise InvalidId("the id in Upload-Metadata is not Base64 of UTF-8") from None
            raise InvalidRequest(f"Upload-Metadata {parts[0]} is not Base64 of UTF-8") from None
    return pairs


def parse_checksum(header: str | None) -> bytes | None:
    """``Upload-Checksum: sha256 <base64>``; another algorithm is refused (400), as tus says."""
    if header is None:
        return None
    algorithm, _, value = header.strip().partition(" ")
    if algorithm.lower() != "sha256":
        raise InvalidRequest("Upload-Checksum: only sha256 is supported")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("Upload-Checksum is malformed") from None
    if len(digest) != 32:
        raise InvalidRequest("Upload-Checksum sha256 must be 32 bytes")
    return digest


def _upload_id(request: AnyRequest) -> str:
    upload_id: str = request.path_params["upload_id"]
    return upload_id


def _state_headers(upload: Upload) -> dict[str, str]:
    return {"Upload-Offset": str(upload.offset), "Upload-Expires": format_datetime(upload.expires_at, usegmt=True)}


def _empty(status: int, headers: dict[str, str]) -> Response[None]:
    return cast("Response[None]", Response(b"", status_code=status, headers=headers))


# -- what the OpenAPI document cannot infer (the handlers read these headers themselves) -------


def _header(name: str, description: str, schema: Schema, required: bool = True) -> Parameter:
    return Parameter(name=name, param_in="header", required=required, schema=schema, description=description)


_NUMBER = Schema(type=OpenAPIType.STRING, pattern="^[0-9]{1,19}$")
_TUS_RESUMABLE = _header(
    "Tus-Resumable", "The protocol version: `1.0.0`.", Schema(type=OpenAPIType.STRING, enum=["1.0.0"])
)
_CHECKSUM = _header(
    "Upload-Checksum",
    "`sha256 <Base64 of the body's SHA-256>`; a mismatch is `460` and appends nothing.",
    Schema(type=OpenAPIType.STRING, pattern="^sha256 [A-Za-z0-9+/]{43}=$"),
    required=False,
)
_PIECE = RequestBody(
    content={
        OFFSET_OCTET_STREAM: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY))
    },
    description="The next bytes of the upload, streamed.",
)
_UPLOAD_ID = Parameter(
    name="upload_id",
    param_in="path",
    required=True,
    schema=Schema(type=OpenAPIType.STRING, pattern="^[A-Za-z0-9_-]{1,64}$"),
    description="The id from the creating `POST`'s `Location` (unguessable).",
)


@dataclass
class TusOperation(Operation):
    """Every tus operation: ``Tus-Resumable`` required, the upload id as the service makes them."""

    def __post_init__(self) -> None:
        kept = [p for p in self.parameters or [] if not (isinstance(p, Parameter) and p.name == "upload_id")]
        with_id = [_UPLOAD_ID] if self.parameters and len(kept) != len(self.parameters) else []
        self.parameters = [*with_id, *kept, _TUS_RESUMABLE]


@dataclass
class CreateOperation(TusOperation):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.parameters = [
            *(self.parameters or []),
            _header("Upload-Length", "The blob's size in bytes.", _NUMBER),
            _header(
                "Upload-Metadata",
                "Comma-separated `key <Base64 value>` pairs: `id` (required) names the blob;"
                " `content_type` or `filetype` is optional.",
                Schema(type=OpenAPIType.STRING, max_length=_MAX_METADATA),
            ),
            _CHECKSUM,
        ]
        self.request_body = RequestBody(
            content=_PIECE.content, description="Optional (creation-with-upload): the first bytes.", required=False
        )


@dataclass
class AppendOperation(TusOperation):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.parameters = [
            *(self.parameters or []),
            _header("Upload-Offset", "The upload's current offset (from `HEAD`).", _NUMBER),
            _CHECKSUM,
        ]
        self.request_body = _PIECE


# -- routes -----------------------------------------------------------------------------------

_TUS_412 = error("`invalid_request`: `Tus-Resumable` is missing or not `1.0.0` (with `Tus-Version`)")
_GONE = error("`not_found`: no such upload, or it expired")
_EXPIRES = ResponseHeader(
    name="Upload-Expires", description="when the upload expires if untouched", documentation_only=True
)
_OFFSET = ResponseHeader(name="Upload-Offset", description="bytes received durably", documentation_only=True)


@post(
    "/v1/uploads",
    status_code=201,
    summary="Create a resumable upload (tus creation, creation-with-upload)",
    operation_class=CreateOperation,
    responses={
        400: BAD_REQUEST,
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        408: TIMED_OUT,
        409: error("`conflict`: the body completed the upload and the id holds different bytes already"),
        412: _TUS_412,
        413: TOO_LARGE,
        415: error("`invalid_request`: a body without `Content-Type: application/offset+octet-stream`"),
        460: error("`checksum_mismatch`: the body does not match `Upload-Checksum`; nothing was appended"),
        503: UNAVAILABLE,
    },
    response_headers=[
        ResponseHeader(name="Location", description="`/v1/uploads/<upload id>`", documentation_only=True),
        _EXPIRES,
        _OFFSET,
    ],
)
async def create_upload(request: AnyRequest) -> Response[None]:
    """``Upload-Length`` and ``Upload-Metadata`` (``id`` required; ``content_type`` or ``filetype`` optional)."""
    service = service_of(request)
    length = _number(request, "upload-length")
    metadata = parse_metadata(request.headers.get("upload-metadata"))
    if "id" not in metadata:
        raise InvalidId("Upload-Metadata must name the blob's id")
    content_type = metadata.get("content_type") or metadata.get("filetype") or None
    has_body = _has_body(request)
    if has_body and request.headers.get("content-type", "").lower() != OFFSET_OCTET_STREAM:
        raise NotOffsetStream(f"a body must be sent as {OFFSET_OCTET_STREAM}")
    if has_body:
        declared_length(request.headers.get("content-length"), length)
    upload = await service.uploads.create(
        metadata["id"],
        length,
        max_size=settings_of(request).max_blob_size,
        content_type=content_type,
        body=body_stream(request) if has_body else None,
        checksum=parse_checksum(request.headers.get("upload-checksum")) if has_body else None,
    )
    headers = {"Location": location(upload.id), **_state_headers(upload)}
    return Response(None, status_code=201, headers=headers)


def _has_body(request: AnyRequest) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in request.headers.get("transfer-encoding", "").lower()


@head(
    UPLOAD_PATH,
    summary="How much of an upload arrived (tus)",
    operation_class=TusOperation,
    responses={
        400: BAD_REQUEST,
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        404: _GONE,
        409: error("`conflict`: finishing the upload's cut-short commit met other bytes under the id"),
        412: _TUS_412,
        503: UNAVAILABLE,
    },
    response_headers=[
        _OFFSET,
        ResponseHeader(name="Upload-Length", description="the upload's length", documentation_only=True),
        _EXPIRES,
    ],
)
async def upload_status(request: AnyRequest) -> Response[None]:
    service = service_of(request)
    upload = await service.uploads.status(_upload_id(request))
    headers = {**_state_headers(upload), "Upload-Length": str(upload.length), "Cache-Control": "no-store"}
    return _empty(200, headers)


@patch(
    UPLOAD_PATH,
    status_code=204,
    summary="Append to an upload (tus); the last byte commits the blob",
    operation_class=AppendOperation,
    responses={
        204: no_body("Appended (and, with the last byte, committed); `Upload-Offset` is the new offset."),
        400: BAD_REQUEST,
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        404: _GONE,
        408: TIMED_OUT,
        409: error(
            "`conflict`: `Upload-Offset` is not the upload's offset, another `PATCH` is in flight,"
            " or the id holds different bytes already"
        ),
        412: _TUS_412,
        413: TOO_LARGE,
        415: error("`invalid_request`: `Content-Type` is not `application/offset+octet-stream`"),
        460: error("`checksum_mismatch`: the body does not match `Upload-Checksum`; nothing was appended"),
        503: UNAVAILABLE,
    },
    response_headers=[_OFFSET, _EXPIRES],
)
async def append_upload(request: AnyRequest) -> Response[None]:
    service = service_of(request)
    if request.headers.get("content-type", "").lower() != OFFSET_OCTET_STREAM:
        raise NotOffsetStream(f"Content-Type must be {OFFSET_OCTET_STREAM}")
    offset = _number(request, "upload-offset")
    checksum = parse_checksum(request.headers.get("upload-checksum"))
    declared = declared_length(request.headers.get("content-length"), settings_of(request).max_blob_size)
    upload = await service.uploads.append(
        _upload_id(request), offset, body_stream(request), checksum=checksum, declared=declared
    )
    return _empty(204, _state_headers(upload))


@delete(
    UPLOAD_PATH,
    status_code=204,
    summary="End an upload (tus termination); its bytes go",
    operation_class=TusOperation,
    responses={
        400: BAD_REQUEST,
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        404: _GONE,
        409: error("`conflict`: a `PATCH` is in flight"),
        412: _TUS_412,
        503: UNAVAILABLE,
    },
)
async def terminate_upload(request: AnyRequest) -> None:
    service = service_of(request)
    await service.uploads.terminate(_upload_id(request))


async def _advertise(request: AnyRequest) -> Response[None]:
    headers = {
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": TUS_EXTENSIONS,
        "Tus-Max-Size": str(settings_of(request).max_blob_size),
        "Tus-Checksum-Algorithm": "sha256",
        "Allow": "OPTIONS, POST",
    }
    return _empty(204, headers)


uploads_options = route("/v1/uploads", http_method=["OPTIONS"], include_in_schema=False, name="uploads-options")(
    _advertise
)


async def _upload_allow(request: AnyRequest) -> Response[None]:
    response = await _advertise(request)
    response.headers["Allow"] = "DELETE, HEAD, OPTIONS, PATCH"
    return response


upload_options = route(UPLOAD_PATH, http_method=["OPTIONS"], include_in_schema=False, name="upload-options")(
    _upload_allow
)


def uploads_router(tokens: TokenChecker) -> Router:
    """The tus routes: ``Tus-Resumable`` on every answer; a read-write token, then the version check.

    Every upload route writes (a ``HEAD`` may finish a commit): a read token is refused.
    """
    return Router(
        "/",
        route_handlers=[uploads_options, create_upload, upload_options, upload_status, append_upload, terminate_upload],
        middleware=[tus_headers, write_auth(tokens), tus_version, direct_calls()],
        security=[BEARER],
    )
