"""Bounded fan-out on anyio, for use-cases that take a ``FanOut`` (see drive.application.fan_out)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

T = TypeVar("T")


async def bounded_fan_out(items: AsyncIterable[T], work: Callable[[T], Awaitable[None]], concurrency: int) -> None:
    """Run ``work`` on each item, ``concurrency`` at a time; items are pulled only as workers free up.

    The first failure stops the feed and every worker, and is raised bare (not wrapped in
    an ExceptionGroup) once the work in flight has ended.
    """
    failures: list[Exception] = []
    send, receive = anyio.create_memory_object_stream[T](concurrency)
    async with anyio.create_task_group() as tasks:

        async def worker(queue: MemoryObjectReceiveStream[T]) -> None:
            try:
                async with queue:
                    async for item in queue:
                        await work(item)
            except Exception as exc:
                failures.append(exc)
                tasks.cancel_scope.cancel()

        for _ in range(concurrency):
            tasks.start_soon(worker, receive.clone())
        receive.close()
        try:
            async with send:
                async for item in items:
                    await send.send(item)
        except Exception as exc:
            failures.append(exc)
            tasks.cancel_scope.cancel()
    if failures:
        raise failures[0]
