"""What the generated OpenAPI document cannot infer from the handlers' signatures.

The store routes read their bodies themselves (the size limit applies while reading, and
the raw body is a stream), so Litestar sees no ``data`` parameter; their request bodies are
declared here. Error answers all share the contract's body (``ErrorBody``).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)

from drive.application.links import DEFAULT_EXPIRES_IN, MAX_EXPIRES_IN, MIN_EXPIRES_IN
from drive.domain.media_types import DEFAULT_CONTENT_TYPE, MAX_CONTENT_TYPE_BYTES, MEDIA_TYPE
from drive.entrypoints.http.errors import ErrorBody

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

BEARER: SecurityRequirement = {"bearer": []}
SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    "bearer": SecurityScheme(
        type="http",
        scheme="bearer",
        description="`Authorization: Bearer <token>`; a `read` token may only GET and HEAD.",
    )
}

# Custom formats, for readers and for test generators (tests/integration/schemathesis_hooks.py):
# what a pattern cannot say (an id's limit is in bytes of UTF-8; a cursor must be one we issued).
ID_FORMAT = "drive-id"
CURSOR_FORMAT = "drive-cursor"
FILE_NAME_FORMAT = "drive-file-name"  # 1 to 1024 bytes of UTF-8, anything else allowed
# No control characters (U+0000-U+001F, U+007F); the length in bytes is checked by the server.
ID_PATTERN = "^[^\\u0000-\\u001F\\u007F]+$"
# Strict, canonical standard Base64: padding required, the padding bits zero.
# A media type, as drive.domain.media_types checks it (its pattern is JSON Schema's regex dialect too).
MEDIA_TYPE_PATTERN = f"^{MEDIA_TYPE}$"
BASE64_PATTERN = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"


def id_schema(description: str) -> Schema:
    return Schema(
        type=OpenAPIType.STRING,
        format=ID_FORMAT,  # type: ignore[arg-type]  # OpenAPI allows any format name
        description=description,
        min_length=1,
        max_length=1024,
        pattern=ID_PATTERN,
    )


_STORE_REQUEST = Schema(
    title="StoreRequest",
    type=OpenAPIType.OBJECT,
    required=["id", "data"],
    properties={
        "id": id_schema("1 to 1024 bytes of UTF-8, no control characters; kept exactly as sent."),
        "data": Schema(
            type=OpenAPIType.STRING,
            content_encoding="base64",
            pattern=BASE64_PATTERN,
            description='Strict standard Base64 (RFC 4648 §4): padding required, no whitespace; `""` is empty.',
        ),
        "content_type": Schema(
            type=OpenAPIType.STRING,
            max_length=MAX_CONTENT_TYPE_BYTES,
            pattern=MEDIA_TYPE_PATTERN,
            default=DEFAULT_CONTENT_TYPE,
            description=(
                "The blob's media type (RFC 9110 `type/subtype` with optional parameters, at most 255 bytes of ASCII),"
                " served back on raw reads; kept exactly as sent. Part of the blob: a replay must repeat it."
            ),
        ),
    },
    description="Unknown extra fields are ignored.",
)
_EXPIRES_IN = Schema(
    type=OpenAPIType.INTEGER,
    minimum=MIN_EXPIRES_IN,
    maximum=MAX_EXPIRES_IN,
    default=DEFAULT_EXPIRES_IN,
    description="Seconds until the link expires.",
)


_PUT_ONLY = ("max_size", "content_type")


def _link_request(method: str, constraints: dict[str, Schema | Reference]) -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["id", "method"],
        properties={
            "id": id_schema("The blob's id: 1 to 1024 bytes of UTF-8, no control characters."),
            "method": Schema(type=OpenAPIType.STRING, enum=[method]),
            "expires_in": _EXPIRES_IN,
            **constraints,
        },
        # Extra fields are ignored, but not the PUT constraints on another method.
        schema_not=None if constraints else Schema(any_of=[Schema(required=[name]) for name in _PUT_ONLY]),
    )


# Two shapes, so that a GET link with PUT constraints is invalid in the document too.
_LINK_REQUEST = Schema(
    title="LinkRequest",
    one_of=[
        _link_request("GET", {}),
        _link_request(
            "PUT",
            {
                "max_size": Schema(type=OpenAPIType.INTEGER, minimum=0, description="Largest body accepted, in bytes."),
                "content_type": Schema(
                    type=OpenAPIType.STRING,
                    max_length=MAX_CONTENT_TYPE_BYTES,
                    pattern=MEDIA_TYPE_PATTERN,
                    description="The only `Content-Type` the upload may send (RFC 9110 `type/subtype`).",
                ),
            },
        ),
    ],
    description=(
        "Unknown extra fields are ignored; `max_size` and `content_type` are for `PUT` links only"
        " (`400 invalid_request` on a `GET` link)."
    ),
)
_BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)

# Litestar replaces ``components.schemas`` with the ones it generates: only the schemes survive.
COMPONENTS = Components(security_schemes=SECURITY_SCHEMES)


_ID = Parameter(
    name="blob_path",
    param_in="path",
    required=True,
    schema=id_schema("1 to 1024 bytes of UTF-8 once percent-decoded, no control characters."),
    description=(
        "The blob's id, percent-encoded; `/` may be sent as is or as `%2F`."
        " Taken from the raw path and decoded once, never normalised (send `.` and `..` as `%2E`)."
    ),
)


_DOWNLOAD = Parameter(
    name="download",
    param_in="query",
    required=False,
    schema=Schema(
        type=OpenAPIType.STRING,
        format=FILE_NAME_FORMAT,  # type: ignore[arg-type]  # OpenAPI allows any format name
        min_length=1,
        max_length=1024,
    ),
    description=(
        "Raw answers only: add `Content-Disposition: attachment` with this file name (1 to 1024 bytes of UTF-8;"
        " control characters become `_`). Checked, and otherwise ignored, on the JSON answer."
    ),
)
# The recorded content type, whatever it is.
ANY_TYPE = "*/*"
# Headers of a raw answer (OpenAPI ignores a documented Content-Type header: it is the media type).
RAW_HEADERS = {
    "ETag": "the quoted SHA-256 hex of the bytes",
    "Last-Modified": "the blob's `created_at`",
    "Accept-Ranges": "`bytes`",
    "X-Content-Type-Options": "`nosniff`: the recorded `Content-Type` is taken as given, never guessed",
    "Content-Security-Policy": "`sandbox`: stored HTML or SVG never runs script on this origin",
    "Content-Disposition": (
        "with `?download=` only: `attachment; filename=\"<ASCII stand-in>\"; filename*=UTF-8''<percent-encoded name>`"
        " (RFC 6266, RFC 8187)"
    ),
}


def _raw_header_docs() -> dict[str, OpenAPIHeader | Reference]:
    return {
        name: OpenAPIHeader(description=text, schema=Schema(type=OpenAPIType.STRING))
        for name, text in RAW_HEADERS.items()
    }


@dataclass
class BlobOperation(Operation):
    """An operation on one blob: its id is any string, not the URI Litestar infers from ``:path``."""

    def __post_init__(self) -> None:
        self.parameters = [
            _ID if not isinstance(p, Reference) and p.name == _ID.name else p for p in self.parameters or []
        ]


def _with_request_body(
    media_type: str, schema: Schema | Reference, description: str, required: bool = True
) -> RequestBody:
    return RequestBody(
        content={media_type: OpenAPIMediaType(schema=schema)}, description=description, required=required
    )


@dataclass
class StoreJsonOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _with_request_body(JSON, _STORE_REQUEST, "The id and the blob's bytes in Base64.")


@dataclass
class StoreRawOperation(BlobOperation):
    def __post_init__(self) -> None:
        super().__post_init__()
        # No body is an empty blob, as with `""` in the JSON store.
        self.request_body = _with_request_body(
            OCTET_STREAM,
            _BINARY,
            "The blob's bytes, streamed; none is an empty blob. Any `Content-Type` (RFC 9110 media type, at most"
            " 255 bytes) is recorded as the blob's and served back on raw reads; none is `application/octet-stream`.",
            required=False,
        )


@dataclass
class LinkOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = _with_request_body(JSON, _LINK_REQUEST, "What the link allows, and for how long.")


@dataclass
class HeadOperation(BlobOperation):
    """The raw ``GET``'s headers: its ``Content-Type`` is the recorded one, and there is no body."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.parameters = [*(self.parameters or []), _DOWNLOAD]
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.content = {ANY_TYPE: OpenAPIMediaType(schema=_BINARY)}


