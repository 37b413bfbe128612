"""CORS for the origins in ``CORS_ALLOW_ORIGINS``: preflights answered before any route or token.

Litestar's own ``CORSConfig`` is close but breaks the contract in ways that matter here: it
answers a preflight from a refused origin with a plain-text ``400`` (every 4xx must carry the
JSON error body), sends the exposed and allowed headers to every origin, and leaves out
``Vary: Origin`` for refused ones (a shared cache could then serve a refused origin's answer
to an allowed one). This middleware is small and does exactly what the contract says.
"""

from __future__ import annotations

from collections.abc import Sequence

from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

ALLOW_METHODS = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
ALLOW_HEADERS = ", ".join(
    [
        "Accept",
        "Authorization",
        "Content-Type",
        "Content-Digest",
        "Range",
        "If-None-Match",
        # tus 1.0.0 (resumable uploads)
        "Tus-Resumable",
        "Upload-Length",
        "Upload-Offset",
        "Upload-Metadata",
        "Upload-Checksum",
        "Upload-Defer-Length",
        "Upload-Concat",
        "X-HTTP-Method-Override",
        "X-Request-ID",
    ]
)
EXPOSE_HEADERS = ", ".join(
    [
        "ETag",
        "Content-Length",
        "Content-Range",
        "Content-Disposition",
        "Last-Modified",
        "Accept-Ranges",
        "Location",
        "X-Request-ID",
        "Upload-Offset",
        "Upload-Length",
        "Upload-Expires",
        "Upload-Metadata",
        "Upload-Defer-Length",
        "Upload-Concat",
        "Tus-Resumable",
        "Tus-Version",
        "Tus-Extension",
        "Tus-Max-Size",
        "Tus-Checksum-Algorithm",
    ]
)
MAX_AGE_SECONDS = 3600  # browsers cap it lower (Chromium: 2 h): an upper bound on preflight caching


class Cors:
    """ASGI middleware: ``origins`` is ``("*",)`` or the exact origins allowed."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self._any = "*" in origins
        self._origins = frozenset(origins)

    def _allowed(self, origin: str) -> bool:
        return self._any or origin in self._origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        headers = Headers.from_scope(scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self._allowed(origin)
        preflight = scope.get("method") == "OPTIONS" and "access-control-request-method" in headers
        if preflight and allowed:
            await self._preflight(origin, send)
            return
        # Not allowed: the request runs as from anywhere else, and the browser keeps the answer from the page.
        await self.app(scope, receive, self._with_headers(send, origin if allowed else None))

    def _allow_origin(self, origin: str) -> list[tuple[bytes, bytes]]:
        if self._any:
            return [(b"access-control-allow-origin", b"*")]
        return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]

    async def _preflight(self, origin: str, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = [
            *self._allow_origin(origin),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
            (b"access-control-max-age", str(MAX_AGE_SECONDS).encode()),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _with_headers(self, send: Send, origin: str | None) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                if origin is not None:
                    for name, value in self._allow_origin(origin):
                        headers.add(name.decode(), value.decode("latin-1"))
                    headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
                elif not self._any:
                    headers.add("Vary", "Origin")  # the answer depends on the origin: caches must know
            await send(message)

        return wrapped
