"""One contract, every backend, over real HTTP: seed routes, raw streaming, management."""

from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import anyio
import httpx
import pytest

from tests.integration.backends import BackendUnderTest
from tests.integration.live import AUTH, LiveServer

RAW = {**AUTH, "Accept": "application/octet-stream"}
MIB = 1024 * 1024


def url_of(blob_id: str) -> str:
    encoded = quote(blob_id, safe="")
    return "/v1/blobs/" + (encoded.replace(".", "%2E") if encoded in (".", "..") else encoded)


LIMIT = 40 * MIB  # above the 32 MiB round trip, below what the 413 tests send


@pytest.fixture(scope="module")
def server(backend: BackendUnderTest) -> Iterator[LiveServer]:
    live = LiveServer({**backend.env, "MAX_BLOB_SIZE": str(LIMIT)}).start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client(headers=AUTH) as http:
        yield http


def test_seed_routes(client: httpx.Client, backend: BackendUnderTest) -> None:
    data = base64.b64encode(os.urandom(100)).decode()
    created = client.post("/v1/blobs", json={"id": "seed", "data": data})
    assert created.status_code == 201
    assert client.post("/v1/blobs", json={"id": "seed", "data": data}).json() == created.json()
    conflict = client.post("/v1/blobs", json={"id": "seed", "data": "QUJD"})
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"
    fetched = client.get("/v1/blobs/seed").json()
    assert fetched == {"id": "seed", "data": data, "size": "100", "created_at": created.json()["created_at"]}


@pytest.mark.parametrize("blob_id", ["../../x", "/abs", "..", ".", "a/b/c", "a%2Fb", "sp ace?#", "مرحبا", "y" * 1024])
def test_odd_ids(client: httpx.Client, blob_id: str) -> None:
    data = base64.b64encode(blob_id.encode()).decode()
    assert client.post("/v1/blobs", json={"id": blob_id, "data": data}).status_code == 201
    assert client.get(url_of(blob_id)).json()["data"] == data


def test_empty_and_8_mib_json(client: httpx.Client) -> None:
    assert client.post("/v1/blobs", json={"id": "empty", "data": ""}).json()["size"] == "0"
    assert client.get("/v1/blobs/empty").json()["data"] == ""
    payload = os.urandom(8 * MIB)
    assert client.post("/v1/blobs", json={"id": "8mib", "data": base64.b64encode(payload).decode()}).status_code == 201
    assert base64.b64decode(client.get("/v1/blobs/8mib").json()["data"]) == payload


@pytest.mark.anyio
async def test_concurrent_writers(server: LiveServer) -> None:
    statuses: list[int] = []

    async def post(http: httpx.AsyncClient, n: int) -> None:
        data = base64.b64encode(f"w{n}".encode() * 500).decode()
        statuses.append((await http.post("/v1/blobs", json={"id": "race", "data": data})).status_code)

    async with (
        httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as http,
        anyio.create_task_group() as tasks,
    ):
        for n in range(24):
            tasks.start_soon(post, http, n)
    assert sorted(statuses) == [201] + [409] * 23


def test_32_mib_raw_round_trip(client: httpx.Client) -> None:
    payload = os.urandom(32 * MIB)

    def body() -> Iterator[bytes]:
        for i in range(0, len(payload), MIB):
            yield payload[i : i + MIB]

    put = client.put("/v1/blobs/raw/32", content=body(), headers={"Content-Type": "application/octet-stream"})
    assert put.status_code == 201, put.text
    sha = hashlib.sha256(payload).hexdigest()
    assert put.json()["sha256"] == sha and put.json()["size"] == str(len(payload))
    assert client.put("/v1/blobs/raw/32", content=payload).status_code == 200
    with client.stream("GET", "/v1/blobs/raw/32", headers=RAW) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(payload))
        assert response.headers["etag"] == f'"{sha}"'
        assert response.headers["content-type"] == "application/octet-stream"
        parsedate_to_datetime(response.headers["last-modified"])
        assert b"".join(response.iter_bytes()) == payload


