"""Stored bytes damaged behind the service's back are never served as good.

For fs, db (SQLite) and s3 (moto), bytes are flipped, truncated or deleted directly in
the backend, then read over real HTTP:

* the seed's JSON ``GET`` answers ``503 storage_unavailable`` (never ``200``, never ``500``);
* the raw ``GET`` either answers ``503`` before any byte, or aborts the response before
  ``Content-Length`` bytes have arrived: a client can never take a damaged body as
  complete. On fs and db a blob of one read chunk is always refused up front;
* a flipped byte is logged as ``CORRUPT BLOB`` with the blob's id;
* other blobs in the same store keep reading fine;
* a ``Range`` is verified chunk by chunk (1 MiB chunk digests): damage in its first chunk
  is a ``503``, damage in a later one cuts the response, and a range in good chunks of a
  damaged blob is served; a blob stored before chunk digests is verified against its
  whole SHA-256 instead; ``drive fsck`` names the damaged chunks.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from sqlalchemy.engine import make_url

from drive.domain.model import CHUNK_SIZE
from tests.integration.backends import BackendUnderTest, make_backend
from tests.integration.cli_helpers import Drive, cli_env
from tests.integration.live import AUTH, LiveServer
from tests.integration.servers.s3 import MotoServer, s3_client

RAW = {"Accept": "application/octet-stream"}
BIG = 3 * 1024 * 1024 + 123  # several read chunks and db rows: the raw route is already streaming
SMALL = 100 * 1024  # one read chunk: the raw route can still refuse with a status


class Tamper(Protocol):
    """Damage to the bytes of one storage key, done directly in the backend."""

    def flip(self, key: str, offset: int) -> None: ...

    def truncate(self, key: str, size: int) -> None: ...

    def remove(self, key: str) -> None: ...


class FsTamper:
    def __init__(self, base: Path) -> None:
        self._base = base

    def _path(self, key: str) -> Path:
        return self._base / "objects" / key[:2] / key

    def flip(self, key: str, offset: int) -> None:
        with self._path(key).open("r+b") as handle:
            handle.seek(offset)
            byte = handle.read(1)
            handle.seek(offset)
            handle.write(bytes([byte[0] ^ 0x01]))

    def truncate(self, key: str, size: int) -> None:
        os.truncate(self._path(key), size)

    def remove(self, key: str) -> None:
        self._path(key).unlink()


class SqliteTamper:
    """Rows of ``drive_blob_chunks`` (``chunk_size`` bytes each) in the blob database."""

    def __init__(self, database: Path) -> None:
        self._database = database

    def _rows(self, key: str) -> tuple[sqlite3.Connection, int]:
        conn = sqlite3.connect(self._database, timeout=30)
        (chunk,) = conn.execute("SELECT chunk_size FROM drive_blob_objects WHERE storage_key = ?", (key,)).fetchone()
        return conn, int(chunk)

    def flip(self, key: str, offset: int) -> None:
        conn, chunk = self._rows(key)
        with conn:
            seq, at = divmod(offset, chunk)
            (data,) = conn.execute(
                "SELECT data FROM drive_blob_chunks WHERE storage_key = ? AND seq = ?", (key, seq)
            ).fetchone()
            damaged = bytearray(data)
            damaged[at] ^= 0x01
            conn.execute(
                "UPDATE drive_blob_chunks SET data = ? WHERE storage_key = ? AND seq = ?", (bytes(damaged), key, seq)
            )
        conn.close()

    def truncate(self, key: str, size: int) -> None:
        conn, chunk = self._rows(key)
        with conn:
            seq, at = divmod(size, chunk)
            conn.execute("DELETE FROM drive_blob_chunks WHERE storage_key = ? AND seq > ?", (key, seq))
            conn.execute(
                "UPDATE drive_blob_chunks SET data = substr(data, 1, ?) WHERE storage_key = ? AND seq = ?",
                (at, key, seq),
            )
        conn.close()

    def remove(self, key: str) -> None:
        conn = sqlite3.connect(self._database, timeout=30)
        with conn:
            conn.execute("DELETE FROM drive_blob_chunks WHERE storage_key = ?", (key,))
            conn.execute("DELETE FROM drive_blob_objects WHERE storage_key = ?", (key,))
        conn.close()


class S3Tamper:
    """Objects ``<key[:2]>/<key>`` overwritten or deleted with a plain boto3 client."""

    def __init__(self, server: MotoServer, bucket: str) -> None:
        self._client: Any = s3_client(server)
        self._bucket = bucket

    def _get(self, key: str) -> bytes:
        return bytes(self._client.get_object(Bucket=self._bucket, Key=f"{key[:2]}/{key}")["Body"].read())

    def _put(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self._bucket, Key=f"{key[:2]}/{key}", Body=data)

    def flip(self, key: str, offset: int) -> None:
        data = bytearray(self._get(key))
        data[offset] ^= 0x01
        self._put(key, bytes(data))

    def truncate(self, key: str, size: int) -> None:
        self._put(key, self._get(key)[:size])

    def remove(self, key: str) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=f"{key[:2]}/{key}")


def tamper_for(backend: BackendUnderTest) -> Tamper:
    if backend.param == "fs":
        return FsTamper(Path(backend.env["FS_BASE_PATH"]))
    if backend.param == "db-sqlite":
        return SqliteTamper(Path(str(make_url(backend.env["BLOB_DATABASE_URL"]).database)))
    assert isinstance(backend.server, MotoServer)
    return S3Tamper(backend.server, backend.env["S3_BUCKET"])


def storage_key(backend: BackendUnderTest, blob_id: str) -> str:
    metadata = Path(str(make_url(backend.env["DATABASE_URL"]).database))
    with sqlite3.connect(metadata, timeout=30) as conn:
        row = conn.execute("SELECT storage_key FROM drive_blobs WHERE id = ?", (blob_id,)).fetchone()
    assert row is not None, blob_id
    return str(row[0])


@pytest.fixture(params=["fs", "db-sqlite", "s3-path"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[BackendUnderTest, httpx.Client]]:
    backend = make_backend(request, request.param, tmp_path)
    live = LiveServer(backend.env).start()
    try:
        with live.client(headers=AUTH, timeout=30) as client:
            yield backend, client
    finally:
        live.stop()


def store(client: httpx.Client, blob_id: str, size: int) -> bytes:
    data = os.urandom(size)
    response = client.put(f"/v1/blobs/{blob_id}", content=data, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.text
    return data


def assert_json_get_refused(client: httpx.Client, blob_id: str) -> None:
    response = client.get(f"/v1/blobs/{blob_id}")
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "storage_unavailable"


def raw_get_outcome(client: httpx.Client, blob_id: str, size: int) -> str:
    """``refused`` (503 before any byte) or ``aborted`` (fewer than Content-Length bytes, then EOF)."""
    received = 0
    try:
        with client.stream("GET", f"/v1/blobs/{blob_id}", headers=RAW) as response:
            if response.status_code != 200:
                assert response.status_code == 503, response.status_code
                response.read()
                assert response.json()["error"]["code"] == "storage_unavailable"
                return "refused"
            assert response.headers["content-length"] == str(size)
            for chunk in response.iter_raw():
                received += len(chunk)
    except httpx.TransportError:  # the server cut the response short
        assert received < size
        return "aborted"
    raise AssertionError(f"{blob_id}: the whole body ({received} of {size} bytes) was delivered as good")


def small_outcomes(backend: BackendUnderTest) -> tuple[str, ...]:
    """A one-chunk blob is refused up front where a read returns it whole (fs, db).

    The S3 body stream hands over what has arrived so far, so even a small object may
    come in pieces, and the response may already be streaming when the check fails.
    """
    return ("refused", "aborted") if backend.param.startswith("s3") else ("refused",)


def assert_intact(client: httpx.Client, blob_id: str, data: bytes) -> None:
    raw = client.get(f"/v1/blobs/{blob_id}", headers=RAW)
    assert raw.status_code == 200
    assert hashlib.sha256(raw.content).digest() == hashlib.sha256(data).digest()
    assert base64.b64decode(client.get(f"/v1/blobs/{blob_id}").json()["data"]) == data


def test_flipped_byte_is_refused_and_logged(
    served: tuple[BackendUnderTest, httpx.Client], caplog: pytest.LogCaptureFixture
) -> None:
    backend, client = served
    tamper = tamper_for(backend)
    kept = store(client, "untouched", SMALL)
    store(client, "flipped/big", BIG)
    store(client, "flipped/small", SMALL)
    store(client, "flipped/last-byte", BIG)
    tamper.flip(storage_key(backend, "flipped/big"), 1000)  # in the first chunk, streamed before the check
    tamper.flip(storage_key(backend, "flipped/small"), SMALL // 2)
    tamper.flip(storage_key(backend, "flipped/last-byte"), BIG - 1)

    with caplog.at_level(logging.ERROR):
        for blob_id in ("flipped/big", "flipped/small", "flipped/last-byte"):
            assert_json_get_refused(client, blob_id)
        assert raw_get_outcome(client, "flipped/small", SMALL) in small_outcomes(backend)
        assert raw_get_outcome(client, "flipped/big", BIG) in ("refused", "aborted")
        assert raw_get_outcome(client, "flipped/last-byte", BIG) in ("refused", "aborted")

    for blob_id in ("flipped/big", "flipped/small", "flipped/last-byte"):
        assert f"CORRUPT BLOB: id={blob_id!r}" in caplog.text
    assert_intact(client, "untouched", kept)
    assert client.get("/readyz").status_code == 200  # one bad blob does not make the store unready


def test_truncated_bytes_are_refused_never_500(served: tuple[BackendUnderTest, httpx.Client]) -> None:
    backend, client = served
    tamper = tamper_for(backend)
    kept = store(client, "untouched", BIG)
    store(client, "cut/big", BIG)
    store(client, "cut/small", SMALL)
    store(client, "cut/by-one", BIG)
    tamper.truncate(storage_key(backend, "cut/big"), BIG // 2)
    tamper.truncate(storage_key(backend, "cut/small"), SMALL - 10)
    tamper.truncate(storage_key(backend, "cut/by-one"), BIG - 1)

    for blob_id in ("cut/big", "cut/small", "cut/by-one"):
        assert_json_get_refused(client, blob_id)
    assert raw_get_outcome(client, "cut/small", SMALL) in small_outcomes(backend)
    assert raw_get_outcome(client, "cut/big", BIG) in ("refused", "aborted")
    assert raw_get_outcome(client, "cut/by-one", BIG) in ("refused", "aborted")
    assert_intact(client, "untouched", kept)


def test_deleted_bytes_are_refused_never_500(served: tuple[BackendUnderTest, httpx.Client]) -> None:
    backend, client = served
    tamper = tamper_for(backend)
    kept = store(client, "untouched", SMALL)
    store(client, "gone/big", BIG)
    store(client, "gone/small", SMALL)
    tamper.remove(storage_key(backend, "gone/big"))
    tamper.remove(storage_key(backend, "gone/small"))

    for blob_id, size in (("gone/big", BIG), ("gone/small", SMALL)):
        assert_json_get_refused(client, blob_id)
        assert raw_get_outcome(client, blob_id, size) == "refused"  # nothing to stream: refused up front
        assert client.head(f"/v1/blobs/{blob_id}").status_code != 500
    assert_intact(client, "untouched", kept)


# -- ranges, verified chunk by chunk --------------------------------------------------


def get_range(client: httpx.Client, blob_id: str, first: int, last: int) -> tuple[int, bytes, bool]:
    """``(status, body, cut)``; ``cut`` when the server ended the response before its ``Content-Length``."""
    received = bytearray()
    with client.stream("GET", f"/v1/blobs/{blob_id}", headers={**RAW, "Range": f"bytes={first}-{last}"}) as response:
        try:
            for chunk in response.iter_raw():
                received += chunk
        except httpx.TransportError:
            assert response.status_code == 206
            assert len(received) < int(response.headers["content-length"])
            return response.status_code, bytes(received), True
        return response.status_code, bytes(received), False


def assert_refused(status: int, body: bytes) -> None:
    assert status == 503, body[:200]
    assert httpx.Response(503, content=body).json()["error"]["code"] == "storage_unavailable"


def test_same_length_overwrite_then_range_at_the_start_is_refused_and_logged(
    served: tuple[BackendUnderTest, httpx.Client], caplog: pytest.LogCaptureFixture
) -> None:
    backend, client = served
    data = store(client, "ranged", BIG)
    tamper_for(backend).flip(storage_key(backend, "ranged"), 2)
    with caplog.at_level(logging.ERROR):
        status, body, _ = get_range(client, "ranged", 0, 5)
    assert_refused(status, body)
    assert "CORRUPT BLOB: id='ranged'" in caplog.text and "chunk 0 " in caplog.text
    # The chunks after the damaged one are still served.
    assert get_range(client, "ranged", CHUNK_SIZE, CHUNK_SIZE + 5) == (206, data[CHUNK_SIZE : CHUNK_SIZE + 6], False)


def test_damage_in_a_later_chunk_cuts_a_range_short(served: tuple[BackendUnderTest, httpx.Client]) -> None:
    backend, client = served
    data = store(client, "ranged", BIG)
    tamper_for(backend).flip(storage_key(backend, "ranged"), 2 * CHUNK_SIZE + 5)
    status, body, cut = get_range(client, "ranged", 10, 3 * CHUNK_SIZE - 1)
    assert status == 206 and cut, "a range over a damaged chunk was delivered as complete"
    assert data[10:].startswith(body)  # only the good chunks' bytes came before the cut


def test_a_range_in_good_chunks_of_a_damaged_blob_is_served(served: tuple[BackendUnderTest, httpx.Client]) -> None:
    backend, client = served
    data = store(client, "ranged", BIG)
    tamper_for(backend).flip(storage_key(backend, "ranged"), 2 * CHUNK_SIZE + 5)
    assert get_range(client, "ranged", 7, 2 * CHUNK_SIZE - 1) == (206, data[7 : 2 * CHUNK_SIZE], False)
    assert get_range(client, "ranged", 3 * CHUNK_SIZE, BIG - 1) == (206, data[3 * CHUNK_SIZE :], False)
    assert raw_get_outcome(client, "ranged", BIG) in ("refused", "aborted")  # the whole blob still is not


def forget_digests(backend: BackendUnderTest, blob_id: str) -> None:
    """Make a record look as if stored before chunk digests existed (NULL columns after the upgrade)."""
    metadata = Path(str(make_url(backend.env["DATABASE_URL"]).database))
    with sqlite3.connect(metadata, timeout=30) as conn:
        conn.execute("UPDATE drive_blobs SET chunk_size = NULL, chunk_digests = NULL WHERE id = ?", (blob_id,))


def test_a_range_of_a_blob_without_digests_is_still_verified(
    served: tuple[BackendUnderTest, httpx.Client], caplog: pytest.LogCaptureFixture
) -> None:
    backend, client = served
    intact = store(client, "legacy/intact", BIG)
    store(client, "legacy/damaged", BIG)
    for blob_id in ("legacy/intact", "legacy/damaged"):
        forget_digests(backend, blob_id)
    assert get_range(client, "legacy/intact", CHUNK_SIZE - 3, CHUNK_SIZE + 3) == (
        206,
        intact[CHUNK_SIZE - 3 : CHUNK_SIZE + 4],
        False,
    )
    tamper_for(backend).flip(storage_key(backend, "legacy/damaged"), BIG - 1)  # far from the range
    with caplog.at_level(logging.ERROR):
        status, body, _ = get_range(client, "legacy/damaged", 0, 5)
    assert_refused(status, body)
    assert "CORRUPT BLOB: id='legacy/damaged'" in caplog.text
    status, body, cut = get_range(client, "legacy/damaged", 0, BIG - 2)  # longer than one read chunk
    assert status == 503 or cut


def test_fsck_names_the_damaged_chunk(served: tuple[BackendUnderTest, httpx.Client], tmp_path: Path) -> None:
    backend, client = served
    store(client, "fine", BIG)
    store(client, "damaged", BIG)
    tamper_for(backend).flip(storage_key(backend, "damaged"), 2 * CHUNK_SIZE + 5)
    drive = Drive(cli_env(tmp_path, **backend.env), tmp_path)
    report = drive("fsck", "--json")
    report.fails(1, "1 problem found")
    found = report.json()
    assert [r["id"] for r in found["corrupt"]] == ["damaged"]
    assert found["damaged_chunks"] == {"damaged": [2]}
    assert "damaged chunk 2" in drive("fsck").text


def test_fsck_repair_gives_old_blobs_chunk_digests(
    served: tuple[BackendUnderTest, httpx.Client], tmp_path: Path
) -> None:
    backend, client = served
    data = store(client, "legacy", BIG)
    forget_digests(backend, "legacy")
    drive = Drive(cli_env(tmp_path, **backend.env), tmp_path)
    assert drive("fsck", "--json").ok().json()["without_digests"] == 1
    assert "added chunk digests to 1 blob" in drive("fsck", "--repair").ok().text
    assert drive("fsck", "--json").ok().json()["without_digests"] == 0
    # Now verified per chunk: damage in the last chunk no longer stops a range at the start.
    tamper_for(backend).flip(storage_key(backend, "legacy"), BIG - 1)
    assert get_range(client, "legacy", 0, 5) == (206, data[:6], False)
    status, body = get_range(client, "legacy", BIG - 6, BIG - 1)[:2]
    assert_refused(status, body)
