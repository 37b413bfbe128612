"""The server stamps each request with the moment its headers had been read (reads reflect commits up to then)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from drive.entrypoints.http.wire import ARRIVED_AT
from tests.unit.fake_transport import connected


def test_each_request_on_a_connection_carries_when_its_headers_were_read() -> None:
    arrivals: list[tuple[float, float]] = []  # (stamp, when the app ran)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        arrivals.append((scope[ARRIVED_AT], time.perf_counter()))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def serve() -> list[float]:
        with connected(app) as (protocol, _):
            before = time.perf_counter()
            protocol.data_received(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(50):
                await asyncio.sleep(0)
        return [before]

    (before,) = asyncio.run(serve())
    assert len(arrivals) == 2
    for stamp, ran in arrivals:
        assert isinstance(stamp, float) and before <= stamp <= ran
