"""Metric updates made on an event loop, applied to prometheus_client together.

prometheus_client takes a lock, and for a histogram walks its buckets, on every update; a small
request made four to six of them (HTTP count, duration and bytes; a backend call's duration and
bytes), a tenth of its instructions (bench/inproc.py under callgrind). Updates made on an event
loop are queued instead, and applied 10 ms later in one pass, summed per metric child (one
``inc`` per child and per histogram bucket). A scrape therefore reads them at most that late;
``/metrics`` applies what is waiting before it answers, and the server does as it stops. Off an
event loop (a worker thread, a command) an update is applied at once, and so is every update
of a multi-worker server (``PROMETHEUS_MULTIPROC_DIR`` set): a scrape answered by one worker
cannot apply another's waiting updates, and must still count every request finished before it.

A histogram's summed observations go straight to the child's sum and bucket values, as its own
``observe`` does one at a time; a prometheus_client without those falls back to ``observe``.
"""

from __future__ import annotations

import bisect
import collections
import os
import threading
from typing import Any

from drive.loop_batches import DueOnce

APPLY_SECONDS = 0.01
_AT_ONCE = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))  # read by each worker process as it starts

COUNTER, HISTOGRAM = 0, 1  # the kinds of update ``record`` takes

# (kind, child, amount): appended on a loop's thread, taken by whichever thread applies (both atomic).
_waiting: collections.deque[tuple[int, Any, float]] = collections.deque()
_applying = threading.Lock()


def inc(child: Any, amount: float = 1.0) -> None:
    """``child.inc(amount)`` for a counter's labelled child, applied with its batch."""
    _waiting.append((COUNTER, child, amount))
    _schedule()


def observe(child: Any, amount: float) -> None:
    """``child.observe(amount)`` for a histogram's labelled child, applied with its batch."""
    _waiting.append((HISTOGRAM, child, amount))
    _schedule()


def record(updates: list[tuple[int, Any, float]]) -> None:
    """Several updates at once, ``(COUNTER or HISTOGRAM, child, amount)`` each: one look at the schedule."""
    _waiting.extend(updates)
    _schedule()


def _schedule() -> None:
    if _AT_ONCE:
        apply_waiting()
    else:
        _apply_due.arm()


def apply_waiting() -> None:
    """Apply every queued update now (before a scrape, and as the server stops)."""
    with _applying:
        counters: dict[Any, float] = {}
        histograms: dict[Any, list[float]] = {}
        while _waiting:
            kind, child, amount = _waiting.popleft()
            if kind == COUNTER:
                counters[child] = counters.get(child, 0.0) + amount
            else:
                histograms.setdefault(child, []).append(amount)
        for child, total in counters.items():
            child.inc(total)
        for child, amounts in histograms.items():
            _observe_all(child, amounts)


_apply_due = DueOnce(APPLY_SECONDS, lambda _loop: apply_waiting(), apply_waiting)


def _observe_all(child: Any, amounts: list[float]) -> None:
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for amount in amounts:
            child.observe(amount)
        return
    # As Histogram.observe: an amount counts in the first bucket whose bound is >= it (the last is +Inf).
    for index, count in collections.Counter(bisect.bisect_left(bounds, amount) for amount in amounts).items():
        buckets[index].inc(count)
    total.inc(sum(amounts))
