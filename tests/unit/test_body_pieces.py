"""A request body reaches the app whole and in order, kept as the parser's pieces; reading pauses
only while more than HIGH_WATER bytes wait for the app."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from drive.entrypoints.http.body_pieces import HIGH_WATER, PIECE_COST
from tests.unit.fake_transport import FakeTransport, connected

READ = 200 * 1024  # one socket read's worth


def serve(body: bytes, *, reads_before_app: int) -> tuple[list[bytes], FakeTransport]:
    """Send a PUT with ``body`` in READ-sized reads; the app runs after the first ``reads_before_app``."""
    received: list[bytes] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message["body"])
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def run() -> FakeTransport:
        with connected(app) as (protocol, transport):
            protocol.data_received(b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
            for number, start in enumerate(range(0, len(body), READ)):
                protocol.data_received(body[start : start + READ])
                if number + 1 >= reads_before_app:
                    for _ in range(5):  # the app's turn
                        await asyncio.sleep(0)
            for _ in range(20):
                await asyncio.sleep(0)
            assert transport.written.startswith(b"HTTP/1.1 204")
        return transport

    return received, asyncio.run(run())


def test_pieces_that_piled_up_are_received_joined_and_reading_paused_meanwhile() -> None:
    body = os.urandom(3 * READ + 7)
    assert 3 * READ > HIGH_WATER
    received, transport = serve(body, reads_before_app=4)
    assert b"".join(received) == body
    assert len(received[0]) == len(body)  # one message: everything that had arrived
    assert transport.paused >= 1 and transport.resumed >= 1


def test_an_app_that_keeps_up_gets_each_read_and_reading_never_pauses() -> None:
    body = os.urandom(5 * READ + 11)
    received, transport = serve(body, reads_before_app=1)
    assert b"".join(received) == body
    assert [len(piece) for piece in received if piece] == [READ] * 5 + [11]
    assert transport.paused == 0


def test_many_tiny_chunks_pause_reading_by_what_they_hold_not_only_their_bytes() -> None:
    # A chunked body of one-byte chunks: each is a piece of its own.
    tiny = HIGH_WATER // (1 + PIECE_COST) + 10
    received: list[bytes] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        received.append((await receive())["body"])

    async def run() -> None:
        with connected(app) as (protocol, transport):
            protocol.data_received(b"PUT /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            protocol.data_received(b"1\r\nx\r\n" * tiny)  # before the app has run
            paused = transport.paused
            for _ in range(10):
                await asyncio.sleep(0)
        assert paused == 1

    asyncio.run(run())
    assert received == [b"x" * tiny]
