from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

import pytest

from drive.adapters.layers.faults import FaultPlan, FaultyBlobRepository
from drive.adapters.layers.metrics import MeteredBlobRepository
from drive.adapters.memory import InMemoryBlobRepository, InMemoryMetadataRepository
from drive.application.streams import single_chunk
from drive.domain.backends import Backends
from drive.domain.errors import StorageUnavailable
from drive.domain.model import BlobRecord, PendingKind, PendingOp, utc_now
from tests.unit.wiring import container_over

pytestmark = pytest.mark.anyio


Two = tuple[InMemoryMetadataRepository, InMemoryBlobRepository, InMemoryBlobRepository, Backends]


@pytest.fixture
def two() -> Two:
    old, new = InMemoryBlobRepository("old"), InMemoryBlobRepository("new")
    return InMemoryMetadataRepository(), old, new, Backends({"old": old, "new": new}, default="old")


async def test_migrate_moves_every_byte_and_empties_the_source(two: Two) -> None:
    metadata, old, new, backends = two
    service = container_over(metadata, backends).service()
    for n in range(12):
        await service.store(f"b{n}", single_chunk(f"bytes of {n}".encode() * 100))
    report = await service.migrate("new", concurrency=3)
    assert report.moved == 12 and report.complete
    assert not old.objects and len(new.objects) == 12
    assert not metadata.pending
    for n in range(12):
        record = await service.retrieve.stat(f"b{n}")
        assert record.backend == "new"
        assert await service.retrieve.read_all(record) == f"bytes of {n}".encode() * 100
    again = await service.migrate("new")
    assert again.moved == 0


async def test_migrate_leaves_corrupt_blobs_where_they_are(two: Two) -> None:
    metadata, old, new, backends = two
    service = container_over(metadata, backends).service()
    good = (await service.store("good", single_chunk(b"good"))).record
    bad = (await service.store("bad", single_chunk(b"bad!"))).record
    old.objects[bad.storage_key] = b"BAD!"
    report = await service.migrate("new")
    assert report.corrupt == ["bad"] and not report.complete
    assert (await service.retrieve.stat("bad")).backend == "old"
    assert (await service.retrieve.stat("good")).backend == "new"
    assert good.storage_key not in old.objects
    assert list(new.objects) == [(await service.retrieve.stat("good")).storage_key]
    assert not metadata.pending


async def test_fsck_reports_then_repairs_planted_problems(two: Two) -> None:
    metadata, old, _new, backends = two
    service = container_over(metadata, backends).service()
    for name in ("fine", "corrupt", "missing"):
        await service.store(name, single_chunk(name.encode() * 10))
    old.objects[(await service.retrieve.stat("corrupt")).storage_key] = b"garbage"
    del old.objects[(await service.retrieve.stat("missing")).storage_key]
    old.objects["f" * 32] = b"orphan"
    metadata.pending["e" * 32] = PendingOp("e" * 32, "old", "dead", PendingKind.STORE, utc_now() - timedelta(1))
    old.staged["e" * 32] = bytearray(b"half")

    check = service.check
    report = await check()
    assert [r.id for r in report.corrupt] == ["corrupt"]
    assert [r.id for r in report.missing] == ["missing"]
    assert report.orphans == [("old", "f" * 32)]
    assert [op.storage_key for op in report.interrupted] == ["e" * 32]
    assert report.problems == 4 and report.unrepaired == 4
    assert "f" * 32 in old.objects and "e" * 32 in metadata.pending  # checking changed nothing

    repaired = await check(repair=True)
    assert repaired.unrepaired == 0
    clean = await check()
    assert clean.problems == 0
    assert await service.retrieve.read_all(await service.retrieve.stat("fine")) == b"fine" * 10


async def test_fsck_reports_strangers_and_repair_leaves_them(two: Two) -> None:
    metadata, old, new, backends = two
    service = container_over(metadata, backends).service()
    await service.store("fine", single_chunk(b"fine"))
    old.objects["Z" * 32] = b"not ours"
    new.staged["notes.txt"] = bytearray(b"not ours")
    old.objects["f" * 32] = b"orphan"

    recovered = await service.recover()  # a stranger never reaches recovery's delete
    assert recovered.orphans_removed == 1 and "Z" * 32 in old.objects
    report = await service.check()
    assert report.strangers == [("old", "Z" * 32), ("new", "notes.txt")]
    assert report.problems == report.unrepaired == 2
    repaired = await service.check(repair=True)
    assert repaired.unrepaired == 2 and repaired.records_removed == []
    assert old.objects["Z" * 32] == b"not ours" and new.staged["notes.txt"] == b"not ours"
    assert await service.retrieve.read_all(await service.retrieve.stat("fine")) == b"fine"


async def test_layers_forward_strangers_and_a_failed_listing_is_an_unreachable_backend() -> None:
    inner = InMemoryBlobRepository("old")
    inner.objects["stray"] = b"not ours"
    plan = FaultPlan()
    faulty = FaultyBlobRepository(inner, plan)
    metered = MeteredBlobRepository(faulty)
    assert [name async for name in metered.list_strangers()] == ["stray"]
    service = container_over(InMemoryMetadataRepository(), Backends({"old": metered}, default="old")).service()
    plan.fail("list_strangers", nth=None)
    report = await service.check()
    assert report.unreachable_backends == ["old"] and report.strangers == []
    assert plan.calls["list_strangers"] == 2


async def test_a_move_whose_commit_answer_is_lost_keeps_the_copy_it_committed() -> None:
    old, new = InMemoryBlobRepository("old"), InMemoryBlobRepository("new")

    class RelocatesThenLosesTheAnswer(InMemoryMetadataRepository):
        async def relocate(self, record: BlobRecord, backend: str, storage_key: str, lease_until: datetime) -> bool:
            await super().relocate(record, backend, storage_key, lease_until)
            raise StorageUnavailable("metadata store unreachable (connection lost)")

    metadata = RelocatesThenLosesTheAnswer()
    service = container_over(metadata, Backends({"old": old, "new": new}, default="old")).service()
    await service.store("b", single_chunk(b"moved bytes"))
    with contextlib.suppress(StorageUnavailable):
        await service.migrate("new")
    record = await service.retrieve.stat("b")
    assert record.backend == "new"  # the move was committed: its copy stays
    assert await service.retrieve.read_all(record) == b"moved bytes"
