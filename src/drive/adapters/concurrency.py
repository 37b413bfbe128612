"""How use-cases run work at once: bounded fan-out on anyio (a ``FanOut``, see drive.application.fan_out),
and hashing in worker threads (an ``Offload``, see drive.application.streams)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

T = TypeVar("T")
Data = bytes | bytearray


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


# Below this a worker-thread hop costs more than the work (hashing) on the event loop.
_OFF_LOOP_MIN = 64 * 1024


def in_worker(work: Callable[[Data], T], data: Data) -> Awaitable[T]:
    """An ``Offload`` (drive.application.streams): ``work(data)``, already under way.

    Large data is worked on in a thread of the loop's executor, started now (hashlib lets go of
    the GIL), so that reading back or receiving the next piece overlaps it; small data at once.
    """
    loop = asyncio.get_running_loop()
    if len(data) >= _OFF_LOOP_MIN:
        return loop.run_in_executor(None, work, data)
    done: asyncio.Future[T] = loop.create_future()
    done.set_result(work(data))
    return done