@dataclass
class RetrieveOperation(BlobOperation):
    """The JSON answer, or the raw bytes (as their recorded content type) for ``Accept: application/octet-stream``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.parameters = [*(self.parameters or []), _DOWNLOAD]
        responses = self.responses or {}
        ok, partial = responses.get("200"), responses.get("206")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            ok.content[ANY_TYPE] = OpenAPIMediaType(schema=_BINARY)
            ok.headers = {**_raw_header_docs(), **(ok.headers or {})}
        if isinstance(partial, OpenAPIResponse):
            partial.content = {ANY_TYPE: OpenAPIMediaType(schema=_BINARY)}
            partial.headers = {**_raw_header_docs(), "Content-Range": OpenAPIHeader(description="`bytes a-b/size`")}


def json_body(container: type[msgspec.Struct], description: str) -> ResponseSpec:
    return ResponseSpec(container, description=description, generate_examples=False)


def error(description: str) -> ResponseSpec:
    return json_body(ErrorBody, description)


def raw(description: str) -> ResponseSpec:
    """Raw bytes (the schema is made ``format: binary`` by ``RetrieveOperation``)."""
    return ResponseSpec(bytes, description=description, media_type=OCTET_STREAM, generate_examples=False)


def no_body(description: str) -> ResponseSpec:
    return ResponseSpec(None, description=description, generate_examples=False)


BAD_REQUEST = error("`invalid_request`, `invalid_id`, `invalid_base64` or `checksum_mismatch`")
UNAUTHORIZED = error("`unauthorized`: no, malformed or unknown bearer token (with `WWW-Authenticate: Bearer`)")
FORBIDDEN = error("`forbidden`: the token's scope does not allow writing")
NOT_FOUND = error("`not_found`: no committed blob has that id")
CONFLICT = error("`conflict`: the id holds different bytes already; the stored blob is untouched")
TIMED_OUT = error(
    "`request_timeout`: no byte of the body arrived for `BODY_TIMEOUT_SECONDS`; nothing is stored"
    " (with `Connection: close`)"
)
TOO_LARGE = error("`payload_too_large`: over the configured size limit; nothing is stored")
UNSATISFIABLE = error("`range_not_satisfiable`: the range starts outside the blob (with `Content-Range: bytes */size`)")
UNAVAILABLE = error(
    "`storage_unavailable`: a backend or the metadata store failed, or the bytes fail their checksum;"
    " retrying later is safe (with `Retry-After`)"
)
