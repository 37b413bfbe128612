"""The /v1/blobs routes.

Handlers take the service and the settings from the app's state (``service_of``,
``settings_of``), put there by ``create_app`` from the container.
Ids come from the raw request path (``id_from_request``), not from a decoded path
parameter, so ``a/b`` and ``a%2Fb`` name the same blob and nothing is normalised.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email.utils import format_datetime
from typing import Annotated, cast

import msgspec
from litestar import Response, delete, get, head, post, put, route
from litestar.datastructures import ResponseHeader
from litestar.openapi.spec import OpenAPIType
from litestar.params import Parameter
from litestar.response import Stream

from drive.application.manage_blobs import MAX_PAGE, decode_cursor
from drive.application.service import DriveService
from drive.application.streams import single_chunk
from drive.domain.errors import InvalidRequest
from drive.domain.freshness import read_asked_at
from drive.domain.ids import validate_id
from drive.domain.media_types import validate_media_type
from drive.domain.model import CHUNK_SIZE, BlobRecord, CommitOutcome
from drive.entrypoints.http.answers import Answer, EncodedHeaders, encoded
from drive.entrypoints.http.bodies import body_stream, check_declared_length, expected_sha256, read_body
from drive.entrypoints.http.content_headers import (
    SAFETY_HEADERS,
    content_disposition,
    download_name,
    request_content_type,
)
from drive.entrypoints.http.links import link_grant, put_limit
from drive.entrypoints.http.openapi import (
    BAD_REQUEST,
    CONFLICT,
    CURSOR_FORMAT,
    FORBIDDEN,
    JSON,
    NOT_FOUND,
    OCTET_STREAM,
    RAW_HEADERS,
    TIMED_OUT,
    TOO_LARGE,
    UNAUTHORIZED,
    UNAVAILABLE,
    UNSATISFIABLE,
    BlobOperation,
    HeadOperation,
    RetrieveOperation,
    StoreJsonOperation,
    StoreRawOperation,
    json_body,
    no_body,
    raw,
)
from drive.entrypoints.http.paths import blob_location, id_from_request
from drive.entrypoints.http.ranges import parse_range
from drive.entrypoints.http.schemas import (
    BlobList,
    BlobWithData,
    BlobWithDataStream,
    StoredBlob,
    StoreRequest,
    base64_pieces,
    decode_base64,
    json_string_text,
    stored_blob,
    timestamp,
)
from drive.entrypoints.http.types import AnyRequest, header, service_of, settings_of
from drive.entrypoints.http.wire import ARRIVED_AT

_store_request = msgspec.json.Decoder(StoreRequest)
_UTF8_PIECE = 64 * 1024
# Room for the id (escaped, up to 6 bytes per byte of UTF-8) and JSON punctuation.
_JSON_OVERHEAD = 8 * 1024 + 6 * 1024
# JSON answers up to this many bytes of blob are verified whole before the first byte goes
# out (a damaged blob is a clean 503) and sent as one body; larger ones are streamed.
WHOLE_JSON_MAX = 4 * 1024 * 1024
# Raw answers of blobs up to one chunk (whose one digest is the blob's) are read whole likewise.
WHOLE_RAW_MAX = CHUNK_SIZE
DEFAULT_PAGE = 100
# A longer If-None-Match is not a list a client kept of our tags: it matches nothing.
_MAX_IF_NONE_MATCH = 8192
# Documented as the integer it is; read as text so that every malformed value gets the contract's 400.
_LIMIT_SCHEMA = {"type": OpenAPIType.INTEGER, "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}
# A cursor is an id (at most 1024 bytes) in unpadded URL-safe Base64.
_CURSOR_MAX = 4 * math.ceil(1024 / 3)
_CURSOR = re.compile("[A-Za-z0-9_-]*")

# The parameter keeps its name (and so the `route` label of the metrics); it is the percent-encoded id.
BLOB_PATH = "/v1/blobs/{blob_path:path}"
_ETAG = ResponseHeader(name="ETag", description=RAW_HEADERS["ETag"], documentation_only=True)
_LOCATION = ResponseHeader(name="Location", description="`/v1/blobs/<percent-encoded id>`", documentation_only=True)
# The raw answers' headers; the GET documents them through RetrieveOperation (its 200 is given
# explicitly, and Litestar puts response_headers on a generated one only).
_RAW_HEADERS = [
    ResponseHeader(name=name, description=text, documentation_only=True) for name, text in RAW_HEADERS.items()
]
_STORE_RESPONSES = {
    200: json_body(StoredBlob, "The id already holds these bytes: the original answer (safe retry)."),
    400: BAD_REQUEST,
    401: UNAUTHORIZED,
    403: FORBIDDEN,
    408: TIMED_OUT,
    409: CONFLICT,
    413: TOO_LARGE,
    503: UNAVAILABLE,
}


def decode_store_request(body: bytes | bytearray) -> StoreRequest:
    """The JSON store's body, or ``InvalidRequest`` for anything that is not a valid one.

    JSON is UTF-8 throughout (RFC 8259), ignored fields included; msgspec checks only the
    strings it keeps, and raises ``RecursionError`` for deep nesting even in skipped fields.
    """
    if not body.isascii():  # Base64 bodies are ASCII: only non-ASCII ids or extras pay for this
        _check_utf8(body)
    try:
        request = _store_request.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid body: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidRequest("body is not valid JSON") from None
    except RecursionError:
        raise InvalidRequest("body is nested too deeply") from None
    json_string_text(request.data)  # ``data`` is kept undecoded (msgspec.Raw): it must still be a string
    return request


def _check_utf8(body: bytes | bytearray) -> None:
    """Piece by piece, so that checking never holds the whole body as text (up to 4 bytes a character)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(body)
    try:
        for start in range(0, len(view), _UTF8_PIECE):
            decoder.decode(view[start : start + _UTF8_PIECE])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InvalidRequest("body is not valid UTF-8") from None


