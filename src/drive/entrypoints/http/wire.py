"""Limits on the wire, enforced in uvicorn's HTTP protocol before any route runs.

uvicorn with httptools bounds none of these itself (measured): a request head of any size is
buffered whole, a client may take forever to send it, and a request the parser refuses gets a
plain-text ``400``. ``WireLimitedProtocol`` adds, per connection:

- ``MAX_HEADER_BYTES``: the request line plus headers are counted as they arrive and the parser
  is never fed past the limit, so an oversized head costs no memory; over it, ``431`` and close.
- ``HEADER_TIMEOUT_SECONDS``: from connecting (or from the first byte of a later request on the
  connection) to the end of the headers; when it passes, the connection is closed.
- ``BODY_TIMEOUT_SECONDS``, for a body nobody reads any more (answered early, a ``401`` say):
  a connection that stops sending it is closed.
- ``MAX_CONNECTIONS`` (per process): a connection beyond it is answered ``503`` and closed.
- the contract's JSON error body on the parser's ``400``.

It also sends a small answer in one ``send`` instead of two: uvicorn writes the status line and
headers, then the body, each straight to the socket. On loopback under load each send wakes the
client, and the first of the two was a third of a small GET's time (bench/spy.py), so the
head is held (``_HeadHoldingTransport``) until the body's first write joins it, or until the
event loop's next turn if no body write comes in this one.

The idle keep-alive limit is uvicorn's own ``timeout_keep_alive`` (set from
``KEEPALIVE_TIMEOUT_SECONDS`` by ``drive serve``); the stall limit for a body being read is in
the app (``bodies.body_stream``), where abandoning a request also discards what it staged.

Settings are read from the environment in each server process (uvicorn's workers are fresh
processes that import this class by reference), once per process.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from typing import Any

import httptools
import msgspec
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from drive.entrypoints.http.body_pieces import PiecedBody
from drive.entrypoints.http.errors import ErrorBody, ErrorDetail
from drive.settings import Settings

log = logging.getLogger("drive.http")

# After an error answer the client may still be sending (a 64 MiB header, say). Closing a socket
# with unread input makes the kernel send a reset, which can destroy the answer before the client
# reads it; so the answer is followed by a FIN and further input is discarded for this long.
LINGER_SECONDS = 2.0


class WireLimits(msgspec.Struct, frozen=True):
    max_header_bytes: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> WireLimits:
        return cls(
            settings.max_header_bytes,
            settings.header_timeout_seconds,
            settings.body_timeout_seconds,
            settings.max_connections,
        )


@functools.cache
def process_limits() -> WireLimits:
    return WireLimits.from_settings(Settings.from_env())


# The scope key of the moment a request's headers had been read (``time.perf_counter()``): its
# reads must reflect every commit completed before then (domain/freshness.py).
ARRIVED_AT = "drive.arrived_at"

# A body write up to this size travels in one send with the held head; a larger one is not
# copied to join it (the head goes first, on its own).
JOIN_MAX = 64 * 1024


class _HeadHoldingTransport:
    """The transport as one response's cycle sees it: its first write (the head) waits for the next.

    Everything else is the connection's transport itself. The held head goes out joined to the
    next write, before ``close``, or at the latest on the event loop's next turn.
    """

    __slots__ = ("_first", "_heads", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport, heads: _HeldHeads) -> None:
        self._transport = transport
        self._heads = heads
        self._first = True
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._first:
            self._first = False
            self._held = data
            self._heads.add(self)  # flushed next turn if no body write comes in this one (a slow stream)
            return
        held, self._held = self._held, None
        if held is None:
            self._transport.write(data)
        elif len(data) <= JOIN_MAX:
            self._transport.write(held + data)
        else:
            self._transport.write(held)
            self._transport.write(data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _HeldHeads:
    """The heads an event loop's responses hold in one turn, flushed together on its next.

    One callback per turn for all of them, not one per response: under load a turn starts many.
    """

    __slots__ = ("_held", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: this is the value of the loop's entry in ``_held_heads``, which must not keep it alive.
        self._loop = weakref.ref(loop)
        self._held: list[_HeadHoldingTransport] = []

    def add(self, transport: _HeadHoldingTransport) -> None:
        if not self._held:
            loop = self._loop()
            if loop is None:
                return
            loop.call_soon(self._flush)
        self._held.append(transport)

    def _flush(self) -> None:
        held, self._held = self._held, []
        for transport in held:
            try:
                transport.flush()  # nothing left to do for most: their body or completion took the head
            except Exception:  # one broken connection must not hold back the other heads
                log.exception("a held response head could not be written")


_held_heads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _HeldHeads] = weakref.WeakKeyDictionary()


def _heads_of(loop: asyncio.AbstractEventLoop) -> _HeldHeads:
    heads = _held_heads.get(loop)
    if heads is None:
        heads = _held_heads[loop] = _HeldHeads(loop)
    return heads


def error_bytes(status: int, code: str, message: str) -> bytes:
    """A whole ``Connection: close`` answer with the contract's error body."""
    body = msgspec.json.encode(ErrorBody(ErrorDetail(code, message)))
    head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    return STATUS_LINE[status] + head + body


