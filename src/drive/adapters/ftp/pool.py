"""A bounded pool of logged-in FTP clients.

Any connection whose protocol state is in doubt (an error, a cancellation, a cut
transfer that did not resynchronise) is closed, never returned to the pool.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TypeVar

import aioftp
import anyio

from drive.adapters.ftp.connection import connect, looks_closed, tls_context
from drive.adapters.ftp.errors import LIBRARY_ERRORS
from drive.domain.errors import StorageUnavailable
from drive.settings import FtpSettings

# A pooled connection idle longer than this is checked with NOOP before reuse: servers
# and NAT boxes drop quiet control connections, often after sending a 421 we'd misread.
PING_AFTER_IDLE = 10.0

T = TypeVar("T")


@dataclass
class _Idle:
    client: aioftp.Client
    since: float


@dataclass
class Lease:
    """The connection one operation holds; ``FtpPool.start`` may swap a dead pooled one for a new one."""

    client: aioftp.Client
    reused: bool


class FtpPool:
    def __init__(self, settings: FtpSettings) -> None:
        if settings.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._settings = settings
        self._timeout = settings.timeout
        self._ssl_context: ssl.SSLContext | None = None
        self._slots = anyio.Semaphore(settings.pool_size)
        self._idle: list[_Idle] = []
        self._closed = False

    def reopen(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for entry in idle:
            # QUIT is a courtesy; the socket is closed regardless, and waited for so that
            # a loop shutting down right after close() does not leak it.
            with anyio.move_on_after(min(self._timeout, 2.0)), suppress(*LIBRARY_ERRORS):
                await entry.client.quit()
            entry.client.close()
            with anyio.move_on_after(1.0), suppress(*LIBRARY_ERRORS):
                await entry.client.stream.writer.wait_closed()

    async def connect(self) -> aioftp.Client:
        """A new logged-in client, outside the pool's count."""
        if self._settings.tls and self._ssl_context is None:
            self._ssl_context = tls_context(self._settings)
        return await connect(self._settings, self._ssl_context)

    @asynccontextmanager
    async def lease(self, *, bounded: bool = True) -> AsyncIterator[Lease]:
        """A logged-in client for one operation; closed rather than pooled if the operation fails.

        Waiting for a free connection and connecting are bounded by ``timeout`` so a dead
        server or an exhausted pool gives ``StorageUnavailable`` instead of a hang.
        """
        try:
            with anyio.fail_after(self._timeout if bounded else None):
                await self._slots.acquire()
        except TimeoutError:
            raise StorageUnavailable(
                f"all {self._settings.pool_size} FTP connections stayed busy for {self._timeout:g}s (FTP_POOL_SIZE)"
            ) from None
        try:
            lease = await self._checkout()
            try:
                yield lease
            except BaseException:
                lease.client.close()
                raise
            self.checkin(lease.client)
        finally:
            self._slots.release()

    async def start(self, lease: Lease, step: Callable[[aioftp.Client], Awaitable[T]]) -> T:
        """Run an operation's first exchange; a pooled connection found dead is replaced once.

        The checks in ``_checkout`` cannot see a hang-up still in flight (a server restarted a
        moment ago). Retrying is safe: nothing has been consumed from the caller yet and each
        first step (NOOP, SIZE, DELE, a transfer's start) can simply be repeated.
        """
        try:
            return await step(lease.client)
        except (ConnectionError, EOFError, aioftp.StatusCodeError) as exc:
            stale = not isinstance(exc, aioftp.StatusCodeError) or exc.received_codes[-1].matches("421")
            if not (lease.reused and stale):
                raise
        lease.client.close()
        lease.client, lease.reused = await self.connect(), False
        return await step(lease.client)

    def checkin(self, client: aioftp.Client) -> None:
        if self._closed or looks_closed(client) or len(self._idle) >= self._settings.pool_size:
            client.close()
        else:
            self._idle.append(_Idle(client, time.monotonic()))

    async def _checkout(self) -> Lease:
        while self._idle:
            entry = self._idle.pop()  # most recently used first: likeliest to be alive
            if looks_closed(entry.client):
                entry.client.close()
                continue
            if time.monotonic() - entry.since > PING_AFTER_IDLE:
                try:
                    with anyio.fail_after(min(self._timeout, 5.0)):
                        await entry.client.command("NOOP", "200")
                except LIBRARY_ERRORS:
                    entry.client.close()
                    continue
            return Lease(entry.client, reused=True)
        return Lease(await self.connect(), reused=False)