def _stored(outcome: CommitOutcome) -> Response[StoredBlob]:
    record = outcome.record
    headers = {"ETag": record.etag, "Location": blob_location(record.id)}
    body = msgspec.json.encode(stored_blob(record))
    # Documented (OpenAPI) as the StoredBlob it encodes.
    return cast("Response[StoredBlob]", Answer(body, status_code=201 if outcome.created else 200, headers=headers))


def _wants_raw(request: AnyRequest) -> bool:
    accept = (header(request.scope, b"accept") or "").lower()
    if link_grant(request) is not None:  # a link is opened by browsers: raw unless JSON is asked for
        return JSON not in accept
    return OCTET_STREAM in accept


def _raw_headers(record: BlobRecord, download: str | None) -> dict[str, str]:
    """The raw answer's headers; a 304 drops the representation's own (type, length, disposition)."""
    headers = {
        "ETag": record.etag,
        "Last-Modified": format_datetime(record.created_at, usegmt=True),
        "Accept-Ranges": "bytes",
        "Content-Type": record.content_type,  # as recorded: set here, Litestar would add a charset to text/*
        "Content-Length": str(record.size),
        **SAFETY_HEADERS,
    }
    if download is not None:
        headers["Content-Disposition"] = content_disposition(download)
    return headers


# A record never changes (a blob stored again after a delete is a new record): the headers of
# the same blobs' reads are made and encoded once. That cost more than the read's lookup.
@functools.lru_cache(maxsize=4096)
def _raw_answer_headers(record: BlobRecord, download: str | None) -> tuple[EncodedHeaders, EncodedHeaders]:
    """The raw answer's headers and its ``304``'s, encoded."""
    headers = _raw_headers(record, download)
    return tuple(encoded(headers)), tuple(encoded(_not_modified_headers(headers)))


