"""The server stamps each request with the moment its headers had been read (reads reflect commits up to then)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from drive.entrypoints.http.wire import ARRIVED_AT, WireLimitedProtocol, WireLimits
from tests.unit.fake_transport import FakeTransport


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
            protocol.connection_made(FakeTransport())
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
