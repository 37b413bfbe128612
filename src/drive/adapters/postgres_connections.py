"""asyncpg connections for PostgreSQL's hot path: point reads and a store's two writes.

asyncpg's own pool costs about 150 µs of event-loop CPU per use, three times the query it
wraps (measured on the build machine, one query at a time: ``pool.fetchrow`` 194 to 245 µs of
CPU per call against 53 to 74 µs for ``Connection.fetchrow``). Its release runs as a task of its own under
``asyncio.shield`` with a reset step and an idle timer, so each query takes several turns of
the loop. These statements need none of that: each is one autocommit statement or one
short transaction, and leaves no session state behind. So connections are kept in a free
list, at most ``size`` of them open or in use:

- a connection is taken from the list, or opened when the list is empty;
- it goes back only if its last use ended cleanly: no exception, or one the server answered
  or the caller raised between statements (the exchange was complete), and it is neither in a
  transaction nor closed. After a cancellation, a timeout or a lost connection it is
  terminated, since its protocol may be mid-exchange;
- ``expire()`` (after a dropped connection, whose siblings are likely gone too) and ``close()``
  end the idle ones at once and those in use as they come back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

Connect = Callable[[], Awaitable[Any]]


class PostgresConnections:
    def __init__(self, connect: Connect, size: int) -> None:
        self._connect = connect
        self._size = size
        # A semaphore binds to the loop of its first wait: a new one after close(), as the
        # connections themselves belong to one loop. A lease gives back the one it took from.
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Any] = []
        self._in_use: set[Any] = set()
        self._retired: set[Any] = set()  # in use when expired or closed: ended on their way back

    def connection(self) -> _Lease:
        """``async with connections.connection() as conn``: a connection for one use."""
        return _Lease(self)

    async def _take(self) -> tuple[Any, asyncio.Semaphore]:
        slots = self._slots
        await slots.acquire()
        try:
            while self._idle:
                conn = self._idle.pop()
                if not conn.is_closed():
                    break
            else:
                conn = await self._connect()
        except BaseException:
            slots.release()
            raise
        self._in_use.add(conn)
        return conn, slots

    def _give_back(self, conn: Any, slots: asyncio.Semaphore, exc: BaseException | None) -> None:
        slots.release()
        self._in_use.discard(conn)
        if conn in self._retired:
            self._retired.discard(conn)
            conn.terminate()
        elif _reusable(conn, exc):
            self._idle.append(conn)
        else:
            conn.terminate()

    def expire(self) -> None:
        """End every connection: the idle ones now, those in use when they come back."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.terminate()
        self._retired |= self._in_use

    async def close(self) -> None:
        """Close the idle connections politely (terminated if that takes over 5 s); retire the rest.

        Usable again afterwards, with fresh connections (as a disposed engine is); until the
        retired ones come back, they are not counted against ``size``.
        """
        idle, self._idle = self._idle, []
        self._retired |= self._in_use
        self._slots = asyncio.Semaphore(self._size)
        for conn in idle:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:
                conn.terminate()


class _Lease:
    """A class, not ``@asynccontextmanager``: a generator and its frames on every query cost more."""

    __slots__ = ("_conn", "_connections", "_slots")

    def __init__(self, connections: PostgresConnections) -> None:
        self._connections = connections

    async def __aenter__(self) -> Any:
        self._conn, self._slots = await self._connections._take()
        return self._conn

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._connections._give_back(self._conn, self._slots, exc)


def _reusable(conn: Any, exc: BaseException | None) -> bool:
    import asyncpg

    try:
        if conn.is_closed() or conn.is_in_transaction():
            return False
    except Exception:
        return False
    if exc is None:
        return True
    interrupted = (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    return isinstance(exc, Exception) and not isinstance(exc, interrupted)