def _not_modified_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in ("Content-Type", "Content-Length", "Content-Disposition")}


def _not_modified(request: AnyRequest, record: BlobRecord) -> bool:
    return etag_matches(header(request.scope, b"if-none-match"), record.etag)


def etag_matches(header: str | None, etag: str) -> bool:
    """``If-None-Match``: ``*`` or a list of (weak or strong) tags; anything else matches nothing."""
    if header is None or len(header) > _MAX_IF_NONE_MATCH:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags


@post(
    "/v1/blobs",
    status_code=201,
    summary="Store a blob (JSON, Base64)",
    operation_class=StoreJsonOperation,
    responses=_STORE_RESPONSES,
    response_headers=[_ETAG, _LOCATION],
)
async def store_json(request: AnyRequest) -> Response[StoredBlob]:
    """201 the first time; 200 with the original answer for the same bytes; 409 for other bytes."""
    service = service_of(request)
    limit = settings_of(request).max_json_blob_size
    body = await read_body(request, 4 * math.ceil(limit / 3) + _JSON_OVERHEAD)
    payload = decode_store_request(body)
    validate_id(payload.id)
    validate_media_type(payload.content_type)
    text = json_string_text(payload.data)
    if text is None:  # escapes in the string (a JSON encoder's "\/"): decoded whole, the rare way
        chunks = single_chunk(decode_base64(msgspec.json.decode(payload.data, type=str)))
    else:  # decoded a piece at a time from the body while storing: the blob never sits whole beside it
        chunks = _pieces(base64_pieces(text))
    outcome = await service.store(payload.id, chunks, max_size=limit, content_type=payload.content_type)
    return _stored(outcome)


