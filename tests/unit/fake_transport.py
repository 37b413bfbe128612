"""A socket transport for driving the HTTP protocol in unit tests (keeps what is written, counts pauses), and a
connection made on it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from drive.entrypoints.http.wire import WireLimitedProtocol, WireLimits


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.writes: list[bytes] = []  # each write as it was made
        self._closing = False
        self.paused = 0
        self.resumed = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1


@contextlib.contextmanager
def connected(app: Any) -> Iterator[tuple[WireLimitedProtocol, FakeTransport]]:
    """A ``WireLimitedProtocol`` serving ``app`` on a FakeTransport (call inside a running loop)."""
    config = Config(app=app, log_config=None, lifespan="off")
    config.load()
    WireLimitedProtocol.limits = WireLimits(8192, 10.0, 10.0, 100)
    try:
        transport = FakeTransport()
        protocol = WireLimitedProtocol(config, ServerState(), {}, asyncio.get_running_loop())
        protocol.connection_made(transport)
        yield protocol, transport
        protocol.connection_lost(None)
    finally:
        WireLimitedProtocol.limits = None
