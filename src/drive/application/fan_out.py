"""How a use-case runs many independent steps: a callable the composition root supplies.

Use-cases stay free of any async runtime; ``sequentially`` is the plain default, and the
container (drive.container) supplies ``drive.adapters.concurrency.bounded_fan_out``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, Protocol


class FanOut(Protocol):
    async def __call__(
        self, items: AsyncIterable[Any], work: Callable[[Any], Awaitable[None]], concurrency: int
    ) -> None: ...


async def sequentially(items: AsyncIterable[Any], work: Callable[[Any], Awaitable[None]], concurrency: int) -> None:
    """One item at a time, whatever ``concurrency`` says."""
    async for item in items:
        await work(item)
