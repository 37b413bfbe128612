"""A request body handed to the app as the parser's pieces, not copied through one buffer.

uvicorn's httptools protocol appends each piece the parser hands over to a ``bytearray`` and
gives the app ``bytes(buffer)``: two copies of every body byte on the event loop's thread,
beside the parser's own. A 1 GiB ``PUT`` spent about a second of that thread on them here. This
keeps the pieces in a list instead: an app ``receive`` that finds one piece gets it as it is,
and several are joined once.

Reading pauses while more than ``HIGH_WATER`` bytes wait for the app, as uvicorn's does past
64 KiB. Each pause and resume is a system call on the loop's thread; a socket read is at most
256 KiB, so with a limit above that a connection whose app keeps up is never paused, and one
whose app is busy holds at most the limit and one read. Each piece counts ``PIECE_COST`` bytes
more than its length: a chunked body of one-byte chunks is a piece per byte, and a list of
half a million of them would hold some 20 MiB for one connection.
"""

from __future__ import annotations

from typing import Any

from uvicorn._types import ASGIReceiveEvent

HIGH_WATER = 512 * 1024
PIECE_COST = 64  # about a small bytes object and its place in the list


class PiecedBody:
    """One request's unread body pieces and its ``receive`` (set as the uvicorn cycle's own)."""

    __slots__ = ("_cycle", "_pieces", "_size")

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle  # uvicorn's RequestResponseCycle
        self._pieces: list[bytes] = []
        self._size = 0

    def add(self, piece: bytes) -> None:
        """A piece from the parser (``on_body``): kept, and the app woken."""
        cycle = self._cycle
        self._pieces.append(piece)
        self._size += len(piece) + PIECE_COST
        if self._size > HIGH_WATER:
            cycle.flow.pause_reading()
        cycle.message_event.set()

    async def receive(self) -> ASGIReceiveEvent:
        """uvicorn's ``RequestResponseCycle.receive``, with the body from the pieces."""
        cycle = self._cycle
        if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
            cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        if not cycle.disconnected and not cycle.response_complete:
            cycle.flow.resume_reading()
            await cycle.message_event.wait()
            cycle.message_event.clear()
        if cycle.disconnected or cycle.response_complete:
            return {"type": "http.disconnect"}
        pieces = self._pieces
        body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._pieces, self._size = [], 0
        return {"type": "http.request", "body": body, "more_body": cycle.more_body}
