"""A failure at every step of the commit protocol, on every backend.

Each scenario injects one fault (or a crash: a fault plus a cleanup that never runs)
through the fault layer, then checks the contract's promises: no visible blob, no
orphaned bytes once recovery has run, and a later store of the same id succeeds.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import pytest
from dependency_injector import providers

from drive.adapters.layers.faults import FaultPlan, FaultyBlobRepository, FaultyMetadataRepository, InjectedFault
from drive.application.commit_protocol import all_records
from drive.application.service import DriveService
from drive.domain.backends import Backends
from drive.domain.errors import BlobNotFound, DriveError
from drive.domain.model import utc_now
from tests.integration.backends import BackendUnderTest

pytestmark = pytest.mark.anyio
LEASE = timedelta(seconds=30)


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utc_now() + self.offset


@dataclass
class Harness:
    service: DriveService
    plan: FaultPlan
    clock: Clock

    async def recover_later(self) -> None:
        """Recovery as a process would run it once every lease of the crashed one has ended."""
        self.plan.clear()
        self.clock.offset += LEASE * 2
        await self.service.recover()

    async def assert_clean(self, blob_id: str) -> None:
        with pytest.raises(BlobNotFound):
            await self.service.retrieve.stat(blob_id)
        await self.recover_later()
        keys = {key async for key in self.service.backends.default.list_keys()}
        assert keys == {record.storage_key async for record in all_records(self.service.metadata)}
        assert await self.service.metadata.expired(datetime.max.replace(tzinfo=self.clock().tzinfo), 10) == []
        data = os.urandom(70_000)
        assert (await self.service.store(blob_id, body(data))).created
        assert await self.service.retrieve.read_all(await self.service.retrieve.stat(blob_id)) == data


@pytest.fixture
async def harness(backend: BackendUnderTest) -> AsyncIterator[Harness]:
    container = backend.container()
    plan = FaultPlan()
    clock = Clock()
    # The fault layer goes around the adapters the container built; everything above it is the container's.
    metadata = FaultyMetadataRepository(container.metadata(), plan)
    repository = FaultyBlobRepository(container.blob_repositories(backend.storage), plan)
    container.metadata.override(providers.Object(metadata))
    container.backends.override(providers.Object(Backends({backend.storage: repository}, backend.storage)))
    container.lease.override(providers.Object(LEASE))
    container.clock.override(providers.Object(clock))
    service = container.service()
    await service.open()
    try:
        yield Harness(service, plan, clock)
    finally:
        await service.close()


async def body(data: bytes, size: int = 16 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


# Each step: how to arrange the fault. "crash" also fails the cleanup that would follow,
# as if the process had died right there, leaving the work to recovery.
STORE_FAULTS: dict[str, Callable[[FaultPlan], object]] = {
    "intent": lambda plan: plan.fail("begin"),
    "write-start": lambda plan: plan.fail("write"),
    "write-mid-stream": lambda plan: plan.fail("write", after_bytes=100_000),
    "write-mid-stream-crash": lambda plan: plan.fail("write", after_bytes=100_000).fail("delete").fail("finish"),
    "commit": lambda plan: plan.fail("commit"),
    "commit-crash": lambda plan: plan.fail("commit").fail("delete").fail("finish"),
    "cleanup-finish": lambda plan: plan.fail("commit").fail("finish"),
}


@pytest.mark.parametrize("step", list(STORE_FAULTS))
async def test_store_fault(harness: Harness, step: str) -> None:
    blob_id = f"store-{step}"
    STORE_FAULTS[step](harness.plan)
    with pytest.raises(InjectedFault):
        await harness.service.store(blob_id, body(os.urandom(300_000)))
    await harness.assert_clean(blob_id)


async def test_store_hangs_mid_stream_and_is_abandoned(harness: Harness) -> None:
    harness.plan.hang("write", after_bytes=50_000)
    with anyio.move_on_after(1) as scope:
        await harness.service.store("store-hang", body(os.urandom(300_000)))
    assert scope.cancelled_caught
    await harness.assert_clean("store-hang")


async def test_store_hangs_at_commit_and_is_abandoned(harness: Harness) -> None:
    harness.plan.hang("commit")
    with anyio.move_on_after(1) as scope:
        await harness.service.store("commit-hang", body(os.urandom(300_000)))
    assert scope.cancelled_caught
    await harness.assert_clean("commit-hang")


async def test_slow_upload_whose_lease_was_reclaimed_cannot_commit(harness: Harness) -> None:
    """A store stalled past its lease loses it to recovery, and then may not commit."""
    reclaimed = anyio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await reclaimed.wait()
        yield b"y" * 1000

    async def store() -> None:
        with pytest.raises(DriveError):
            await harness.service.store("reclaimed", stalled())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(store)
        await anyio.sleep(0.5)
        harness.clock.offset += LEASE * 2
        await harness.service.recover()
        reclaimed.set()
    await harness.assert_clean("reclaimed")


@pytest.mark.parametrize(
    ("step", "arrange", "visible_after"),
    [
        ("remove", lambda plan: plan.fail("remove"), True),
        ("bytes", lambda plan: plan.fail("delete"), False),
        ("bytes-crash", lambda plan: plan.fail("delete").fail("finish"), False),
        ("finish", lambda plan: plan.fail("finish"), False),
    ],
)
async def test_delete_fault(
    harness: Harness, step: str, arrange: Callable[[FaultPlan], object], visible_after: bool
) -> None:
    blob_id = f"delete-{step}"
    data = os.urandom(50_000)
    await harness.service.store(blob_id, body(data))
    arrange(harness.plan)
    try:
        await harness.service.delete(blob_id)
    except InjectedFault:
        assert visible_after
    if visible_after:  # the delete failed before anything changed: the blob is whole
        assert await harness.service.retrieve.read_all(await harness.service.retrieve.stat(blob_id)) == data
        harness.plan.clear()
        await harness.service.delete(blob_id)
    await harness.assert_clean(blob_id)


async def test_read_fault_is_unavailable_not_corrupt_data(harness: Harness) -> None:
    data = os.urandom(200_000)
    record = (await harness.service.store("read-fault", body(data))).record
    harness.plan.fail("read", after_bytes=1000)
    with pytest.raises(InjectedFault):
        await harness.service.retrieve.read_all(record)
    harness.plan.clear()
    assert await harness.service.retrieve.read_all(record) == data
