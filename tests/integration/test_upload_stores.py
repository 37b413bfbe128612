"""The two stores of resumable uploads, each against its real databases and directories.

* ``PieceStaging`` of the fs and db backends (db on SQLite, PostgreSQL and MariaDB): pieces
  of any size at any offset, an interrupted append's leftovers replaced, staged keys listed
  and deleted like any other, sealing idempotent.
* ``UploadRepository`` of every SQL metadata store (SQLite with group commit, PostgreSQL,
  MariaDB): one lock holder at a time, a lapsed lock taken over, a reclaimed intent, expiry.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from drive.adapters.metadata_store import sql_metadata_repository
from drive.application.streams import single_chunk
from drive.domain.model import PendingKind, Upload, utc_now, whole_seconds
from drive.domain.ports import PieceStaging
from drive.domain.storage_keys import new_storage_key
from tests.integration.backends import make_backend

pytestmark = pytest.mark.anyio
MIB = 1024 * 1024


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def cut(data: bytes) -> AsyncIterator[bytes]:
    yield data
    raise ConnectionResetError("client gone")


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


@pytest.mark.parametrize("param", ["fs", "db-sqlite", "db-postgres", "db-mariadb"])
async def test_piece_staging(param: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    backend = make_backend(request, param, tmp_path)
    repository = backend.repository()
    assert isinstance(repository, PieceStaging)
    await repository.open()
    try:
        key = new_storage_key()
        data = os.urandom(3 * MIB + 12345)
        state = await repository.begin_pieces(key)
        assert key in [k async for k in repository.list_keys()]
        offset = 0
        # Odd sizes, so pieces end inside the db backend's rows and the fs buffer.
        for end in (1000, MIB + 7, 2 * MIB + 1):
            written, state = await repository.append_piece(key, state, offset, pieces(data[offset:end], 65536))
            assert written == end - offset
            offset = end
        with pytest.raises(ConnectionResetError):  # an interrupted append leaves bytes past the offset
            await repository.append_piece(key, state, offset, cut(os.urandom(MIB + 3)))
        assert await collect(repository.read_pieces(key, state, offset)) == data[:offset]
        written, state = await repository.append_piece(key, state, offset, pieces(data[offset:], 300_000))
        assert written == len(data) - offset
        assert await collect(repository.read_pieces(key, state, len(data))) == data
        await repository.seal_pieces(key, state, len(data))
        await repository.seal_pieces(key, state, len(data))  # again, as after a crash
        assert await collect(repository.read(key)) == data
        assert await collect(repository.read(key, MIB - 5, MIB + 5)) == data[MIB - 5 : MIB + 5]
        assert [s async for s in repository.list_strangers()] == []

        abandoned = new_storage_key()
        state = await repository.begin_pieces(abandoned)
        await repository.append_piece(abandoned, state, 0, single_chunk(b"half"))
        await repository.delete(abandoned)  # as recovery does for an expired upload
        assert abandoned not in [k async for k in repository.list_keys()]
    finally:
        await repository.close()


@pytest.fixture
async def uploads_store(metadata_url: str) -> AsyncIterator[object]:
    store = sql_metadata_repository(metadata_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def new_upload(now_offset: timedelta = timedelta()) -> Upload:
    now = whole_seconds(utc_now()) + now_offset
    return Upload(
        id=os.urandom(12).hex(),
        blob_id="ü/upload",
        backend="fs",
        storage_key=new_storage_key(),
        length=10,
        offset=0,
        state="",
        content_type="text/plain",
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )


async def test_upload_rows(uploads_store: object) -> None:
    from drive.adapters.sql_metadata import SqlMetadataRepository

    assert isinstance(uploads_store, SqlMetadataRepository)
    store = uploads_store
    upload = new_upload()
    await store.create_upload(upload)
    assert await store.get_upload(upload.id) == upload
    (intent,) = [
        op
        for op in await store.expired(upload.expires_at + timedelta(seconds=1), 1000)
        if op.storage_key == upload.storage_key
    ]
    assert (intent.kind, intent.blob_id) == (PendingKind.STORE, "ü/upload")

    now = utc_now()
    later = now + timedelta(hours=2)
    # Many claimants at once (as many requests, or processes): exactly one takes the lock.
    winners: list[str] = []

    async def claim(owner: str) -> None:
        if await store.claim_upload(upload.id, owner, now, now + timedelta(seconds=60), later) is not None:
            winners.append(owner)

    async with anyio.create_task_group() as tasks:
        for n in range(8):
            tasks.start_soon(claim, f"owner-{n}")
    assert len(winners) == 1
    owner = winners[0]
    held = await store.get_upload(upload.id)
    assert held is not None and held.lock_owner == owner
    assert whole_seconds(held.expires_at) == whole_seconds(later)
    assert not await store.advance_upload(upload.id, "someone-else", 4, "x")
    assert await store.advance_upload(upload.id, owner, 4, "state-4")
    assert await store.renew_upload_lock(upload.id, owner, now + timedelta(seconds=90))
    # A holder that died: after its lock's end, another takes over.
    assert await store.claim_upload(upload.id, "next", now + timedelta(seconds=60), now, later) is None
    taken = await store.claim_upload(upload.id, "next", now + timedelta(seconds=91), now + timedelta(minutes=5), later)
    assert taken is not None and (taken.offset, taken.state) == (4, "state-4")
    await store.release_upload(upload.id, owner)  # no longer the holder: changes nothing
    assert (await store.get_upload(upload.id)).lock_owner == "next"  # type: ignore[union-attr]
    await store.release_upload(upload.id, "next", completed=True)
    done = await store.get_upload(upload.id)
    assert done is not None and done.completed and done.lock_owner is None

    # Expired, the claim fails; once its intent is finished the row is forgotten.
    assert await store.claim_upload(upload.id, "late", later + timedelta(seconds=1), later, later) is None
    assert await store.forget_expired_uploads(later + timedelta(seconds=1), 100) == 0  # the intent is still there
    await store.finish(upload.storage_key)
    assert await store.forget_expired_uploads(later + timedelta(seconds=1), 100) == 1
    assert await store.get_upload(upload.id) is None


async def test_a_reclaimed_intent_is_not_claimed(uploads_store: object) -> None:
    from drive.adapters.sql_metadata import SqlMetadataRepository

    assert isinstance(uploads_store, SqlMetadataRepository)
    store = uploads_store
    upload = new_upload()
    await store.create_upload(upload)
    await store.finish(upload.storage_key)  # recovery took it
    now = utc_now()
    assert await store.claim_upload(upload.id, "o", now, now + timedelta(seconds=60), now + timedelta(hours=1)) is None
    assert (await store.get_upload(upload.id)).lock_owner is None  # type: ignore[union-attr]  # rolled back
    listed = [u.id for u in await store.uploads_page(None, 1000)]
    assert upload.id in listed
    await store.remove_upload(upload.id)
    assert await store.get_upload(upload.id) is None
