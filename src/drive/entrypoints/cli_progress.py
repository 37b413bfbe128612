"""A byte progress bar on standard error, drawn only when a person is watching.

Built on rich (already installed with Litestar): it redraws from its own thread, so the
event loop only bumps counters.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class TransferBar:
    """``with TransferBar("get x", total, enabled=...) as bar: bar.advance(n)``; a no-op when disabled."""

    def __init__(self, label: str, total: int | None, *, enabled: bool) -> None:
        self._label = label
        self._total = total
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,  # the command's own summary line replaces it
            )

    def __enter__(self) -> TransferBar:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(self._label, total=self._total)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, count: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, count)

    def relabel(self, label: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=label)
