"""SIGKILL a real ``drive serve`` in the middle of hundreds of uploads, restart it, recover.

What this proves, per backend (fs, db on SQLite and PostgreSQL, s3 against moto):

* every upload acknowledged (``201``) before the kill reads back byte-exact after the
  restart, through the restarted server, also when the killed server had been running
  recovery five times a second against a lease shorter than its uploads (the
  ``recovery-storm`` case, which caught two races of recovery with commits);
* every other upload is either absent (``404``) or byte-exact: never a prefix, never
  someone else's bytes, never a ``500``;
* once recovery has run, storage holds no bytes without committed metadata: no
  pending intents are left, a dry-run recovery finds no orphans, and the backend's key
  listing is exactly the set of committed storage keys;
* retrying the interrupted uploads against the restarted server is safe (``201``, or
  ``200`` where the killed server had committed before dying).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest

from drive.application.commit_protocol import all_records
from drive.application.service import DriveService
from drive.domain.model import BlobRecord
from tests.integration.backends import BackendUnderTest, make_backend
from tests.integration.live import AUTH, ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

UPLOADS = 240
CONCURRENCY = 32
KILL_AFTER = UPLOADS // 3  # acknowledged uploads before the SIGKILL
MIN_SIZE = 16 * 1024
MAX_SIZE = 2 * 1024 * 1024
LEASE_SECONDS = 2.0
RAW = {"Accept": "application/octet-stream"}
PHASE_TIMEOUT = 90.0


@dataclass
class Upload:
    blob_id: str
    data: bytes
    raw: bool  # PUT of the raw bytes, else JSON POST with Base64
    started: bool = False
    status: int | None = None
    error: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def acknowledged(self) -> bool:
        return self.status in (200, 201)


def make_uploads(seed: str) -> list[Upload]:
    """Log-uniform sizes between 16 KiB and 2 MiB (mean about 420 KiB); raw and JSON alternate."""
    rng = random.Random(seed)
    uploads = []
    for i in range(UPLOADS):
        size = min(MAX_SIZE, int(MIN_SIZE * (MAX_SIZE / MIN_SIZE) ** rng.random()))
        uploads.append(Upload(f"crash/{i:04d}", rng.randbytes(size), raw=i % 2 == 1))
    return uploads


async def send(client: httpx.AsyncClient, upload: Upload) -> httpx.Response:
    if upload.raw:
        return await client.put(
            f"/v1/blobs/{upload.blob_id}", content=upload.data, headers={"Content-Type": "application/octet-stream"}
        )
    data = base64.b64encode(upload.data).decode("ascii")
    return await client.post("/v1/blobs", json={"id": upload.blob_id, "data": data})


async def stalled_upload(client: httpx.AsyncClient, scope: anyio.CancelScope) -> None:
    async def half_then_wait() -> AsyncIterator[bytes]:
        yield b"s" * 65536
        await anyio.sleep(PHASE_TIMEOUT)

    # The server is killed under it, as intended: the transport error is the expected end.
    with scope, contextlib.suppress(httpx.TransportError):
        await client.put("/v1/blobs/crash/stalled", content=half_then_wait(), headers={"Content-Length": "131072"})


async def wait_for_an_intent(service: DriveService) -> None:
    with anyio.fail_after(10):
        while not await service.metadata.expired(datetime.now(UTC) + timedelta(days=1), 1):
            await anyio.sleep(0.02)


async def committed(service: DriveService) -> list[BlobRecord]:
    return [record async for record in all_records(service.metadata)]


async def stored_keys(service: DriveService) -> set[str]:
    return {key async for key in service.backends.default.list_keys()}


async def assert_storage_is_exact(service: DriveService, uploads: dict[str, Upload]) -> list[BlobRecord]:
    """No intents, no orphans, and the backend holds exactly the committed keys, with our bytes."""
    assert await service.metadata.expired(datetime.now(UTC) + timedelta(days=1), 1000) == []
    dry = await service.recover(repair=False)
    assert (dry.interrupted_found, dry.orphans_found, dry.unreachable_backends) == ([], [], [])
    records = await committed(service)
    name = service.backends.default_name
    assert {r.backend for r in records} <= {name}
    assert await stored_keys(service) == {r.storage_key for r in records}
    for record in records:  # each committed id holds the bytes sent for it, never another's
        upload = uploads[record.id]
        assert (record.size, record.sha256) == (len(upload.data), upload.sha256), record.id
    return records


@dataclass
class Load:
    """Runs uploads with bounded concurrency and stops starting new ones once told to."""

    client: httpx.AsyncClient
    uploads: list[Upload]
    acknowledged: int = 0
    in_flight: int = 0
    stopped: bool = False

    def __post_init__(self) -> None:
        self.enough = anyio.Event()
        self._queue: Iterator[Upload] = iter(self.uploads)

    async def worker(self) -> None:
        for upload in self._queue:
            if self.stopped:
                return
            upload.started = True
            self.in_flight += 1
            try:
                upload.status = (await send(self.client, upload)).status_code
            except httpx.TransportError as exc:  # the server died under this request
                upload.error = type(exc).__name__
            finally:
                self.in_flight -= 1
            if upload.status == 201:
                self.acknowledged += 1
                if self.acknowledged >= KILL_AFTER:
                    self.enough.set()
        self.enough.set()  # ran dry (only if the server failed early); the asserts will say why


async def read_raw(client: httpx.AsyncClient, blob_id: str) -> tuple[int, str | None]:
    response = await client.get(f"/v1/blobs/{blob_id}", headers=RAW)
    if response.status_code != 200:
        return response.status_code, None
    assert response.headers["content-length"] == str(len(response.content))
    return 200, hashlib.sha256(response.content).hexdigest()


async def for_each(items: list[Upload], action: Callable[[Upload], Awaitable[None]], concurrency: int = 8) -> None:
    queue = iter(items)

    async def worker() -> None:
        for item in queue:
            await action(item)

    async with anyio.create_task_group() as tasks:
        for _ in range(concurrency):
            tasks.start_soon(worker)


@pytest.fixture(params=["fs", "db-sqlite", "db-postgres", "db-mariadb", "s3-path"])
def crash_backend(request: pytest.FixtureRequest, tmp_path: Path) -> BackendUnderTest:
    return make_backend(request, request.param, tmp_path)


@pytest.fixture
async def open_service(crash_backend: BackendUnderTest) -> AsyncIterator[DriveService]:
    """The test's own service on the same settings, to inspect storage and run recovery."""
    service = crash_backend.container(UPLOAD_LEASE_SECONDS=str(LEASE_SECONDS)).service()
    await service.open()
    try:
        yield service
    finally:
        await service.close()


