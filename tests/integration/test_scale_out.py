"""Two ``drive serve`` processes sharing one metadata store (PostgreSQL or MariaDB) and one S3 bucket (moto).

* Racing one id across both processes: exactly one ``201``; every other writer gets
  ``409`` (different bytes) or ``200`` (same bytes), and both processes then serve the
  winner's bytes. The losers' staged bytes are gone.
* Recovery running over and over in other processes never undoes a store still in
  flight: a slow upload outlives its lease many times over, renews it as bytes flow,
  commits, and reads back exactly.
* Two interleavings of the commit protocol forced deterministically (two services
  in-process on the same stores): a commit landing while another process's recovery
  reclaims the expired intent, and a commit landing in the middle of another process's
  orphan sweep. Neither may leave an acknowledged blob without its bytes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.util import await_only

from drive.adapters.sql_metadata import SqlMetadataRepository
from drive.application.service import DriveService
from drive.application.streams import single_chunk
from drive.domain.errors import StorageUnavailable
from drive.domain.model import BlobRecord, CommitOutcome
from tests.integration.backends import BackendUnderTest, make_backend
from tests.integration.live import AUTH, ServerProcess

pytestmark = pytest.mark.anyio

RACERS = 40
RAW = {"Accept": "application/octet-stream"}
OCTETS = {"Content-Type": "application/octet-stream"}


@dataclass
class Shared:
    """One metadata database and one bucket, as every process of a deployment sees them."""

    backend: BackendUnderTest
    env: dict[str, str]
    root: Path

    def container_service(self, **extra: str) -> DriveService:
        return self.backend.container(DATABASE_URL=self.env["DATABASE_URL"], **extra).service()


@pytest.fixture(params=["postgres", "mariadb"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Shared:
    backend = make_backend(request, "s3-path", tmp_path)
    database_url: Callable[[], str] = request.getfixturevalue(f"{request.param}_url_factory")
    env = {**backend.env, "DATABASE_URL": database_url()}
    return Shared(backend, env, tmp_path)


@pytest.fixture
def start_pair(shared: Shared) -> Iterator[Callable[..., tuple[ServerProcess, ServerProcess]]]:
    """Start two server processes on the shared stores; both are killed at the end."""
    started: list[ServerProcess] = []

    def start(**extra: str) -> tuple[ServerProcess, ServerProcess]:
        pair = (
            ServerProcess({**shared.env, **extra}, shared.root),
            ServerProcess({**shared.env, **extra}, shared.root),
        )
        started.extend(pair)
        for server in pair:
            server.start(wait=False)
        for server in pair:
            server.wait_ready()
        return pair

    yield start
    for server in started:
        server.kill()


@pytest.fixture
async def inspector(shared: Shared) -> AsyncIterator[DriveService]:
    """This test's own view of the shared stores, to inspect them and to run recovery."""
    service = shared.container_service(UPLOAD_LEASE_SECONDS="2")
    await service.open()
    try:
        yield service
    finally:
        await service.close()


async def assert_storage_is_exact(service: DriveService) -> list[BlobRecord]:
    """No intents left, no orphans, and the bucket holds exactly the committed keys."""
    assert await service.metadata.expired(datetime.now(UTC) + timedelta(days=1), 100) == []
    assert (await service.recover(repair=False)).orphans_found == []
    records = await service.metadata.page("", None, 1000)
    assert {key async for key in service.backends.default.list_keys()} == {r.storage_key for r in records}
    return records


async def store(
    client: httpx.AsyncClient, server: ServerProcess, blob_id: str, data: bytes, raw: bool
) -> httpx.Response:
    if raw:
        return await client.put(f"{server.url}/v1/blobs/{blob_id}", content=data, headers=OCTETS)
    payload = {"id": blob_id, "data": base64.b64encode(data).decode("ascii")}
    return await client.post(f"{server.url}/v1/blobs", json=payload)