async def _pieces(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


@put(
    BLOB_PATH,
    status_code=201,
    summary="Store a blob (raw bytes, streamed)",
    operation_class=StoreRawOperation,
    responses=_STORE_RESPONSES,
    response_headers=[_ETAG, _LOCATION],
)
async def store_raw(request: AnyRequest) -> Response[StoredBlob]:
    """Same outcomes as the JSON store. An optional ``Content-Digest: sha-256=:<base64>:`` is verified.

    The request's ``Content-Type`` is recorded as the blob's (none: ``application/octet-stream``).
    """
    service = service_of(request)
    blob_id = id_from_request(request)
    limit = put_limit(request, settings_of(request).max_blob_size)  # a signed PUT's max_size and content_type
    check_declared_length(request, limit)
    content_type = request_content_type(request)
    outcome = await service.store(
        blob_id,
        body_stream(request),
        max_size=limit,
        expected_sha256=expected_sha256(request),
        content_type=content_type,
    )
    return _stored(outcome)


@get(
    BLOB_PATH,
    summary="Retrieve a blob (JSON, or raw with Accept: application/octet-stream)",
    operation_class=RetrieveOperation,
    responses={
        200: json_body(BlobWithData, "JSON by default; the raw bytes for `Accept: application/octet-stream`."),
        206: raw("Raw only: the single `Range` asked for, with `Content-Range`."),
        304: no_body("Raw only: `If-None-Match` names the current `ETag`."),
        400: BAD_REQUEST,
        401: UNAUTHORIZED,
        404: NOT_FOUND,
        416: UNSATISFIABLE,
        503: UNAVAILABLE,
    },
    response_headers=_RAW_HEADERS,
)
async def retrieve(request: AnyRequest) -> Response[bytes] | Stream:
    """``?download=`` is read by ``download_name`` (declared in the document by ``RetrieveOperation``)."""
    service = service_of(request)
    blob_id = id_from_request(request)
    name = download_name(request)
    record = await _committed(service, request, blob_id)
    if not _wants_raw(request):
        return await _json_answer(service, record)
    whole, not_modified = _raw_answer_headers(record, name)
    if _not_modified(request, record):
        return Answer.with_encoded(b"", not_modified, status_code=304)
    window = parse_range(header(request.scope, b"range"), record.size)
    if record.size <= WHOLE_RAW_MAX:
        # Read and verified whole before the status line (a damaged blob is a clean 503), and
        # answered as one body: a stream's machinery costs more than a small blob's bytes.
        data = await service.retrieve.read_all(record)
        if window is None:
            return Answer.with_encoded(data, whole)  # the recorded type and the length are among them
        start, end = window
        headers = _raw_headers(record, name)
        _range_headers(headers, start, end, record.size)
        return Answer(data[start:end], status_code=206, headers=headers)
    headers = _raw_headers(record, name)
    if window is None:
        return Stream(await _primed(service.retrieve.stream(record)), headers=headers)
    start, end = window
    _range_headers(headers, start, end, record.size)
    chunks = await _primed(service.retrieve.stream_range(record, start, end))
    return Stream(chunks, status_code=206, headers=headers)


def _range_headers(headers: dict[str, str], start: int, end: int, size: int) -> None:
    headers["Content-Length"] = str(end - start)
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"


async def _committed(service: DriveService, request: AnyRequest, blob_id: str) -> BlobRecord:
    """The blob's record, reflecting every commit completed before the request arrived.

    A read of ours writes nothing first, so it needs no later commit than those: reads whose
    requests arrived together may share one look for commits (domain/freshness.py). The
    arrival is known under ``drive serve`` (wire.py); elsewhere the lookup looks as it runs.
    """
    arrived = request.scope.get(ARRIVED_AT)
    if not isinstance(arrived, float):
        return await service.retrieve.stat(blob_id)
    asked = read_asked_at.set(arrived)
    try:
        return await service.retrieve.stat(blob_id)
    finally:
        read_asked_at.reset(asked)


async def _json_answer(service: DriveService, record: BlobRecord) -> Response[bytes] | Stream:
    """The seed's JSON body; streamed for large blobs so memory stays flat whatever the size.

    A damaged blob is refused with 503 when that is found before the first byte goes out
    (always, up to ``WHOLE_JSON_MAX``); later, the response is cut short instead.
    """
    if record.size <= WHOLE_JSON_MAX:
        data = await service.retrieve.read_all(record)
        whole, created_at = _json_answer_parts(record)
        body = msgspec.json.encode(BlobWithData(record.id, _base64(data), str(record.size), created_at))
        return Answer.with_encoded(body, (*whole, (b"content-length", b"%d" % len(body))))
    headers = {"ETag": record.etag}
    streamed = BlobWithDataStream(record, await _primed(service.retrieve.stream(record)))
    headers["Content-Length"] = str(streamed.length)
    return Stream(streamed, media_type=JSON, headers=headers)


@functools.lru_cache(maxsize=4096)
def _json_answer_parts(record: BlobRecord) -> tuple[EncodedHeaders, str]:
    """A whole JSON answer's headers but its length, encoded, and its ``created_at``: made once per record."""
    return tuple(encoded({"ETag": record.etag, "Content-Type": JSON})), timestamp(record.created_at)


def _base64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


async def _primed(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Pull the first chunk before the status line goes out, so an unreachable backend is a 503.

    A failure after that can only abort the response (the client sees a short body).
    """
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    return rest()


@head(
    BLOB_PATH,
    summary="The raw GET's headers, no body",
    operation_class=HeadOperation,
    responses={
        304: no_body("`If-None-Match` names the current `ETag`."),
        400: BAD_REQUEST,
        401: UNAUTHORIZED,
        404: NOT_FOUND,
        503: UNAVAILABLE,
    },
    response_headers=[*_RAW_HEADERS, ResponseHeader(name="Content-Length", documentation_only=True)],
)
async def retrieve_head(request: AnyRequest) -> Response[None]:
    service = service_of(request)
    blob_id = id_from_request(request)
    name = download_name(request)
    record = await _committed(service, request, blob_id)
    whole, not_modified = _raw_answer_headers(record, name)
    if _not_modified(request, record):
        return _headers_only(304, not_modified)
    return _headers_only(200, whole)


def _headers_only(status: int, headers: EncodedHeaders) -> Response[None]:
    # Litestar insists HEAD handlers are annotated bodiless; the GET's Content-Length is among the headers.
    return cast("Response[None]", Answer.with_encoded(b"", headers, status_code=status))


@delete(
    BLOB_PATH,
    status_code=204,
    summary="Delete a blob",
    operation_class=BlobOperation,
    responses={400: BAD_REQUEST, 401: UNAUTHORIZED, 403: FORBIDDEN, 404: NOT_FOUND, 503: UNAVAILABLE},
)
async def remove(request: AnyRequest) -> None:
    """After 204 the id is free to be stored again."""
    service = service_of(request)
    await service.delete(id_from_request(request))


@get(
    "/v1/blobs",
    summary="List blobs by id, a page at a time",
    responses={400: BAD_REQUEST, 401: UNAUTHORIZED, 503: UNAVAILABLE},
)
async def list_blobs(
    request: AnyRequest,
    prefix: Annotated[str, Parameter(description="only ids starting with these characters")] = "",
    limit: Annotated[str, Parameter(description="page size, 1 to 1000", schema_extra=_LIMIT_SCHEMA)] = "",
    cursor: Annotated[
        str,
        Parameter(
            description=(
                "`next_cursor` of the previous page (opaque: at most 1368 characters of `A-Z a-z 0-9 _ -`);"
                " empty or absent for the first page. A cursor the service did not issue is `400 invalid_request`."
            ),
            # Checked by ``checked_cursor``; the format says what a pattern cannot: one we issued.
            schema_extra={"format": CURSOR_FORMAT},
        ),
    ] = "",
) -> BlobList:
    """Ids in ascending byte order with their metadata; ``next_cursor`` is null on the last page."""
    for name in ("prefix", "limit", "cursor"):
        if len(request.query_params.getall(name, [])) > 1:
            raise InvalidRequest(f"{name} may be given at most once")
    page = await service_of(request).list(prefix, page_size(limit), checked_cursor(cursor))
    return BlobList([stored_blob(r) for r in page.items], page.next_cursor)


def page_size(limit: str) -> int:
    """ASCII digits only (``int`` also takes ``1_0`` and Arabic-Indic digits), and short before converting."""
    if not limit:
        return DEFAULT_PAGE
    if len(limit) > 4 or not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= MAX_PAGE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(limit)


def checked_cursor(cursor: str) -> str | None:
    """A cursor this service could have issued, or None for the first page; else ``InvalidRequest``.

    Checked here, bounded and ASCII, before the Base64 decoder (which refuses non-ASCII
    text with a bare ``ValueError`` and silently drops characters outside its alphabet).
    """
    if not cursor:
        return None
    if len(cursor) > _CURSOR_MAX or _CURSOR.fullmatch(cursor) is None:
        raise InvalidRequest("cursor is not one this service issued")
    decode_cursor(cursor)  # InvalidRequest unless it names a valid id
    return cursor


def _allow(methods: str) -> Callable[[], Awaitable[Response[None]]]:
    """``OPTIONS``: Litestar's own lists only the methods of the first handler of a path."""

    async def options() -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": methods})

    return options


list_options = route("/v1/blobs", http_method=["OPTIONS"], include_in_schema=False, name="list-options")(
    _allow("GET, OPTIONS, POST")
)
blob_options = route(BLOB_PATH, http_method=["OPTIONS"], include_in_schema=False, name="blob-options")(
    _allow("DELETE, GET, HEAD, OPTIONS, PUT")
)

# The OPTIONS handlers first: Litestar adds its own to a path whose first handler lacks one.
route_handlers = [list_options, store_json, list_blobs, blob_options, store_raw, retrieve, retrieve_head, remove]
