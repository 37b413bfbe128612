"""Signed links over HTTP: ``POST /v1/links`` makes one; blob routes honour one instead of a token.

A request with link parameters and no ``Authorization`` header is checked here (called by
the blob routes' auth middleware); its grant is kept in the ASGI scope so that the blob handlers apply
its constraints (``max_size``, ``content_type``) and serve raw bytes by default.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, cast
from urllib.parse import parse_qsl, quote, urlencode

import msgspec
from litestar import Response, post
from litestar.types import Scope

from drive.application.links import DEFAULT_EXPIRES_IN, IssuedLink, SignedLinks
from drive.domain.errors import DriveError, InvalidRequest
from drive.domain.links import PARAMETERS, LinkGrant, LinkRefused, LinksDisabled, same_media_type
from drive.entrypoints.http.bodies import read_body
from drive.entrypoints.http.openapi import (
    BAD_REQUEST,
    FORBIDDEN,
    JSON,
    TIMED_OUT,
    TOO_LARGE,
    UNAUTHORIZED,
    LinkOperation,
)
from drive.entrypoints.http.paths import BLOBS_PREFIX, blob_location, id_from_path
from drive.entrypoints.http.schemas import timestamp
from drive.entrypoints.http.types import AnyRequest

_GRANT = "drive.link"  # the scope key holding a verified request's grant
_MAX_BODY = 16 * 1024  # an id (at most 1024 bytes, 6 bytes escaped each) and a few fields


class TokenScopes(Protocol):
    def scope_of(self, header: str | None) -> str | None: ...


class ReadOnlyToken(DriveError):
    code = "forbidden"


class LinkRequest(msgspec.Struct, forbid_unknown_fields=False):
    id: str
    method: Literal["GET", "PUT"]
    # JSON Schema's integers include 3600.0: whole floats are accepted (see ``_whole``).
    expires_in: int | float = DEFAULT_EXPIRES_IN
    # Absent, not null: the document says integer and string.
    max_size: int | float | msgspec.UnsetType = msgspec.UNSET
    content_type: str | msgspec.UnsetType = msgspec.UNSET


class IssuedLinkBody(msgspec.Struct):
    url: str  # a path with its query, relative to the service's base URL
    method: str
    expires_at: str


_decode = msgspec.json.Decoder(LinkRequest)


def is_signed(scope: Scope) -> bool:
    """The request carries link parameters (it may still be refused)."""
    query = scope.get("query_string", b"")
    return bool(query) and not PARAMETERS.isdisjoint(name for name, _ in _query(query))


def check_link(scope: Scope, links: SignedLinks) -> None:
    """Verify a signed request for its route, id and method, or raise ``LinkRefused`` (401)."""
    raw = scope.get("raw_path")
    path = raw if isinstance(raw, bytes) else scope["path"].encode()
    if not path.startswith(BLOBS_PREFIX.encode()):
        raise LinkRefused("a signed link is valid only on the blob it was made for")
    params: dict[str, list[str]] = {name: [] for name in PARAMETERS}
    for name, value in _query(scope.get("query_string", b"")):
        if name in params:
            params[name].append(value)
    grant = links.verify(params, str(scope.get("method", "")), id_from_path(path))
    cast(dict[str, Any], scope)[_GRANT] = grant


def _query(query: bytes) -> list[tuple[str, str]]:
    # As Litestar reads query parameters: percent-decoded UTF-8, blank values kept.
    return parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="replace")


def link_grant(request: AnyRequest) -> LinkGrant | None:
    """The verified link this request came with, if it came with one instead of a token."""
    grant = cast(dict[str, Any], request.scope).get(_GRANT)
    return grant if isinstance(grant, LinkGrant) else None


def put_limit(request: AnyRequest, limit: int) -> int:
    """The size limit of a raw ``PUT``, after checking a signed one's ``Content-Type``."""
    grant = link_grant(request)
    if grant is None:
        return limit
    if grant.content_type is not None and not same_media_type(request.headers.get("content-type"), grant.content_type):
        raise InvalidRequest(f"this link accepts only Content-Type {grant.content_type}")
    return limit if grant.max_size is None else min(limit, grant.max_size)


@post(
    "/v1/links",
    status_code=201,
    summary="Make a signed link to GET or PUT one blob without a token",
    operation_class=LinkOperation,
    responses={
        400: BAD_REQUEST,
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        408: TIMED_OUT,
        413: TOO_LARGE,
    },
)
async def make_link(request: AnyRequest) -> Response[IssuedLinkBody]:
    """201 with the link's path and query (``url``), ``method`` and ``expires_at``."""
    links: SignedLinks = request.app.state.links
    if not links.enabled:
        raise LinksDisabled("signed links are disabled: set SIGNING_KEYS to enable them")
    body = await read_body(request, _MAX_BODY)
    try:
        body.decode("utf-8")  # JSON is UTF-8 throughout, ignored fields included (msgspec skips those)
        asked = _decode.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid body: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("body is not valid JSON") from None
    tokens: TokenScopes = request.app.state.tokens
    if asked.method == "PUT" and tokens.scope_of(request.headers.get("authorization")) != "read-write":
        raise ReadOnlyToken("a read token may make GET links only")
    max_size = None if asked.max_size is msgspec.UNSET else _whole(asked.max_size, "max_size")
    content_type = None if asked.content_type is msgspec.UNSET else asked.content_type
    expires_in = _whole(asked.expires_in, "expires_in")
    issued = links.issue(asked.id, asked.method, expires_in, max_size=max_size, content_type=content_type)
    return Response(issued_body(issued), status_code=201, media_type=JSON)


def _whole(value: float, name: str) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise InvalidRequest(f"{name} must be a whole number")
    return int(value)


def issued_body(issued: IssuedLink) -> IssuedLinkBody:
    """The answer to ``POST /v1/links`` (``drive link --json`` prints the same)."""
    url = f"{blob_location(issued.grant.blob_id)}?{urlencode(issued.params, quote_via=quote)}"
    return IssuedLinkBody(url, issued.grant.method, timestamp(issued.expires_at))
