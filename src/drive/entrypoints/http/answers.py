"""Small, finished answers (a blob read whole, a stored blob's record, a 304), sent as two ASGI messages.

Litestar turns a ``Response`` into its ASGI form on every request: a headers object is built,
each header validated and re-encoded, cookies and type encoders merged. For a 1 KiB read that
cost more than reading and verifying the blob (bench/inproc.py). ``Answer`` is still a
``Response`` to Litestar (it goes through the same handler path, after-request hooks and
exception handling), but its ASGI form is built once, from headers encoded here. Values come
from validated records (ids never appear in a header but percent-encoded in ``Location``),
and uvicorn checks every header it writes all the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Response
from litestar.types import Receive, Scope, Send

from drive.entrypoints.http.openapi import JSON

EncodedHeaders = Sequence[tuple[bytes, bytes]]


def encoded(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Headers as ASGI carries them: lowercase names, Latin-1 bytes."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


class _Sent:
    """The ASGI app of an ``Answer``: the start message and the body, nothing else."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: EncodedHeaders, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        body = b"" if scope.get("method") == "HEAD" else self.body  # HEAD: the headers of the GET
        await send({"type": "http.response.body", "body": body, "more_body": False})


class Answer(Response[bytes]):
    """``status`` with ``headers`` and ``body``; ``Content-Length`` is the body's unless given.

    ``media_type`` becomes ``Content-Type`` unless ``headers`` name one. A ``304`` (or
    ``204``) carries no body and no length of its own.
    """

    def __init__(
        self, body: bytes, *, status_code: int = 200, headers: dict[str, str] | None = None, media_type: str = JSON
    ) -> None:
        # Not Response.__init__: nothing of it is used, only ``to_asgi_response`` below.
        raw = encoded(headers or {})
        names = {name for name, _ in raw}
        if status_code not in (204, 304):
            if b"content-type" not in names:
                raw.append((b"content-type", media_type.encode("latin-1")))
            if b"content-length" not in names:
                raw.append((b"content-length", b"%d" % len(body)))
        self._set(status_code, raw, body)

    @classmethod
    def with_encoded(cls, body: bytes, headers: EncodedHeaders, *, status_code: int = 200) -> Answer:
        """An answer whose headers were encoded before (``encoded``), type and length among them.

        The same blob's raw answers share their headers (kept per record by the handlers).
        ASGI messages are never changed in place by the layers here (CORS copies a tuple).
        """
        answer = cls.__new__(cls)
        answer._set(status_code, headers, body)
        return answer

    def _set(self, status_code: int, headers: EncodedHeaders, body: bytes) -> None:
        self.status_code = status_code
        self.content = body
        self.background = None
        self._sent = _Sent(status_code, headers, body)

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> _Sent:  # type: ignore[override]
        return self._sent
