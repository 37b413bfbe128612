"""The /v1/blobs routes."""

from __future__ import annotations

import base64
import math
from collections.abc import AsyncIterator
from email.utils import format_datetime
from typing import cast

import msgspec
from litestar import Response, delete, get, head, post, put
from litestar.response import Stream

from drive.application.service import DriveService
from drive.application.streams import single_chunk
from drive.domain.errors import InvalidRequest
from drive.domain.ids import validate_id
from drive.domain.model import BlobRecord, CommitOutcome
from drive.entrypoints.http.bodies import body_stream, check_declared_length, expected_sha256, read_body
from drive.entrypoints.http.paths import blob_location, id_from_request
from drive.entrypoints.http.ranges import parse_range
from drive.entrypoints.http.schemas import (
    BlobList,
    BlobWithData,
    StoreRequest,
    decode_base64,
    stored_blob,
    timestamp,
)
from drive.entrypoints.http.types import AnyRequest
from drive.settings import Settings

OCTET_STREAM = "application/octet-stream"
JSON = "application/json"
_store_request = msgspec.json.Decoder(StoreRequest)
# Room for the id (escaped, up to 6 bytes per byte of UTF-8) and JSON punctuation.
_JSON_OVERHEAD = 8 * 1024 + 6 * 1024


def _service(request: AnyRequest) -> DriveService:
    return request.app.state.service  # type: ignore[no-any-return]


def _json(content: msgspec.Struct, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(msgspec.json.encode(content), status_code=status, media_type=JSON, headers=headers)


def _stored(outcome: CommitOutcome) -> Response[bytes]:
    record = outcome.record
    headers = {"ETag": record.etag, "Location": blob_location(record.id)}
    return _json(stored_blob(record), 201 if outcome.created else 200, headers)


def _wants_raw(request: AnyRequest) -> bool:
    accept = request.headers.get("accept", "")
    return OCTET_STREAM in accept.lower()


def _raw_headers(record: BlobRecord) -> dict[str, str]:
    return {
        "ETag": record.etag,
        "Last-Modified": format_datetime(record.created_at, usegmt=True),
        "Accept-Ranges": "bytes",
        "Content-Length": str(record.size),
    }


def _not_modified(request: AnyRequest, record: BlobRecord) -> bool:
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or record.etag in tags


@post("/v1/blobs", status_code=201)
async def store_json(request: AnyRequest) -> Response[bytes]:
    service = _service(request)
    limit = _settings(request).max_json_blob_size
    body = await read_body(request, 4 * math.ceil(limit / 3) + _JSON_OVERHEAD)
    try:
        payload = _store_request.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid body: {exc}") from None
    except msgspec.DecodeError:
        raise InvalidRequest("body is not valid JSON") from None
    validate_id(payload.id)
    data = decode_base64(payload.data)
    blob_id = payload.id
    del body, payload  # the decoded bytes are all we keep
    outcome = await service.store(blob_id, single_chunk(data), max_size=limit)
    return _stored(outcome)


@put("/v1/blobs/{blob_path:path}", status_code=201)
async def store_raw(request: AnyRequest) -> Response[bytes]:
    service = _service(request)
    blob_id = id_from_request(request)
    limit = _settings(request).max_blob_size
    check_declared_length(request, limit)
    outcome = await service.store(
        blob_id, body_stream(request), max_size=limit, expected_sha256=expected_sha256(request)
    )
    return _stored(outcome)


@get("/v1/blobs/{blob_path:path}")
async def retrieve(request: AnyRequest) -> Response[bytes] | Stream:
    service = _service(request)
    record = await service.retrieve.stat(id_from_request(request))
    if not _wants_raw(request):
        data = await service.retrieve.read_all(record)
        encoded = base64.b64encode(data).decode("ascii")
        del data
        body = BlobWithData(record.id, encoded, str(record.size), timestamp(record.created_at))
        return _json(body, headers={"ETag": record.etag})
    headers = _raw_headers(record)
    if _not_modified(request, record):
        del headers["Content-Length"]
        return Response(b"", status_code=304, headers=headers)
    window = parse_range(request.headers.get("range"), record.size)
    if window is None:
        return Stream(await _primed(service.retrieve.stream(record)), media_type=OCTET_STREAM, headers=headers)
    start, end = window
    headers["Content-Length"] = str(end - start)
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{record.size}"
    chunks = await _primed(service.retrieve.stream_range(record, start, end))
    return Stream(chunks, status_code=206, media_type=OCTET_STREAM, headers=headers)


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


@head("/v1/blobs/{blob_path:path}")
async def retrieve_head(request: AnyRequest) -> Response[None]:
    record = await _service(request).retrieve.stat(id_from_request(request))
    headers = _raw_headers(record)
    if _not_modified(request, record):
        del headers["Content-Length"]
        return _headers_only(304, headers)
    return _headers_only(200, headers)


def _headers_only(status: int, headers: dict[str, str]) -> Response[None]:
    # Litestar insists HEAD handlers are annotated bodiless; b"" keeps our Content-Length.
    return cast("Response[None]", Response(b"", status_code=status, media_type=OCTET_STREAM, headers=headers))


@delete("/v1/blobs/{blob_path:path}", status_code=204)
async def remove(request: AnyRequest) -> None:
    await _service(request).delete(id_from_request(request))


@get("/v1/blobs")
async def list_blobs(request: AnyRequest) -> Response[bytes]:
    params = request.query_params
    prefix = params.get("prefix") or ""
    raw_limit = params.get("limit")
    if raw_limit is None or raw_limit == "":
        limit = 100
    elif raw_limit.isdigit():
        limit = int(raw_limit)
    else:
        raise InvalidRequest("limit must be a whole number between 1 and 1000")
    page = await _service(request).list(prefix, limit, params.get("cursor") or None)
    return _json(BlobList([stored_blob(r) for r in page.items], page.next_cursor))


def _settings(request: AnyRequest) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


route_handlers = [store_json, list_blobs, store_raw, retrieve, retrieve_head, remove]
