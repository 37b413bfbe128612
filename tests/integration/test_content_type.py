"""API v1.1 "Content type", every rule over real HTTP: fs with SQLite, PostgreSQL and MariaDB metadata.

Recorded from a raw ``PUT``'s ``Content-Type`` or a JSON ``POST``'s ``content_type``, checked,
part of the blob for replays, served on raw ``GET``/``HEAD`` with ``nosniff`` and ``sandbox``,
``?download=`` as one correct ``Content-Disposition``, in list items, never in the JSON ``GET``.
"""

from __future__ import annotations

import base64
import socket
import uuid
from urllib.parse import quote, unquote

import httpx
import pytest

from tests.integration.live import AUTH, LiveServer

RAW = {**AUTH, "Accept": "application/octet-stream"}
HTML = b"<!doctype html><title>t</title><script>document.title = 'script ran'</script>"
SAFETY = {"x-content-type-options": "nosniff", "content-security-policy": "sandbox"}


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def assert_invalid_request(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"


def assert_safety_headers(response: httpx.Response) -> None:
    for name, value in SAFETY.items():
        assert response.headers.get_list(name) == [value], (name, response.status_code)


def raw_put(server: LiveServer, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """A PUT with headers exactly as given (repeated, or bytes no client library would send)."""
    lines = [b"PUT " + path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [b"Authorization: " + AUTH["Authorization"].encode(), b"Content-Length: %d" % len(body)]
    lines += [name + b": " + value for name, value in headers]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_raw_put_records_its_content_type_and_raw_reads_serve_it(fs_server: LiveServer) -> None:
    blob_id = uid("typed")
    with fs_server.client(headers=AUTH) as client:
        put = client.put(f"/v1/blobs/{blob_id}", content=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"})
        assert put.status_code == 201 and put.json()["content_type"] == "text/csv"
        got = client.get(f"/v1/blobs/{blob_id}", headers=RAW)
        assert got.status_code == 200 and got.content == b"a,b\n1,2\n"
        assert got.headers["content-type"] == "text/csv"  # exactly as recorded: no charset added
        assert_safety_headers(got)
        head = client.head(f"/v1/blobs/{blob_id}")
        assert head.status_code == 200 and head.headers["content-type"] == "text/csv"
        assert head.headers["content-length"] == "8"
        assert_safety_headers(head)
        # Parameters and spacing are kept exactly as sent.
        other = uid("params")
        kind = 'text/plain;charset=UTF-8 ; format="flowed; really"'
        assert client.put(f"/v1/blobs/{other}", content=b"x", headers={"Content-Type": kind}).status_code == 201
        assert client.get(f"/v1/blobs/{other}", headers=RAW).headers["content-type"] == kind


def test_no_content_type_is_octet_stream(fs_server: LiveServer) -> None:
    raw_id, json_id = uid("untyped"), uid("untyped-json")
    # No Content-Type header at all: not even one a client library adds.
    assert raw_put(fs_server, f"/v1/blobs/{raw_id}", b"bytes", []) == 201
    with fs_server.client(headers=AUTH) as client:
        assert client.post("/v1/blobs", json={"id": json_id, "data": "AA=="}).json()["content_type"] == (
            "application/octet-stream"
        )
        for blob_id in (raw_id, json_id):
            got = client.get(f"/v1/blobs/{blob_id}", headers=RAW)
            assert got.headers["content-type"] == "application/octet-stream"
            assert_safety_headers(got)


def test_json_post_takes_an_optional_content_type_and_json_get_keeps_four_fields(fs_server: LiveServer) -> None:
    blob_id = uid("json-typed")
    data = base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode()
    with fs_server.client(headers=AUTH) as client:
        created = client.post("/v1/blobs", json={"id": blob_id, "data": data, "content_type": "image/svg+xml"})
        assert created.status_code == 201 and created.json()["content_type"] == "image/svg+xml"
        again = client.post("/v1/blobs", json={"id": blob_id, "data": data, "content_type": "image/svg+xml"})
        assert again.status_code == 200 and again.json() == created.json()
        fetched = client.get(f"/v1/blobs/{blob_id}")
        assert fetched.status_code == 200 and fetched.headers["content-type"] == "application/json"
        assert list(fetched.json()) == ["id", "data", "size", "created_at"]
        assert fetched.json()["data"] == data
        assert client.get(f"/v1/blobs/{blob_id}", headers=RAW).headers["content-type"] == "image/svg+xml"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "html",
        "text/",
        "/html",
        "text/html/x",
        "text /html",
        "text/html; charset",
        "text/html; charset=",
        'text/html; charset="open',
        "text/h(t)ml",
        "a/" + "b" * 254,  # 256 bytes
        "text/plain; x=" + "y" * 250,
    ],
)
def test_invalid_content_types_are_400_and_store_nothing(fs_server: LiveServer, value: str) -> None:
    blob_id = uid("invalid")
    with fs_server.client(headers=AUTH) as client:
        assert_invalid_request(client.put(f"/v1/blobs/{blob_id}", content=b"x", headers={"Content-Type": value}))
        assert_invalid_request(client.post("/v1/blobs", json={"id": blob_id, "data": "", "content_type": value}))
        assert client.get(f"/v1/blobs/{blob_id}").status_code == 404


def test_content_types_no_client_library_sends_are_400(fs_server: LiveServer) -> None:
    blob_id = uid("hostile")
    path = f"/v1/blobs/{blob_id}"
    for headers in (
        [(b"Content-Type", "text/h\u00e9ml".encode())],  # beyond ASCII (obs-text)
        [(b"Content-Type", b'text/plain; a="\xff"')],
        [(b"Content-Type", b"text/plain"), (b"Content-Type", b"text/html")],  # sent twice
        [(b"Content-Type", b"text/plain\x01")],
    ):
        assert raw_put(fs_server, path, b"x", headers) == 400, headers
    with fs_server.client(headers=AUTH) as client:
        for value in (None, 3, ["text/plain"], {"type": "text"}, "text/html\r\nX-Injected: 1", "text/\u00e9"):
            assert_invalid_request(client.post("/v1/blobs", json={"id": blob_id, "data": "", "content_type": value}))
        assert client.get(path).status_code == 404


def test_a_replay_with_another_content_type_is_a_conflict(fs_server: LiveServer) -> None:
    blob_id = uid("replay")
    path = f"/v1/blobs/{blob_id}"
    with fs_server.client(headers=AUTH) as client:
        assert client.put(path, content=b"{}", headers={"Content-Type": "application/json"}).status_code == 201
        assert client.put(path, content=b"{}", headers={"Content-Type": "application/json"}).status_code == 200
        for other in ("text/plain", "application/json; charset=utf-8", "Application/JSON"):
            conflict = client.put(path, content=b"{}", headers={"Content-Type": other})
            assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"
        assert raw_put(fs_server, path, b"{}", []) == 409  # none: octet-stream, another type
        payload = {"id": blob_id, "data": base64.b64encode(b"{}").decode()}
        assert client.post("/v1/blobs", json=payload).status_code == 409
        assert client.post("/v1/blobs", json={**payload, "content_type": "application/json"}).status_code == 200
        # The stored blob is untouched.
        got = client.get(path, headers=RAW)
        assert got.content == b"{}" and got.headers["content-type"] == "application/json"


def test_stored_html_is_served_with_nosniff_and_sandbox_on_every_raw_answer(fs_server: LiveServer) -> None:
    blob_id = uid("page") + ".html"
    path = f"/v1/blobs/{blob_id}"
    with fs_server.client(headers=AUTH) as client:
        put = client.put(path, content=HTML, headers={"Content-Type": "text/html; charset=utf-8"})
        assert put.status_code == 201
        whole = client.get(path, headers=RAW)
        assert whole.status_code == 200 and whole.content == HTML
        assert whole.headers["content-type"] == "text/html; charset=utf-8"
        partial = client.get(path, headers={**RAW, "Range": "bytes=0-14"})
        assert partial.status_code == 206 and partial.content == HTML[:15]
        assert partial.headers["content-type"] == "text/html; charset=utf-8"
        not_modified = client.get(path, headers={**RAW, "If-None-Match": put.headers["etag"]})
        assert not_modified.status_code == 304
        head = client.head(path)
        head_not_modified = client.head(path, headers={"If-None-Match": put.headers["etag"]})
        assert head_not_modified.status_code == 304
        for response in (whole, partial, not_modified, head, head_not_modified):
            assert_safety_headers(response)


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ("report.pdf", "report.pdf"),
        ("caf\u00e9 \u2603 \u0645\u0631\u062d\u0628\u0627.txt", "cafe _ _____.txt"),
        ('say "hi" \\ back.txt', "say _hi_ _ back.txt"),
        ("two\r\nlines\nX-Injected: 1.txt", "two__lines_X-Injected: 1.txt"),
        ("100% ; a=b, c.txt", "100_ ; a=b, c.txt"),
    ],
)
def test_download_names_are_one_correct_content_disposition(fs_server: LiveServer, name: str, fallback: str) -> None:
    blob_id = uid("download")
    with fs_server.client(headers=AUTH) as client:
        assert (
            client.put(f"/v1/blobs/{blob_id}", content=HTML, headers={"Content-Type": "text/html"}).status_code == 201
        )
        for response in (
            client.get(f"/v1/blobs/{blob_id}", headers=RAW, params={"download": name}),
            client.get(f"/v1/blobs/{blob_id}", headers={**RAW, "Range": "bytes=1-2"}, params={"download": name}),
            client.head(f"/v1/blobs/{blob_id}", params={"download": name}),
        ):
            assert response.status_code in (200, 206)
            assert "x-injected" not in response.headers  # the header was never split
            (disposition,) = response.headers.get_list("content-disposition")
            exact = name.replace("\r", "_").replace("\n", "_")
            assert disposition == f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(exact, safe='')}"
            assert unquote(disposition.split("UTF-8''", 1)[1]) == exact
            assert response.headers["content-type"] == "text/html"
            assert_safety_headers(response)
        # Without ?download= there is none; the JSON answer checks the name and ignores it.
        assert "content-disposition" not in client.get(f"/v1/blobs/{blob_id}", headers=RAW).headers
        as_json = client.get(f"/v1/blobs/{blob_id}", params={"download": name})
        assert as_json.status_code == 200 and "content-disposition" not in as_json.headers


