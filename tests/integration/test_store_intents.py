"""A store's metadata steps (``begin_store``, ``commit``) on every metadata store, and the unit tests' fake.

A store's first step: the STORE intent, unless the id is committed already, in which case
nothing is recorded and the committed record comes back (the store then only replays or
refuses). SQLite makes the check and the intent one statement of its group commit,
PostgreSQL one statement on asyncpg, MariaDB a lookup and then the intent. Then the commit:
the first of two for one id wins, and a commit whose intent is gone changes nothing. All
must answer alike.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from drive.adapters.memory import InMemoryMetadataRepository
from drive.adapters.metadata_store import sql_metadata_repository
from drive.domain.errors import StorageUnavailable
from drive.domain.model import BlobRecord, CommitOutcome, PendingKind, PendingOp, utc_now, whole_seconds
from drive.domain.ports import MetadataRepository
from drive.domain.storage_keys import new_storage_key

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgres", "mariadb", "memory"])
async def metadata(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataRepository]:
    store: MetadataRepository
    if request.param == "memory":
        store = InMemoryMetadataRepository()
    elif request.param == "sqlite":
        store = sql_metadata_repository(f"sqlite:///{tmp_path / 'metadata.db'}")  # with group commit
    else:
        factory: Callable[[], str] = request.getfixturevalue(f"{request.param}_url_factory")
        store = sql_metadata_repository(factory())
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def intent(blob_id: str) -> PendingOp:
    return PendingOp(new_storage_key(), "fs", blob_id, PendingKind.STORE, utc_now() + timedelta(seconds=60))


async def pending_keys(metadata: MetadataRepository) -> set[str]:
    # Every intent has expired by then: the listing of expired ones is the listing of all.
    return {op.storage_key for op in await metadata.expired(utc_now() + timedelta(days=1), 1000)}


async def test_a_new_id_gets_its_intent(metadata: MetadataRepository) -> None:
    op = intent(f"new/{os.urandom(6).hex()}")
    assert await metadata.begin_store(op) is None
    assert op.storage_key in await pending_keys(metadata)
    assert await metadata.get(op.blob_id) is None


async def test_a_committed_id_gets_its_record_back_and_no_intent(metadata: MetadataRepository) -> None:
    blob_id = f"taken/{os.urandom(6).hex()}"
    first = intent(blob_id)
    assert await metadata.begin_store(first) is None
    record = BlobRecord(
        blob_id, 3, "ab" * 32, whole_seconds(utc_now()), "fs", first.storage_key, content_type="text/plain"
    )
    assert (await metadata.commit(record)).created

    second = intent(blob_id)
    assert await metadata.begin_store(second) == record
    assert second.storage_key not in await pending_keys(metadata)

    removed = await metadata.remove(blob_id, utc_now() + timedelta(seconds=60))
    assert removed == record
    third = intent(blob_id)  # the id is free again once its record is gone
    assert await metadata.begin_store(third) is None
    assert third.storage_key in await pending_keys(metadata)


def record_of(op: PendingOp, data: bytes = b"abc") -> BlobRecord:
    return BlobRecord(
        op.blob_id, len(data), hashlib.sha256(data).hexdigest(), whole_seconds(utc_now()), "fs", op.storage_key
    )


async def test_of_two_commits_of_one_id_the_first_wins_and_the_other_gets_its_record(
    metadata: MetadataRepository,
) -> None:
    blob_id = f"race/{os.urandom(6).hex()}"
    first, second = intent(blob_id), intent(blob_id)
    assert await metadata.begin_store(first) is None
    assert await metadata.begin_store(second) is None  # neither committed yet: both stage their bytes
    winner = record_of(first)
    assert await metadata.commit(winner) == CommitOutcome(winner, created=True)
    lost = await metadata.commit(record_of(second, b"other"))
    assert lost == CommitOutcome(winner, created=False)
    assert second.storage_key in await pending_keys(metadata)  # the loser's intent stands until it discards
    assert await metadata.get(blob_id) == winner


async def test_a_commit_whose_intent_is_gone_is_refused_and_changes_nothing(metadata: MetadataRepository) -> None:
    op = intent(f"lapsed/{os.urandom(6).hex()}")
    assert await metadata.begin_store(op) is None
    await metadata.finish(op.storage_key, durable=True)  # as recovery does once the lease has ended
    with pytest.raises(StorageUnavailable, match="lease was lost"):
        await metadata.commit(record_of(op))
    assert await metadata.get(op.blob_id) is None


async def test_expired_intents_come_oldest_first_and_of_the_backends_asked_for(metadata: MetadataRepository) -> None:
    now = utc_now()
    ops = [
        PendingOp(new_storage_key(), backend, f"cut-{n}", PendingKind.STORE, now - timedelta(seconds=10 - n))
        for n, backend in enumerate(["gone", "fs", "gone", "s3", "fs"])
    ]
    for op in ops:
        await metadata.begin(op)
    await metadata.begin(PendingOp(new_storage_key(), "fs", "alive", PendingKind.STORE, now + timedelta(seconds=60)))
    keys = [op.storage_key for op in ops]

    def expired_keys(found: list[PendingOp]) -> list[str]:
        return [op.storage_key for op in found]

    assert expired_keys(await metadata.expired(now, 10)) == keys
    assert expired_keys(await metadata.expired(now, 2)) == keys[:2]
    assert expired_keys(await metadata.expired(now, 10, ["fs", "s3"])) == [keys[1], keys[3], keys[4]]
    assert expired_keys(await metadata.expired(now, 1, ["s3"])) == [keys[3]]
    assert await metadata.expired(now, 10, []) == []
