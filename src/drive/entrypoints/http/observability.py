"""The outermost ASGI layer: request id, one JSON access-log line and HTTP metrics per request.

It wraps the whole Litestar handler, so it sees every response (401s from the guard, 404s
for unknown paths, errors from exception handlers) and counts streamed bodies chunk by
chunk as they pass, never buffering them.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from drive import deferred_metrics
from drive.deferred_metrics import COUNTER, HISTOGRAM
from drive.entrypoints.http.errors import ErrorBody, ErrorDetail
from drive.entrypoints.logs import batch_writer, may_hold_secret, redact, request_id_var, timestamp
from drive.telemetry import HTTP_BYTES_IN, HTTP_BYTES_OUT, HTTP_DURATION, HTTP_REQUESTS

access_log = logging.getLogger("drive.access")

REQUEST_ID_HEADER = b"x-request-id"
# A client's id is kept when it is 1-128 visible ASCII characters; otherwise we make one.
_SANE_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
# Successful probes and scrapes arrive every few seconds: logged at DEBUG, not INFO.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED_ROUTE = "unmatched"
CLIENT_CLOSED_REQUEST = 499  # nginx's code: the client went away before the response was complete


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _SANE_REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    # Ids need to be unique, not secret: 128 bits from the process's generator (reseeded
    # from os.urandom after every fork) cost 0.3 µs; uuid4() makes a getrandom() call.
    return f"{random.getrandbits(128):032x}"


# prometheus_client's ``labels()`` takes a lock and builds a key on every call; the
# children are cached here per (method, route, status), a small bounded set.
_Children = tuple[Any, Any, Any, Any]
_children: dict[tuple[str, str, int], _Children] = {}


def _observe(method: str, route: str, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
    children = _children.get((method, route, status))
    if children is None:
        code = str(status)
        children = (
            HTTP_REQUESTS.labels(method, route, code),
            HTTP_DURATION.labels(method, route, code),
            HTTP_BYTES_IN.labels(method, route),
            HTTP_BYTES_OUT.labels(method, route),
        )
        _children[(method, route, status)] = children
    requests, duration, received, sent = children
    updates = [(COUNTER, requests, 1.0), (HISTOGRAM, duration, seconds)]
    if bytes_in:
        updates.append((COUNTER, received, bytes_in))
    if bytes_out:
        updates.append((COUNTER, sent, bytes_out))
    deferred_metrics.record(updates)


_SHUTTING_DOWN = msgspec.json.encode(
    ErrorBody(ErrorDetail("storage_unavailable", "the server is shutting down; retry the request"))
)


async def _send_shutting_down(send: Send) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_SHUTTING_DOWN)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _SHUTTING_DOWN, "more_body": False})


@dataclass(slots=True)
class _Exchange:
    status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    complete: bool = False  # the last body chunk has been handed to the server
    disconnected: bool = False  # the client left before that


class RequestObserver:
    """ASGI middleware; ``in_flight`` lets shutdown wait for requests still unwinding."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.in_flight = 0
        self._idle: anyio.Event | None = None  # set when in_flight drops to 0

    async def wait_idle(self) -> None:
        """Return once no request is in progress (callers bound the wait)."""
        while self.in_flight:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        exchange = _Exchange()

        async def counting_receive() -> ReceiveMessage:
            message: ReceiveMessage = await receive()
            if message["type"] == "http.request":
                exchange.bytes_in += len(message.get("body", b""))
            elif message["type"] == "http.disconnect" and not exchange.complete:
                exchange.disconnected = True
            return message

        async def observing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            elif message["type"] == "http.response.body":
                exchange.bytes_out += len(message.get("body", b""))
                if not message.get("more_body", False):
                    exchange.complete = True
            await send(message)

        context = request_id_var.set(request_id)
        self.in_flight += 1
        started = time.perf_counter()
        aborted: str | None = None
        try:
            await self._app(scope, counting_receive, observing_send)
        except anyio.get_cancelled_exc_class():
            # Only uvicorn cancels a request task: it was still running at --graceful-timeout.
            aborted = "cancelled"
            if exchange.status is not None or exchange.disconnected:
                raise
            # Retrying is safe (an upload cut off here was undone as it unwound; one that had
            # just committed replays as 200), so say so in the contract's body, not a bare 500.
            with anyio.CancelScope(shield=True):
                await _send_shutting_down(observing_send)
        except BaseException:
            aborted = "error"
            raise
        finally:
            self.in_flight -= 1
            if not self.in_flight and self._idle is not None:
                self._idle.set()
                self._idle = None
            self._record(scope, exchange, time.perf_counter() - started, request_id, aborted)
            request_id_var.reset(context)

    @staticmethod
    def _record(scope: Scope, exchange: _Exchange, seconds: float, request_id: str, aborted: str | None) -> None:
        method = scope.get("method", "GET")
        method = method if method in _METHODS else "OTHER"
        # The route template (``/v1/blobs/{blob_path}``), never the id: bounded label values.
        route = scope.get("path_template") or UNMATCHED_ROUTE
        if exchange.disconnected and not exchange.complete:
            status, aborted = CLIENT_CLOSED_REQUEST, "client_disconnected"
        elif exchange.status is None:
            status = 500
        else:
            status = exchange.status
        _observe(method, route, status, seconds, exchange.bytes_in, exchange.bytes_out)
        level = logging.DEBUG if route in _QUIET_ROUTES and status < 400 else logging.INFO
        writer = batch_writer(access_log, level)
        if writer is None and not access_log.isEnabledFor(level):
            return
        client = (scope.get("client") or ("", 0))[0]
        target = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
        finished: _Finished = (
            time.time(), level, method, route, status, seconds, exchange.bytes_in, exchange.bytes_out,
            request_id, target, scope.get("query_string") or b"", client, aborted,
        )  # fmt: skip
        if writer is not None:
            writer.put(_access_lines, finished)  # made into its line later, with its batch
        else:
            line = _access_line(finished)
            fields = {name: getattr(line, name) for name in line.__struct_fields__[_FIELDS_FROM:]}
            if aborted is None:
                del fields["aborted"]
            access_log.log(level, "%s", line.message, extra=fields)