@pytest.mark.parametrize(
    "query",
    ["download=", "download", "download=a&download=b", "download=%FF.txt", "download=" + "a" * 1025],
)
def test_bad_download_parameters_are_400(fs_server: LiveServer, query: str) -> None:
    blob_id = uid("bad-download")
    with fs_server.client(headers=AUTH) as client:
        assert client.put(f"/v1/blobs/{blob_id}", content=b"x").status_code == 201
        assert_invalid_request(client.get(f"/v1/blobs/{blob_id}?{query}", headers=RAW))
        assert_invalid_request(client.get(f"/v1/blobs/{blob_id}?{query}"))
        assert client.head(f"/v1/blobs/{blob_id}?{query}").status_code == 400


def test_list_items_carry_their_content_type(fs_server: LiveServer) -> None:
    prefix = uid("listed") + "/"
    kinds = {"a": "text/plain", "b": "application/octet-stream", "c": "image/png", "d": "application/json"}
    with fs_server.client(headers=AUTH) as client:
        for name, kind in kinds.items():
            if name == "d":
                body = {"id": prefix + name, "data": "e30=", "content_type": kind}
                assert client.post("/v1/blobs", json=body).status_code == 201
            elif name == "b":
                assert raw_put(fs_server, f"/v1/blobs/{quote(prefix + name, safe='')}", b"b", []) == 201
            else:
                put = client.put(
                    f"/v1/blobs/{quote(prefix + name, safe='')}", content=b"x", headers={"Content-Type": kind}
                )
                assert put.status_code == 201
        items = client.get("/v1/blobs", params={"prefix": prefix}).json()["items"]
    assert [(item["id"], item["content_type"]) for item in items] == [(prefix + n, k) for n, k in kinds.items()]
    assert all(list(item) == ["id", "size", "created_at", "sha256", "content_type"] for item in items)
