from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

import pytest

from drive.adapters.memory import InMemoryBlobRepository, InMemoryMetadataRepository
from drive.application.service import DriveService
from drive.application.streams import single_chunk
from drive.domain.backends import Backends
from drive.domain.errors import BlobNotFound, InvalidRequest, StorageUnavailable
from drive.domain.model import PendingKind, PendingOp, utc_now
from tests.unit.wiring import container_over

pytestmark = pytest.mark.anyio


def cut_off(
    metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository, numbers: range, ended: datetime
) -> None:
    """Uploads cut off midway: an intent per number, its lease ended at ``ended``, bytes half there."""
    for n in numbers:
        key = f"{n:032x}"
        metadata.pending[key] = PendingOp(key, blobs.name, f"cut-{n}", PendingKind.STORE, ended)
        blobs.objects[key] = b"partial"


async def test_delete_then_store_again(service: DriveService, blobs: InMemoryBlobRepository) -> None:
    await service.store("k", single_chunk(b"one"))
    await service.delete("k")
    assert not blobs.objects
    with pytest.raises(BlobNotFound):
        await service.retrieve.stat("k")
    with pytest.raises(BlobNotFound):
        await service.delete("k")
    assert (await service.store("k", single_chunk(b"two"))).created


async def test_list_pages_in_byte_order_without_repeats(service: DriveService) -> None:
    ids = ["b", "a", "a/b", "ab", "é", "Z", "a0", "a/"]
    for blob_id in ids:
        await service.store(blob_id, single_chunk(blob_id.encode()))
    seen: list[str] = []
    cursor = None
    while True:
        page = await service.list("", 3, cursor)
        seen += [r.id for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(ids, key=lambda i: i.encode())
    assert [r.id for r in (await service.list("a", 100)).items] == ["a", "a/", "a/b", "a0", "ab"]
    with pytest.raises(InvalidRequest):
        await service.list("", 0)
    with pytest.raises(InvalidRequest):
        await service.list("", 10, "!!not-a-cursor")


async def test_recovery_undoes_expired_ops_and_orphans_only(
    metadata: InMemoryMetadataRepository, blobs: InMemoryBlobRepository
) -> None:
    now = utc_now()
    service = container_over(metadata, Backends({"memory": blobs}, default="memory"), clock=lambda: now).service()
    kept = (await service.store("kept", single_chunk(b"keep"))).record
    # An upload whose process died: intent expired, bytes half there.
    metadata.pending["a" * 32] = PendingOp("a" * 32, "memory", "dead", PendingKind.STORE, now - timedelta(seconds=1))
    blobs.staged["a" * 32] = bytearray(b"half")
    # An upload still in flight elsewhere: must not be touched.
    metadata.pending["b" * 32] = PendingOp("b" * 32, "memory", "live", PendingKind.STORE, now + timedelta(seconds=30))
    blobs.staged["b" * 32] = bytearray(b"in flight")
    # Bytes nobody knows about.
    blobs.objects["c" * 32] = b"orphan"

    report = await service.recover()
    assert report.interrupted_removed == 1
    assert report.orphans_removed == 1
    assert set(blobs.objects) == {kept.storage_key}
    assert set(blobs.staged) == {"b" * 32}
    assert set(metadata.pending) == {"b" * 32}
    assert await service.retrieve.read_all(kept) == b"keep"


async def test_recovery_ends_an_expired_intent_durably_before_it_removes_the_bytes() -> None:
    # Its owner may be alive: an end that a database crash could undo would let that owner
    # commit over bytes already removed.
    events: list[tuple[str, bool]] = []

    class Metadata(InMemoryMetadataRepository):
        async def finish_all(self, storage_keys: Collection[str], *, durable: bool = False) -> None:
            events.append(("finish", durable))
            await super().finish_all(storage_keys, durable=durable)

    class Blobs(InMemoryBlobRepository):
        async def delete(self, key: str) -> None:
            events.append(("delete", True))
            await super().delete(key)

    now = utc_now()
    metadata, blobs = Metadata(), Blobs()
    service = container_over(metadata, Backends({"memory": blobs}, default="memory"), clock=lambda: now).service()
    metadata.pending["a" * 32] = PendingOp("a" * 32, "memory", "slow", PendingKind.STORE, now - timedelta(seconds=1))
    blobs.objects["a" * 32] = b"bytes"
    assert (await service.recover()).interrupted_removed == 1
    assert events == [("finish", True), ("delete", True)]


async def test_recovery_ends_a_backlog_of_intents_a_batch_per_transaction() -> None:
    # An outage can leave thousands of intents; one durable end each made recovery take minutes.
    batches: list[int] = []

    class Metadata(InMemoryMetadataRepository):
        async def finish_all(self, storage_keys: Collection[str], *, durable: bool = False) -> None:
            batches.append(len(storage_keys))
            await super().finish_all(storage_keys, durable=durable)

    now = utc_now()
    metadata, blobs = Metadata(), InMemoryBlobRepository()
    service = container_over(metadata, Backends({"memory": blobs}, default="memory"), clock=lambda: now).service()
    cut_off(metadata, blobs, range(1_200), now - timedelta(seconds=1))
    assert (await service.recover()).interrupted_removed == 1_200
    assert batches == [500, 500, 200]
    assert not metadata.pending and not blobs.objects


async def test_recovery_stops_calling_a_backend_that_stopped_answering() -> None:
    # Each call to a dead backend waits out its timeout; a batch of them would take hours.
    deletes: list[str] = []

    class Flaky(InMemoryBlobRepository):
        down = True

        async def delete(self, key: str) -> None:
            deletes.append(key)
            if self.down:
                raise StorageUnavailable("backend memory unreachable")
            await super().delete(key)

    now = utc_now()
    metadata, blobs = InMemoryMetadataRepository(), Flaky()
    service = container_over(metadata, Backends({"memory": blobs}, default="memory"), clock=lambda: now).service()
    cut_off(metadata, blobs, range(3), now - timedelta(seconds=1))
    report = await service.recover()
    assert len(deletes) == 1 and report.interrupted_removed == 0
    assert report.unreachable_backends == ["memory"]  # once, and its sweep waits too
    # The batch's intents were ended before the first call failed: its bytes are orphans now,
    # which the sweep removes once the backend answers.
    blobs.down = False
    assert (await service.recover()).orphans_removed == 3
    assert not blobs.objects


async def test_a_backend_that_stopped_answering_does_not_hold_up_the_others() -> None:
    # More expired intents on the silent backend than one batch holds, all older than the rest.
    class Down(InMemoryBlobRepository):
        async def delete(self, key: str) -> None:
            raise StorageUnavailable("backend down unreachable")

    now = utc_now()
    metadata, down, up = InMemoryMetadataRepository(), Down("down"), InMemoryBlobRepository("up")
    service = container_over(metadata, Backends({"down": down, "up": up}, default="up"), clock=lambda: now).service()
    cut_off(metadata, down, range(600), now - timedelta(minutes=2))
    cut_off(metadata, up, range(600, 605), now - timedelta(minutes=1))
    report = await service.recover()
    assert report.interrupted_removed == 5 and not up.objects
    assert report.unreachable_backends == ["down"]
    assert not metadata.pending and len(down.objects) == 600  # orphans for the sweep, once it answers


async def test_intents_of_a_backend_taken_out_of_the_settings_do_not_hold_up_the_others() -> None:
    # More of them than a batch holds, and all older than the configured backend's.
    now = utc_now()
    metadata, gone, up = InMemoryMetadataRepository(), InMemoryBlobRepository("gone"), InMemoryBlobRepository("up")
    service = container_over(metadata, Backends({"up": up}, default="up"), clock=lambda: now).service()
    cut_off(metadata, gone, range(600), now - timedelta(minutes=2))
    cut_off(metadata, up, range(600, 605), now - timedelta(minutes=1))
    report = await service.recover()
    assert report.interrupted_removed == 5 and not up.objects
    assert report.unreachable_backends == ["gone"]
    # Kept, bytes and intents, for a run that has the backend again.
    assert len(metadata.pending) == 600 and len(gone.objects) == 600