async def race(servers: tuple[ServerProcess, ServerProcess], blob_id: str, bodies: list[bytes]) -> list[httpx.Response]:
    """Every body at once for one id: alternating servers, and raw PUT / JSON POST on each."""
    responses: list[httpx.Response | None] = [None] * len(bodies)
    gate = anyio.Event()
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(headers=AUTH, timeout=60, limits=limits) as client:
        # Open the connections first, so the requests leave as close together as possible.
        await client.get(f"{servers[0].url}/healthz")
        await client.get(f"{servers[1].url}/healthz")

        async def one(i: int) -> None:
            await gate.wait()
            responses[i] = await store(client, servers[i % 2], blob_id, bodies[i], raw=(i // 2) % 2 == 0)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                for i in range(len(bodies)):
                    tasks.start_soon(one, i)
                await anyio.sleep(0.05)
                gate.set()
    assert all(r is not None for r in responses)
    return [r for r in responses if r is not None]


async def read_everywhere(servers: tuple[ServerProcess, ServerProcess], blob_id: str) -> list[bytes]:
    """The blob from each server, by raw GET and by the seed's JSON GET."""
    seen: list[bytes] = []
    async with httpx.AsyncClient(headers=AUTH, timeout=60) as client:
        for server in servers:
            raw = await client.get(f"{server.url}/v1/blobs/{blob_id}", headers=RAW)
            assert raw.status_code == 200, raw.text
            seen.append(raw.content)
            body = await client.get(f"{server.url}/v1/blobs/{blob_id}")
            assert body.status_code == 200, body.text
            seen.append(base64.b64decode(body.json()["data"]))
    return seen


async def test_one_id_raced_across_two_processes_with_different_bytes_has_one_winner(
    start_pair: Callable[..., tuple[ServerProcess, ServerProcess]], inspector: DriveService
) -> None:
    servers = start_pair()
    bodies = [os.urandom(64 * 1024 + 997 * i) for i in range(RACERS)]

    responses = await race(servers, "raced/id", bodies)

    statuses = [r.status_code for r in responses]
    assert sorted(statuses) == [201] + [409] * (RACERS - 1), statuses
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "conflict"
    winner = bodies[statuses.index(201)]
    assert await read_everywhere(servers, "raced/id") == [winner] * 4
    records = await assert_storage_is_exact(inspector)  # the 39 losers' staged bytes are gone
    assert [(r.id, r.sha256) for r in records] == [("raced/id", hashlib.sha256(winner).hexdigest())]


async def test_one_id_raced_across_two_processes_with_the_same_bytes_is_one_201_and_the_rest_200(
    start_pair: Callable[..., tuple[ServerProcess, ServerProcess]], inspector: DriveService
) -> None:
    servers = start_pair()
    data = os.urandom(300 * 1024)

    responses = await race(servers, "same/bytes", [data] * RACERS)

    statuses = [r.status_code for r in responses]
    assert sorted(statuses) == [200] * (RACERS - 1) + [201], statuses
    bodies = [r.json() for r in responses]
    assert all(body == bodies[0] for body in bodies)  # the original created_at for every replay
    assert bodies[0]["size"] == str(len(data))
    assert {r.headers["etag"] for r in responses} == {f'"{hashlib.sha256(data).hexdigest()}"'}
    assert await read_everywhere(servers, "same/bytes") == [data] * 4
    assert len(await assert_storage_is_exact(inspector)) == 1


SLOW_CHUNKS = 45
SLOW_CHUNK = 32 * 1024
SLOW_PAUSE = 0.25  # 11 s of upload against a 2 s lease, renewed as bytes flow


@pytest.mark.slow
async def test_recovery_elsewhere_never_undoes_a_slow_upload_in_flight(
    start_pair: Callable[..., tuple[ServerProcess, ServerProcess]], inspector: DriveService
) -> None:
    # Both processes recover every second; the upload goes to A and lasts ~5 leases.
    a, b = start_pair(UPLOAD_LEASE_SECONDS="2", RECOVERY_INTERVAL_SECONDS="1")
    data = os.urandom(SLOW_CHUNKS * SLOW_CHUNK)
    finished = anyio.Event()
    all_sent = False  # the client handed over the body's last byte

    async def slow_body() -> AsyncIterator[bytes]:
        nonlocal all_sent
        for i in range(SLOW_CHUNKS):
            if i:
                await anyio.sleep(SLOW_PAUSE)
            yield data[i * SLOW_CHUNK : (i + 1) * SLOW_CHUNK]
        all_sent = True  # asked for more after the last chunk: every byte is on its way

    response: httpx.Response | None = None

    async def upload(client: httpx.AsyncClient) -> None:
        nonlocal response
        try:
            response = await client.put(f"{a.url}/v1/blobs/slow", content=slow_body(), headers=OCTETS)
        finally:
            finished.set()

    leases: set[datetime] = set()
    runs = 0
    started = time.monotonic()
    async with httpx.AsyncClient(headers=AUTH, timeout=60) as client:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(upload, client)
                while not finished.is_set():
                    # A third process recovering too: it must find nothing to remove.
                    report = await inspector.recover()
                    runs += 1
                    assert (report.interrupted_removed, report.orphans_removed) == (0, 0)
                    now = datetime.now(UTC)
                    for op in await inspector.metadata.expired(now + timedelta(days=1), 10):
                        assert op.blob_id == "slow"
                        assert op.lease_until > now - timedelta(seconds=0.5)  # alive, give or take a poll
                        leases.add(op.lease_until)
                    if not finished.is_set():  # not visible anywhere before the whole body arrived
                        status = (await client.get(f"{b.url}/v1/blobs/slow", headers=RAW)).status_code
                        # The commit may land while this GET is on its way: visible then, never before.
                        assert status == 404 or (status == 200 and all_sent), status
                    await anyio.sleep(0.25)

    assert time.monotonic() - started > 5 * 2.0  # it really did outlive its lease
    assert response is not None and response.status_code == 201, response.text if response else None
    assert response.json()["size"] == str(len(data))
    assert runs >= 20
    assert len(leases) >= 5, leases  # the lease was renewed again and again while bytes flowed
    assert await read_everywhere((a, b), "slow") == [data] * 4
    assert len(await assert_storage_is_exact(inspector)) == 1
    for server in (a, b):
        assert "recovery removed" not in server.log.read_text()


async def test_a_store_whose_lease_ran_out_is_never_acknowledged_over_bytes_recovery_deleted(
    shared: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes' services in-process, with the one interleaving the commit protocol must survive.

    Process A has staged its bytes but stalls before its commit (a GC pause, a slow
    database) past its lease. Process B's recovery reclaims the intent and deletes the
    bytes, and is descheduled right after the delete; A's commit runs in that gap.
    (Recovery used to delete first and end the intent after, so the commit found the
    intent still there and was acknowledged over deleted bytes.) A must either fail
    (the client retries) or have its bytes intact.
    """
    a = shared.container_service(UPLOAD_LEASE_SECONDS="1")
    b = shared.container_service(UPLOAD_LEASE_SECONDS="1")
    await a.open()
    await b.open()
    try:
        bytes_deleted = anyio.Event()
        commit_done = anyio.Event()
        commit = a.metadata.commit
        delete = b.backends.default.delete

        async def stalled_commit(record: BlobRecord) -> CommitOutcome:
            with anyio.move_on_after(10):
                await bytes_deleted.wait()
            try:
                return await commit(record)
            finally:
                commit_done.set()

        async def delete_then_pause(key: str) -> None:
            await delete(key)
            bytes_deleted.set()
            with anyio.move_on_after(10):
                await commit_done.wait()

        monkeypatch.setattr(a.metadata, "commit", stalled_commit)
        monkeypatch.setattr(b.backends.default, "delete", delete_then_pause)

        data = os.urandom(100 * 1024)
        outcome: CommitOutcome | StorageUnavailable | None = None

        async def store_in_a() -> None:
            nonlocal outcome
            try:
                outcome = await a.store("stalled", single_chunk(data))
            except StorageUnavailable as exc:
                outcome = exc

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(store_in_a)
                while not await b.metadata.expired(datetime.now(UTC), 10):  # A's lease runs out
                    await anyio.sleep(0.1)
                await b.recover()

        assert bytes_deleted.is_set(), "recovery never reclaimed the intent: the interleaving did not happen"
        if isinstance(outcome, CommitOutcome):  # acknowledged: the bytes must be there
            assert outcome.created
            assert await a.retrieve.read_all(outcome.record) == data
        else:
            assert isinstance(outcome, StorageUnavailable)
            assert await a.metadata.get("stalled") is None
    finally:
        await a.close()
        await b.close()


async def test_a_blob_committing_while_another_process_sweeps_for_orphans_keeps_its_bytes(
    shared: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes' services in-process; B's orphan sweep looks up A's key just as A commits.

    A has staged its bytes and commits exactly while B's sweep is deciding whether those
    bytes are known: right after B has read the committed records. (The look-up used to
    read records and intents in two statements; a commit between them made the key look
    orphaned and the sweep deleted a committed blob's bytes.) Leases never run out here:
    this is the sweep every process runs periodically.
    """
    a = shared.container_service()
    b = shared.container_service()
    await a.open()
    await b.open()
    try:
        reached_commit = anyio.Event()
        go = anyio.Event()
        committed = anyio.Event()
        commit = a.metadata.commit

        async def gated_commit(record: BlobRecord) -> CommitOutcome:
            reached_commit.set()
            with anyio.move_on_after(10):
                await go.wait()
            try:
                return await commit(record)
            finally:
                committed.set()

        monkeypatch.setattr(a.metadata, "commit", gated_commit)

        async def until_committed() -> None:
            with anyio.move_on_after(10):
                await committed.wait()

        fired = False

        def after_execute(*args: object) -> None:
            # B's engine, inside SQLAlchemy's greenlet: let A commit right after B read the records.
            nonlocal fired
            statement = str(args[2])
            if fired or "FROM drive_blobs" not in statement or "storage_key IN" not in statement:
                return
            fired = True
            go.set()
            await_only(until_committed())

        assert isinstance(b.metadata, SqlMetadataRepository)
        engine = b.metadata.engine.sync_engine
        data = os.urandom(100 * 1024)
        outcome: CommitOutcome | None = None

        async def store_in_a() -> None:
            nonlocal outcome
            outcome = await a.store("swept", single_chunk(data))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(store_in_a)
                await reached_commit.wait()  # A's bytes are complete; its commit is next
                event.listen(engine, "after_cursor_execute", after_execute)
                try:
                    report = await b.recover()
                finally:
                    event.remove(engine, "after_cursor_execute", after_execute)

        assert fired, "the sweep never looked the key up: the interleaving did not happen"
        assert outcome is not None and outcome.created
        assert report.orphans_removed == 0
        assert await a.retrieve.read_all(outcome.record) == data
    finally:
        await a.close()
        await b.close()
