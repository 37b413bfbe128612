"""Metric updates queued on an event loop reach prometheus_client as the same values, a batch later."""

from __future__ import annotations

import asyncio
import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from drive import deferred_metrics
from drive.deferred_metrics import COUNTER, HISTOGRAM

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 1.0)


def metrics() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("unit_things", "things", ["kind"], registry=registry)
    histogram = Histogram("unit_seconds", "seconds", ["kind"], buckets=BUCKETS, registry=registry)
    return registry, counter, histogram


def exposed(registry: CollectorRegistry) -> list[bytes]:
    """The scrape's lines, but for when each child was made."""
    return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]


def test_a_batch_applies_what_each_update_would_have() -> None:
    amounts = [random.choice([0.0, 0.005, 0.0051, 0.01, 0.3, 1.0, 7.5]) for _ in range(200)]
    direct, direct_counter, direct_histogram = metrics()
    for n, amount in enumerate(amounts):
        kind = "ab"[n % 2]
        direct_counter.labels(kind).inc(n)
        direct_histogram.labels(kind).observe(amount)
    batched, counter, histogram = metrics()

    async def serve() -> None:
        for n, amount in enumerate(amounts):
            kind = "ab"[n % 2]
            if n % 3:
                deferred_metrics.inc(counter.labels(kind), n)
                deferred_metrics.observe(histogram.labels(kind), amount)
            else:  # both at once, as a request's end does
                updates = [(COUNTER, counter.labels(kind), n), (HISTOGRAM, histogram.labels(kind), amount)]
                deferred_metrics.record(updates)
        assert histogram.labels("a")._sum.get() == 0  # queued on the loop, not yet applied
        await asyncio.sleep(deferred_metrics.APPLY_SECONDS * 5)  # the batch falls due

    asyncio.run(serve())
    assert exposed(batched) == exposed(direct)
    assert batched.get_sample_value("unit_seconds_count", {"kind": "a"}) == 100


def test_off_an_event_loop_an_update_is_applied_at_once() -> None:
    registry, counter, histogram = metrics()
    deferred_metrics.inc(counter.labels("a"), 2)
    deferred_metrics.record([(COUNTER, counter.labels("a"), 1)])
    deferred_metrics.observe(histogram.labels("a"), 0.02)
    assert registry.get_sample_value("unit_things_total", {"kind": "a"}) == 3
    assert registry.get_sample_value("unit_seconds_bucket", {"kind": "a", "le": "0.025"}) == 1
    assert registry.get_sample_value("unit_seconds_bucket", {"kind": "a", "le": "0.01"}) == 0


def test_a_waiting_batch_is_applied_on_demand() -> None:
    registry, counter, _ = metrics()

    async def scrape_soon() -> float | None:
        deferred_metrics.inc(counter.labels("a"))
        deferred_metrics.apply_waiting()  # as /metrics does before it answers
        return registry.get_sample_value("unit_things_total", {"kind": "a"})

    assert asyncio.run(scrape_soon()) == 1
