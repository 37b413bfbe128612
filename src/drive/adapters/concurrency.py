"""How use-cases run work at once: bounded fan-out on anyio (a ``FanOut``, see drive.application.fan_out),
and chunk hashing in worker threads (a ``Digester``, see drive.application.streams)."""

from __future__ import annotations

import asyncio
import hashlib
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


# Below this a worker-thread hop costs more than hashing on the event loop.
_HASH_OFF_LOOP_MIN = 64 * 1024


def sha256_in_worker(chunk: bytes) -> Awaitable[bytes]:
    """A ``Digester`` (drive.application.streams): the chunk's SHA-256, already being worked out.

    Large chunks are hashed in a worker thread (hashlib lets go of the GIL), started now: a
    stream that reads back chunks sends the last one while this one is hashed.
    """
    loop = asyncio.get_running_loop()
    if len(chunk) >= _HASH_OFF_LOOP_MIN:
        return loop.run_in_executor(None, _sha256, chunk)
    done = loop.create_future()
    done.set_result(_sha256(chunk))
    return done


def _sha256(chunk: bytes) -> bytes:
    return hashlib.sha256(chunk).digest()
