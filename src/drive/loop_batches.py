"""Work queued on an event loop and done together a moment later (access lines, metric updates)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class DueOnce:
    """Runs ``due(loop)`` once, ``delay`` seconds after the first ``arm`` on a running event loop.

    Arming again before then does nothing, unless the loop it was due on closed first (it never
    ran it): the next ``arm`` sets it due on its own loop. Armed off an event loop, ``at_once``
    runs instead: there is nothing to batch with.
    """

    __slots__ = ("_at_once", "_delay", "_due", "_due_on")

    def __init__(
        self, delay: float, due: Callable[[asyncio.AbstractEventLoop], None], at_once: Callable[[], None]
    ) -> None:
        self._delay = delay
        self._due = due
        self._at_once = at_once
        self._due_on: asyncio.AbstractEventLoop | None = None

    def arm(self) -> None:
        if self._due_on is not None and not self._due_on.is_closed():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._at_once()
            return
        self._due_on = loop
        loop.call_later(self._delay, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due_on = None
        self._due(loop)
