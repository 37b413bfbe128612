"""The metrics layer records each backend call's outcome: ok, error (the backend's fault) or aborted (the caller's)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from drive import deferred_metrics
from drive.adapters.layers.faults import FaultPlan, FaultyBlobRepository
from drive.adapters.layers.metrics import MeteredBlobRepository
from drive.adapters.memory import InMemoryBlobRepository
from drive.domain.errors import StorageUnavailable

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def calls(backend: str, operation: str, outcome: str) -> float:
    deferred_metrics.apply_waiting()  # updates made on the event loop wait for their batch
    labels = {"backend": backend, "operation": operation, "outcome": outcome}
    return REGISTRY.get_sample_value("drive_backend_operation_duration_seconds_count", labels) or 0.0


async def chunks(*parts: bytes, then_fail: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if then_fail:
        raise ValueError("the client's body broke off")


async def test_each_call_is_counted_once_by_how_it_ended() -> None:
    inner = InMemoryBlobRepository("metered-outcomes", read_piece=2)
    plan = FaultPlan()
    metered = MeteredBlobRepository(FaultyBlobRepository(inner, plan))
    name = "metered-outcomes"

    await metered.write("k", chunks(b"abcd"))
    assert calls(name, "write", "ok") == 1
    assert b"".join([piece async for piece in metered.read("k")]) == b"abcd"
    assert calls(name, "read", "ok") == 1

    with pytest.raises(ValueError, match="broke off"):  # the caller's body failed: not the backend's fault
        await metered.write("k2", chunks(b"ab", then_fail=True))
    assert calls(name, "write", "aborted") == 1 and calls(name, "write", "error") == 0

    reader = metered.read("k")
    assert await anext(reader) == b"ab"
    await reader.aclose()  # the consumer stopped early
    assert calls(name, "read", "aborted") == 1

    assert await metered.read_whole("k", 3) == b"abc"  # a whole read is a read, its bytes counted
    assert calls(name, "read", "ok") == 2
    plan.fail("read", nth=None)  # and the faults layer's rules for reads apply to it
    with pytest.raises(StorageUnavailable):
        await metered.read_whole("k", 4)
    assert calls(name, "read", "error") == 1

    plan.fail("delete")
    with pytest.raises(StorageUnavailable):
        await metered.delete("k")
    assert calls(name, "delete", "error") == 1
    errors = {"backend": name, "operation": "delete", "error": "unavailable"}
    deferred_metrics.apply_waiting()
    assert REGISTRY.get_sample_value("drive_backend_operation_errors_total", errors) == 1
