"""Resumable uploads (tus 1.0.0) over real HTTP, per backend: tuspy end to end, interruptions, every error case.

Parametrized by backend (``PARAMS``): each runs against a live server whose clock the test
controls, so expiry needs no waiting. The stores are inspected (and recovery run) through
this test's own service on the same stores, as another process would see them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from dependency_injector import providers
from tusclient import client as tus_client
from tusclient.uploader import Uploader

from drive.application.service import DriveService
from drive.container import Container
from drive.domain.model import Upload
from tests.integration.backends import BackendUnderTest, make_backend
from tests.integration.cli_helpers import Drive
from tests.integration.live import AUTH, READ_TOKEN, LiveServer, ServerProcess

# Every kind of backend; "s3-postgres" is S3 bytes with PostgreSQL metadata, the replicated
# set-up where an upload continues on another server process.
PARAMS = ["fs", "db-sqlite", "db-postgres", "s3-path", "s3-postgres", "ftps"]
MIB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
HEADERS = {**AUTH, **TUS}
OFFSET_STREAM = {"Content-Type": "application/offset+octet-stream"}
EXPIRY = 3600

pytestmark = pytest.mark.anyio


class Clock:
    """The servers' and the inspector's clock: real time plus a shift the test moves."""

    def __init__(self) -> None:
        self.shift = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift


@dataclass
class Stack:
    backend: BackendUnderTest
    server: LiveServer
    clock: Clock

    @property
    def url(self) -> str:
        return self.server.url

    def container(self) -> Container:
        container = self.backend.container(UPLOAD_EXPIRY_SECONDS=str(EXPIRY))
        container.clock.override(providers.Object(self.clock))
        return container


@pytest.fixture(scope="module", params=PARAMS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    param = request.param
    backend = make_backend(request, "s3-path" if param == "s3-postgres" else param, tmp_path_factory.mktemp(param))
    if param == "s3-postgres":
        backend.env["DATABASE_URL"] = request.getfixturevalue("postgres_url_factory")()
    clock = Clock()

    def configure(container: Container) -> None:
        container.clock.override(providers.Object(clock))

    server = LiveServer({**backend.env, "UPLOAD_EXPIRY_SECONDS": str(EXPIRY)}, configure).start()
    yield Stack(backend, server, clock)
    server.stop()


@pytest.fixture
async def inspector(stack: Stack) -> AsyncIterator[DriveService]:
    service = stack.container().service()
    await service.open()
    try:
        yield service
    finally:
        await service.close()


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.server.client(headers=HEADERS) as client:
        yield client


def random_file(tmp_path: Path, size: int, name: str = "data.bin") -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def metadata(**pairs: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs.items())


def create(http: httpx.Client, blob_id: str, length: int, **extra: str) -> str:
    response = http.post("/v1/uploads", headers={"Upload-Length": str(length), "Upload-Metadata": metadata(id=blob_id)})
    assert response.status_code == 201, response.text
    assert response.headers["tus-resumable"] == "1.0.0"
    return response.headers["location"]


def patch(http: httpx.Client, where: str, offset: int, data: bytes, **headers: str) -> httpx.Response:
    return http.patch(where, content=data, headers={**OFFSET_STREAM, "Upload-Offset": str(offset), **headers})


def offset_of(http: httpx.Client, where: str) -> int:
    response = http.head(where)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    return int(response.headers["upload-offset"])


def read_back(http: httpx.Client, blob_id: str) -> bytes:
    response = http.get(f"/v1/blobs/{blob_id}", headers={"Accept": "application/octet-stream"})
    assert response.status_code == 200, response.text
    return response.content


class Sha256Uploader(Uploader):  # type: ignore[misc]
    """tuspy checksums with SHA-1 by default; the server speaks sha256 only (others are 400, as tus says)."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


def uploader(url: str, path: Path, blob_id: str, *, upload_url: str | None = None) -> Uploader:
    client = tus_client.TusClient(f"{url}/v1/uploads", headers=dict(AUTH))
    return Sha256Uploader(
        str(path),
        client=client,
        chunk_size=5 * MIB,
        metadata={"id": blob_id, "filetype": "application/x-test"},
        upload_checksum=True,
        url=upload_url,
        retries=40,
        retry_delay=0.25,  # type: ignore[arg-type]  # a PATCH meeting a lock a killed process held
    )


