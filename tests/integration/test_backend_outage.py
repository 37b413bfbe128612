"""A backend that goes away answers 503 within its timeout; when it returns, so does service."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.backends import BackendUnderTest, make_backend
from tests.integration.cli_helpers import Drive, cli_env
from tests.integration.live import AUTH, LiveServer, ServerProcess
from tests.integration.steady_load import SteadyLoad, assert_no_errors_logged, fsck_clean


@pytest.fixture(params=["s3-path", "ftp", "ftps"])
def outage_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendUnderTest]:
    backend = make_backend(request, request.param, tmp_path)
    yield backend
    backend.restart_server()  # the servers are shared by the session


def test_outage_gives_503_and_recovery_gives_200(outage_backend: BackendUnderTest) -> None:
    live = LiveServer(outage_backend.env).start()
    try:
        with live.client(headers=AUTH, timeout=30) as client:
            data = base64.b64encode(os.urandom(5000)).decode()
            assert client.post("/v1/blobs", json={"id": "before", "data": data}).status_code == 201

            outage_backend.outage.stop()
            for call in (
                lambda: client.get("/v1/blobs/before"),
                lambda: client.post("/v1/blobs", json={"id": "during", "data": data}),
                lambda: client.put("/v1/blobs/during-raw", content=b"x" * 1000),
                lambda: client.get("/v1/blobs/before", headers={"Accept": "application/octet-stream"}),
            ):
                started = time.monotonic()
                response = call()
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "storage_unavailable"
                assert time.monotonic() - started < 15  # bounded by the backend's 5 s timeout
            assert client.get("/readyz").status_code == 503

            outage_backend.restart_server()
            deadline = time.monotonic() + 20
            while (fetched := client.get("/v1/blobs/before")).status_code != 200:
                assert time.monotonic() < deadline, fetched.text
                time.sleep(0.2)
            assert fetched.json()["data"] == data
            assert client.get("/v1/blobs/during").status_code == 404
            assert client.post("/v1/blobs", json={"id": "after", "data": data}).status_code == 201
            assert client.get("/v1/blobs/after").json()["data"] == data
    finally:
        live.stop()


OUTAGE_SECONDS = 30.0
BACKEND_BOUND = 15.0  # as in the test above: S3_TIMEOUT / FTP_TIMEOUT are 5 s


@pytest.mark.slow
def test_outage_under_steady_load_gives_503_then_service_and_loses_nothing(
    outage_backend: BackendUnderTest, tmp_path: Path
) -> None:
    """The S3 or FTP server gone for 30 s while 8 clients PUT and GET against a ``drive serve`` process.

    Every upload cut off meanwhile leaves an intent whose bytes could not be removed while
    the backend was away; recovery (every 2 s here) works through them once it is back, one
    backend call each: hundreds, and once 2,242, whose pass ended seconds after a 90 s wait
    had run out (the faster the server fails a request, the more the clients send), so fsck
    gets up to 180 s to find the store clean. A short upload lease and recovery
    interval let the server clean up after uploads cut off midway before fsck looks.
    """
    quick = {"UPLOAD_LEASE_SECONDS": "5", "RECOVERY_INTERVAL_SECONDS": "2"}
    isolated = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    env = {**outage_backend.env, **quick, **isolated, "AWS_EC2_METADATA_DISABLED": "true"}
    drive_env = cli_env(tmp_path, **env)
    drive_env.pop("FS_BASE_PATH")  # only the backend under test, as the server has it
    server = ServerProcess(env, tmp_path).start()
    load = SteadyLoad(server.url, workers=8)
    moments: dict[str, float] = {}

    def outage() -> None:
        time.sleep(5)
        moments["down"] = time.monotonic()
        outage_backend.outage.stop()
        time.sleep(OUTAGE_SECONDS)
        outage_backend.restart_server()
        moments["up"] = time.monotonic()

    try:
        load.run(8, during=outage)
        summary = load.summary()
        # A backend call gives up after its 5 s timeout; the metadata store is up throughout.
        load.assert_honest(within=BACKEND_BOUND)
        down = [o for o in load.unavailable() if moments["down"] + 1 <= o.started <= moments["up"]]
        assert len(down) >= 8, f"too few 503s during the outage: {summary}"
        assert load.recovered_after(moments["up"]) < 10, summary
        load.assert_all_read_back()
        fsck_clean(Drive(drive_env, tmp_path), wait=180)
        print(f"{outage_backend.param} outage: {summary}")
    finally:
        server.terminate()
    assert_no_errors_logged(server.log)


@pytest.mark.parametrize("database", ["sqlite", "mariadb"])
def test_switching_storage_keeps_older_blobs_readable(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    # On MariaDB the db backend's tables share the metadata's database.
    url = f"sqlite:///{tmp_path / 'metadata.db'}" if database == "sqlite" else request.getfixturevalue("mariadb_url")
    env = {
        "AUTH_BEARER_TOKEN": AUTH["Authorization"].removeprefix("Bearer "),
        "DATABASE_URL": url,
        "FS_BASE_PATH": str(tmp_path / "blobs"),
    }
    first = LiveServer({**env, "STORAGE": "fs"}).start()
    try:
        with first.client(headers=AUTH) as client:
            assert client.put("/v1/blobs/older", content=b"stored on fs").status_code == 201
    finally:
        first.stop()

    second = LiveServer({**env, "STORAGE": "db"}).start()  # FS_BASE_PATH still set: fs stays configured
    try:
        with second.client(headers=AUTH) as client:
            assert client.put("/v1/blobs/newer", content=b"stored in db").status_code == 201
            assert client.get("/v1/blobs/older", headers={"Accept": "application/octet-stream"}).content == (
                b"stored on fs"
            )
            listing = {item["id"] for item in client.get("/v1/blobs").json()["items"]}
            assert listing == {"older", "newer"}
    finally:
        second.stop()

    env.pop("FS_BASE_PATH")
    third = LiveServer({**env, "STORAGE": "db"}).start()  # fs no longer configured: unreachable, not gone
    try:
        with third.client(headers=AUTH) as client:
            assert client.get("/v1/blobs/older").status_code == 503
            assert client.get("/v1/blobs/newer").status_code == 200
    finally:
        third.stop()