_BUSY_BODY = msgspec.json.encode(ErrorBody(ErrorDetail("storage_unavailable", "server busy; retry")))


async def _busy(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """The answer to a connection beyond ``MAX_CONNECTIONS``: ``503``, then the connection closes."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(_BUSY_BODY)),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _BUSY_BODY, "more_body": False})


class WireLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the wire limits above; pass it as ``uvicorn.run(http=...)``."""

    limits: WireLimits | None = None  # None: from the environment (``process_limits``)

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = self.limits or process_limits()
        self._heads = _heads_of(self.loop)
        # The head being received: open from connecting, or from the end of the previous message
        # (the next head starts right there), until its headers are complete.
        self._head_open = True
        self._head_started = False  # a byte of the next request has arrived
        # Chunked bodies end with trailer fields, which httptools buffers like headers: from a
        # chunk's header until its first body byte this may be them, and is bounded the same way.
        self._in_trailers = False
        self._bounded_bytes = 0  # of the head, or of the trailers
        self._head_seen = 0  # the head's bytes the parser has handed over (target and whole headers)
        self._sections = 0  # bounded sections begun so far: tells whether one began inside a piece
        self._head_refused = False
        self._deferred: bytes | None = None  # an error answer waiting for the answer in flight
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._lingering = False
        self._over_capacity = False
        self._body: PiecedBody | None = None  # the body of the request being parsed

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # The set holds every open connection of this process, this one included.
        if len(self.connections) > self._limits.max_connections:
            self._over_capacity = True
            log.warning("over MAX_CONNECTIONS (%d): answering 503", self._limits.max_connections)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # an error answer was sent: input is discarded until the connection closes
        self._unset_keepalive_if_required()
        view = memoryview(data)
        limit = self._limits.max_header_bytes
        while view and not self.transport.is_closing() and not self._lingering:
            was_bounded, sections_before = self._head_open or self._in_trailers, self._sections
            if was_bounded:
                # Never feed the parser past the limit: httptools buffers a header whole.
                room = limit - self._bounded_bytes
                piece, view = view[:room], view[room:]
            else:
                piece, view = view, view[len(view) :]
            if not self._feed(piece):
                return
            if self._head_open or self._in_trailers:
                if was_bounded and self._sections == sections_before:
                    self._bounded_bytes += len(piece)
                else:
                    # The section began inside the piece (a head behind a pipelined request, or
                    # trailers), so the piece was not cut to the limit: count what the parser
                    # handed over (short of the field still being read, which is counted with
                    # the next piece). A head that ended inside the piece is checked in
                    # on_headers_complete. Either way at most one read (256 KiB) is buffered.
                    self._bounded_bytes = self._head_seen if self._head_open else 0
                if self._bounded_bytes >= limit:
                    self._refuse_head()
                    return
        if self._head_open and self._head_started:
            # A head begun in this read and not yet complete: its time runs from now. A head read
            # whole in one go (nearly every request) never needs the timer it would have cost.
            self._arm_header_timer()
        if self.cycle is None or not self.cycle.response_complete or self.pipeline:
            return
        # The answer went out before its request ended (a 401, a 413). uvicorn armed its idle timer
        # when it did, and every byte since cancelled it: arm it again, or nothing would ever close
        # a connection that stops sending.
        if not self._head_open:  # the rest of the body: discarded as it comes
            self._arm_idle_timer(self._limits.body_timeout_seconds)
        elif not self._head_started:  # the body has ended: idle until the next request
            self._arm_idle_timer(self.timeout_keep_alive)

    def _arm_idle_timer(self, seconds: float) -> None:
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(seconds, self.timeout_keep_alive_handler)

    def _feed(self, piece: memoryview) -> bool:
        """Feed the parser as uvicorn does; False when the connection is done with."""
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no WebSocket routes: treated as uvicorn does
            return False
        except httptools.HttpParserError:
            if self._head_refused:
                self._refuse_head()
                return False
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return False
        return True

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True  # a later request on the connection: timed if its head is not read whole

    def on_url(self, url: bytes) -> None:
        self._head_seen += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_seen += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        # A head that began inside a piece was never bounded by the feeding; its size is known now
        # (target and headers; the rest of the request line is short). Raising stops the parser.
        if self._head_seen > self._limits.max_header_bytes:
            self._head_refused = True
            raise ValueError("request head over MAX_HEADER_BYTES")
        self._head_open = False
        self._cancel_header_timer()
        if self._over_capacity:
            self.app = _busy
        super().on_headers_complete()
        self.scope[ARRIVED_AT] = time.perf_counter()  # type: ignore[literal-required]
        self.cycle.transport = _HeadHoldingTransport(self.transport, self._heads)  # type: ignore[assignment]
        # Its task starts on the loop's next turn, and looks ``receive`` up then.
        self._body = PiecedBody(self.cycle)
        self.cycle.receive = self._body.receive  # type: ignore[method-assign]

    def on_chunk_header(self) -> None:
        self._in_trailers = True  # until this chunk's first byte: the last chunk has none
        self._bounded_bytes = 0
        self._sections += 1

    def on_body(self, body: bytes) -> None:
        self._in_trailers = False
        # As uvicorn's on_body, into the request's pieces (body_pieces.py) instead of a bytearray.
        if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
            return
        if self._body is not None:
            self._body.add(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_open, self._in_trailers, self._head_started = True, False, False
        self._bounded_bytes = self._head_seen = 0
        self._sections += 1

    def on_response_complete(self) -> None:
        self._flush_head()  # a bodiless answer's head goes before anything written for the next one
        if self._deferred is None or self.pipeline:  # requests queued before the refused one go first
            super().on_response_complete()
            return
        # The request in flight has its answer; the refused one after it gets its own now.
        self.server_state.total_requests += 1
        answer, self._deferred = self._deferred, None
        if not self.transport.is_closing():
            self._send_and_linger(answer)

    def _flush_head(self) -> None:
        if self.cycle is not None and isinstance(self.cycle.transport, _HeadHoldingTransport):
            self.cycle.transport.flush()

    # Answers written straight to the transport

    def send_400_response(self, msg: str) -> None:
        """The parser refused the request: the contract's JSON ``400``, not uvicorn's plain text."""
        self._answer_and_close(error_bytes(400, "invalid_request", "the request is not valid HTTP/1.1"))

    def _refuse_head(self) -> None:
        log.warning("request head or trailers over MAX_HEADER_BYTES (%d): 431", self._limits.max_header_bytes)
        what = "the request line and headers" if self._head_open else "the trailer fields"
        message = f"{what} exceed {self._limits.max_header_bytes} bytes"
        self._answer_and_close(error_bytes(431, "headers_too_large", message))

    def _answer_and_close(self, answer: bytes) -> None:
        self._cancel_header_timer()
        if self.transport.is_closing():
            return
        self._lingering = True  # whatever else the client sends is discarded
        if self.cycle is not None and not self.cycle.response_complete:
            if self.cycle.more_body:
                self.transport.close()  # the request in flight is broken too: it sees a disconnect
            else:
                self._deferred = answer  # a pipelined request: after the answer to the one before
            return
        self._send_and_linger(answer)

    def _send_and_linger(self, answer: bytes) -> None:
        self._flush_head()
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if not self.transport.is_reading():
            self.transport.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self._close)

    # Timers

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self._limits.header_timeout_seconds, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._head_open and not self.transport.is_closing():
            self.logger.debug("request headers not complete within HEADER_TIMEOUT_SECONDS: closing")
            self._close()

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()