# Under load: a lease shorter than many uploads take, and recovery (with its orphan sweep)
# five times a second in the serving process itself. Uploads that outlive their lease
# may fail with 503 (the client retries); none may be acknowledged and then lost.
STORM = {"UPLOAD_LEASE_SECONDS": "0.5", "RECOVERY_INTERVAL_SECONDS": "0.2"}


@pytest.mark.parametrize("storm", [False, True], ids=["steady", "recovery-storm"])
async def test_sigkill_mid_upload_loses_nothing_acknowledged_and_leaves_no_orphans(
    crash_backend: BackendUnderTest, open_service: DriveService, tmp_path: Path, storm: bool
) -> None:
    env = {
        **crash_backend.env,
        "UPLOAD_LEASE_SECONDS": str(LEASE_SECONDS),
        "RECOVERY_INTERVAL_SECONDS": "3600",  # only the start-up run and ours below
        "LOG_LEVEL": "WARNING",
    }
    first_env = {**env, **STORM} if storm else env
    first_lease = float(first_env["UPLOAD_LEASE_SECONDS"])
    uploads = make_uploads(f"crash-{crash_backend.param}")
    by_id = {u.blob_id: u for u in uploads}
    first = ServerProcess(first_env, tmp_path)
    second = ServerProcess(env, tmp_path)
    try:
        await anyio.to_thread.run_sync(first.start)

        # -- load, then SIGKILL once a third is acknowledged -------------------------
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        stall = anyio.CancelScope()
        async with (
            httpx.AsyncClient(base_url=first.url, headers=AUTH, timeout=60, limits=limits) as client,
            httpx.AsyncClient(base_url=first.url, headers=AUTH, timeout=60) as stalled_client,
        ):
            load = Load(client, uploads)
            with anyio.fail_after(PHASE_TIMEOUT):
                async with anyio.create_task_group() as tasks:
                    for _ in range(CONCURRENCY):
                        tasks.start_soon(load.worker)
                    # Stores are quick: so that some upload is surely between intent and commit
                    # when the kill lands, one sends half its body and then waits to be killed.
                    tasks.start_soon(stalled_upload, stalled_client, stall)
                    await load.enough.wait()
                    await wait_for_an_intent(open_service)  # the load goes on meanwhile
                    load.stopped = True
                    in_flight_at_kill = load.in_flight
                    first.kill()  # SIGKILL; blocks the loop for a moment, which only helps
                    killed_at = time.time()
                    stall.cancel()
        acknowledged = [u for u in uploads if u.acknowledged]
        interrupted = [u for u in uploads if u.started and not u.acknowledged]
        assert len(acknowledged) >= KILL_AFTER, [u.error for u in uploads if u.started][:5]
        assert {u.status for u in uploads if u.status is not None} <= ({201, 503} if storm else {201})
        assert in_flight_at_kill > 0 and interrupted, "the kill must land while uploads are in flight"
        assert not all(u.started for u in uploads)

        # The dead process left intents behind (raw PUTs record theirs before any byte). In the
        # storm, its own recovery may already have reclaimed every one whose upload lagged past
        # the 0.5 s lease (those uploads got 503), so only the steady run can insist on them.
        left = await open_service.metadata.expired(datetime.now(UTC) + timedelta(days=1), 1000)
        assert left or storm

        # -- restart; recovery runs once the dead process's leases have run out ------
        await anyio.to_thread.run_sync(second.start)
        await anyio.sleep(max(0.0, killed_at + first_lease + 0.5 - time.time()))
        report = await open_service.recover()
        assert report.unreachable_backends == []
        await assert_storage_is_exact(open_service, by_id)

        # -- every acknowledged blob byte-exact; every other one absent or byte-exact -
        async with httpx.AsyncClient(base_url=second.url, headers=AUTH, timeout=60) as client:

            async def check(upload: Upload) -> None:
                status, digest = await read_raw(client, upload.blob_id)
                if upload.acknowledged:
                    assert (status, digest) == (200, upload.sha256), upload.blob_id
                elif upload.started:
                    assert (status, digest) in ((404, None), (200, upload.sha256)), upload.blob_id
                else:
                    assert status == 404, upload.blob_id

            with anyio.fail_after(PHASE_TIMEOUT):
                await for_each(uploads, check)
                for upload in acknowledged[:8]:  # the seed's JSON route too
                    body = (await client.get(f"/v1/blobs/{upload.blob_id}")).json()
                    assert base64.b64decode(body["data"]) == upload.data
                    assert body["size"] == str(len(upload.data))

            # -- retrying what was cut off is safe: 201, or 200 if it had committed --
            committed_before = {r.id for r in await committed(open_service)}

            async def retry(upload: Upload) -> None:
                response = await send(client, upload)
                expected = 200 if upload.blob_id in committed_before else 201
                assert response.status_code == expected, (upload.blob_id, response.text)
                assert await read_raw(client, upload.blob_id) == (200, upload.sha256)

            with anyio.fail_after(PHASE_TIMEOUT):
                await for_each(interrupted, retry)

        records = await assert_storage_is_exact(open_service, by_id)
        assert {r.id for r in records} == {u.blob_id for u in acknowledged + interrupted}
    finally:
        first.kill()
        second.kill()