# What an access line says of a request, taken as it ends; made into the line later. A plain
# tuple: a NamedTuple's constructor is Python code, and this is built on every request.
# (created, level, method, route, status, seconds, bytes_in, bytes_out, request_id, target, query, client, aborted)
_Finished = tuple[float, int, str, str, int, float, int, int, str, bytes, bytes, str, "str | None"]


class AccessLine(msgspec.Struct, omit_defaults=True):
    """A request's line: the fields, in order, that ``JsonFormatter`` writes for it through logging."""

    ts: str
    level: str
    logger: str
    message: str
    request_id: str
    method: str
    route: str
    path: str
    status: int
    duration_ms: float
    bytes_in: int
    bytes_out: int
    client: str
    aborted: str | None = None


_FIELDS_FROM = AccessLine.__struct_fields__.index("request_id")  # the fields passed to logging as ``extra``


def _access_line(finished: _Finished) -> AccessLine:
    (created, level, method, route, status, seconds, bytes_in, bytes_out, request_id, target, query, client,
     aborted) = finished  # fmt: skip
    named = _names.get((level, method, route, status))
    if named is None:
        named = _named(level, method, route, status)
    return AccessLine(
        timestamp(created), named[0], access_log.name, named[1], request_id,
        method, route, _target(target, query), status, round(seconds * 1000, 3), bytes_in, bytes_out, client, aborted,
    )  # fmt: skip


# A line's level name and message, made once per level, method, route and status (a bounded set:
# methods outside the few are "OTHER", routes are templates), not once per line.
_names: dict[tuple[int, str, str, int], tuple[str, str]] = {}


def _named(level: int, method: str, route: str, status: int) -> tuple[str, str]:
    if len(_names) >= 1024:
        _names.clear()
    named = _names[(level, method, route, status)] = (logging.getLevelName(level), f"{method} {route} {status}")
    return named


def _access_lines(batch: list[_Finished]) -> list[str]:
    """A batch's access lines, redacted as ``JsonFormatter`` redacts, encoded together."""
    lines = [_access_line(finished) for finished in batch]
    # Almost no line holds a secret: one look at all their strings joined decides (the message
    # holds the method and route).
    if may_hold_secret(
        "\x00".join([text for line in lines for text in (line.message, line.request_id, line.path, line.client)])
    ):
        for line in lines:
            for name in ("request_id", "method", "route", "path", "client", "message"):
                setattr(line, name, redact(getattr(line, name)))
    return [_line_encoder.encode_lines(lines).decode()]


_line_encoder = msgspec.json.Encoder()


def _target(raw: bytes, query: bytes) -> str:
    """The request target as the client sent it (``//abs`` stays ``//abs``), never normalised.

    Latin-1 maps each byte to one character, so undecodable bytes are shown, not lost.
    """
    # A signed link's signature works as a token until it expires: never logged.
    query = _SIGNATURE.sub(rb"\1signature=[redacted]", query) if b"signature" in query else query
    return (raw + b"?" + query if query else raw).decode("latin-1")


_SIGNATURE = re.compile(rb"(^|[&;])signature=[^&;]*")
