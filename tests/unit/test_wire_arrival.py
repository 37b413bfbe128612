"""The server stamps each request with the moment its headers had been read (reads reflect commits up to then)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from drive.entrypoints.http.wire import ARRIVED_AT, WireLimitedProtocol, WireLimits


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def test_each_request_on_a_connection_carries_when_its_headers_were_read() -> None:
    arrivals: list[tuple[float, float]] = []  # (stamp, when the app ran)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        arrivals.append((scope[ARRIVED_AT], time.perf_counter()))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def serve() -> list[float]:
        config = Config(app=app, log_config=None, lifespan="off")
        config.load()
        WireLimitedProtocol.limits = WireLimits(8192, 10.0, 10.0, 100)
        try:
            protocol = WireLimitedProtocol(config, ServerState(), {}, asyncio.get_running_loop())
            protocol.connection_made(_Transport())
            before = time.perf_counter()
            protocol.data_received(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(50):
                await asyncio.sleep(0)
            protocol.connection_lost(None)
            return [before]
        finally:
            WireLimitedProtocol.limits = None

    (before,) = asyncio.run(serve())
    assert len(arrivals) == 2
    for stamp, ran in arrivals:
        assert isinstance(stamp, float) and before <= stamp <= ran
