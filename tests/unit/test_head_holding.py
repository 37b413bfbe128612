"""A response's head waits for its body's first write, or for the event loop's next turn, never longer."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

from tests.unit.fake_transport import connected

REQUEST = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"


def start(status: int = 200, length: int = 2) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"%d" % length)]}


async def turns() -> None:
    """A few turns of the event loop: the apps run, and anything held for a next turn goes out."""
    for _ in range(5):
        await asyncio.sleep(0)


async def head_then_nothing(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app whose body never comes: only the next turn's flush sends its head."""
    await send(start())
    await asyncio.Event().wait()


def stop_the_apps() -> None:
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()


def test_a_small_answer_goes_out_in_one_write() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(start())
        await send({"type": "http.response.body", "body": b"ok"})

    async def serve() -> list[bytes]:
        with connected(app) as (protocol, transport):
            protocol.data_received(REQUEST)
            await turns()
            return transport.writes

    (write,) = asyncio.run(serve())
    assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b"\r\n\r\nok")


def test_a_head_whose_body_is_late_goes_out_on_the_next_turn_of_the_loop() -> None:
    body_may_go = asyncio.Event()
    seen_before_body: list[list[bytes]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(start())
        await body_may_go.wait()
        await send({"type": "http.response.body", "body": b"ok"})

    async def serve() -> list[bytes]:
        with connected(app) as (protocol, transport):
            protocol.data_received(REQUEST)
            await turns()
            seen_before_body.append(list(transport.writes))
            body_may_go.set()
            await turns()
            return transport.writes

    head, body = asyncio.run(serve())
    assert seen_before_body == [[head]]  # the head did not wait for the body
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n") and body == b"ok"


def test_heads_held_on_several_connections_in_one_turn_all_go_out() -> None:
    async def serve() -> list[list[bytes]]:
        with connected(head_then_nothing) as (first, one), connected(head_then_nothing) as (second, other):
            first.data_received(REQUEST)
            second.data_received(REQUEST)
            await turns()
            writes = [list(one.writes), list(other.writes)]
            stop_the_apps()
            return writes

    for writes in asyncio.run(serve()):
        assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


def test_an_event_loop_is_not_kept_alive_by_its_held_heads() -> None:
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(start(204, 0))
        await send({"type": "http.response.body", "body": b""})

    async def serve() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        with connected(app) as (protocol, _):
            protocol.data_received(REQUEST)
            await turns()

    asyncio.run(serve())
    gc.collect()
    assert loops[0]() is None


def test_a_connection_whose_held_head_cannot_be_written_does_not_hold_back_the_others() -> None:
    def broken(data: bytes | bytearray | memoryview) -> None:
        raise RuntimeError("the transport is broken")

    async def serve() -> list[bytes]:
        with connected(head_then_nothing) as (first, one), connected(head_then_nothing) as (second, other):
            one.write = broken  # type: ignore[method-assign]
            first.data_received(REQUEST)
            second.data_received(REQUEST)
            await turns()
            stop_the_apps()
            return list(other.writes)

    (head,) = asyncio.run(serve())
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