def test_ranges_304_and_head(client: httpx.Client) -> None:
    payload = os.urandom(3 * MIB + 5)
    etag = client.put("/v1/blobs/ranged", content=payload).headers["etag"]
    cases = {
        "bytes=0-9": (0, 10),
        f"bytes={MIB - 2}-{2 * MIB + 1}": (MIB - 2, 2 * MIB + 2),
        "bytes=-7": (len(payload) - 7, len(payload)),
        f"bytes={3 * MIB}-": (3 * MIB, len(payload)),
        f"bytes=5-{10 * MIB}": (5, len(payload)),
    }
    for header, (start, end) in cases.items():
        response = client.get("/v1/blobs/ranged", headers={**RAW, "Range": header})
        assert response.status_code == 206, header
        assert response.content == payload[start:end], header
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{len(payload)}"
        assert response.headers["content-length"] == str(end - start)
    unsatisfiable = client.get("/v1/blobs/ranged", headers={**RAW, "Range": f"bytes={len(payload)}-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.json()["error"]["code"] == "range_not_satisfiable"
    assert unsatisfiable.headers["content-range"] == f"bytes */{len(payload)}"

    not_modified = client.get("/v1/blobs/ranged", headers={**RAW, "If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert client.get("/v1/blobs/ranged", headers={**RAW, "If-None-Match": '"other"'}).status_code == 200

    head = client.head("/v1/blobs/ranged")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(payload))
    assert head.headers["etag"] == etag
    assert client.head("/v1/blobs/missing").status_code == 404


def test_content_type_round_trips(client: httpx.Client) -> None:
    html = b"<!doctype html><script>document.title = 'ran'</script>"
    put = client.put("/v1/blobs/typed/page.html", content=html, headers={"Content-Type": "text/html; charset=utf-8"})
    assert put.status_code == 201 and put.json()["content_type"] == "text/html; charset=utf-8"
    for response in (client.get("/v1/blobs/typed/page.html", headers=RAW), client.head("/v1/blobs/typed/page.html")):
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == "sandbox"
    assert client.get("/v1/blobs/typed/page.html", headers=RAW).content == html
    svg = {"id": "typed/logo.svg", "data": base64.b64encode(b"<svg/>").decode(), "content_type": "image/svg+xml"}
    assert client.post("/v1/blobs", json=svg).status_code == 201
    assert client.get("/v1/blobs/typed/logo.svg", headers=RAW).headers["content-type"] == "image/svg+xml"
    assert list(client.get("/v1/blobs/typed/logo.svg").json()) == ["id", "data", "size", "created_at"]
    listed = client.get("/v1/blobs", params={"prefix": "typed/"}).json()["items"]
    assert [(i["id"], i["content_type"]) for i in listed] == [
        ("typed/logo.svg", "image/svg+xml"),
        ("typed/page.html", "text/html; charset=utf-8"),
    ]
    other = client.put("/v1/blobs/typed/page.html", content=html, headers={"Content-Type": "text/plain"})
    assert other.status_code == 409


def test_content_digest(client: httpx.Client) -> None:
    payload = os.urandom(4096)
    good = "sha-256=:" + base64.b64encode(hashlib.sha256(payload).digest()).decode() + ":"
    bad = "sha-256=:" + base64.b64encode(hashlib.sha256(b"other").digest()).decode() + ":"
    rejected = client.put("/v1/blobs/digest", content=payload, headers={"Content-Digest": bad})
    assert rejected.status_code == 400 and rejected.json()["error"]["code"] == "checksum_mismatch"
    assert client.get("/v1/blobs/digest").status_code == 404
    assert client.put("/v1/blobs/digest", content=payload, headers={"Content-Digest": good}).status_code == 201


def test_delete_then_store_again(client: httpx.Client) -> None:
    assert client.put("/v1/blobs/del/me", content=b"first").status_code == 201
    assert client.delete("/v1/blobs/del/me").status_code == 204
    assert client.get("/v1/blobs/del/me").status_code == 404
    assert client.delete("/v1/blobs/del/me").status_code == 404
    assert client.put("/v1/blobs/del/me", content=b"second").status_code == 201
    assert client.get("/v1/blobs/del/me", headers=RAW).content == b"second"


def test_list_pages_never_repeat_or_skip(client: httpx.Client) -> None:
    ids = [f"list/{n:03d}" for n in range(57)] + ["list/é", "list/Z", "list/a b"]
    for blob_id in ids:
        assert client.put(url_of(blob_id), content=blob_id.encode()).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"prefix": "list/", "limit": "10", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/blobs", params=params).json()
        assert all(set(item) == {"id", "size", "created_at", "sha256", "content_type"} for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, key=lambda i: i.encode())
    assert client.get("/v1/blobs", params={"limit": "0"}).status_code == 400
    assert client.get("/v1/blobs", params={"limit": "1001"}).status_code == 400
    assert client.get("/v1/blobs", params={"cursor": "%%%"}).status_code == 400


def _raw_request(server: LiveServer, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(head.encode())
    return sock


def _status_of(sock: socket.socket) -> int:
    reply = b""
    while b"\r\n" not in reply:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_413_on_declared_length_before_any_byte_is_read(server: LiveServer) -> None:
    token = AUTH["Authorization"]
    with _raw_request(
        server,
        f"PUT /v1/blobs/huge HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\nContent-Length: {100 * 1024**3}\r\n\r\n",
    ) as sock:
        assert _status_of(sock) == 413  # answered with none of the 100 GiB sent


def test_413_while_streaming_a_body_of_unknown_length(server: LiveServer) -> None:
    token = AUTH["Authorization"]
    sent = 0
    with _raw_request(
        server,
        f"PUT /v1/blobs/huge HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\nTransfer-Encoding: chunked\r\n\r\n",
    ) as sock:
        chunk = b"%x\r\n" % MIB + b"\0" * MIB + b"\r\n"
        try:
            while sent < 4 * LIMIT:
                sock.sendall(chunk)
                sent += MIB
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _status_of(sock) == 413
    assert sent < 2 * LIMIT  # refused on the way, long before the 160 MiB the client had to send
    with server.client(headers=AUTH) as http:
        assert http.get("/v1/blobs/huge").status_code == 404


def test_zz_no_orphans_and_no_pending(backend: BackendUnderTest) -> None:
    """Runs last in the module: every failed, raced or deleted store left nothing behind."""

    async def check() -> None:
        service = backend.container().service()
        await service.open()
        try:
            report = await service.recover(repair=False)
            assert report.orphans_found == []
            assert await service.metadata.expired(datetime.max.replace(tzinfo=UTC), 10) == []
        finally:
            await service.close()

    anyio.run(check)
