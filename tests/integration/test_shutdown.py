"""SIGTERM during an upload: it finishes within the grace period, or it is undone. Nothing is lost.

``drive serve`` runs as a real process; the upload is a slow chunked ``PUT`` whose body
generator sends the signal once the server is part-way through storing it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path

import anyio
import httpx

from drive.adapters.sql_metadata import SqlMetadataRepository
from drive.domain.model import PendingOp, utc_now
from tests.integration.live import AUTH, ServerProcess, base_env

CHUNK = 64 * 1024
RAW = {**AUTH, "Accept": "application/octet-stream"}


class GracefulServer(ServerProcess):
    def __init__(self, env: Mapping[str, str], cwd: Path, graceful_timeout: float) -> None:
        super().__init__(env, cwd)
        self.graceful_timeout = graceful_timeout

    def command(self) -> list[str]:
        return [*super().command(), "--graceful-timeout", str(self.graceful_timeout)]

    def sigterm(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)


def slow_body(data: bytes, delay: float, events: Mapping[int, Callable[[], None]]) -> Iterator[bytes]:
    """``data`` in 64 KiB chunks, ``delay`` seconds apart, running ``events[i]`` before chunk ``i``."""
    for index, start in enumerate(range(0, len(data), CHUNK)):
        if index in events:
            events[index]()
        time.sleep(delay)
        yield data[start : start + CHUNK]


def stored(database_url: str) -> tuple[list[PendingOp], dict[str, str]]:
    """Pending operations and committed ``{id: storage key}``, read with the real adapter."""

    async def read() -> tuple[list[PendingOp], dict[str, str]]:
        metadata = SqlMetadataRepository(database_url)
        await metadata.open()
        try:
            pending = await metadata.expired(utc_now() + timedelta(days=1), 1000)
            records = await metadata.page("", None, 1000)
        finally:
            await metadata.close()
        return pending, {record.id: record.storage_key for record in records}

    return anyio.run(read)


def files(directory: Path) -> set[str]:
    return {path.name for path in directory.rglob("*") if path.is_file()}


def test_sigterm_lets_an_upload_in_flight_finish(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    data = os.urandom(64 * CHUNK)
    server = GracefulServer(env, tmp_path, graceful_timeout=30)
    server.start()
    refused_while_draining: list[bool] = []

    def try_new_connection() -> None:
        try:
            httpx.get(f"{server.url}/healthz", timeout=2)
            refused_while_draining.append(False)
        except httpx.ConnectError:
            refused_while_draining.append(True)

    body = slow_body(data, 0.02, {8: server.sigterm, 40: try_new_connection})
    response = httpx.put(f"{server.url}/v1/blobs/finished-upload", content=body, headers=AUTH, timeout=60)
    assert response.status_code == 201, response.text
    assert server.process is not None
    assert server.process.wait(timeout=60) == -signal.SIGTERM  # uvicorn re-raises it after a graceful stop
    assert refused_while_draining == [True]

    restarted = ServerProcess(env, tmp_path).start()
    try:
        assert httpx.get(f"{restarted.url}/v1/blobs/finished-upload", headers=RAW).content == data
    finally:
        restarted.terminate()
    pending, committed = stored(env["DATABASE_URL"])
    assert pending == []
    assert files(tmp_path / "blobs" / "objects") == {committed["finished-upload"]}
    assert files(tmp_path / "blobs" / "staging") == set()


def test_sigterm_past_the_grace_period_undoes_the_upload(tmp_path: Path) -> None:
    env = base_env(tmp_path, UPLOAD_LEASE_SECONDS="2", RECOVERY_INTERVAL_SECONDS="1", LOG_LEVEL="INFO")
    server = GracefulServer(env, tmp_path, graceful_timeout=1)
    server.start()
    body = slow_body(os.urandom(64 * CHUNK), 0.1, {4: server.sigterm})  # ~6 s: outlasts the 1 s grace
    try:
        response = httpx.put(f"{server.url}/v1/blobs/undone-upload", content=body, headers=AUTH, timeout=60)
    except httpx.TransportError:
        pass  # the connection closed before the client read the answer: as good, it stored nothing
    else:
        # Cut off at the grace period: the contract's 503 (safe to retry), not a bare 500.
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "storage_unavailable"
        assert response.headers["retry-after"] == "1"
    assert server.process is not None
    assert server.process.wait(timeout=60) == -signal.SIGTERM

    # Undone before the process exited: no staged bytes; only the intent is left for recovery.
    assert files(tmp_path / "blobs" / "staging") == set()
    assert files(tmp_path / "blobs" / "objects") == set()
    lines = [json.loads(line) for line in server.log.read_text().splitlines()]
    (upload,) = [line for line in lines if line.get("path") == "/v1/blobs/undone-upload"]
    assert upload["aborted"] == "cancelled"
    assert upload["bytes_in"] > 0

    restarted = ServerProcess(env, tmp_path).start()
    try:
        assert httpx.get(f"{restarted.url}/v1/blobs/undone-upload", headers=RAW).status_code == 404
        deadline = time.monotonic() + 20
        while (state := stored(env["DATABASE_URL"]))[0]:  # recovery finishes the expired intent
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
    finally:
        restarted.terminate()
    assert state == ([], {})
    assert files(tmp_path / "blobs" / "objects") == set()
    assert files(tmp_path / "blobs" / "staging") == set()