def cut_patch(url: str, where: str, offset: int, data: bytes, sent: int) -> socket.socket:
    """A PATCH whose connection carries only ``sent`` of its ``len(data)`` bytes (the caller closes it)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (
        f"PATCH {where} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH['Authorization']}\r\n"
        f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Upload-Offset: {offset}\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data[:sent])
    return sock


async def wait_locked(service: DriveService, upload_id: str) -> Upload:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        upload = await service.uploads.get(upload_id)
        if upload is not None and upload.lock_owner is not None:
            return upload
        await anyio.sleep(0.02)  # polling the store, not waiting out a lease
    raise AssertionError("the PATCH never took the upload's lock")


async def stored_keys(service: DriveService) -> set[str]:
    return {key async for key in service.backends.default.list_keys()}


# -- tuspy end to end ---------------------------------------------------------------------------


def test_tuspy_uploads_50_mib_in_5_mib_chunks(stack: Stack, http: httpx.Client, tmp_path: Path) -> None:
    path, data = random_file(tmp_path, 50 * MIB)
    upload = uploader(stack.url, path, "tus/fifty")
    upload.upload()
    assert read_back(http, "tus/fifty") == data
    listed = http.get("/v1/blobs", params={"prefix": "tus/fifty"}).json()["items"]
    assert [(item["id"], item["size"]) for item in listed] == [("tus/fifty", str(len(data)))] or [
        (item["id"], int(item["size"])) for item in listed
    ] == [("tus/fifty", len(data))]
    head = http.head("/v1/blobs/tus/fifty")
    assert head.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    # The finished upload still says so (a client that lost the last answer learns it is whole).
    assert offset_of(http, upload.url.removeprefix(stack.url)) == len(data)


async def test_resumed_after_a_cut_connection(
    stack: Stack, http: httpx.Client, tmp_path: Path, inspector: DriveService
) -> None:
    path, data = random_file(tmp_path, 30 * MIB)
    first = uploader(stack.url, path, "tus/cut")
    first.upload(stop_at=10 * MIB)
    where = first.url.removeprefix(stack.url)
    assert offset_of(http, where) == 10 * MIB
    sock = cut_patch(stack.url, where, 10 * MIB, data[10 * MIB : 15 * MIB], 2 * MIB)
    await wait_locked(inspector, where.rsplit("/", 1)[1])
    sock.close()  # the client's connection dies mid-PATCH
    resumed = uploader(stack.url, path, "tus/cut", upload_url=first.url)
    assert resumed.offset == 10 * MIB  # nothing of the cut piece counts
    resumed.upload()
    assert read_back(http, "tus/cut") == data


# -- each error case ---------------------------------------------------------------------------


def test_options_advertises_the_protocol(http: httpx.Client) -> None:
    response = http.options("/v1/uploads")
    assert response.status_code == 204
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-resumable"] == "1.0.0"
    assert set(response.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    }
    assert int(response.headers["tus-max-size"]) > 0
    assert response.headers["tus-checksum-algorithm"] == "sha256"


def test_offset_mismatch_is_409(http: httpx.Client) -> None:
    where = create(http, "tus/offset", 10)
    assert patch(http, where, 0, b"01234").status_code == 204
    response = patch(http, where, 3, b"34567")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert offset_of(http, where) == 5


def test_checksum_mismatch_is_460_and_appends_nothing(http: httpx.Client) -> None:
    where = create(http, "tus/checksum", 10)
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    response = patch(http, where, 0, b"01234", **{"Upload-Checksum": f"sha256 {wrong}"})
    assert response.status_code == 460
    assert response.json()["error"]["code"] == "checksum_mismatch"
    assert offset_of(http, where) == 0
    right = base64.b64encode(hashlib.sha256(b"0123456789").digest()).decode()
    assert patch(http, where, 0, b"0123456789", **{"Upload-Checksum": f"sha256 {right}"}).status_code == 204
    assert read_back(http, "tus/checksum") == b"0123456789"


async def test_concurrent_patch_is_409(stack: Stack, http: httpx.Client, inspector: DriveService) -> None:
    data = os.urandom(2 * MIB)
    where = create(http, "tus/concurrent", len(data))
    sock = cut_patch(stack.url, where, 0, data, MIB)  # in flight, holding the lock
    try:
        await wait_locked(inspector, where.rsplit("/", 1)[1])
        response = patch(http, where, 0, data)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "conflict"
        sock.sendall(data[MIB:])
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 204"), answer
    finally:
        sock.close()
    assert read_back(http, "tus/concurrent") == data


async def test_expired_upload_is_404_and_recovery_removes_its_bytes(
    stack: Stack, http: httpx.Client, inspector: DriveService
) -> None:
    where = create(http, "tus/expired", 10)
    assert patch(http, where, 0, b"01234").status_code == 204
    upload_id = where.rsplit("/", 1)[1]
    upload = await inspector.uploads.get(upload_id)
    assert upload is not None
    assert upload.storage_key in await stored_keys(inspector)
    stack.clock.shift += timedelta(seconds=EXPIRY + 1)
    try:
        assert http.head(where).status_code == 404
        response = patch(http, where, 5, b"56789")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        report = await inspector.recover(sweep_orphans=False)
        assert report.uploads_forgotten >= 1
        assert upload.storage_key not in await stored_keys(inspector)
        assert await inspector.uploads.get(upload_id) is None
    finally:
        stack.clock.shift -= timedelta(seconds=EXPIRY + 1)
    assert http.get("/v1/blobs/tus/expired").status_code == 404


async def test_termination_is_204_and_removes_the_bytes(http: httpx.Client, inspector: DriveService) -> None:
    where = create(http, "tus/terminated", 10)
    assert patch(http, where, 0, b"01234").status_code == 204
    upload = await inspector.uploads.get(where.rsplit("/", 1)[1])
    assert upload is not None
    response = http.delete(where)
    assert response.status_code == 204
    assert response.headers["tus-resumable"] == "1.0.0"
    assert http.head(where).status_code == 404
    assert upload.storage_key not in await stored_keys(inspector)
    assert http.get("/v1/blobs/tus/terminated").status_code == 404


async def test_final_patch_meeting_other_bytes_is_409(http: httpx.Client, inspector: DriveService) -> None:
    where = create(http, "tus/taken", 10)
    assert patch(http, where, 0, b"01234").status_code == 204
    upload = await inspector.uploads.get(where.rsplit("/", 1)[1])
    assert upload is not None
    assert http.put("/v1/blobs/tus/taken", content=b"other bytes").status_code == 201
    response = patch(http, where, 5, b"56789")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert read_back(http, "tus/taken") == b"other bytes"
    assert upload.storage_key not in await stored_keys(inspector)


def test_final_patch_meeting_the_same_bytes_succeeds(http: httpx.Client) -> None:
    assert http.put("/v1/blobs/tus/same", content=b"0123456789").status_code == 201
    where = create(http, "tus/same", 10)
    assert patch(http, where, 0, b"0123456789").status_code == 204
    assert offset_of(http, where) == 10
    assert read_back(http, "tus/same") == b"0123456789"


def test_creation_with_upload(http: httpx.Client) -> None:
    response = http.post(
        "/v1/uploads",
        content=b"hello",
        headers={**OFFSET_STREAM, "Upload-Length": "5", "Upload-Metadata": metadata(id="tus/with-upload")},
    )
    assert response.status_code == 201
    assert response.headers["upload-offset"] == "5"
    assert "upload-expires" in response.headers
    assert read_back(http, "tus/with-upload") == b"hello"


def test_read_token_is_403(stack: Stack, http: httpx.Client) -> None:
    where = create(http, "tus/read-token", 10)
    reader = {"Authorization": f"Bearer {READ_TOKEN}", **TUS}
    with stack.server.client(headers=reader) as client:
        post = client.post("/v1/uploads", headers={"Upload-Length": "1", "Upload-Metadata": metadata(id="x")})
        assert post.status_code == 403
        assert post.json()["error"]["code"] == "forbidden"
        assert client.head(where).status_code == 403
        assert patch(client, where, 0, b"0").status_code == 403
    with stack.server.client(headers=TUS) as client:
        assert client.head(where).status_code == 401


def test_protocol_errors(http: httpx.Client) -> None:
    no_version = http.post(
        "/v1/uploads",
        headers={"Tus-Resumable": "0.2.2", "Upload-Length": "1", "Upload-Metadata": metadata(id="x")},
    )
    assert no_version.status_code == 412
    assert no_version.headers["tus-version"] == "1.0.0"
    no_id = http.post("/v1/uploads", headers={"Upload-Length": "1", "Upload-Metadata": metadata(name="x")})
    assert no_id.status_code == 400
    assert no_id.json()["error"]["code"] == "invalid_id"
    bad_id = http.post("/v1/uploads", headers={"Upload-Length": "1", "Upload-Metadata": metadata(id="a\x01")})
    assert bad_id.json()["error"]["code"] == "invalid_id"
    too_large = http.post("/v1/uploads", headers={"Upload-Length": str(10**15), "Upload-Metadata": metadata(id="x")})
    assert too_large.status_code == 413
    where = create(http, "tus/protocol", 4)
    wrong_type = http.patch(
        where, content=b"0", headers={"Content-Type": "application/octet-stream", "Upload-Offset": "0"}
    )
    assert wrong_type.status_code == 415
    past_end = patch(http, where, 0, b"01234")
    assert past_end.status_code == 413
    assert offset_of(http, where) == 0
    assert http.head("/v1/uploads/no-such-upload").status_code == 404


# -- a server process killed mid-PATCH, resumed on another ------------------------------------


async def test_interrupted_twice_then_resumed_on_a_second_process(
    stack: Stack, tmp_path: Path, inspector: DriveService
) -> None:
    """The same upload: its connection killed mid-PATCH, then its server SIGKILLed mid-PATCH; tuspy finishes it."""
    env = {**stack.backend.env, "UPLOAD_EXPIRY_SECONDS": str(EXPIRY), "UPLOAD_LEASE_SECONDS": "2"}
    first = ServerProcess(env, tmp_path).start()
    second: ServerProcess | None = None
    try:
        path, data = random_file(tmp_path, 30 * MIB)
        upload = uploader(first.url, path, "tus/twice")
        upload.upload(stop_at=10 * MIB)
        where = upload.url.removeprefix(first.url)
        upload_id = where.rsplit("/", 1)[1]

        sock = cut_patch(first.url, where, 10 * MIB, data[10 * MIB : 15 * MIB], 2 * MIB)
        await wait_locked(inspector, upload_id)
        sock.close()  # 1: the client's connection dies mid-PATCH
        resumed = uploader(first.url, path, "tus/twice", upload_url=upload.url)
        assert resumed.offset == 10 * MIB
        resumed.upload(stop_at=20 * MIB)

        sock = cut_patch(first.url, where, 20 * MIB, data[20 * MIB : 25 * MIB], 3 * MIB)
        try:
            await wait_locked(inspector, upload_id)
            first.kill()  # 2: SIGKILL mid-PATCH; its lock lapses after the lease
        finally:
            sock.close()

        second = ServerProcess(env, tmp_path).start()  # another process (on PostgreSQL: shared metadata)
        resumed = uploader(second.url, path, "tus/twice", upload_url=f"{second.url}{where}")
        assert resumed.offset == 20 * MIB
        resumed.upload()
        with httpx.Client(base_url=second.url, headers=AUTH, timeout=60) as client:
            assert read_back(client, "tus/twice") == data
            etag = client.head("/v1/blobs/tus/twice").headers["etag"]
            assert etag == f'"{hashlib.sha256(data).hexdigest()}"'
    finally:
        first.kill()
        if second is not None:
            second.kill()


# -- operators: drive uploads, drive uploads rm, fsck ------------------------------------------


async def test_cli_lists_and_ends_uploads_and_fsck_reports_them(
    stack: Stack, http: httpx.Client, tmp_path: Path, inspector: DriveService
) -> None:
    where = create(http, "tus/cli listed", 10)
    assert patch(http, where, 0, b"0123").status_code == 204
    upload_id = where.rsplit("/", 1)[1]
    upload = await inspector.uploads.get(upload_id)
    assert upload is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "STORAGE", "S3_", "FTP_"))}
    drive = Drive({**env, **stack.backend.env, "UPLOAD_EXPIRY_SECONDS": str(EXPIRY)}, tmp_path)
    listed = drive("uploads", "--json").ok().json()
    mine = [item for item in listed if item["upload"] == upload_id]
    assert len(mine) == 1
    assert (mine[0]["id"], mine[0]["offset"], mine[0]["length"]) == ("tus/cli listed", 4, 10)
    assert mine[0]["expires"].endswith("Z")
    assert any(line.startswith(upload_id) and "4/10" in line for line in drive("uploads").ok().text.splitlines())
    fsck = drive("fsck", "--json").json()
    assert upload_id in {item["upload"] for item in fsck["uploads_in_progress"]}
    assert ("tus/cli listed", 4) in {(item["id"], item["offset"]) for item in fsck["uploads_in_progress"]}
    assert drive("uploads", "rm", upload_id).ok().text.strip() == f"removed upload {upload_id}"
    assert http.head(where).status_code == 404
    assert upload.storage_key not in await stored_keys(inspector)
    drive("uploads", "rm", upload_id).fails(1, "no such upload")
